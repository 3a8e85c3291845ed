//! The global flags and the configuration file: where it is found, what a
//! bad one says, `config check` and `config show`.

use crate::*;

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
    // Left alone by policy: libvirt refuses it.
    assert_eq!(o.code, 3);
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
