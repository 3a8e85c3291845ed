//! `vhostfix audit`: every domain libvirt knows, defined or running, judged by
//! the same verdict as `check` and the hook (`crate::core::findings`).
//!
//! The domains come over vhostfix's own read-only connection to libvirt's
//! socket (`crate::rpc::client`), so it works against libvirtd, virtqemud and the
//! vhostfix proxy alike. A running domain is judged twice: its live XML (what
//! runs now) and its inactive XML (what the next boot gets); libvirt loads
//! definitions from disk without validating them again, so an upgrade can leave
//! either one refused.

mod render;

pub(crate) use render::{json, next_start_text, prometheus, table};

use crate::config::{CheckAction, HookChecks};
use crate::core::analysis::{analyze, NicFinding, Policy};
use crate::core::detect::Verdict;
use crate::core::findings::{self, exit, Finding, Severity, SocketState};
use crate::core::rules::{LibvirtVersion, MemorySharing};
use crate::rpc::client::{self, Client, Domain, RpcError, XML_INACTIVE};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Which of a domain's definitions a row is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum XmlKind {
    /// The running guest's XML.
    Live,
    /// The persistent definition (VIR_DOMAIN_XML_INACTIVE): the next boot.
    Inactive,
}

impl XmlKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            XmlKind::Live => "live",
            XmlKind::Inactive => "inactive",
        }
    }
}

/// The result for one XML of one domain.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub(crate) domain: String,
    pub(crate) uuid: String,
    pub(crate) state: &'static str,
    pub(crate) xml: XmlKind,
    /// The guest OS verdict (`windows`, `not-windows`, `unknown`).
    pub(crate) guest: Option<Verdict>,
    pub(crate) in_scope: Option<bool>,
    pub(crate) nics: Vec<NicFinding>,
    pub(crate) memory: Option<MemorySharing>,
    pub(crate) findings: Vec<Finding>,
    pub(crate) result: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// The result of one row: its worst finding, or an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Outcome {
    Compliant,
    Warning,
    Fixable,
    Refused,
    Error,
}

impl Outcome {
    /// Every outcome, in the order reports list them.
    pub(crate) const ALL: [Outcome; 5] = [
        Outcome::Compliant,
        Outcome::Warning,
        Outcome::Fixable,
        Outcome::Refused,
        Outcome::Error,
    ];

    fn of(worst: Option<Severity>) -> Outcome {
        match worst {
            None => Outcome::Compliant,
            Some(Severity::Warning) => Outcome::Warning,
            Some(Severity::Fixable) => Outcome::Fixable,
            Some(Severity::Refused) => Outcome::Refused,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Compliant => "compliant",
            Outcome::Warning => "warning",
            Outcome::Fixable => "fixable",
            Outcome::Refused => "refused",
            Outcome::Error => "error",
        }
    }
}

/// Everything an audit found.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Audit {
    pub(crate) socket: PathBuf,
    /// The libvirt release the rules were applied for.
    pub(crate) libvirt: Option<LibvirtVersion>,
    pub(crate) domains: Vec<Row>,
}

impl Audit {
    /// How many rows have outcome `o`.
    pub(crate) fn count(&self, o: Outcome) -> usize {
        self.domains.iter().filter(|r| r.result == o).count()
    }

    /// The exit status (`core::findings::exit`): 0 all compliant (warnings
    /// allowed), 1 something vhostfix fixes, 3 something refused even after
    /// vhostfix, 2 an error.
    pub(crate) fn exit_code(&self) -> u8 {
        self.domains.iter().fold(exit::OK, |worst, r| {
            let status = if r.error.is_some() {
                exit::ERROR
            } else {
                exit::of(&r.findings)
            };
            exit::worse(worst, status)
        })
    }
}

/// What the hook will do about one finding when a defined guest starts next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AtStart<'a> {
    pub(crate) domain: &'a str,
    pub(crate) action: CheckAction,
    /// The `[hook.checks]` key that decides.
    pub(crate) key: &'static str,
    pub(crate) message: &'a str,
}

/// For each defined guest's next boot (its inactive XML), the findings the
/// hook's admission checks act on under `checks`, refusals first.
pub(crate) fn at_next_start<'a>(a: &'a Audit, checks: &HookChecks) -> Vec<AtStart<'a>> {
    let mut out: Vec<AtStart<'a>> = a
        .domains
        .iter()
        .filter(|r| r.xml == XmlKind::Inactive)
        .flat_map(|r| {
            r.findings.iter().filter_map(move |f| {
                let (action, key) = checks.action_for(f.kind)?;
                Some(AtStart {
                    domain: &r.domain,
                    action,
                    key,
                    message: &f.message,
                })
            })
        })
        .collect();
    out.sort_by_key(|s| s.action != CheckAction::Deny);
    out
}

