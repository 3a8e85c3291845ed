//! The layers of the crate (docs/ARCHITECTURE.md), checked on the source:
//! arrows point down only, and no two modules of a layer import each other
//! in a circle. A `use` that breaks a rule fails here with the file and line.
//!
//! The check reads paths as written (`crate::x`, `super::x`), which is how
//! every module of this crate names another; it is a guard against drift,
//! not a compiler.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, as (path relative to src/, text without
/// line comments).
fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text: String = std::fs::read_to_string(&p)
                    .unwrap()
                    .lines()
                    .map(|l| match l.find("//") {
                        Some(i) if !l[..i].contains('"') => &l[..i],
                        _ => l,
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                let rel = p.strip_prefix(src()).unwrap().display().to_string();
                out.push((rel, text));
            }
        }
    }
    out.sort();
    out
}

/// The top-level modules a file names as `crate::NAME`.
fn crate_refs(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push((n + 1, name));
            }
            rest = after;
        }
    }
    out
}

/// Fails for every `crate::X` in `layer` where X is in `forbidden`.
fn forbid(layer: &str, forbidden: &[&str]) -> Vec<String> {
    let mut bad = Vec::new();
    for (file, text) in files(&src().join(layer)) {
        for (line, name) in crate_refs(&text) {
            if forbidden.contains(&name.as_str()) {
                bad.push(format!(
                    "src/{file}:{line}: {layer} must not use crate::{name}"
                ));
            }
        }
    }
    bad
}

#[test]
fn the_core_imports_nothing_of_the_crate_but_itself_and_does_no_io() {
    let mut bad = forbid(
        "core",
        &[
            "proxy",
            "rpc",
            "cli",
            "hook",
            "audit",
            "config",
            "logging",
            "host",
            "prometheus",
        ],
    );
    for (file, text) in files(&src().join("core")) {
        for (n, line) in text.lines().enumerate() {
            for word in [
                "std::fs",
                "std::env",
                "std::net",
                "std::process",
                "std::os",
                "clap",
                "log::",
                "syslog",
            ] {
                if line.contains(word) {
                    bad.push(format!(
                        "src/{file}:{}: the core must not use {word}",
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_protocol_imports_neither_the_core_nor_the_front_ends() {
    let bad = forbid(
        "rpc",
        &[
            "core",
            "proxy",
            "cli",
            "hook",
            "audit",
            "config",
            "logging",
            "host",
            "prometheus",
        ],
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn front_ends_do_not_import_each_other_and_nothing_imports_the_cli() {
    let mut bad = Vec::new();
    bad.extend(forbid("proxy", &["cli", "hook", "audit"]));
    bad.extend(forbid("audit", &["cli", "hook", "proxy"]));
    for (file, text) in files(&src()) {
        if file.starts_with("cli/") || file == "lib.rs" || file == "main.rs" {
            continue;
        }
        for (line, name) in crate_refs(&text) {
            let top = file.split(['/', '.']).next().unwrap_or("");
            let front = ["hook", "proxy", "audit"];
            if name == "cli"
                || (front.contains(&name.as_str()) && front.contains(&top) && name != top)
            {
                bad.push(format!("src/{file}:{line}: must not use crate::{name}"));
            }
            // Services sit below the front ends.
            let services = ["config", "logging", "host", "prometheus"];
            if services.contains(&top) && (front.contains(&name.as_str()) || name == "cli") {
                bad.push(format!(
                    "src/{file}:{line}: a service must not use crate::{name}"
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The sibling modules each file of `layer` names (`super::x`, `crate::layer::x`).
fn sibling_graph(layer: &str) -> BTreeMap<String, BTreeSet<String>> {
    let dir = src().join(layer);
    let all = files(&dir);
    let module_of = |file: &str| -> String {
        let rel = file.strip_prefix(&format!("{layer}/")).unwrap_or(file);
        let first = rel.split('/').next().unwrap_or(rel);
        first.trim_end_matches(".rs").to_string()
    };
    let siblings: BTreeSet<String> = all
        .iter()
        .map(|(f, _)| module_of(f))
        .filter(|m| m != "mod")
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in &all {
        let me = module_of(file);
        let nested = file.matches('/').count() > 1;
        for s in &siblings {
            if *s == me {
                continue;
            }
            let direct = !nested
                && (text.contains(&format!("super::{s}::"))
                    || text.contains(&format!("super::{s};"))
                    || text.contains(&format!("super::{{{s}"))
                    || text.contains(&format!("use super::{s}")));
            let by_crate = text.contains(&format!("crate::{layer}::{s}"));
            if direct || by_crate {
                graph.entry(me.clone()).or_default().insert(s.clone());
            }
        }
    }
    graph
}

fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_module_cycles_inside_a_layer() {
    for layer in ["core", "rpc", "proxy", "audit", "cli"] {
        let g = sibling_graph(layer);
        if let Some(c) = cycle(&g) {
            panic!("a cycle in src/{layer}: {}", c.join(" -> "));
        }
    }
    // The check sees real edges (so a pass means something).
    assert!(sibling_graph("proxy")["relay"].contains("decide"));
    assert!(sibling_graph("rpc")["calls"].contains("xdr"));
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        crate_refs("use crate::proxy::x; crate::core::y"),
        vec![(1, "proxy".into()), (1, "core".into())]
    );
}

/// `(file, line, name, length)` of each function in `src/` longer than
/// `max` lines, from its `fn` line to the closing brace at its indentation,
/// unless a comment right above it (among its doc comment and attributes)
/// says why: a line starting with `// Long:`.
fn long_functions(max: usize) -> Vec<(String, usize, String, usize)> {
    let mut out = Vec::new();
    for (file, _) in files(&src()) {
        // With its comments, which files() leaves out.
        let text = std::fs::read_to_string(src().join(&file)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            let Some(name) = fn_name(trimmed) else {
                continue;
            };
            if trimmed.ends_with(';') {
                continue; // a declaration in a trait
            }
            let close = format!("{indent}}}");
            let Some(end) = lines[i + 1..].iter().position(|l| *l == close) else {
                continue;
            };
            let len = end + 2;
            let reason = lines[..i]
                .iter()
                .rev()
                .take_while(|l| {
                    let l = l.trim_start();
                    l.starts_with("//") || l.starts_with("#[")
                })
                .any(|l| l.trim_start().starts_with("// Long:"));
            if len > max && !reason {
                out.push((file.clone(), i + 1, name, len));
            }
        }
    }
    out
}

/// The name in `fn name`, `pub(crate) fn name<...>(`, ...
fn fn_name(line: &str) -> Option<String> {
    let mut rest = line;
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "unsafe ",
        "async ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let rest = rest.strip_prefix("fn ")?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

#[test]
fn no_long_function_without_a_reason() {
    let long = long_functions(80);
    let shown: Vec<String> = long
        .iter()
        .map(|(f, l, n, len)| {
            format!(
                "src/{f}:{l}: fn {n} has {len} lines: split it, or say why above it (// Long: ...)"
            )
        })
        .collect();
    assert!(shown.is_empty(), "{}", shown.join("\n"));
}

#[test]
fn the_length_check_sees_functions() {
    // Every module has functions; the longest of them is far above 10 lines.
    let some = long_functions(10);
    assert!(
        some.len() > 50,
        "found only {} functions over 10 lines",
        some.len()
    );
    assert!(some
        .iter()
        .any(|(f, _, n, _)| f == "core/scan.rs" && n == "start_tag"));
    assert_eq!(
        fn_name("pub(crate) fn socket_path<'a>("),
        Some("socket_path".into())
    );
    assert_eq!(fn_name("let f = 1;"), None);
}
