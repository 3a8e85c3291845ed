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
