//! `vhostfix filter`: corrected XML on stdout, what changed on stderr, and
//! errors that name the input, line and column.

use crate::*;
use std::io::Read;

#[test]
fn filter_writes_corrected_xml_and_summary() {
    let o = run(&["filter", &files("zstack_windows.xml")]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout, read(&files("zstack_windows.out.xml")));
    assert!(o.stderr.contains("vhostfix: changed: domain '8d2f6c0b1e3a4f5d9c7b6a5e4d3c2b1a': nic 0 (fa:16:3e:4c:2a:01)"), "{}", o.stderr);
    assert!(o.stderr.contains("model e1000 -> virtio"), "{}", o.stderr);
    assert!(
        o.stderr.contains("vhostfix: warning:") && o.stderr.contains("NetKVM"),
        "{}",
        o.stderr
    );
}

#[test]
fn filter_reads_stdin_with_and_without_dash() {
    let input = read(&files("kubevirt_passt.xml"));
    let expected = read(&files("kubevirt_passt.out.xml"));
    for args in [&["filter"][..], &["filter", "-"][..]] {
        let o = run_stdin(args, input.as_bytes());
        assert_eq!(o.code, 0);
        assert_eq!(o.stdout, expected);
    }
}

#[test]
fn filter_quiet_silences_stderr() {
    let o = run(&["filter", "--quiet", &files("zstack_windows.xml")]);
    assert_eq!(o.code, 0);
    assert_eq!(o.stderr, "");
    assert_eq!(o.stdout, read(&files("zstack_windows.out.xml")));
    let o = run(&["filter", "-q", &files("zstack_windows.xml")]);
    assert_eq!(o.stderr, "");
}

#[test]
fn filter_passes_compliant_input_through_unchanged() {
    let o = run(&["filter", &files("already_virtio.xml")]);
    assert_eq!(o.code, 0);
    assert_eq!(o.stdout, read(&files("already_virtio.xml")));
    assert_eq!(o.stderr, "");
}

#[test]
fn filter_bad_input_exits_2_with_nothing_on_stdout() {
    for (case, msg) in [
        (
            "bad_mismatched_tag",
            "5:3: malformed XML: expected 'interface' tag, not 'devices'",
        ),
        (
            "bad_truncated",
            "malformed XML: the input ends before the root element is closed",
        ),
        ("bad_not_utf8", "2:12: input is not valid UTF-8 (byte 0xe9)"),
        ("bad_empty", "input is empty"),
        (
            "bad_entity_bomb",
            "2:1: a document type declaration (DTD) was found",
        ),
        ("bad_too_deep", "nested more than 256 deep"),
    ] {
        let path = files(&format!("{case}.xml"));
        let o = run(&["filter", &path]);
        assert_eq!(o.code, 2, "{case}");
        assert_eq!(o.stdout, "", "{case}");
        // FILE:LINE:COL: when the error has a position, FILE: otherwise.
        let err = read(&files(&format!("{case}.err")));
        let err = err.trim_end();
        let sep = if err.starts_with(|c: char| c.is_ascii_digit()) {
            ""
        } else {
            " "
        };
        assert_eq!(
            o.stderr,
            format!("vhostfix: error: {path}:{sep}{err}\n"),
            "{case}"
        );
        assert!(o.stderr.contains(msg), "{case}: {}", o.stderr);
    }
}

/// The README's example error (issue 10: it printed `broken.xml: 6:3:`).
#[test]
fn error_position_is_file_line_col() {
    let d = scratch("errpos");
    let dom = d.join("dom.xml");
    std::fs::copy(files("bad_mismatched_tag.xml"), &dom).unwrap();
    let mut cmd = Command::new(BIN);
    let out = cmd
        .current_dir(&d)
        .args(["filter", "dom.xml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        "vhostfix: error: dom.xml:5:3: malformed XML: expected 'interface' tag, not 'devices'\n"
    );
    let readme = read(&format!("{}/README.md", env!("CARGO_MANIFEST_DIR")));
    assert!(
        readme.contains(&format!("    {}", stderr.trim_end())),
        "README.md must show the error as it is printed: {stderr}"
    );
    // Same shape with a BOM, CRLF line ends and an XML declaration line.
    let text = read(&files("bad_mismatched_tag.xml")).replace('\n', "\r\n");
    std::fs::write(&dom, format!("\u{feff}<?xml version='1.0'?>\r\n{text}")).unwrap();
    let o = run(&["filter", dom.to_str().unwrap()]);
    assert!(
        o.stderr
            .contains(&format!("{}:6:3: malformed XML", dom.display())),
        "{}",
        o.stderr
    );
    // check --json and check name the position the same way.
    let o = run(&["check", dom.to_str().unwrap()]);
    assert!(
        o.stderr.contains(&format!("{}:6:3: ", dom.display())),
        "{}",
        o.stderr
    );
}

#[test]
fn filter_passes_other_device_xml_through() {
    for xml in [
        "<disk type='file' device='disk'>\n  <source file='/var/lib/x.qcow2'/>\n  <target dev='vdb' bus='virtio'/>\n</disk>\n",
        "<hostdev mode='subsystem' type='usb'/>",
    ] {
        let o = run_stdin(&["filter"], xml.as_bytes());
        assert_eq!((o.code, o.stdout.as_str()), (0, xml), "{}", o.stderr);
        assert!(
            o.stderr.starts_with("vhostfix: note: <stdin>: <")
                && o.stderr.ends_with("> is neither a domain nor an interface; passed through unchanged\n"),
            "{}",
            o.stderr
        );
        let o = run_stdin(&["filter", "--quiet"], xml.as_bytes());
        assert_eq!((o.code, o.stdout.as_str(), o.stderr.as_str()), (0, xml, ""));
    }
    // A pipeline stage still refuses what is not XML at all.
    let o = run_stdin(&["filter"], b"<disk>");
    assert_eq!((o.code, o.stdout.as_str()), (2, ""));
}

#[test]
fn filter_missing_file_is_an_error() {
    let o = run(&["filter", "/nonexistent/dom.xml"]);
    assert_eq!(o.code, 2);
    assert_eq!(o.stdout, "");
    assert!(
        o.stderr
            .starts_with("vhostfix: error: /nonexistent/dom.xml: cannot open: "),
        "{}",
        o.stderr
    );
}

#[test]
fn input_over_32_mib_is_refused() {
    let mut big = b"<domain><description>".to_vec();
    big.resize(32 * 1024 * 1024 + 10, b'x');
    let o = run_stdin(&["filter"], &big);
    assert_eq!(o.code, 2);
    assert_eq!(o.stdout, "");
    assert_eq!(
        o.stderr,
        "vhostfix: error: <stdin>: input is larger than 33554432 bytes (limits.max_input_bytes)\n"
    );
}

#[test]
fn closed_stdout_is_not_an_error() {
    // ~5 MB of output; the reader goes away after one byte.
    let nics: String = (0..20000)
        .map(|i| format!("<interface type='vhostuser'><source type='unix' path='/s{i}' mode='server'/><model type='e1000'/></interface>\n"))
        .collect();
    let xml = format!("<domain><clock offset='localtime'/><devices>\n{nics}</devices></domain>");
    let mut child = Command::new(BIN)
        .args(["filter", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(xml.as_bytes());
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut one = [0u8; 1];
    stdout.read_exact(&mut one).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}
