//! The libvirt qemu hook: its contract with libvirt (phases, exit codes,
//! stderr, stdin), its checks and its logs.

use crate::*;

const NO_SHARED_MEMORY: &str = "<domain type='qemu'><name>vm1</name><devices><interface type='vhostuser'><mac address='52:54:00:00:00:01'/><source type='unix' path='/run/x.sock' mode='server'/><model type='virtio'/></interface></devices></domain>";

/// A configuration that refuses unshared memory (the default only warns),
/// for the tests of the hook's refusals.
fn strict() -> (&'static str, String) {
    // One file for every test (they run in parallel), replaced whole by
    // rename, so a reader never sees it half written.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let conf = dir.join("cli-hook-strict.toml");
    let tmp = dir.join(format!(
        "cli-hook-strict.{:?}.tmp",
        std::thread::current().id()
    ));
    std::fs::write(&tmp, "[hook.checks]\nshared_memory = \"deny\"\n").unwrap();
    std::fs::rename(&tmp, &conf).unwrap();
    ("VHOSTFIX_CONFIG", conf.to_str().unwrap().to_string())
}

/// The hook with the strict configuration.
fn hook(args: &[&str], stdin: &str) -> Out {
    let mut all = vec!["hook", "qemu"];
    all.extend_from_slice(args);
    let (k, v) = strict();
    run_env_stdin(&all, &[(k, &v)], stdin.as_bytes())
}

/// Issue 20: installing vhostfix must not stop a guest that starts today. By
/// default the hook lets a guest with unshared memory start (libvirt before
/// 11.2 starts it, its vhost-user NIC dead) and logs why and how to refuse it.
#[test]
fn hook_warns_about_unshared_memory_by_default() {
    let o = run_stdin(
        &["hook", "qemu", "vm1", "prepare", "begin", "-"],
        NO_SHARED_MEMORY.as_bytes(),
    );
    assert_eq!((o.code, o.stdout.as_str()), (0, ""), "{}", o.stderr);
    assert!(o.stderr.contains("vhostfix: warn: domain='vm1' prepare/begin: vhost-user nic 0 (52:54:00:00:00:01) on socket /run/x.sock needs shared guest memory"), "{}", o.stderr);
    assert!(o.stderr.contains("(action warn)"), "{}", o.stderr);
    assert!(!o.stderr.contains("refused"), "{}", o.stderr);
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
    assert!(o
        .stderr
        .contains("unknown key `gests`; did you mean `guests`?"));
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
    let (k, v) = strict();
    let o = run_with(
        &qemu,
        &["vm1", "prepare", "begin", "-"],
        NO_SHARED_MEMORY.as_bytes(),
        &[(k, &v)],
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
        &[(k, &v)],
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
    let (k, v) = strict();
    let o = run_with(
        Path::new(BIN),
        &["hook", "qemu", "vm1", "prepare", "begin", "-"],
        NO_SHARED_MEMORY.as_bytes(),
        &[("VHOSTFIX_LOG", ""), (k, &v)],
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
            &[("VHOSTFIX_LOG", "info"), (k, &v)],
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

/// Issue 8: the hook's advice follows the libvirt that runs it (here given by
/// $VHOSTFIX_LIBVIRT_VERSION; under libvirtd, read from the daemon's libvirt.so).
#[test]
fn hook_advice_follows_the_libvirt_release() {
    let args = ["hook", "qemu", "vm1", "prepare", "begin", "-"];
    let (k, conf) = strict();
    let run_v = |v: &str| {
        run_env_stdin(
            &args,
            &[("VHOSTFIX_LIBVIRT_VERSION", v), (k, &conf)],
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