/// `--next-start`'s exit status: 3 when the hook will refuse a guest, 2 when
/// a domain could not be read, else 0.
pub(crate) fn next_start_exit(a: &Audit, starts: &[AtStart<'_>]) -> u8 {
    if a.count(Outcome::Error) > 0 {
        exit::ERROR
    } else if starts.iter().any(|s| s.action == CheckAction::Deny) {
        exit::REFUSED
    } else {
        exit::OK
    }
}

/// Connects (`--connect`: a URI or a socket path), lists and judges every domain.
/// `version` is the release given on the command line; else the daemon is asked.
pub(crate) fn run(
    connect: Option<&str>,
    base: &Policy,
    version: Option<LibvirtVersion>,
    socket: &dyn Fn(&str) -> SocketState,
) -> Result<Audit, RpcError> {
    let (path, uri) = client::resolve(connect)?;
    let mut c = Client::open(
        &path,
        uri.as_deref().map(str::as_bytes),
        true,
        None,
        TIMEOUT,
    )?;
    let libvirt = match version {
        Some(v) => Some(v),
        None => {
            let n = c.lib_version()?;
            Some(
                LibvirtVersion::from_number(n).ok_or_else(|| RpcError::Reply {
                    what: "CONNECT_GET_LIB_VERSION",
                    detail: format!("{n} is not a libvirt version"),
                })?,
            )
        }
    };
    let policy = Policy {
        libvirt,
        ..base.clone()
    };
    let mut domains = c.list_all_domains()?;
    domains.sort_by(|a, b| a.name.cmp(&b.name));
    let mut rows = Vec::new();
    for d in &domains {
        let kinds: &[XmlKind] = if d.running() {
            &[XmlKind::Live, XmlKind::Inactive]
        } else {
            &[XmlKind::Inactive]
        };
        for &k in kinds {
            let flags = if k == XmlKind::Inactive {
                XML_INACTIVE
            } else {
                0
            };
            match c.domain_xml(d, flags) {
                Ok(xml) => rows.push(judge(d, k, &xml, &policy, socket)),
                // Undefined or stopped since the listing: nothing left to judge.
                Err(e) if e.is_no_domain() => {}
                Err(e) => rows.push(error_row(d, k, e.to_string())),
            }
        }
    }
    Ok(Audit {
        socket: path,
        libvirt,
        domains: rows,
    })
}

fn state(d: &Domain) -> &'static str {
    if d.running() {
        "running"
    } else {
        "shut off"
    }
}

fn judge(
    d: &Domain,
    xml_kind: XmlKind,
    xml: &str,
    policy: &Policy,
    socket: &dyn Fn(&str) -> SocketState,
) -> Row {
    match analyze(xml, policy) {
        Ok(a) => {
            let findings = findings::findings(&a, policy, socket);
            Row {
                domain: d.name.clone(),
                uuid: d.uuid_string(),
                state: state(d),
                xml: xml_kind,
                guest: Some(a.detection.verdict),
                in_scope: Some(a.in_scope),
                result: Outcome::of(findings::worst(&findings)),
                nics: a.nics,
                memory: a.memory,
                findings,
                error: None,
            }
        }
        Err(e) => error_row(d, xml_kind, format!("domain XML: {e}")),
    }
}

