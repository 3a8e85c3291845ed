//! `vhostfix audit` without libvirt (the suite tests/system/audit.sh runs it
//! against a real libvirtd).

use crate::*;

/// `audit` without a reachable libvirt: exit 2, nothing on stdout, and the
/// Prometheus textfile says the audit failed (written atomically).
#[test]
fn audit_without_libvirt_exits_2_and_records_the_failure() {
    let dir = scratch("audit-prom");
    let prom = dir.join("vhostfix.prom");
    let sock = dir.join("no-such-sock");
    let o = run(&[
        "audit",
        "--connect",
        sock.to_str().unwrap(),
        "--prometheus",
        prom.to_str().unwrap(),
    ]);
    assert_eq!((o.code, o.stdout.as_str()), (2, ""), "{}", o.stderr);
    assert!(
        o.stderr.starts_with(&format!(
            "vhostfix: error: audit: {}: cannot connect",
            sock.display()
        )),
        "{}",
        o.stderr
    );
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(text.contains("\nvhostfix_audit_success 0\n"), "{text}");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["vhostfix.prom".to_string()]);
    let o = run(&["audit", "--connect", "qemu+ssh://h/system"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("only qemu:///system"), "{}", o.stderr);
    let o = run(&["audit", "--help"]);
    assert!(o.stdout.contains("--prometheus <FILE>"), "{}", o.stdout);
}
