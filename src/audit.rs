//! `vhostfix audit`: every domain libvirt knows, defined or running, judged by
//! the same verdict as `check` and the hook (`crate::verdict`).
//!
//! The domains come over vhostfix's own read-only connection to libvirt's
//! socket (`crate::rpc`), so it works against libvirtd, virtqemud and the
//! vhostfix proxy alike. A running domain is judged twice: its live XML (what
//! runs now) and its inactive XML (what the next boot gets); libvirt loads
//! definitions from disk without validating them again, so an upgrade can leave
//! either one refused.

use crate::rpc::{self, Client, Domain, RpcError, XML_INACTIVE};
use crate::rules::LibvirtVersion;
use crate::verdict::{self, Finding, Severity, SocketState};
use crate::{NicFinding, Policy};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Which of a domain's definitions a row is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XmlKind {
    /// The running guest's XML.
    Live,
    /// The persistent definition (VIR_DOMAIN_XML_INACTIVE): the next boot.
    Inactive,
}

impl XmlKind {
    pub fn as_str(self) -> &'static str {
        match self {
            XmlKind::Live => "live",
            XmlKind::Inactive => "inactive",
        }
    }
}

/// The result for one XML of one domain.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub domain: String,
    pub uuid: String,
    pub state: &'static str,
    pub xml: XmlKind,
    /// The guest OS verdict (`windows`, `not-windows`, `unknown`).
    pub guest: Option<crate::detect::Verdict>,
    pub in_scope: Option<bool>,
    pub nics: Vec<NicFinding>,
    pub memory: Option<crate::rules::MemorySharing>,
    pub findings: Vec<Finding>,
    /// `compliant`, `warning`, `fixable`, `refused` or `error`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything an audit found.
#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    pub socket: PathBuf,
    /// The libvirt release the rules were applied for.
    pub libvirt: Option<LibvirtVersion>,
    pub domains: Vec<Row>,
}

impl Audit {
    /// 0 all compliant (warnings allowed), 1 something fixable or refused, 2 an error.
    pub fn exit_code(&self) -> u8 {
        if self.domains.iter().any(|r| r.error.is_some()) {
            2
        } else if self
            .domains
            .iter()
            .any(|r| verdict::not_compliant(&r.findings))
        {
            1
        } else {
            0
        }
    }
}

fn result_word(worst: Option<Severity>) -> &'static str {
    match worst {
        None => "compliant",
        Some(Severity::Warning) => "warning",
        Some(Severity::Fixable) => "fixable",
        Some(Severity::Refused) => "refused",
    }
}

