//! One document, analysed: the guest OS verdict, every vhost-user NIC with
//! what happens to it, guest memory, and the byte-range edits that fix it.
//! Every front end starts here ([`analyze`]).

use super::detect::{self, Detection, Signals, Verdict};
use super::escape::field;
use super::parse::{self, DocKind, InputError, InputLimits, Pos};
use super::rewrite::{self, Edit};
use super::rules::{self, Guests, LibvirtVersion, MemorySharing, NicSource, TargetModel};
use super::scan;
use super::xml::{self, Element};
use serde::Serialize;

/// Everything the core needs to decide.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub guests: Guests,
    pub target_model: TargetModel,
    pub signals: Signals,
    pub limits: InputLimits,
    /// A verdict known from elsewhere (device XML has no OS information of its own).
    pub guest_os: Option<Detection>,
    /// The libvirt release the result is for; `None` when unknown (advice then
    /// holds on every release).
    pub libvirt: Option<LibvirtVersion>,
}

/// What happens to one vhost-user NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NicStatus {
    /// Already has a virtio model; never touched.
    Compliant,
    /// Gets the target model from `filter` or the proxy; `check` and `audit`
    /// only look, so their JSON says `would-fix`.
    #[serde(rename = "would-fix")]
    Fixed,
    /// Violates, but the guest is outside the policy's scope: libvirt will refuse it.
    LeftAlone,
}

/// The finding for one vhost-user NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NicFinding {
    pub index: usize,
    pub mac: Option<String>,
    pub source: NicSource,
    /// Model as written; `None` when missing.
    pub model: Option<String>,
    /// Model after the fix; `None` when unchanged.
    pub new_model: Option<String>,
    pub status: NicStatus,
    pub pos: Pos,
}

impl NicFinding {
    /// `nic 0 (52:54:00:12:34:56)`.
    pub(crate) fn label(&self) -> String {
        match &self.mac {
            Some(m) => format!("nic {} ({m})", self.index),
            None => format!("nic {}", self.index),
        }
    }

    /// The model as written, or `(none)`.
    pub(crate) fn model_text(&self) -> &str {
        self.model.as_deref().unwrap_or("(none)")
    }
}

/// The result of looking at one document.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub kind: DocKind,
    /// `<name>` of the domain, if present.
    pub domain: Option<String>,
    pub detection: Detection,
    /// True when the policy covers this guest.
    pub in_scope: bool,
    pub nics: Vec<NicFinding>,
    /// Whether guest memory is shared (domains with vhost-user NICs only).
    pub memory: Option<MemorySharing>,
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub edits: Vec<Edit>,
}

impl Analysis {
    /// True when the output differs from the input.
    pub fn changes(&self) -> bool {
        !self.edits.is_empty()
    }

    /// True when libvirt would refuse a NIC even after vhostfix's fixes.
    pub(crate) fn violations_left(&self) -> bool {
        self.nics.iter().any(|n| n.status == NicStatus::LeftAlone)
    }

    /// The corrected document.
    pub fn output(&self, input: &str) -> String {
        rewrite::apply(input, &self.edits)
    }

    /// Domain name for messages (`'win10'` or `(device XML)`).
    pub(crate) fn subject(&self) -> String {
        match (&self.domain, self.kind) {
            (Some(n), _) => format!("domain {}", field(n)),
            (None, DocKind::Interface) => "interface XML".into(),
            (None, DocKind::Domain) => "domain (no name)".into(),
        }
    }
}

pub(crate) const NETKVM_WARNING: &str = "the guest needs the NetKVM driver (virtio-win) for a virtio NIC to carry traffic; it boots either way";

/// Parses, detects, applies the rule, and plans the edits. No I/O.
///
/// An ordinary document takes the fast path: one streaming scan checks it
/// and keeps only the elements the analysis reads ([`scan`]). Anything the
/// scan does not vouch for (an error, a limit, a DTD, an unusual construct)
/// takes the tree path, which gives every error and its position.
pub fn analyze(text: &str, policy: &Policy) -> Result<Analysis, InputError> {
    match analyze_fast(text, policy) {
        Some(result) => result,
        None => analyze_tree(text, policy),
    }
}

