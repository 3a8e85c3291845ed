//! One verdict for every front end: what is wrong with a domain, and how bad.
//!
//! `check`, `diff`, `audit`, the hook's admission checks and the proxy all ask
//! [`findings`] and act on the [`Severity`] it gives, so they agree on what is a
//! violation. The only I/O a finding needs (does a client-mode socket exist?) is
//! done by the caller's probe (`crate::host::probe_socket`), so the proxy
//! (which decides at define time, when the backend need not run yet) can skip it.

use super::analysis::{Analysis, NicFinding, NicStatus, Policy};
use super::detect::Verdict;
use super::parse::DocKind;
use super::rules::NicSource;
use serde::Serialize;

/// How bad a finding is. Ordered: `Warning < Fixable < Refused`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Works today; worth knowing (e.g. it breaks on a newer libvirt).
    Warning,
    /// vhostfix fixes it (`filter`, the proxy); left as it is, libvirt refuses it.
    Fixable,
    /// vhostfix cannot fix it: libvirt or vhostfix's hook refuses the domain,
    /// or it starts with a dead NIC.
    Refused,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Fixable => "fixable",
            Severity::Refused => "refused",
        })
    }
}

/// What a finding is about; the hook maps each kind to its `[hook.checks]` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A non-virtio model in a guest the policy covers (`hook.checks.model`).
    Model,
    /// A non-virtio model in a guest outside the policy: libvirt refuses it.
    ModelOutOfScope,
    /// Guest memory not shared (`hook.checks.shared_memory`).
    SharedMemory,
    /// A client-mode socket that is missing (`hook.checks.client_socket`).
    ClientSocket,
    /// Memory shared only by memfd's default, which libvirt >= 11.2 refuses.
    MemfdDefault,
}

/// One thing wrong with a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub kind: Kind,
    /// The NIC's index among the domain's interfaces, when it is about one NIC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nic: Option<usize>,
    /// One sentence: what is wrong, why, and `fix: ...`.
    pub message: String,
}

/// What is at a client-mode vhost-user socket path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketState {
    /// A UNIX socket is there.
    Present,
    Missing,
    /// Something else is there.
    NotASocket,
    /// Not looked at (the proxy, golden tests).
    Unchecked,
}

/// A probe that looks at nothing.
pub fn unchecked(_path: &str) -> SocketState {
    SocketState::Unchecked
}

/// The exit statuses of `check`, `diff` and `audit`, one table for all three
/// (README "Exit status"). 0 and 1 keep grep's meaning for scripts that only
/// ask "anything to do?"; 3 tells "vhostfix fixes it" from "it will be
/// refused even after vhostfix" without parsing JSON.
pub(crate) mod exit {
    use super::{worst, Finding, Severity};

    /// Nothing to fix, nothing refused (warnings allowed).
    pub(crate) const OK: u8 = 0;
    /// Something to fix, and vhostfix fixes all of it (`filter`, the proxy).
    pub(crate) const FIXABLE: u8 = 1;
    /// Bad input or configuration, libvirt unreachable, an I/O failure.
    pub(crate) const ERROR: u8 = 2;
    /// vhostfix cannot make it work: libvirt or vhostfix's hook will refuse
    /// it even after vhostfix's fixes, or its vhost-user NIC would stay dead.
    pub(crate) const REFUSED: u8 = 3;

    /// The status for one document's findings.
    pub(crate) fn of(findings: &[Finding]) -> u8 {
        match worst(findings) {
            Some(Severity::Refused) => REFUSED,
            Some(Severity::Fixable) => FIXABLE,
            Some(Severity::Warning) | None => OK,
        }
    }

    /// The status of several documents: an error before a refusal before a
    /// fix before nothing.
    pub(crate) fn worse(a: u8, b: u8) -> u8 {
        let rank = |s: u8| match s {
            ERROR => 3,
            REFUSED => 2,
            FIXABLE => 1,
            _ => 0,
        };
        if rank(b) > rank(a) {
            b
        } else {
            a
        }
    }
}

/// The worst severity among `findings`.
pub(crate) fn worst(findings: &[Finding]) -> Option<Severity> {
    findings.iter().map(|f| f.severity).max()
}

/// True when something is fixable or refused (what makes `check` exit 1).
pub(crate) fn not_compliant(findings: &[Finding]) -> bool {
    worst(findings) >= Some(Severity::Fixable)
}

/// `nic 0 (52:54:00:12:34:56) on socket /run/x.sock`.
pub(crate) fn nic_place(n: &NicFinding) -> String {
    match &n.source {
        NicSource::Unix { path, .. } => format!("{} on socket {path}", n.label()),
        other => format!("{} ({other})", n.label()),
    }
}