fn error_row(d: &Domain, xml: XmlKind, error: String) -> Row {
    Row {
        domain: d.name.clone(),
        uuid: d.uuid_string(),
        state: state(d),
        xml,
        guest: None,
        in_scope: None,
        nics: Vec::new(),
        memory: None,
        findings: Vec::new(),
        result: Outcome::Error,
        error: Some(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(name: &str, id: i32) -> Domain {
        Domain::for_tests(name, id)
    }

    const WIN: &str = include_str!("../../examples/windows-vhostuser.xml");

    #[test]
    fn rows_judge_with_the_shared_verdict_and_set_the_exit_code() {
        let p = Policy::default();
        let r = judge(&dom("w", 3), XmlKind::Live, WIN, &p, &findings::unchecked);
        assert_eq!(r.result, Outcome::Fixable);
        assert_eq!(r.state, "running");
        let ok = judge(
            &dom("l", -1),
            XmlKind::Inactive,
            "<domain><name>l</name></domain>",
            &p,
            &findings::unchecked,
        );
        assert_eq!(ok.result, Outcome::Compliant);
        let bad = judge(
            &dom("b", -1),
            XmlKind::Inactive,
            "<domain>",
            &p,
            &findings::unchecked,
        );
        assert_eq!(bad.result, Outcome::Error);
        let mut a = Audit {
            socket: PathBuf::from("/s"),
            libvirt: None,
            domains: vec![ok.clone()],
        };
        assert_eq!(a.exit_code(), 0);
        a.domains.push(r);
        assert_eq!(a.exit_code(), 1);
        // Unshared memory: refused even after vhostfix.
        let refused = judge(
            &dom("u", -1),
            XmlKind::Inactive,
            &WIN.replace("<memoryBacking>", "<x>")
                .replace("</memoryBacking>", "</x>"),
            &p,
            &findings::unchecked,
        );
        assert_eq!(refused.result, Outcome::Refused, "{refused:?}");
        a.domains.push(refused);
        assert_eq!(a.exit_code(), 3);
        assert!(
            prometheus(Some(&a), 7).contains("vhostfix_audit_success 1\n"),
            "refusals are findings, not a failed audit"
        );
        a.domains.push(bad);
        assert_eq!(a.exit_code(), 2);
        let t = table(&a);
        assert!(t.starts_with("DOMAIN  STATE     XML       GUEST"), "{t}");
        assert!(t.contains("  fixable: vhost-user nic 0"), "{t}");
        // Issue 20: the table ends with a summary.
        assert!(
            t.ends_with("\n4 domain XMLs (4 domains): 1 compliant, 0 warning, 1 fixable, 1 refused, 1 error\n"),
            "{t}"
        );
        let prom = prometheus(Some(&a), 7);
        assert!(prom.contains("vhostfix_audit_success 0\n"), "{prom}");
        assert!(prom.contains("vhostfix_audit_domain_compliant{domain=\"l\",xml=\"inactive\",state=\"shut off\",result=\"compliant\"} 1\n"), "{prom}");
        assert!(
            prom.contains("vhostfix_audit_domains{result=\"fixable\"} 1\n"),
            "{prom}"
        );
    }

    /// Issue 20: what the hook will do at each defined guest's next start,
    /// with the setting that changes it (shared memory only warns by default).
    #[test]
    fn the_next_start_follows_the_hook_checks() {
        let p = Policy::default();
        let unshared = WIN
            .replace("<memoryBacking>", "<x>")
            .replace("</memoryBacking>", "</x>")
            .replace("e1000", "virtio");
        let client = WIN
            .replace("mode='server'", "mode='client'")
            .replace("e1000", "virtio");
        let missing = |_: &str| SocketState::Missing;
        let a = Audit {
            socket: PathBuf::from("/s"),
            libvirt: None,
            domains: vec![
                judge(&dom("c", -1), XmlKind::Inactive, &client, &p, &missing),
                judge(&dom("u", 4), XmlKind::Live, &unshared, &p, &missing),
                judge(&dom("u", 4), XmlKind::Inactive, &unshared, &p, &missing),
            ],
        };
        let checks = HookChecks::default();
        let starts = at_next_start(&a, &checks);
        let seen: Vec<(&str, CheckAction, &str)> =
            starts.iter().map(|s| (s.domain, s.action, s.key)).collect();
        assert_eq!(
            seen,
            vec![
                ("c", CheckAction::Deny, "client_socket"),
                ("u", CheckAction::Warn, "shared_memory")
            ]
        );
        assert_eq!(next_start_exit(&a, &starts), 3);
        let t = next_start_text(&a, &starts);
        assert!(t.starts_with("refuse 'c': vhost-user nic 0"), "{t}");
        assert!(
            t.contains("; to let it start anyway: [hook.checks] client_socket = \"warn\"\n"),
            "{t}"
        );
        assert!(t.contains("warn 'u': vhost-user nic 0"), "{t}");
        assert!(
            t.contains("to refuse such a start: [hook.checks] shared_memory = \"deny\"\n"),
            "{t}"
        );
        assert!(
            t.ends_with(
                "at their next start the hook will refuse 1 and warn about 1 of 2 defined guests\n"
            ),
            "{t}"
        );
        // A name with a newline cannot make a line of its own.
        let mut odd = a.clone();
        odd.domains[0].domain = "c\nrefuse 'x': forged".into();
        let t = next_start_text(&odd, &at_next_start(&odd, &checks));
        assert!(
            t.starts_with("refuse 'c\\nrefuse \\'x\\': forged': "),
            "{t}"
        );
        assert!(
            table(&odd).contains("c\\nrefuse 'x': forged"),
            "{}",
            table(&odd)
        );
        let relaxed = HookChecks {
            client_socket: CheckAction::Off,
            ..HookChecks::default()
        };
        let starts = at_next_start(&a, &relaxed);
        assert_eq!(starts.len(), 1);
        assert_eq!(next_start_exit(&a, &starts), 0);
    }
}
