//! `vhostfix check`: the report, its JSON form and its exit codes.

use crate::*;

/// Issue 10: `check` fails for what the hook refuses (unshared memory, a
/// missing client socket), and `--json` carries the findings. Issue 20: it
/// exits 3 for that, not 1 ("vhostfix fixes it"), so a script can tell them
/// apart without parsing JSON.
#[test]
fn check_exits_3_for_what_the_hook_refuses() {
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
    assert_eq!(o.code, 3, "{}", o.stdout);
    assert!(
        o.stdout
            .contains("domain 'h1': not compliant: libvirt or the vhostfix hook will refuse it, or its vhost-user NIC would not work"),
        "{}",
        o.stdout
    );
    let o = run_stdin(&["check"], dom(shared, "client").as_bytes());
    assert_eq!(o.code, 3, "{}", o.stdout);
    assert!(o.stdout.contains("  refused: vhost-user nic 0 is in client mode but the socket /nonexistent/vhu1.sock does not exist"), "{}", o.stdout);
    let o = run_stdin(&["check", "--json"], dom("", "client").as_bytes());
    assert_eq!(o.code, 3);
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
    assert_eq!(o.code, 3, "{}", o.stdout);
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
fn check_exit_codes() {
    assert_eq!(run(&["check", &files("already_virtio.xml")]).code, 0);
    assert_eq!(run(&["check", &files("no_vhostuser.xml")]).code, 0);
    assert_eq!(run(&["check", &files("zstack_windows.xml")]).code, 1);
    // A violation left alone by policy is refused by libvirt: 3.
    assert_eq!(run(&["check", &files("linux_no_evidence.xml")]).code, 3);
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
    // Issue 20: a dry run does not say "fixed".
    assert_eq!(z["nics"][0]["status"], "would-fix");
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

/// Issue 20: with no FILE and a terminal on stdin, `check`, `filter` and
/// `diff` used to wait silently for typed XML. Now they say what they need
/// (a pty from util-linux's `script` plays the terminal; `timeout` catches
/// a command that waits after all).
#[test]
fn no_file_and_a_terminal_is_an_error_not_a_silent_wait() {
    for sub in ["check", "filter", "diff"] {
        let out = Command::new("timeout")
            .args(["10", "script", "-qec", &format!("{BIN} {sub}"), "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .expect("timeout and script (util-linux) run");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{sub}: {text}");
        assert!(
            text.contains("vhostfix: error: no input: give a FILE, or pipe the XML into stdin ('-' reads it from the terminal)"),
            "{sub}: {text}"
        );
    }
}