/// The fast path alone: `None` when the document needs the tree.
pub fn analyze_fast(text: &str, policy: &Policy) -> Option<Result<Analysis, InputError>> {
    let lite = scan::scan(text, &policy.limits)?;
    Some(analyze_root(text, lite.kind(), lite.root(), policy))
}

/// The tree path alone: roxmltree's whole tree.
pub fn analyze_tree(text: &str, policy: &Policy) -> Result<Analysis, InputError> {
    let parsed = parse::parse(text, &policy.limits)?;
    analyze_root(text, parsed.kind, parsed.doc.root_element(), policy)
}

/// Why a NIC libvirt will refuse keeps its model.
fn left_alone(
    finding: &NicFinding,
    kind: DocKind,
    policy: &Policy,
    detection: &Detection,
) -> String {
    let why = if kind == DocKind::Interface && policy.guest_os.is_none() {
        "device XML says nothing about the guest OS (pass --guest-os windows or use --guests any)"
            .to_string()
    } else {
        format!(
            "the guest is {} ({}) and guests = \"windows\"",
            detection.verdict,
            detection.reason()
        )
    };
    format!(
        "{} keeps model {}: {why}; libvirt will refuse it, since vhost-user requires a virtio model",
        finding.label(),
        finding.model_text()
    )
}

fn analyze_root<'a>(
    text: &str,
    kind: DocKind,
    root: impl Element<'a>,
    policy: &Policy,
) -> Result<Analysis, InputError> {
    let detection = match (&policy.guest_os, kind) {
        (Some(d), _) => d.clone(),
        (None, DocKind::Domain) => detect::detect(root, &policy.signals)?,
        (None, DocKind::Interface) => Detection {
            verdict: Verdict::Unknown,
            evidence: Vec::new(),
        },
    };
    let in_scope = policy.guests == Guests::Any || detection.verdict == Verdict::Windows;
    let domain = xml::child(root, "name")
        .filter(|_| kind == DocKind::Domain)
        .and_then(|n| n.text())
        .map(|t| t.trim().to_string());

    let target = policy.target_model.as_str();
    let mut nics = Vec::new();
    let mut edits = Vec::new();
    let mut warnings = Vec::new();
    for nic in rules::vhostuser_nics(root) {
        let status = if !nic.violates(policy.libvirt) {
            NicStatus::Compliant
        } else if in_scope {
            edits.push(rewrite::model_edit(text, &nic, target));
            NicStatus::Fixed
        } else {
            NicStatus::LeftAlone
        };
        let finding = NicFinding {
            index: nic.index,
            mac: nic.mac.clone(),
            source: nic.source.clone(),
            model: nic.model().map(String::from),
            new_model: (status == NicStatus::Fixed).then(|| target.to_string()),
            status,
            pos: nic.pos,
        };
        if status == NicStatus::LeftAlone {
            warnings.push(left_alone(&finding, kind, policy, &detection));
        }
        nics.push(finding);
    }
    edits.sort_by_key(|e| e.range.start);
    if !edits.is_empty() && detection.verdict == Verdict::Windows {
        warnings.push(NETKVM_WARNING.to_string());
    }
    let memory = (kind == DocKind::Domain && !nics.is_empty())
        .then(|| rules::memory_sharing(root, policy.libvirt));
    if let Some(m) = memory.as_ref().filter(|m| !m.shared) {
        warnings.push(format!(
            "guest memory is not shared ({}): vhost-user NICs will not work; add <memoryBacking><access mode='shared'/></memoryBacking>",
            m.reason
        ));
    }
    Ok(Analysis {
        kind,
        domain,
        detection,
        in_scope,
        nics,
        memory,
        warnings,
        edits,
    })
}
