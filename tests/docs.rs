//! The documents as a reader meets them: README.md for operators first, the
//! development material in docs/DEVELOPMENT.md, and every relative link (file
//! and #anchor) in the repository's Markdown pointing somewhere that exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(REPO).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Lines outside fenced code blocks, with their 1-based numbers.
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// `(level, title)` of each Markdown heading outside code blocks.
fn headings(text: &str) -> Vec<(usize, String)> {
    prose(text)
        .into_iter()
        .filter_map(|(_, l)| {
            let level = l.bytes().take_while(|&b| b == b'#').count();
            (level > 0 && l[level..].starts_with(' '))
                .then(|| (level, l[level + 1..].trim().to_string()))
        })
        .collect()
}

/// The anchor GitHub gives a heading: lower case, spaces to hyphens, other
/// punctuation dropped; a repeated one gets -1, -2, ...
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (_, title) in headings(text) {
        let base: String = title
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
                _ => None,
            })
            .collect();
        let mut a = base.clone();
        let mut n = 0;
        while seen.contains(&a) {
            n += 1;
            a = format!("{base}-{n}");
        }
        seen.insert(a);
    }
    seen
}

fn markdown_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::from(REPO)];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if p.is_dir() {
                if !name.starts_with('.')
                    && name != "target"
                    && !(d.ends_with("fuzz") && name == "corpus")
                {
                    dirs.push(p);
                }
            } else if name.ends_with(".md") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Relative link targets `](target)` in prose.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose(text) {
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let Some(j) = rest.find(')') else { break };
            let target = &rest[..j];
            if !target.contains("://") && !target.starts_with("mailto:") && !target.contains(' ') {
                out.push((n, target.to_string()));
            }
            rest = &rest[j..];
        }
    }
    out
}

#[test]
fn anchors_follow_github() {
    let a = anchors("# x\n## The .rpm's scriptlets\n```\n# not a heading\n```\n### libvirt older than 6.5 (CentOS/RHEL 7 and similar)\n## Upgrade\n## Upgrade\n");
    let want: BTreeSet<String> = [
        "x",
        "the-rpms-scriptlets",
        "libvirt-older-than-65-centosrhel-7-and-similar",
        "upgrade",
        "upgrade-1",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(a, want);
    assert_eq!(
        links("see [a](docs/a.md#b) and [c](#d), [web](https://x/y)\n```\n[e](f)\n```\n"),
        vec![(1, "docs/a.md#b".to_string()), (1, "#d".to_string())]
    );
}

#[test]
fn every_relative_link_resolves() {
    let files = markdown_files();
    assert!(files.len() >= 10, "found only {files:?}");
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, target) in links(&text) {
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let dest = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            let shown = file.strip_prefix(REPO).unwrap().display();
            if !dest.exists() {
                broken.push(format!("{shown}:{line}: {target}: no such file"));
                continue;
            }
            if let Some(a) = anchor {
                let dest_text = std::fs::read_to_string(&dest).unwrap_or_default();
                if !anchors(&dest_text).contains(a) {
                    broken.push(format!(
                        "{shown}:{line}: {target}: no heading with that anchor"
                    ));
                }
            }
        }
    }
    assert!(checked > 30, "only {checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// README.md starts with the two commands the project promises, then what an
/// operator needs in order: what it does, which mode for which stack, what an
/// install changes, a quick start; the development material lives in
/// docs/DEVELOPMENT.md.
#[test]
fn readme_is_for_operators_first() {
    let readme = read("README.md");
    let first_block = readme
        .split("```")
        .nth(1)
        .expect("README.md opens with a code block");
    let commands: Vec<&str> = first_block
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('#').next().unwrap().trim())
        .collect();
    assert_eq!(
        commands,
        [
            "cargo run --release -q -- diff examples/windows-vhostuser.xml",
            "sudo .ci/run"
        ]
    );
    assert!(Path::new(REPO)
        .join("examples/windows-vhostuser.xml")
        .is_file());

    let h2: Vec<String> = headings(&readme)
        .into_iter()
        .filter(|(l, _)| *l == 2)
        .map(|(_, t)| t)
        .collect();
    assert_eq!(
        h2[..4],
        [
            "What it does",
            "Your stack: what to use",
            "What installing it changes on a host",
            "Quick start"
        ],
        "{h2:?}"
    );

    // One row per stack the project names, each saying what to use.
    let section = &readme[readme.find("## Your stack: what to use").unwrap()..];
    let section = &section[..section[3..].find("\n## ").unwrap()];
    for stack in [
        "ZStack",
        "CloudStack",
        "OpenStack nova",
        "oVirt / vdsm",
        "KubeVirt",
        "virt-install",
        "anything else",
    ] {
        let row = section
            .lines()
            .find(|l| {
                l.starts_with(&format!("| {stack}")) || l.starts_with(&format!("| Apache {stack}"))
            })
            .unwrap_or_else(|| panic!("no row for {stack} in README's stack table"));
        let use_cell = row.split('|').nth(2).unwrap().trim();
        assert!(
            ["proxy", "integrations/", "vhostfix filter"]
                .iter()
                .any(|m| use_cell.contains(m)),
            "{stack}: {use_cell}"
        );
    }

    // Developer material moved out, and is where README says.
    let dev = read("docs/DEVELOPMENT.md");
    for h in [
        "Build the packages",
        "The .rpm's scriptlets",
        "Layout",
        "The test suite",
    ] {
        assert!(
            !readme.contains(&format!("## {h}\n")),
            "README.md still has {h}"
        );
        assert!(
            dev.contains(&format!("## {h}\n")),
            "docs/DEVELOPMENT.md lacks {h}"
        );
    }
    assert!(readme.contains("(docs/DEVELOPMENT.md)"));
}