/// Everything wrong with an analysed document, in a stable order: NIC models,
/// memory, sockets. `socket` is asked about each client-mode socket without
/// `<reconnect enabled='yes'/>`.
pub fn findings(
    a: &Analysis,
    policy: &Policy,
    socket: &dyn Fn(&str) -> SocketState,
) -> Vec<Finding> {
    let mut out = model_findings(a, policy);
    out.extend(memory_finding(a, policy));
    out.extend(socket_findings(a, socket));
    out
}

/// A NIC vhostfix fixes, or one it leaves alone for libvirt to refuse.
fn model_findings(a: &Analysis, policy: &Policy) -> Vec<Finding> {
    a.nics
        .iter()
        .filter_map(|n| match n.status {
            NicStatus::Compliant => None,
            NicStatus::Fixed => Some(Finding {
                severity: Severity::Fixable,
                kind: Kind::Model,
                nic: Some(n.index),
                message: format!(
                    "vhost-user {} has model {}, but vhost-user requires a virtio-net frontend; fix: set <model type='{}'/> in the definition (vhostfix filter does this)",
                    nic_place(n),
                    n.model_text(),
                    n.new_model.as_deref().unwrap_or("virtio")
                ),
            }),
            NicStatus::LeftAlone => Some(Finding {
                severity: Severity::Refused,
                kind: Kind::ModelOutOfScope,
                nic: Some(n.index),
                message: out_of_scope(a, n, policy),
            }),
        })
        .collect()
}

/// Guest memory a vhost-user backend cannot map, or memory shared only by
/// memfd's default (which libvirt 11.2 and later refuse).
fn memory_finding(a: &Analysis, policy: &Policy) -> Option<Finding> {
    let m = a.memory.as_ref()?;
    if m.shared {
        return m.memfd_default.then(|| Finding {
            severity: Severity::Warning,
            kind: Kind::MemfdDefault,
            nic: None,
            message: "guest memory is shared only by memfd's default (<source type='memfd'/> without <access mode='shared'/>), which libvirt 11.2 and later refuse for vhost-user; fix: add <access mode='shared'/> to <memoryBacking>".to_string(),
        });
    }
    let n = a.nics.first()?;
    let (what, alt) = match policy.libvirt {
        Some(v) if v.enforces_shared_memory() => (
            format!("libvirt {v} refuses to define or start it ('interface' requires shared memory)"),
            "",
        ),
        // memfd's default is shared on these releases (measured on 7.0, 9.0).
        Some(_) => (
            "so the backend cannot map it and the NIC would stay dead".to_string(),
            " (or <source type='memfd'/>)",
        ),
        None => (
            "so the backend cannot map it and the NIC would stay dead (libvirt 11.2 and later refuse it outright)".to_string(),
            "",
        ),
    };
    Some(Finding {
        severity: Severity::Refused,
        kind: Kind::SharedMemory,
        nic: Some(n.index),
        message: format!(
            "vhost-user {} needs shared guest memory, but memory is not shared ({}), {what}; fix: add <memoryBacking><access mode='shared'/></memoryBacking>{alt} to the domain",
            nic_place(n),
            m.reason
        ),
    })
}

/// Client-mode NICs whose socket is missing (and no reconnect).
fn socket_findings(a: &Analysis, socket: &dyn Fn(&str) -> SocketState) -> Vec<Finding> {
    let mut out = Vec::new();
    for n in &a.nics {
        let NicSource::Unix {
            path,
            mode,
            reconnect,
        } = &n.source
        else {
            continue;
        };
        if mode.as_deref() != Some("client") || *reconnect {
            continue;
        }
        let what = match socket(path) {
            SocketState::Missing => "does not exist",
            SocketState::NotASocket => "is not a UNIX socket",
            SocketState::Present | SocketState::Unchecked => continue,
        };
        out.push(Finding {
            severity: Severity::Refused,
            kind: Kind::ClientSocket,
            nic: Some(n.index),
            message: format!(
                "vhost-user {} is in client mode but the socket {path} {what}, so QEMU would fail to connect; fix: start the backend (e.g. create the OVS dpdkvhostuser port) first, or add <reconnect enabled='yes' timeout='10'/> to the <source>",
                n.label()
            ),
        });
    }
    out
}

