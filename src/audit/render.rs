//! The audit's renderings: the table for people, one JSON document, and the
//! Prometheus textfile.

use super::{AtStart, Audit, Outcome, XmlKind};
use crate::config::CheckAction;
use crate::core::escape::{field, one_line};
use crate::core::findings::{self, Severity};
use crate::prometheus::{Exposition, Kind};
use std::fmt::Write as _;

/// The table for people: one line per domain and XML, each finding below it,
/// and a summary line at the end.
pub(crate) fn table(a: &Audit) -> String {
    let head = ["DOMAIN", "STATE", "XML", "GUEST", "VHOST-USER", "RESULT"];
    let lines: Vec<[String; 6]> = a
        .domains
        .iter()
        .map(|r| {
            [
                // A name is one cell: control characters escaped.
                one_line(&r.domain).to_string(),
                r.state.to_string(),
                r.xml.as_str().to_string(),
                r.guest.map_or_else(|| "-".into(), |g| g.to_string()),
                r.nics.len().to_string(),
                r.result.as_str().to_string(),
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
    out.push_str(&summary_line(a));
    out
}

/// `7 domain XMLs (5 domains): 4 compliant, 1 warning, 0 fixable, 2 refused, 0 error`.
fn summary_line(a: &Audit) -> String {
    let mut names: Vec<&str> = a.domains.iter().map(|r| r.domain.as_str()).collect();
    names.dedup();
    let counts: Vec<String> = Outcome::ALL
        .iter()
        .map(|o| format!("{} {}", a.count(*o), o.as_str()))
        .collect();
    format!(
        "{} domain XMLs ({} domains): {}\n",
        a.domains.len(),
        names.len(),
        counts.join(", ")
    )
}

/// `--next-start`: one line per finding the hook acts on, with the setting
/// that changes what it does, and a summary line.
pub(crate) fn next_start_text(a: &Audit, starts: &[AtStart<'_>]) -> String {
    let mut out = String::new();
    for s in starts {
        let _ = match s.action {
            CheckAction::Deny => writeln!(
                out,
                "refuse {}: {}; to let it start anyway: [hook.checks] {} = \"warn\"",
                field(s.domain),
                s.message,
                s.key
            ),
            _ => writeln!(
                out,
                "warn {}: {}; it starts all the same (logged); to refuse such a start: [hook.checks] {} = \"deny\"",
                field(s.domain),
                s.message,
                s.key
            ),
        };
    }
    let guests = |action: CheckAction| {
        let mut names: Vec<&str> = starts
            .iter()
            .filter(|s| s.action == action)
            .map(|s| s.domain)
            .collect();
        names.dedup();
        names.len()
    };
    let defined = a
        .domains
        .iter()
        .filter(|r| r.xml == XmlKind::Inactive)
        .count();
    let _ = writeln!(
        out,
        "at their next start the hook will refuse {} and warn about {} of {} defined guests",
        guests(CheckAction::Deny),
        guests(CheckAction::Warn),
        defined
    );
    out
}

/// The one JSON document `--json` prints.
pub(crate) fn json(a: &Audit) -> serde_json::Value {
    let mut summary = serde_json::Map::new();
    summary.insert("rows".into(), a.domains.len().into());
    for o in Outcome::ALL {
        summary.insert(o.as_str().into(), a.count(o).into());
    }
    serde_json::json!({
        "socket": a.socket,
        "libvirt": a.libvirt.map(|v| v.to_string()),
        "domains": a.domains,
        "summary": summary,
        "exit": a.exit_code(),
    })
}

/// The text exposition format for node_exporter's textfile collector. `audit`
/// is `None` when the audit itself failed (`vhostfix_audit_success 0`).
pub(crate) fn prometheus(audit: Option<&Audit>, now_unix: u64) -> String {
    let mut e = Exposition::default();
    let ok = audit.is_some_and(|a| a.count(Outcome::Error) == 0);
    e.family(
        "vhostfix_audit_success",
        Kind::Gauge,
        "1 when the last audit could list and read every domain.",
    )
    .sample("vhostfix_audit_success", &[], u8::from(ok))
    .family(
        "vhostfix_audit_last_run_timestamp_seconds",
        Kind::Gauge,
        "When the last audit ran.",
    )
    .sample("vhostfix_audit_last_run_timestamp_seconds", &[], now_unix);
    let Some(a) = audit else {
        return e.finish();
    };
    let name = "vhostfix_audit_domain_compliant";
    e.family(
        name,
        Kind::Gauge,
        "1 when a domain's XML has nothing fixable or refused (the vhostfix verdict).",
    );
    for r in &a.domains {
        let labels = [
            ("domain", r.domain.as_str()),
            ("xml", r.xml.as_str()),
            ("state", r.state),
            ("result", r.result.as_str()),
        ];
        let compliant = r.error.is_none() && !findings::not_compliant(&r.findings);
        e.sample(name, &labels, u8::from(compliant));
    }
    let name = "vhostfix_audit_findings";
    e.family(name, Kind::Gauge, "Findings per domain XML, by severity.");
    for r in &a.domains {
        for sev in [Severity::Warning, Severity::Fixable, Severity::Refused] {
            let n = r.findings.iter().filter(|f| f.severity == sev).count();
            let sev = sev.to_string();
            let labels = [
                ("domain", r.domain.as_str()),
                ("xml", r.xml.as_str()),
                ("severity", sev.as_str()),
            ];
            e.sample(name, &labels, n);
        }
    }
    let name = "vhostfix_audit_domains";
    e.family(name, Kind::Gauge, "Domain XMLs audited, by result.");
    for o in Outcome::ALL {
        e.sample(name, &[("result", o.as_str())], a.count(o));
    }
    e.finish()
}
