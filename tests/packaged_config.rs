//! The default configuration shipped in the packages (`packaging/vhostfix.toml`)
//! must parse, and its commented-out settings must be exactly what
//! `vhostfix config show` prints for the built-in defaults, in the same order,
//! so the file cannot drift from the code.

use std::process::Command;

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/vhostfix.toml");

fn vhostfix(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vhostfix"))
        .args(args)
        .env_remove("VHOSTFIX_CONFIG")
        .output()
        .expect("run vhostfix")
}

/// Table headers and settings, without comments and blank lines; with
/// `uncomment`, `#key = value` lines count as settings.
fn settings(text: &str, uncomment: bool) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter_map(|l| {
            let setting = |s: &str| {
                s.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                })
            };
            if l.starts_with('[') {
                Some(l.to_string())
            } else if let Some(rest) = l.strip_prefix('#').filter(|r| uncomment && setting(r)) {
                Some(rest.to_string())
            } else if l.is_empty() || l.starts_with('#') {
                None
            } else {
                Some(l.to_string())
            }
        })
        .collect()
}

#[test]
fn shipped_config_parses() {
    let out = vhostfix(&["config", "check", SHIPPED]);
    assert!(
        out.status.success(),
        "vhostfix config check {SHIPPED} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn shipped_config_sets_nothing() {
    let text = std::fs::read_to_string(SHIPPED).unwrap();
    let active: Vec<String> = settings(&text, false)
        .into_iter()
        .filter(|l| !l.starts_with('['))
        .collect();
    assert!(
        active.is_empty(),
        "the shipped file must only show defaults, commented out: {active:?}"
    );
}

#[test]
fn shipped_defaults_equal_config_show() {
    let empty = std::env::temp_dir().join(format!("vhostfix-empty-{}.toml", std::process::id()));
    std::fs::write(&empty, "").unwrap();
    let out = vhostfix(&["--config", empty.to_str().unwrap(), "config", "show"]);
    std::fs::remove_file(&empty).ok();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = settings(&String::from_utf8(out.stdout).unwrap(), false);
    let shipped = settings(&std::fs::read_to_string(SHIPPED).unwrap(), true);
    assert_eq!(
        shipped, shown,
        "packaging/vhostfix.toml is out of date: regenerate its settings from `vhostfix config show`"
    );
}
