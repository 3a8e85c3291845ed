//! The generated documentation: completions, man pages, help.

use crate::*;

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

/// Issue 20: `vhostfix man PAGE` shows one page (it was "unexpected
/// argument"); on a terminal man(1) renders it (a pty from util-linux's
/// `script` plays the terminal, MANPAGER=cat the pager); piped, it is roff
/// for `| man -l -`.
#[test]
fn man_shows_one_page_rendered_on_a_terminal() {
    let o = run(&["man", "proxy"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains(".TH VHOSTFIX-PROXY 1"), "{}", o.stdout);
    assert_eq!(run(&["man", "vhostfix-proxy"]).stdout, o.stdout);
    assert!(run(&["man", "vhostfix.toml"])
        .stdout
        .contains(".TH VHOSTFIX.TOML 5"));
    let o = run(&["man", "frob"]);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr
            .contains("no man page 'frob': the pages are vhostfix, filter, diff"),
        "{}",
        o.stderr
    );
    let out = Command::new("timeout")
        .args([
            "20",
            "script",
            "-qec",
            &format!("{BIN} man proxy"),
            "/dev/null",
        ])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .stdin(Stdio::null())
        .output()
        .expect("timeout and script (util-linux) run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("VHOSTFIX-PROXY(1)") && !text.contains(".TH"),
        "{text}"
    );
}

/// Issue 20: the proxy's page says how to use it: each option with its
/// value, transparent mode, signals, the admin socket, proxy.md; and
/// vhostfix(1)'s EXIT STATUS covers every command, audit and 3 included.
#[test]
fn man_pages_say_what_an_operator_needs() {
    let proxy = run(&["man", "proxy"]).stdout.replace("\\-", "-");
    for want in [
        "[\\fB--listen\\fR \\fIPATH\\fR]",
        "[\\fB--admin-socket\\fR \\fIPATH\\fR]",
        ".SH \"TRANSPARENT MODE\"",
        "transparent-mode enable",
        ".SH \"SIGNALS\"",
        "SIGHUP rereads the configuration",
        ".SH \"ADMIN SOCKET\"",
        "/usr/share/doc/vhostfix/proxy.md",
    ] {
        assert!(proxy.contains(want), "{want}:\n{proxy}");
    }
    let main = run(&["man"]).stdout.replace("\\-", "-");
    let exit = &main[main.find(".SH \"EXIT STATUS\"").unwrap()..];
    let exit = &exit[..exit[1..].find(".SH").unwrap()];
    for want in [
        "audit",
        "3 vhostfix cannot make something work",
        "hook: 0 allow, 1 refuse",
    ] {
        assert!(exit.contains(want), "{want}:\n{exit}");
    }
}

/// Issue 20: the global options are listed once, in `vhostfix --help`; a
/// subcommand's help names them in one line instead of repeating them.
#[test]
fn help_lists_global_options_once() {
    let top = run(&["--help"]).stdout;
    for g in [
        "--config <PATH>",
        "--guests <GUESTS>",
        "--target-model",
        "--guest-os",
        "--libvirt-version <X.Y.Z>",
    ] {
        assert_eq!(top.matches(g).count(), 1, "{g}:\n{top}");
    }
    for sub in ["filter", "diff", "check", "audit", "hook", "proxy"] {
        let h = run(&[sub, "--help"]).stdout;
        assert!(!h.contains("--config <PATH>"), "{sub}:\n{h}");
        assert!(
            h.contains("Global options, as in vhostfix --help: --config PATH"),
            "{sub}:\n{h}"
        );
    }
    // They still work after the subcommand.
    let o = run(&[
        "filter",
        "--guests",
        "any",
        "-q",
        &files("linux_no_evidence.xml"),
    ]);
    assert!(o.stdout.contains("<model type='virtio'/>"), "{}", o.stderr);
}
