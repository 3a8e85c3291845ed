//! Black-box tests of the built `vhostfix` binary: every subcommand, flag and
//! exit code, stdout/stderr separation, and the hook's contract with libvirt.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_vhostfix");

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn files(name: &str) -> String {
    format!("{}/tests/files/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn example() -> String {
    format!(
        "{}/examples/windows-vhostuser.xml",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run_with(program: &Path, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_remove("VHOSTFIX_CONFIG")
        .env_remove("NO_COLOR")
        .env_remove("VHOSTFIX_LIBVIRT_VERSION")
        .env("VHOSTFIX_LOG", "stderr")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run(args: &[&str]) -> Out {
    run_with(Path::new(BIN), args, b"", &[])
}

fn run_stdin(args: &[&str], stdin: &[u8]) -> Out {
    run_with(Path::new(BIN), args, stdin, &[])
}

fn run_env_stdin(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Out {
    run_with(Path::new(BIN), args, stdin, env)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap()
}

// ---- filter ----

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

// ---- diff ----

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
/// by policy, but libvirt refuses it: `diff` shows no change, exits 1 and says
/// how to bring the guest into scope.
#[test]
fn diff_warns_and_exits_1_for_a_violation_left_alone() {
    let o = run(&["diff", &files("linux_no_evidence.xml")]);
    assert_eq!((o.code, o.stdout.as_str()), (1, ""), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("vhostfix: warning: domain 'debian-12': vhost-user nic 0"),
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

/// Issue 10: `check` exits 1 for what the hook refuses (unshared memory, a
/// missing client socket), and `--json` carries the findings.
#[test]
fn check_exits_1_for_what_the_hook_refuses() {
    let dom = |mem: &str, mode: &str| {
        format!(
        "<domain><name>h1</name>{mem}<devices><interface type='vhostuser'><source type='unix' path='/nonexistent/vhu1.sock' mode='{mode}'/><model type='virtio'/></interface></devices></domain>"
    )
    };
    let shared = "<memoryBacking><access mode='shared'/></memoryBacking>";
    let o = run_stdin(&["check"], dom(shared, "server").as_bytes());
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert!(o.stdout.contains("domain 'h1': compliant"), "{}", o.stdout);
    let o = run_stdin(&["check"], dom("", "server").as_bytes());
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert!(
        o.stdout
            .contains("domain 'h1': not compliant: libvirt or the vhostfix hook will refuse it"),
        "{}",
        o.stdout
    );
    let o = run_stdin(&["check"], dom(shared, "client").as_bytes());
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert!(o.stdout.contains("  refused: vhost-user nic 0 is in client mode but the socket /nonexistent/vhu1.sock does not exist"), "{}", o.stdout);
    let o = run_stdin(&["check", "--json"], dom("", "client").as_bytes());
    assert_eq!(o.code, 1);
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    assert_eq!(v["compliant"], false);
    assert_eq!(v["worst"], "refused");
    let kinds: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["shared-memory", "client-socket"]);
}

/// Issue 8: advice follows the libvirt release (`--libvirt-version`,
/// `$VHOSTFIX_LIBVIRT_VERSION`): no memfd advice where libvirt refuses memfd
/// without shared access, and no missing-model change where libvirt fills in virtio.
#[test]
fn check_follows_the_libvirt_release() {
    let dom = "<domain><name>r1</name><devices><interface type='vhostuser'><source type='unix' path='/x.sock' mode='server'/><model type='virtio'/></interface></devices></domain>";
    let o = run_stdin(
        &["check", "--json", "--libvirt-version", "9.0.0"],
        dom.as_bytes(),
    );
    assert!(
        o.stdout.contains("(or <source type='memfd'/>)"),
        "{}",
        o.stdout
    );
    let o = run_stdin(
        &["check", "--json", "--libvirt-version", "11.3.0"],
        dom.as_bytes(),
    );
    assert!(
        !o.stdout.contains("(or <source type='memfd'/>)"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout
            .contains("libvirt 11.3.0 refuses to define or start it"),
        "{}",
        o.stdout
    );
    let memfd = dom.replace(
        "<devices>",
        "<memoryBacking><source type='memfd'/></memoryBacking><devices>",
    );
    let o = run_env_stdin(
        &["check"],
        &[("VHOSTFIX_LIBVIRT_VERSION", "11.3.0")],
        memfd.as_bytes(),
    );
    assert_eq!(o.code, 1, "{}", o.stdout);
    let o = run_env_stdin(
        &["check"],
        &[("VHOSTFIX_LIBVIRT_VERSION", "9.0.0")],
        memfd.as_bytes(),
    );
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert!(
        o.stdout.contains("which libvirt 11.2 and later refuse"),
        "{}",
        o.stdout
    );
    let no_model = dom
        .replace("<model type='virtio'/>", "")
        .replace(
            "<devices>",
            "<memoryBacking><access mode='shared'/></memoryBacking><devices>",
        )
        .replace(
            "<name>r1</name>",
            "<name>r1</name><features><hyperv><relaxed state='on'/></hyperv></features>",
        );
    let o = run_stdin(
        &["check", "--libvirt-version", "9.0.0"],
        no_model.as_bytes(),
    );
    assert_eq!(o.code, 1, "{}", o.stdout);
    let o = run_stdin(
        &["check", "--libvirt-version", "11.3.0"],
        no_model.as_bytes(),
    );
    assert_eq!(o.code, 0, "{}", o.stdout);
    let o = run_stdin(&["check", "--libvirt-version", "nine"], dom.as_bytes());
    assert_eq!(o.code, 2);
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

// ---- check ----

#[test]
fn check_exit_codes() {
    assert_eq!(run(&["check", &files("already_virtio.xml")]).code, 0);
    assert_eq!(run(&["check", &files("no_vhostuser.xml")]).code, 0);
    assert_eq!(run(&["check", &files("zstack_windows.xml")]).code, 1);
    // A violation left alone by policy is not compliant either.
    assert_eq!(run(&["check", &files("linux_no_evidence.xml")]).code, 1);
    // Any error wins, but every file is still reported.
    let o = run(&[
        "check",
        &files("already_virtio.xml"),
        &files("bad_empty.xml"),
        &files("zstack_windows.xml"),
    ]);
    assert_eq!(o.code, 2);
    assert!(o
        .stdout
        .contains("already_virtio.xml: domain 'win-ok': compliant"));
    assert!(o.stdout.contains(
        "zstack_windows.xml: domain '8d2f6c0b1e3a4f5d9c7b6a5e4d3c2b1a': would change 1 of 1"
    ));
    assert!(o.stderr.contains("bad_empty.xml: input is empty"));
}

#[test]
fn check_prints_the_golden_report() {
    let o = run_stdin(&["check"], read(&files("several_nics.xml")).as_bytes());
    assert_eq!(o.code, 1);
    let golden = read(&files("several_nics.report"));
    assert_eq!(
        o.stdout,
        golden.replacen("several_nics.xml:", "<stdin>:", 1)
    );
}

#[test]
fn check_json_one_object_per_file() {
    let o = run(&[
        "check",
        "--json",
        &files("zstack_windows.xml"),
        &files("already_virtio.xml"),
        &files("bad_root.xml"),
    ]);
    assert_eq!(o.code, 2);
    let lines: Vec<serde_json::Value> = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let z = &lines[0];
    assert_eq!(z["verdict"], "windows");
    assert_eq!(z["changed"], true);
    assert_eq!(z["compliant"], false);
    assert_eq!(z["domain"], "8d2f6c0b1e3a4f5d9c7b6a5e4d3c2b1a");
    assert_eq!(z["nics"][0]["mac"], "fa:16:3e:4c:2a:01");
    assert_eq!(z["nics"][0]["model"], "e1000");
    assert_eq!(z["nics"][0]["new_model"], "virtio");
    assert_eq!(z["nics"][0]["status"], "fixed");
    assert_eq!(
        z["nics"][0]["source"]["path"],
        "/var/run/openvswitch/vhu8d2f6c0b-01"
    );
    assert_eq!(z["evidence"][0]["signal"], "hypervclock");
    assert_eq!(z["evidence"][0]["decisive"], true);
    assert_eq!(lines[1]["compliant"], true);
    assert!(lines[2]["error"]
        .as_str()
        .unwrap()
        .contains("the root element is <network>"));
}

// ---- common flags and configuration ----

#[test]
fn guests_any_target_model_and_guest_os_flags() {
    let o = run(&[
        "filter",
        "-q",
        "--guests",
        "any",
        &files("linux_no_evidence.xml"),
    ]);
    assert!(o.stdout.contains("<model type='virtio'/>"));
    let o = run(&[
        "filter",
        "-q",
        "--target-model",
        "virtio-transitional",
        &files("zstack_windows.xml"),
    ]);
    assert!(o.stdout.contains("<model type='virtio-transitional'/>"));
    let o = run(&[
        "filter",
        "-q",
        "--guest-os",
        "windows",
        &files("device_interface.xml"),
    ]);
    assert_eq!(o.stdout, read(&files("device_interface_windows.out.xml")));
    let o = run(&[
        "filter",
        "-q",
        "--guest-os",
        "other",
        &files("zstack_windows.xml"),
    ]);
    assert_eq!(o.stdout, read(&files("zstack_windows.xml")));
    let o = run(&["filter", "--guests", "some", &files("zstack_windows.xml")]);
    assert_eq!(o.code, 2);
}

#[test]
fn config_file_from_flag_and_environment() {
    let d = scratch("config");
    let conf = d.join("v.toml");
    std::fs::write(
        &conf,
        "guests = \"any\"\ntarget_model = \"virtio-non-transitional\"\n",
    )
    .unwrap();
    let c = conf.to_str().unwrap();
    let o = run(&[
        "filter",
        "-q",
        "--config",
        c,
        &files("linux_no_evidence.xml"),
    ]);
    assert!(
        o.stdout.contains("<model type='virtio-non-transitional'/>"),
        "{}",
        o.stderr
    );
    let o = run_with(
        Path::new(BIN),
        &["filter", "-q", &files("linux_no_evidence.xml")],
        b"",
        &[("VHOSTFIX_CONFIG", c)],
    );
    assert!(o.stdout.contains("<model type='virtio-non-transitional'/>"));
    // The command line beats the file.
    let o = run(&[
        "filter",
        "-q",
        "--config",
        c,
        "--target-model",
        "virtio",
        &files("linux_no_evidence.xml"),
    ]);
    assert!(o.stdout.contains("<model type='virtio'/>"));
}

#[test]
fn detection_signals_can_be_switched_off() {
    let d = scratch("signals");
    let conf = d.join("v.toml");
    std::fs::write(&conf, "[detect]\nlocaltime_clock = false\n").unwrap();
    let o = run(&[
        "check",
        "--config",
        conf.to_str().unwrap(),
        &files("zstack_localtime_only.xml"),
    ]);
    assert_eq!(o.code, 1);
    assert!(
        o.stdout.contains("guest os: unknown (out of scope)"),
        "{}",
        o.stdout
    );
}

#[test]
fn bad_configuration_names_file_and_key() {
    let d = scratch("badconfig");
    let conf = d.join("v.toml");
    std::fs::write(&conf, "[hook]\non_error = \"maybe\"\n").unwrap();
    let c = conf.to_str().unwrap();
    let o = run(&["filter", "--config", c, &example()]);
    assert_eq!(o.code, 2);
    assert_eq!(o.stdout, "");
    assert_eq!(o.stderr, format!("vhostfix: error: {c}:2:12: hook.on_error: unknown variant `maybe`, expected `allow` or `deny`\n"));
    let o = run(&["config", "check", c]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("hook.on_error"));
    let o = run(&["filter", "--config", "/nonexistent/v.toml", &example()]);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr
            .starts_with("vhostfix: error: /nonexistent/v.toml: cannot read: "),
        "{}",
        o.stderr
    );
}

#[test]
fn config_check_and_show() {
    let d = scratch("configshow");
    let conf = d.join("v.toml");
    std::fs::write(
        &conf,
        "guests = \"any\"\n[hook.checks]\nclient_socket = \"warn\"\n",
    )
    .unwrap();
    let c = conf.to_str().unwrap();
    let o = run(&["config", "check", c]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout, "");
    assert!(o.stderr.contains("configuration ok"));
    let o = run(&["config", "show", "--config", c]);
    assert_eq!(o.code, 0);
    let shown: toml::Value = toml::from_str(&o.stdout).unwrap();
    assert_eq!(shown["guests"].as_str(), Some("any"));
    assert_eq!(
        shown["hook"]["checks"]["client_socket"].as_str(),
        Some("warn")
    );
    assert_eq!(shown["hook"]["checks"]["model"].as_str(), Some("deny"));
    assert_eq!(shown["limits"]["max_depth"].as_integer(), Some(256));
    assert_eq!(shown["detect"]["localtime_clock"].as_bool(), Some(true));
    // `show` round-trips through `check`.
    let again = d.join("again.toml");
    std::fs::write(&again, &o.stdout).unwrap();
    assert_eq!(run(&["config", "check", again.to_str().unwrap()]).code, 0);
}

// ---- generated documentation ----

#[test]
fn completions_and_man_pages() {
    for shell in ["bash", "zsh", "fish"] {
        let o = run(&["completions", shell]);
        assert_eq!(o.code, 0);
        assert!(
            o.stdout.contains("vhostfix") && o.stdout.contains("filter"),
            "{shell}"
        );
    }
    let o = run(&["man"]);
    assert_eq!(o.code, 0);
    assert!(
        o.stdout.starts_with(".ie \\n(.g .ds Aq") || o.stdout.contains(".TH vhostfix"),
        "{}",
        &o.stdout[..200]
    );
    assert!(o.stdout.contains("filter"));
    let d = scratch("man");
    let o = run(&["man", "--dir", d.to_str().unwrap()]);
    assert_eq!(o.code, 0);
    for page in [
        "vhostfix.1",
        "vhostfix-filter.1",
        "vhostfix-diff.1",
        "vhostfix-check.1",
        "vhostfix-hook.1",
    ] {
        let text = std::fs::read_to_string(d.join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
}

/// Every man page, and each page it refers to (`name(section)`) that is ours
/// or vhostfix's exists (issue 10: vhostfix-help(1), vhostfix-config-check(1)).
#[test]
fn man_pages_refer_only_to_pages_that_exist() {
    let d = scratch("manrefs");
    let o = run(&["man", "--dir", d.to_str().unwrap()]);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    let mut pages: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert!(pages.contains(&"vhostfix.toml.5".to_string()), "{pages:?}");
    assert!(!pages.iter().any(|p| p.contains("help")), "{pages:?}");
    for page in &pages {
        let text = std::fs::read_to_string(d.join(page))
            .unwrap()
            .replace("\\-", "-");
        for section in [
            "NAME",
            "DESCRIPTION",
            "ENVIRONMENT",
            "FILES",
            "EXAMPLES",
            "SEE ALSO",
        ] {
            assert!(
                text.contains(&format!(".SH {section}"))
                    || text.contains(&format!(".SH \"{section}\"")),
                "{page}: no {section}"
            );
        }
        if page.ends_with(".1") {
            assert!(
                text.contains(".SH \"EXIT STATUS\""),
                "{page}: no EXIT STATUS"
            );
        }
        let mut rest = text.as_str();
        while let Some(at) = rest.find("vhostfix") {
            rest = &rest[at..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
                .collect();
            let after = &rest[name.len()..];
            if let Some(sec) = after
                .strip_prefix('(')
                .and_then(|a| a.chars().next())
                .filter(|c| c.is_ascii_digit())
            {
                let file = format!("{name}.{sec}");
                assert!(
                    pages.contains(&file),
                    "{page} refers to {name}({sec}), which is not written"
                );
            }
            rest = &rest[name.len().max(1)..];
        }
    }
    let conf = std::fs::read_to_string(d.join("vhostfix.toml.5")).unwrap();
    for key in [
        "on_error",
        "shared_memory",
        "max_input_bytes",
        "allowed_groups",
    ] {
        assert!(
            conf.contains(&format!("\\fB{}", key)),
            "vhostfix.toml.5 lacks {key}"
        );
    }
    let hook = std::fs::read_to_string(d.join("vhostfix-hook.1")).unwrap();
    assert!(
        hook.contains("OBJECT NAME OP SUBOP"),
        "hook arguments need help text"
    );
}

#[test]
fn help_version_and_usage_errors() {
    let o = run(&["--help"]);
    assert_eq!(o.code, 0);
    assert!(o.stdout.contains("Exit status"));
    assert_eq!(run(&["--version"]).code, 0);
    let o = run(&["frobnicate"]);
    assert_eq!(o.code, 2);
    assert_eq!(o.stdout, "");
}

// ---- the libvirt hook ----

const NO_SHARED_MEMORY: &str = "<domain type='qemu'><name>vm1</name><devices><interface type='vhostuser'><mac address='52:54:00:00:00:01'/><source type='unix' path='/run/x.sock' mode='server'/><model type='virtio'/></interface></devices></domain>";

fn hook(args: &[&str], stdin: &str) -> Out {
    let mut all = vec!["hook", "qemu"];
    all.extend_from_slice(args);
    run_stdin(&all, stdin.as_bytes())
}

#[test]
fn hook_denies_unshared_memory_at_prepare() {
    let o = hook(&["vm1", "prepare", "begin", "-"], NO_SHARED_MEMORY);
    assert_eq!(o.code, 1);
    assert_eq!(o.stdout, "");
    assert!(o.stderr.contains("vhostfix refused to start domain 'vm1': vhost-user nic 0 (52:54:00:00:00:01) on socket /run/x.sock needs shared guest memory, but memory is not shared"), "{}", o.stderr);
    assert!(o
        .stderr
        .contains("fix: add <memoryBacking><access mode='shared'/></memoryBacking>"));
}

#[test]
fn hook_allows_other_phases_without_output() {
    for (op, sub) in [
        ("start", "begin"),
        ("started", "begin"),
        ("stopped", "end"),
        ("release", "end"),
        ("reconnect", "begin"),
        ("attach", "begin"),
    ] {
        let o = hook(&["vm1", op, sub, "-"], NO_SHARED_MEMORY);
        assert_eq!(
            (o.code, o.stdout.as_str()),
            (0, ""),
            "{op} {sub}: {}",
            o.stderr
        );
    }
}

#[test]
fn hook_checks_can_be_set_to_warn_or_off() {
    let d = scratch("hookwarn");
    let conf = d.join("v.toml");
    let prepare = |setting: &str| {
        std::fs::write(
            &conf,
            format!("[hook.checks]\nshared_memory = \"{setting}\"\n"),
        )
        .unwrap();
        let c = conf.to_str().unwrap();
        run_stdin(
            &[
                "--config", c, "hook", "qemu", "vm1", "prepare", "begin", "-",
            ],
            NO_SHARED_MEMORY.as_bytes(),
        )
    };
    let o = prepare("warn");
    assert_eq!(o.code, 0);
    assert!(
        o.stderr
            .contains("vhostfix: warn: domain='vm1' prepare/begin: vhost-user nic 0"),
        "{}",
        o.stderr
    );
    let o = prepare("off");
    assert_eq!(o.code, 0);
    assert!(!o.stderr.contains("warn:"));
}

#[test]
fn hook_logs_each_decision() {
    let ok = read(&example()).replace("e1000", "virtio");
    let o = hook(&["win2019-vhu", "prepare", "begin", "-"], &ok);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("vhostfix: info: domain='win2019-vhu' op=prepare/begin verdict=windows evidence='hypervclock timer present; clock offset localtime' vhostuser_nics=1 action=allow"), "{}", o.stderr);
}

#[test]
fn hook_client_socket_check() {
    let d = scratch("sock");
    let path = d.join("backend.sock");
    let xml = |extra: &str| {
        format!("<domain><name>c1</name><memoryBacking><source type='memfd'/></memoryBacking><devices><interface type='vhostuser'><source type='unix' path='{}' mode='client'>{extra}</source><model type='virtio'/></interface></devices></domain>", path.display())
    };
    let o = hook(&["c1", "prepare", "begin", "-"], &xml(""));
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .contains(&format!("the socket {} does not exist", path.display())),
        "{}",
        o.stderr
    );
    let o = hook(
        &["c1", "prepare", "begin", "-"],
        &xml("<reconnect enabled='yes' timeout='5'/>"),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    std::fs::write(&path, "").unwrap();
    let o = hook(&["c1", "prepare", "begin", "-"], &xml(""));
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("is not a UNIX socket"));
    std::fs::remove_file(&path).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let o = hook(&["c1", "prepare", "begin", "-"], &xml(""));
    assert_eq!(o.code, 0, "{}", o.stderr);
}

#[test]
fn hook_denies_model_violation_at_prepare_restore_and_migrate() {
    let bad = read(&example());
    let o = hook(&["win2019-vhu", "prepare", "begin", "-"], &bad);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("vhostfix refused to start domain 'win2019-vhu': vhost-user nic 0 (52:54:00:5a:01:01) on socket /run/vhu-test/vhu0.sock has model e1000"), "{}", o.stderr);
    for op in ["restore", "migrate"] {
        let o = hook(&["win2019-vhu", op, "begin", "-"], &bad);
        assert_eq!(o.code, 1, "{op}");
        assert_eq!(
            o.stdout, "",
            "{op}: libvirt would take stdout as the new XML"
        );
        assert!(
            o.stderr
                .contains(&format!("vhostfix refused to {op} domain 'win2019-vhu'")),
            "{}",
            o.stderr
        );
        assert!(o.stderr.contains("cannot change under a running guest"));
        let good = hook(
            &["win2019-vhu", op, "begin", "-"],
            &bad.replace("e1000", "virtio"),
        );
        assert_eq!((good.code, good.stdout.as_str()), (0, ""), "{op}");
    }
}

#[test]
fn hook_allows_and_logs_on_bad_input_by_default() {
    for input in [
        "",
        "garbage",
        "<domain><devices>",
        "<!DOCTYPE x [<!ENTITY a 'b'>]><domain/>",
    ] {
        let o = hook(&["vm1", "prepare", "begin", "-"], input);
        assert_eq!(o.code, 0, "{input:?}");
        assert_eq!(o.stdout, "");
        assert!(
            o.stderr
                .contains("vhostfix: error: domain 'vm1' prepare/begin: domain XML: "),
            "{}",
            o.stderr
        );
        assert!(o.stderr.contains("allowing (hook.on_error = \"allow\")"));
    }
}

#[test]
fn hook_on_error_deny() {
    let d = scratch("onerror");
    let conf = d.join("v.toml");
    std::fs::write(&conf, "[hook]\non_error = \"deny\"\n").unwrap();
    let o = run_with(
        Path::new(BIN),
        &["hook", "qemu", "vm1", "prepare", "begin", "-"],
        b"garbage",
        &[("VHOSTFIX_CONFIG", conf.to_str().unwrap())],
    );
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .contains("vhostfix refused to start domain 'vm1': domain XML: 1:1: malformed XML"),
        "{}",
        o.stderr
    );
}

#[test]
fn hook_with_broken_config_allows() {
    let d = scratch("brokenconf");
    let conf = d.join("v.toml");
    std::fs::write(&conf, "gests = 1\n").unwrap();
    let o = run_with(
        Path::new(BIN),
        &["hook", "qemu", "vm1", "prepare", "begin", "-"],
        NO_SHARED_MEMORY.as_bytes(),
        &[("VHOSTFIX_CONFIG", conf.to_str().unwrap())],
    );
    assert_eq!(o.code, 0);
    assert!(o.stderr.contains("configuration: "), "{}", o.stderr);
    assert!(o.stderr.contains("unknown field `gests`"));
}

#[test]
fn hook_reads_all_of_a_large_stdin() {
    // libvirt writes the whole XML; a hook that stops reading early breaks its pipe.
    let big = format!(
        "<domain><name>big</name><description>{}</description></domain>",
        "x".repeat(40 << 20)
    );
    let o = hook(&["big", "prepare", "begin", "-"], &big);
    assert_eq!(o.code, 0);
    assert!(
        o.stderr.contains("larger than 33554432 bytes"),
        "{}",
        o.stderr
    );
}

#[test]
fn hook_mode_from_program_name() {
    let d = scratch("argv0");
    let qemu = d.join("qemu");
    std::os::unix::fs::symlink(BIN, &qemu).unwrap();
    let o = run_with(
        &qemu,
        &["vm1", "prepare", "begin", "-"],
        NO_SHARED_MEMORY.as_bytes(),
        &[],
    );
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("vhostfix refused to start domain 'vm1'"));
    std::fs::create_dir(d.join("qemu.d")).unwrap();
    let link = d.join("qemu.d").join("50-vhostfix");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let o = run_with(
        &link,
        &["vm1", "prepare", "begin", "-"],
        NO_SHARED_MEMORY.as_bytes(),
        &[],
    );
    assert_eq!(o.code, 1);
    let o = run_with(
        &link,
        &["vm1", "stopped", "end", "-"],
        NO_SHARED_MEMORY.as_bytes(),
        &[],
    );
    assert_eq!((o.code, o.stdout.as_str()), (0, ""));
}

/// Issue 9 finding 7: libvirt allows domain names that look like options and
/// passes them as the first word; they must be names, under both entry points.
#[test]
fn hook_takes_names_that_look_like_options_as_names() {
    let d = scratch("optnames");
    std::fs::create_dir(d.join("qemu.d")).unwrap();
    let link = d.join("qemu.d").join("50-vhostfix");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let bad = read(&example());
    let good = bad.replace("e1000", "virtio");
    for name in [
        "--guests=any",
        "--",
        "-x",
        "--version",
        "--help",
        "-h",
        "--config=/x",
    ] {
        for via_link in [false, true] {
            let call = |op: &str, xml: &str| {
                let words = [name, op, "begin", "-"];
                if via_link {
                    run_with(&link, &words, xml.as_bytes(), &[])
                } else {
                    let mut all = vec!["hook", "qemu"];
                    all.extend_from_slice(&words);
                    run_stdin(&all, xml.as_bytes())
                }
            };
            let how = if via_link {
                "qemu.d link"
            } else {
                "hook subcommand"
            };
            let o = call("prepare", &bad);
            assert_eq!(
                (o.code, o.stdout.as_str()),
                (1, ""),
                "{name} via {how}: {}",
                o.stderr
            );
            assert!(
                o.stderr.contains(&format!(
                    "vhostfix refused to start domain '{name}': vhost-user nic 0"
                )),
                "{name} via {how}: {}",
                o.stderr
            );
            assert!(
                o.stderr.contains(&format!(
                    "vhostfix: info: domain='{name}' op=prepare/begin verdict=windows"
                )),
                "{}",
                o.stderr
            );
            let o = call("prepare", &good);
            assert_eq!(
                (o.code, o.stdout.as_str()),
                (0, ""),
                "{name} via {how}: {}",
                o.stderr
            );
            // libvirt takes stdout at migrate begin as the new domain XML.
            let o = call("migrate", &good);
            assert_eq!(
                (o.code, o.stdout.as_str()),
                (0, ""),
                "{name} via {how}: {}",
                o.stderr
            );
        }
    }
    // Options go before OBJECT; everything after it is a word.
    let o = run_stdin(
        &[
            "hook",
            "qemu",
            "vm1",
            "prepare",
            "begin",
            "-",
            "--config",
            "/nonexistent",
        ],
        NO_SHARED_MEMORY.as_bytes(),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("vhostfix: error: hook call: arguments: expected the arguments NAME OP SUBOP [EXTRA] after 'qemu', as libvirt passes them; got 6 word(s); allowing (hook.on_error = \"allow\")"), "{}", o.stderr);
}

#[test]
fn hook_wrong_word_count_follows_on_error() {
    let d = scratch("wordcount");
    let link = d.join("qemu");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let o = run_with(&link, &["vm1", "prepare"], NO_SHARED_MEMORY.as_bytes(), &[]);
    assert_eq!((o.code, o.stdout.as_str()), (0, ""), "{}", o.stderr);
    assert!(o.stderr.contains("got 2 word(s); allowing"), "{}", o.stderr);
    let conf = d.join("v.toml");
    std::fs::write(&conf, "[hook]\non_error = \"deny\"\n").unwrap();
    let o = run_with(
        &link,
        &[],
        b"",
        &[("VHOSTFIX_CONFIG", conf.to_str().unwrap())],
    );
    assert_eq!(o.code, 1);
    assert_eq!(o.stderr, "vhostfix refused to run the domain operation: arguments: expected the arguments NAME OP SUBOP [EXTRA] after 'qemu', as libvirt passes them; got 0 word(s) (hook.on_error = \"deny\"; \"allow\" lets the guest start and only logs this)\n");
}

/// Issue 9 finding 9: a name with a newline or an escape cannot forge a log line.
#[test]
fn hook_escapes_names_in_logs_and_messages() {
    let name = "evil\nvhostfix: info: domain='x' action=allow\x1b[2J";
    let o = hook(&[name, "prepare", "begin", "-"], NO_SHARED_MEMORY);
    assert_eq!(o.code, 1);
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", o.stderr);
    assert!(lines[0].starts_with("vhostfix: info: domain='evil\\nvhostfix: info: domain=\\'x\\' action=allow\\u{1b}[2J' op=prepare/begin"), "{}", lines[0]);
    assert!(lines[1].starts_with("vhostfix refused to start domain 'evil\\nvhostfix: info: domain=\\'x\\' action=allow\\u{1b}[2J': vhost-user nic 0"), "{}", lines[1]);
    assert!(!o.stderr.contains('\x1b'));
}

/// Issue 10: without syslog the hook's stderr (which libvirt shows the user on
/// a refusal) carries the refusal alone, no `vhostfix: info:` line before it.
#[test]
fn hook_without_syslog_prints_only_the_refusal() {
    // With /dev/log the info line goes to syslog; without, it is not printed.
    // Either way stderr holds only the refusal.
    let o = run_with(
        Path::new(BIN),
        &["hook", "qemu", "vm1", "prepare", "begin", "-"],
        NO_SHARED_MEMORY.as_bytes(),
        &[("VHOSTFIX_LOG", "")],
    );
    assert_eq!(o.code, 1);
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    assert!(
        o.stderr
            .starts_with("vhostfix refused to start domain 'vm1': "),
        "{}",
        o.stderr
    );
    // Naming a level (or a target) keeps the info lines on stderr.
    if !Path::new("/dev/log").exists() {
        let o = run_with(
            Path::new(BIN),
            &["hook", "qemu", "vm1", "prepare", "begin", "-"],
            NO_SHARED_MEMORY.as_bytes(),
            &[("VHOSTFIX_LOG", "info")],
        );
        assert!(
            o.stderr
                .starts_with("vhostfix: info: domain='vm1' op=prepare/begin"),
            "{}",
            o.stderr
        );
    }
}

/// The log lines shown in README.md's Logging section are the hook's own.
#[test]
fn readme_log_lines_are_the_hooks() {
    let xml = "<domain type='kvm'><name>win10</name><metadata><libosinfo:libosinfo xmlns:libosinfo='http://libosinfo.org/xmlns/libvirt/domain/1.0'><libosinfo:os id='http://microsoft.com/win/10'/></libosinfo:libosinfo></metadata><memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking><devices><interface type='vhostuser'><source type='unix' path='/run/x.sock' mode='server'/><model type='virtio'/></interface></devices></domain>";
    let readme = read(&format!("{}/README.md", env!("CARGO_MANIFEST_DIR")));
    for (op, sub) in [("prepare", "begin"), ("start", "begin")] {
        let o = hook(&["win10", op, sub, "-"], xml);
        assert_eq!(o.code, 0, "{}", o.stderr);
        let line = o
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("vhostfix: info: "))
            .unwrap_or_else(|| panic!("no info line: {}", o.stderr));
        assert!(
            readme
                .lines()
                .any(|r| r.trim_start().starts_with("vhostfix[")
                    && r.split_once("]: ").map(|(_, rest)| rest) == Some(line)),
            "README.md lacks the log line {line}"
        );
    }
}

#[test]
fn hook_ignores_other_objects() {
    let o = run_stdin(
        &["hook", "network", "default", "start", "begin", "-"],
        b"<network/>",
    );
    assert_eq!((o.code, o.stdout.as_str()), (0, ""));
}

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

/// Issue 8: the hook's advice follows the libvirt that runs it (here given by
/// $VHOSTFIX_LIBVIRT_VERSION; under libvirtd, read from the daemon's libvirt.so).
#[test]
fn hook_advice_follows_the_libvirt_release() {
    let args = ["hook", "qemu", "vm1", "prepare", "begin", "-"];
    let run_v = |v: &str| {
        run_env_stdin(
            &args,
            &[("VHOSTFIX_LIBVIRT_VERSION", v)],
            NO_SHARED_MEMORY.as_bytes(),
        )
    };
    let o = run_v("9.0.0");
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .contains("(or <source type='memfd'/>) to the domain"),
        "{}",
        o.stderr
    );
    let o = run_v("11.3.0");
    assert_eq!(o.code, 1);
    assert!(!o.stderr.contains("<source type='memfd'/>"), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("libvirt 11.3.0 refuses to define or start it"),
        "{}",
        o.stderr
    );
    // Unknown release: only advice that holds on every release.
    let o = hook(&["vm1", "prepare", "begin", "-"], NO_SHARED_MEMORY);
    assert!(
        !o.stderr.contains("<source type='memfd'/>) to the domain"),
        "{}",
        o.stderr
    );
}
