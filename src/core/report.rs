//! Human and machine renderings of an [`Analysis`].
//!
//! The text forms are for people (stderr summaries, `check`); the JSON form is
//! one object per file for automation and is a stable interface.

use super::analysis::{Analysis, NicStatus, NETKVM_WARNING};
use super::detect::Verdict;
use super::findings::{not_compliant, worst, Finding, Severity};
use serde_json::json;
use std::fmt::Write;

/// One line per changed NIC, for `filter`'s stderr.
pub(crate) fn change_lines(a: &Analysis) -> Vec<String> {
    a.nics
        .iter()
        .filter(|n| n.status == NicStatus::Fixed)
        .map(|n| {
            format!(
                "{}: {} {} at {}: model {} -> {} (guest {}: {})",
                a.subject(),
                n.label(),
                n.source,
                n.pos,
                n.model_text(),
                n.new_model.as_deref().unwrap_or(""),
                a.detection.verdict,
                a.detection.reason()
            )
        })
        .collect()
}

/// The readable report `check` prints; `findings` is the shared verdict
/// ([`super::findings::findings`]).
pub fn text(name: &str, a: &Analysis, findings: &[Finding]) -> String {
    let mut s = String::new();
    let fixed = a
        .nics
        .iter()
        .filter(|n| n.status == NicStatus::Fixed)
        .count();
    let verdict = if fixed > 0 {
        format!("would change {fixed} of {} vhost-user NIC(s)", a.nics.len())
    } else if a.violations_left() {
        "not compliant, left alone by policy".to_string()
    } else if worst(findings) == Some(Severity::Refused) {
        "not compliant: libvirt or the vhostfix hook will refuse it, or its vhost-user NIC would not work".to_string()
    } else if a.nics.is_empty() {
        "compliant (no vhost-user NIC)".to_string()
    } else {
        "compliant".to_string()
    };
    let _ = writeln!(s, "{name}: {}: {verdict}", a.subject());
    let scope = if a.in_scope {
        "in scope"
    } else {
        "out of scope"
    };
    let _ = writeln!(s, "  guest os: {} ({scope})", a.detection.verdict);
    for e in &a.detection.evidence {
        let at = e.pos.map(|p| format!(" at {p}")).unwrap_or_default();
        let mark = if e.decisive { " [decisive]" } else { "" };
        let lean = if e.windows { "windows" } else { "not windows" };
        let _ = writeln!(s, "    {lean}: {}{at}{mark}", e.detail);
    }
    for n in &a.nics {
        let what = match n.status {
            NicStatus::Compliant => format!("model {}: ok", n.model_text()),
            NicStatus::Fixed => format!(
                "model {} -> {}",
                n.model_text(),
                n.new_model.as_deref().unwrap_or("")
            ),
            NicStatus::LeftAlone => format!("model {}: left alone", n.model_text()),
        };
        let _ = writeln!(s, "  {} {} at {}: {what}", n.label(), n.source, n.pos);
    }
    if let Some(m) = &a.memory {
        let state = if m.shared { "shared" } else { "not shared" };
        let _ = writeln!(s, "  guest memory: {state} ({})", m.reason);
    }
    if fixed > 0 && a.detection.verdict == Verdict::Windows {
        let _ = writeln!(s, "  warning: {NETKVM_WARNING}");
    }
    // Each finding under its severity; a fix is already on its NIC's line.
    for f in findings.iter().filter(|f| f.severity != Severity::Fixable) {
        let _ = writeln!(s, "  {}: {}", f.severity, f.message);
    }
    s
}

/// The JSON object `check --json` prints for one file.
pub(crate) fn json(name: &str, a: &Analysis, findings: &[Finding]) -> serde_json::Value {
    json!({
        "file": name,
        "kind": a.kind,
        "domain": a.domain,
        "verdict": a.detection.verdict,
        "in_scope": a.in_scope,
        "evidence": a.detection.evidence,
        "nics": a.nics,
        "memory": a.memory,
        "changed": a.changes(),
        "compliant": !not_compliant(findings),
        "worst": worst(findings),
        "findings": findings,
        "warnings": a.warnings,
    })
}

/// The JSON object for a file that could not be analysed.
pub(crate) fn json_error(name: &str, error: &str) -> serde_json::Value {
    json!({ "file": name, "error": error })
}
