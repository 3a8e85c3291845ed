//! vhostfix: keeps Windows guests with vhost-user NICs bootable on libvirt hosts.
//!
//! The core (`parse`, `detect`, `rules`, `rewrite`, `report`) is pure: text in,
//! analysis and edits out, no I/O. The front ends (`cli`, `hook`, `proxy`) move bytes in
//! and out and decide exit codes.

pub mod audit;
pub mod cli;
pub mod config;
pub mod detect;
pub mod hook;
pub mod logging;
pub mod manpages;
pub mod parse;
pub mod proxy;
pub mod report;
pub mod rewrite;
pub mod rpc;
pub mod rules;
pub mod transparent;
pub mod verdict;

use detect::{Detection, Signals, Verdict};
use parse::{DocKind, InputError, Limits, Pos};
use rewrite::Edit;
use rules::{Guests, LibvirtVersion, MemorySharing, NicSource, TargetModel};
use serde::Serialize;

/// Everything the core needs to decide.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub guests: Guests,
    pub target_model: TargetModel,
    pub signals: Signals,
    pub limits: Limits,
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
    /// Gets (or got) the target model.
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
    pub fn label(&self) -> String {
        match &self.mac {
            Some(m) => format!("nic {} ({m})", self.index),
            None => format!("nic {}", self.index),
        }
    }

    /// The model as written, or `(none)`.
    pub fn model_text(&self) -> &str {
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
    pub fn violations_left(&self) -> bool {
        self.nics.iter().any(|n| n.status == NicStatus::LeftAlone)
    }

    /// The corrected document.
    pub fn output(&self, input: &str) -> String {
        rewrite::apply(input, &self.edits)
    }

    /// Domain name for messages (`'win10'` or `(device XML)`).
    pub fn subject(&self) -> String {
        match (&self.domain, self.kind) {
            (Some(n), _) => format!("domain {}", crate::logging::field(n)),
            (None, DocKind::Interface) => "interface XML".into(),
            (None, DocKind::Domain) => "domain (no name)".into(),
        }
    }
}

const NETKVM_WARNING: &str = "the guest needs the NetKVM driver (virtio-win) for a virtio NIC to carry traffic; it boots either way";

/// Parses, detects, applies the rule, and plans the edits. No I/O.
pub fn analyze(text: &str, policy: &Policy) -> Result<Analysis, InputError> {
    let parsed = parse::parse(text, &policy.limits)?;
    let root = parsed.doc.root_element();
    let detection = match (&policy.guest_os, parsed.kind) {
        (Some(d), _) => d.clone(),
        (None, DocKind::Domain) => detect::detect(root, &policy.signals)?,
        (None, DocKind::Interface) => Detection {
            verdict: Verdict::Unknown,
            evidence: Vec::new(),
        },
    };
    let in_scope = policy.guests == Guests::Any || detection.verdict == Verdict::Windows;
    let domain = rules::child(root, "name")
        .filter(|_| parsed.kind == DocKind::Domain)
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
            let why = if parsed.kind == DocKind::Interface && policy.guest_os.is_none() {
                "device XML says nothing about the guest OS (pass --guest-os windows or use --guests any)".to_string()
            } else {
                format!(
                    "the guest is {} ({}) and guests = \"windows\"",
                    detection.verdict,
                    detection.reason()
                )
            };
            warnings.push(format!(
                "{} keeps model {}: {why}; libvirt will refuse it, since vhost-user requires a virtio model",
                finding.label(),
                finding.model_text()
            ));
        }
        nics.push(finding);
    }
    edits.sort_by_key(|e| e.range.start);
    if !edits.is_empty() && detection.verdict == Verdict::Windows {
        warnings.push(NETKVM_WARNING.to_string());
    }
    let memory = (parsed.kind == DocKind::Domain && !nics.is_empty())
        .then(|| rules::memory_sharing(root, policy.libvirt));
    if let Some(m) = memory.as_ref().filter(|m| !m.shared) {
        warnings.push(format!(
            "guest memory is not shared ({}): vhost-user NICs will not work; add <memoryBacking><access mode='shared'/></memoryBacking>",
            m.reason
        ));
    }
    Ok(Analysis {
        kind: parsed.kind,
        domain,
        detection,
        in_scope,
        nics,
        memory,
        warnings,
        edits,
    })
}