/// Connects (`--connect`: a URI or a socket path), lists and judges every domain.
/// `version` is the release given on the command line; else the daemon is asked.
pub fn run(
    connect: Option<&str>,
    base: &Policy,
    version: Option<LibvirtVersion>,
    socket: &dyn Fn(&str) -> SocketState,
) -> Result<Audit, RpcError> {
    let (path, uri) = rpc::resolve(connect)?;
    let mut c = Client::open(&path, uri.as_deref().map(str::as_bytes), true, TIMEOUT)?;
    let libvirt = match version {
        Some(v) => Some(v),
        None => Some(c.lib_version()?),
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
                Err(e) if vanished(&e) => {}
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

fn vanished(e: &RpcError) -> bool {
    e.0.contains("Domain not found") || e.0.contains("no domain with matching")
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
    match crate::analyze(xml, policy) {
        Ok(a) => {
            let findings = verdict::findings(&a, policy, socket);
            Row {
                domain: d.name.clone(),
                uuid: d.uuid_string(),
                state: state(d),
                xml: xml_kind,
                guest: Some(a.detection.verdict),
                in_scope: Some(a.in_scope),
                result: result_word(verdict::worst(&findings)),
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
        result: "error",
        error: Some(error),
    }
}

/// The table for people: one line per domain and XML, each finding below it.
pub fn table(a: &Audit) -> String {
    let head = ["DOMAIN", "STATE", "XML", "GUEST", "VHOST-USER", "RESULT"];
    let lines: Vec<[String; 6]> = a
        .domains
        .iter()
        .map(|r| {
            [
                r.domain.clone(),
                r.state.to_string(),
                r.xml.as_str().to_string(),
                r.guest.map_or_else(|| "-".into(), |g| g.to_string()),
                r.nics.len().to_string(),
                r.result.to_string(),
            ]
        })
        .collect();
    let mut width = head.map(str::len);
    for l in &lines {
        for (w, c) in width.iter_mut().zip(l) {
            *w = (*w).max(c.chars().count());
        }
    }
    let row = |cells: &[String]| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let _ = write!(s, "{c:<w$}  ", w = width[i]);
            }
        }
        s.push('\n');
        s
    };
    let mut out = row(&head.map(String::from));
    for (l, r) in lines.iter().zip(&a.domains) {
        out.push_str(&row(l));
        for f in &r.findings {
            let _ = writeln!(out, "  {}: {}", f.severity, f.message);
        }
        if let Some(e) = &r.error {
            let _ = writeln!(out, "  error: {e}");
        }
    }
    out
}

/// The one JSON document `--json` prints.
pub fn json(a: &Audit) -> serde_json::Value {
    let count = |w: &str| a.domains.iter().filter(|r| r.result == w).count();
    serde_json::json!({
        "socket": a.socket,
        "libvirt": a.libvirt.map(|v| v.to_string()),
        "domains": a.domains,
        "summary": {
            "rows": a.domains.len(),
            "compliant": count("compliant"),
            "warning": count("warning"),
            "fixable": count("fixable"),
            "refused": count("refused"),
            "error": count("error"),
        },
        "exit": a.exit_code(),
    })
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The text exposition format for node_exporter's textfile collector. `audit`
/// is `None` when the audit itself failed (`vhostfix_audit_success 0`).
pub fn prometheus(audit: Option<&Audit>, now_unix: u64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# HELP vhostfix_audit_success 1 when the last audit could list and read every domain."
    );
    let _ = writeln!(s, "# TYPE vhostfix_audit_success gauge");
    let ok = audit.is_some_and(|a| a.exit_code() < 2);
    let _ = writeln!(s, "vhostfix_audit_success {}", u8::from(ok));
    let _ = writeln!(
        s,
        "# HELP vhostfix_audit_last_run_timestamp_seconds When the last audit ran."
    );
    let _ = writeln!(s, "# TYPE vhostfix_audit_last_run_timestamp_seconds gauge");
    let _ = writeln!(s, "vhostfix_audit_last_run_timestamp_seconds {now_unix}");
    let Some(a) = audit else {
        return s;
    };
    let _ = writeln!(
        s,
        "# HELP vhostfix_audit_domain_compliant 1 when a domain's XML has nothing fixable or refused (the vhostfix verdict)."
    );
    let _ = writeln!(s, "# TYPE vhostfix_audit_domain_compliant gauge");
    for r in &a.domains {
        let _ = writeln!(
            s,
            "vhostfix_audit_domain_compliant{{domain=\"{}\",xml=\"{}\",state=\"{}\",result=\"{}\"}} {}",
            label(&r.domain),
            r.xml.as_str(),
            r.state,
            r.result,
            u8::from(r.error.is_none() && !verdict::not_compliant(&r.findings))
        );
    }
    let _ = writeln!(
        s,
        "# HELP vhostfix_audit_findings Findings per domain XML, by severity."
    );
    let _ = writeln!(s, "# TYPE vhostfix_audit_findings gauge");
    for r in &a.domains {
        for sev in [Severity::Warning, Severity::Fixable, Severity::Refused] {
            let n = r.findings.iter().filter(|f| f.severity == sev).count();
            let _ = writeln!(
                s,
                "vhostfix_audit_findings{{domain=\"{}\",xml=\"{}\",severity=\"{sev}\"}} {n}",
                label(&r.domain),
                r.xml.as_str()
            );
        }
    }
    let _ = writeln!(
        s,
        "# HELP vhostfix_audit_domains Domain XMLs audited, by result."
    );
    let _ = writeln!(s, "# TYPE vhostfix_audit_domains gauge");
    for w in ["compliant", "warning", "fixable", "refused", "error"] {
        let n = a.domains.iter().filter(|r| r.result == w).count();
        let _ = writeln!(s, "vhostfix_audit_domains{{result=\"{w}\"}} {n}");
    }
    s
}

/// Writes `text` to `path` so that a reader sees the old file or the new one,
/// never half of one: a temporary file in the same directory, then rename
/// (node_exporter's textfile collector reads `*.prom` at any moment).
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?;
    // Not *.prom, so the collector never reads it half written.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(name: &str, id: i32) -> Domain {
        Domain::for_tests(name, id)
    }

    const WIN: &str = include_str!("../examples/windows-vhostuser.xml");

    #[test]
    fn rows_judge_with_the_shared_verdict_and_set_the_exit_code() {
        let p = Policy::default();
        let r = judge(&dom("w", 3), XmlKind::Live, WIN, &p, &verdict::unchecked);
        assert_eq!(r.result, "fixable");
        assert_eq!(r.state, "running");
        let ok = judge(
            &dom("l", -1),
            XmlKind::Inactive,
            "<domain><name>l</name></domain>",
            &p,
            &verdict::unchecked,
        );
        assert_eq!(ok.result, "compliant");
        let bad = judge(
            &dom("b", -1),
            XmlKind::Inactive,
            "<domain>",
            &p,
            &verdict::unchecked,
        );
        assert_eq!(bad.result, "error");
        let mut a = Audit {
            socket: PathBuf::from("/s"),
            libvirt: None,
            domains: vec![ok.clone()],
        };
        assert_eq!(a.exit_code(), 0);
        a.domains.push(r);
        assert_eq!(a.exit_code(), 1);
        a.domains.push(bad);
        assert_eq!(a.exit_code(), 2);
        let t = table(&a);
        assert!(t.starts_with("DOMAIN  STATE     XML       GUEST"), "{t}");
        assert!(t.contains("  fixable: vhost-user nic 0"), "{t}");
        let prom = prometheus(Some(&a), 7);
        assert!(prom.contains("vhostfix_audit_success 0\n"), "{prom}");
        assert!(prom.contains("vhostfix_audit_domain_compliant{domain=\"l\",xml=\"inactive\",state=\"shut off\",result=\"compliant\"} 1\n"), "{prom}");
        assert!(
            prom.contains("vhostfix_audit_domains{result=\"fixable\"} 1\n"),
            "{prom}"
        );
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn textfile_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("vhostfix-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("vhostfix.prom");
        write_atomically(&p, "a 1\n").unwrap();
        write_atomically(&p, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a 2\n");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("vhostfix.prom")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