/// The message for a violating NIC vhostfix leaves alone, with the ways to
/// bring the guest into scope.
fn out_of_scope(a: &Analysis, n: &NicFinding, policy: &Policy) -> String {
    let refuses = match policy.libvirt {
        Some(v) => format!("libvirt {v} refuses"),
        None => "libvirt refuses".to_string(),
    };
    let head = format!(
        "vhost-user {} has model {}, which {refuses} (vhost-user requires a virtio-net frontend)",
        nic_place(n),
        n.model_text()
    );
    if a.kind == DocKind::Interface && policy.guest_os.is_none() {
        return format!(
            "{head}; vhostfix left it alone because device XML says nothing about the guest OS; fix: pass --guest-os windows for a Windows guest, or --guests any to give every guest virtio"
        );
    }
    let os = match a.detection.verdict {
        Verdict::Windows => "windows",
        Verdict::NotWindows => "not Windows",
        Verdict::Unknown => "of unknown OS",
    };
    format!(
        "{head}; vhostfix left it alone because the guest is {os} ({}) and guests = \"windows\"; fix: mark a Windows guest with <metadata><vhostfix:guest xmlns:vhostfix=\"urn:vhostfix:guest:1\" os=\"windows\"/></metadata>, or use --guests any (guests = \"any\") to give every guest virtio, or set <model type='virtio'/> yourself",
        a.detection.reason()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::analysis::analyze;

    /// Every client socket is missing (the tests' sockets do not exist).
    fn missing(_path: &str) -> SocketState {
        SocketState::Missing
    }

    const DOM: &str = "<domain><name>d</name>MEM<devices><interface type='vhostuser'><mac address='52:54:00:00:00:01'/><source type='unix' path='/nonexistent/vhu.sock' mode='client'/><model type='MODEL'/></interface></devices>OS</domain>";
    const WIN_OS: &str = "<features><hyperv><relaxed state='on'/></hyperv></features>";

    fn run(model: &str, mem: &str, os: &str, v: Option<&str>) -> Vec<Finding> {
        let xml = DOM
            .replace("MODEL", model)
            .replace("MEM", mem)
            .replace("OS", os);
        let policy = Policy {
            libvirt: v.map(|v| v.parse().unwrap()),
            ..Policy::default()
        };
        let a = analyze(&xml, &policy).unwrap();
        findings(&a, &policy, &missing)
    }

    const SHARED: &str = "<memoryBacking><access mode='shared'/></memoryBacking>";
    const MEMFD: &str = "<memoryBacking><source type='memfd'/></memoryBacking>";

    #[test]
    fn every_problem_is_found_with_its_severity() {
        let f = run("e1000", "", WIN_OS, Some("9.0.0"));
        let kinds: Vec<(Kind, Severity)> = f.iter().map(|f| (f.kind, f.severity)).collect();
        assert_eq!(
            kinds,
            vec![
                (Kind::Model, Severity::Fixable),
                (Kind::SharedMemory, Severity::Refused),
                (Kind::ClientSocket, Severity::Refused)
            ]
        );
        assert_eq!(worst(&f), Some(Severity::Refused));
        assert!(
            f[1].message.contains("(or <source type='memfd'/>)"),
            "{}",
            f[1].message
        );
        assert!(f[2]
            .message
            .contains("/nonexistent/vhu.sock does not exist"));
    }

    #[test]
    fn out_of_scope_model_points_at_the_override_and_guests_any() {
        let f = run("e1000", SHARED, "", None);
        assert_eq!(f[0].kind, Kind::ModelOutOfScope);
        assert_eq!(f[0].severity, Severity::Refused);
        assert!(
            f[0].message.contains("urn:vhostfix:guest:1"),
            "{}",
            f[0].message
        );
        assert!(f[0].message.contains("--guests any"), "{}", f[0].message);
        assert!(f[0].message.contains("of unknown OS"), "{}", f[0].message);
    }

    #[test]
    fn advice_follows_the_libvirt_release() {
        // 11.3 refuses memfd without shared access: no advice to use it.
        let f = run("virtio", "", WIN_OS, Some("11.3.0"));
        let m = &f
            .iter()
            .find(|f| f.kind == Kind::SharedMemory)
            .unwrap()
            .message;
        assert!(!m.contains("<source type='memfd'/>"), "{m}");
        assert!(m.contains("libvirt 11.3.0 refuses"), "{m}");
        let f = run("virtio", MEMFD, WIN_OS, Some("11.3.0"));
        assert!(f
            .iter()
            .any(|f| f.kind == Kind::SharedMemory && f.severity == Severity::Refused));
        // 9.0 shares memfd memory; the upgrade trap is a warning only.
        let f = run("virtio", MEMFD, WIN_OS, Some("9.0.0"));
        let kinds: Vec<Kind> = f.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, vec![Kind::MemfdDefault, Kind::ClientSocket]);
        assert!(!not_compliant(&f[..1]));
        // Unknown release: advice that holds everywhere.
        let f = run("virtio", "", WIN_OS, None);
        assert!(
            !f[0].message.contains("<source type='memfd'/>"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn missing_model_is_fine_where_libvirt_fills_in_virtio() {
        let xml = DOM
            .replace("<model type='MODEL'/>", "")
            .replace("MEM", SHARED)
            .replace("OS", WIN_OS)
            .replace(" mode='client'", " mode='server'");
        for (v, fixable) in [(None, true), (Some("9.0.0"), true), (Some("11.3.0"), false)] {
            let policy = Policy {
                libvirt: v.map(|v| v.parse().unwrap()),
                ..Policy::default()
            };
            let a = analyze(&xml, &policy).unwrap();
            let f = findings(&a, &policy, &missing);
            assert_eq!(not_compliant(&f), fixable, "{v:?}: {f:?}");
        }
    }
}
