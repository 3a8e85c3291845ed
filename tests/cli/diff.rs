//! `vhostfix diff`: the unified diff of what `filter` would change, and its
//! exit codes.

use crate::*;

#[test]
fn diff_shows_one_changed_line_and_exits_1() {
    let path = example();
    let o = run(&["diff", &path]);
    assert_eq!(o.code, 1);
    let minus: Vec<&str> = o
        .stdout
        .lines()
        .filter(|l| l.starts_with('-') && !l.starts_with("---"))
        .collect();
    let plus: Vec<&str> = o
        .stdout
        .lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
        .collect();
    assert_eq!(minus, ["-      <model type='e1000'/>"]);
    assert_eq!(plus, ["+      <model type='virtio'/>"]);
    assert!(
        o.stdout
            .starts_with(&format!("--- a/{path}\n+++ b/{path}\n@@ ")),
        "{}",
        o.stdout
    );
    assert!(
        !o.stdout.contains('\x1b'),
        "piped output must not be coloured"
    );
}

#[test]
fn diff_exits_0_with_no_output_when_nothing_changes() {
    let o = run(&["diff", &files("already_virtio.xml")]);
    assert_eq!((o.code, o.stdout.as_str()), (0, ""));
}

/// Issue 10: a Linux/unknown guest with an e1000 vhost-user NIC is left alone
/// by policy, but libvirt refuses it: `diff` shows no change and says how to
/// bring the guest into scope. Issue 20: it exits 3 (refused even after
/// vhostfix), not 1 (vhostfix would change something), and says "refused".
#[test]
fn diff_exits_3_for_a_violation_left_alone() {
    let o = run(&["diff", &files("linux_no_evidence.xml")]);
    assert_eq!((o.code, o.stdout.as_str()), (3, ""), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("vhostfix: refused: domain 'debian-12': vhost-user nic 0"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("has model e1000, which libvirt refuses"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr
            .contains("<vhostfix:guest xmlns:vhostfix=\"urn:vhostfix:guest:1\" os=\"windows\"/>"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("--guests any"), "{}", o.stderr);
    // With --guests any it becomes a change like any other.
    let o = run(&["diff", "--guests", "any", &files("linux_no_evidence.xml")]);
    assert_eq!(o.code, 1);
    assert!(
        o.stdout.contains("+      <model type='virtio'/>"),
        "{}",
        o.stdout
    );
}

#[test]
fn diff_colour_flags() {
    let o = run(&["diff", "--color", "always", &example()]);
    assert_eq!(o.code, 1);
    assert!(
        o.stdout
            .contains("\x1b[31m-      <model type='e1000'/>\x1b[0m"),
        "{:?}",
        o.stdout
    );
    assert!(o
        .stdout
        .contains("\x1b[32m+      <model type='virtio'/>\x1b[0m"));
    let o = run_with(
        Path::new(BIN),
        &["diff", "--color", "never", &example()],
        b"",
        &[("NO_COLOR", "1")],
    );
    assert!(!o.stdout.contains('\x1b'));
}

#[test]
fn diff_error_exits_2() {
    let o = run(&["diff", &files("bad_root.xml")]);
    assert_eq!(o.code, 2);
    assert_eq!(o.stdout, "");
    assert!(o.stderr.contains("the root element is <network>"));
}

#[test]
fn diff_keeps_crlf() {
    let o = run(&["diff", &files("crlf_missing_model.xml")]);
    assert_eq!(o.code, 1);
    assert!(
        o.stdout.contains("+      <model type='virtio'/>\r\n"),
        "{:?}",
        o.stdout
    );
}
