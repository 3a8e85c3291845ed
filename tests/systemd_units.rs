//! Every directive of the systemd units vhostfix ships (every file in
//! packaging/systemd/) and of the drop-ins its scripts write
//! (packaging/transparent-mode, packaging/systemd-generator), checked against
//! the systemd release that introduced it, so that the units keep working on
//! systemd 219 (CentOS 7), 239 (RHEL 8) and 252 and later.
//!
//! systemd ignores a directive it does not know, with a warning. That is
//! safe only where the unit still works without it; a directive that an older
//! release knows but reads differently must not break the service. The table
//! below gives, for each directive, the release that introduced it (from
//! systemd's man pages, "Added in version N", as of v259; where they give none,
//! the directive predates their records), values that came later (from NEWS or
//! the source tree of the release named), and what a release without them
//! does. A directive missing from the table fails the test: add it with its
//! release from systemd's documentation. The table of docs/proxy.md ("Older
//! systemd") is rendered from it and must match.

use std::collections::BTreeSet;
use std::path::Path;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The releases the units are checked for, with the systems that ship them.
const RELEASES: [(u32, &str); 3] = [
    (219, "219 (CentOS 7)"),
    (239, "239 (RHEL 8)"),
    (252, "252 and later"),
];

/// A value (or a prefix of the value) that needs a later release than its
/// directive.
struct Value {
    /// Matches when the value starts with this (after a leading '-' or '~'
    /// where `strip_prefix_chars` says so).
    starts: &'static str,
    since: u32,
    source: &'static str,
    /// What a release before `since` does with it.
    before: &'static str,
    /// A release before `since` would misread it in a way that breaks the
    /// service; the named drop-in line of packaging/systemd-generator
    /// undoes the directive there.
    reset_by_generator: bool,
}

struct Directive {
    name: &'static str,
    sections: &'static [&'static str],
    /// Release that introduced it; `None`: older than the man pages' records.
    since: Option<u32>,
    source: &'static str,
    /// What it protects (a row of the docs table); empty: not a protection.
    protects: &'static str,
    /// What a release before `since` does (the docs cell).
    before: &'static str,
    values: &'static [Value],
}

const IGNORED: &str = "ignored";
const EXEC: &str = "systemd.exec(5)";
const UNIT: &str = "systemd.unit(5)";
const SERVICE: &str = "systemd.service(5)";
const SOCKET: &str = "systemd.socket(5)";
const KILL: &str = "systemd.kill(5)";
const RESOURCE: &str = "systemd.resource-control(5)";

const fn d(
    name: &'static str,
    sections: &'static [&'static str],
    since: Option<u32>,
    source: &'static str,
) -> Directive {
    Directive {
        name,
        sections,
        since,
        source,
        protects: "",
        before: IGNORED,
        values: &[],
    }
}

const fn p(
    name: &'static str,
    since: Option<u32>,
    source: &'static str,
    protects: &'static str,
) -> Directive {
    Directive {
        name,
        sections: &["Service"],
        since,
        source,
        protects,
        before: IGNORED,
        values: &[],
    }
}

const U: &[&str] = &["Unit"];
const S: &[&str] = &["Service"];
const K: &[&str] = &["Socket"];
const I: &[&str] = &["Install"];
const T: &[&str] = &["Timer"];
const TIMER: &str = "systemd.timer(5)";

static TABLE: &[Directive] = &[
    // [Unit]
    d("Description", U, Some(201), UNIT),
    d("Documentation", U, Some(201), UNIT),
    d("Requires", U, Some(201), UNIT),
    d("Wants", U, Some(201), UNIT),
    d("After", U, Some(201), UNIT),
    d("BindsTo", U, Some(201), UNIT),
    d("OnFailure", U, Some(201), UNIT),
    // Before 229 StartLimitInterval= of [Service]; both default to 10 s and
    // 5 starts, the values the unit sets.
    Directive {
        before: "ignored (the defaults, 10 s and 5 starts, are the same)",
        ..d("StartLimitIntervalSec", U, Some(229), UNIT)
    },
    Directive {
        before: "ignored (the defaults, 10 s and 5 starts, are the same)",
        ..d("StartLimitBurst", U, Some(229), UNIT)
    },
    // [Service]
    d("Type", S, None, SERVICE),
    d("NotifyAccess", S, None, SERVICE),
    d("ExecStart", S, None, SERVICE),
    d("ExecReload", S, None, SERVICE),
    Directive {
        values: &[Value {
            starts: "-+",
            since: 231,
            source: "NEWS 231 (\"+\": full privileges)",
            before: "the line is ignored (\"+/...\" is no absolute path): a recovered proxy does not clear failed-closed",
            reset_by_generator: false,
        }],
        ..d("ExecStartPost", S, None, SERVICE)
    },
    d("KillSignal", S, Some(187), KILL),
    d("KillMode", S, Some(187), KILL),
    d("TimeoutStopSec", S, Some(188), SERVICE),
    d("Restart", S, None, SERVICE),
    // vhostfix-audit.service and .timer
    d("SuccessExitStatus", S, None, SERVICE),
    d("TimeoutStartSec", S, Some(188), SERVICE),
    d("Nice", S, None, EXEC),
    d("IOSchedulingClass", S, None, EXEC),
    d("OnBootSec", T, None, TIMER),
    d("OnUnitActiveSec", T, None, TIMER),
    d("AccuracySec", T, Some(209), TIMER),
    d("RestartSec", S, None, SERVICE),
    d("LimitNOFILE", S, None, EXEC),
    d("Environment", S, None, EXEC),
    p("CapabilityBoundingSet", None, EXEC, "no capability"),
    p("NoNewPrivileges", Some(187), EXEC, "no privilege gained by exec"),
    Directive {
        values: &[Value {
            starts: "strict",
            since: 232,
            source: "NEWS 232",
            before: "\"full\" (the line before it): /usr, /boot, /etc read-only",
            reset_by_generator: false,
        }],
        ..p(
            "ProtectSystem",
            Some(214),
            EXEC,
            "file system read-only but /run/vhostfix",
        )
    },
    p("ReadOnlyPaths", Some(231), EXEC, "/run read-only too"),
    p(
        "ReadWritePaths",
        Some(231),
        EXEC,
        "(the exception to ProtectSystem=strict)",
    ),
    p("ProtectHome", Some(214), EXEC, "no /home, /root, /run/user"),
    p("PrivateTmp", None, EXEC, "private /tmp"),
    p("PrivateDevices", Some(209), EXEC, "no device but null, zero, random..."),
    Directive {
        sections: S,
        ..p("DevicePolicy", Some(208), RESOURCE, "device access closed")
    },
    p("PrivateIPC", Some(248), EXEC, "private System V IPC"),
    p("PrivateMounts", Some(239), EXEC, "private mount table"),
    p(
        "RestrictAddressFamilies",
        Some(211),
        EXEC,
        "AF_UNIX sockets only",
    ),
    p("PrivateNetwork", None, EXEC, "own network namespace (lo only)"),
    p("IPAddressDeny", Some(235), RESOURCE, "no IP traffic (eBPF)"),
    p(
        "ProtectKernelTunables",
        Some(232),
        EXEC,
        "/proc/sys, /sys read-only",
    ),
    p("ProtectKernelModules", Some(232), EXEC, "no module loading"),
    p("ProtectKernelLogs", Some(244), EXEC, "no kernel log"),
    p("ProtectControlGroups", Some(232), EXEC, "cgroup tree read-only"),
    p("ProtectClock", Some(245), EXEC, "clock not settable"),
    p("ProtectHostname", Some(242), EXEC, "host name not settable"),
    p("ProcSubset", Some(247), EXEC, "/proc holds processes only"),
    p("RestrictNamespaces", Some(233), EXEC, "no new namespaces"),
    p("RestrictRealtime", Some(231), EXEC, "no realtime scheduling"),
    p("RestrictSUIDSGID", Some(242), EXEC, "no set-uid/gid files"),
    p("LockPersonality", Some(235), EXEC, "execution domain locked"),
    p(
        "MemoryDenyWriteExecute",
        Some(231),
        EXEC,
        "no writable and executable memory",
    ),
    p("UMask", None, EXEC, "files private by default"),
    p(
        "SystemCallArchitectures",
        Some(209),
        EXEC,
        "native system calls only",
    ),
    Directive {
        values: &[
            Value {
                starts: "@system-service",
                since: 239,
                source: "src/shared/seccomp-util.c, first in v239",
                before: "replaced by vhostfix-generator's drop-in: a deny list of groups on 231-238, no filter before 231",
                reset_by_generator: true,
            },
            Value {
                starts: "@chown",
                since: 235,
                source: "NEWS 235",
                before: IGNORED,
                reset_by_generator: false,
            },
            Value {
                starts: "@",
                since: 231,
                source: "NEWS 231",
                before: IGNORED,
                reset_by_generator: false,
            },
        ],
        ..p(
            "SystemCallFilter",
            Some(187),
            EXEC,
            "system calls of @system-service only, none privileged",
        )
    },
    p(
        "SystemCallErrorNumber",
        Some(209),
        EXEC,
        "(filtered calls fail with EPERM)",
    ),
    // [Socket]
    d("ListenStream", K, None, SOCKET),
    Directive {
        before: "ignored: sockets are passed without names; the proxy tells them apart by their paths",
        ..d("FileDescriptorName", K, Some(227), SOCKET)
    },
    d("Service", K, None, SOCKET),
    d("SocketMode", K, None, SOCKET),
    d("SocketUser", K, Some(214), SOCKET),
    d("SocketGroup", K, Some(214), SOCKET),
    d("DirectoryMode", K, None, SOCKET),
    d("RemoveOnStop", K, Some(214), SOCKET),
    d("Backlog", K, None, SOCKET),
    // [Install]
    d("WantedBy", I, Some(201), UNIT),
    d("Also", I, Some(201), UNIT),
];

/// One `Key=value` line of a unit or a drop-in.
#[derive(Debug)]
struct Line {
    file: String,
    line: usize,
    section: String,
    key: String,
    value: String,
}

/// `[Section]` headers and `Key=value` lines; comments and blank lines skipped.
fn parse(file: &str, text: &str, first_line: usize, out: &mut Vec<Line>) {
    let mut section = String::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (key, value) = l.split_once('=').unwrap_or_else(|| {
            panic!(
                "{file}:{}: neither a section nor Key=value: {l}",
                first_line + i
            )
        });
        assert!(
            !section.is_empty(),
            "{file}:{}: {key}= outside a section",
            first_line + i
        );
        out.push(Line {
            file: file.to_string(),
            line: first_line + i,
            section: section.clone(),
            key: key.trim().to_string(),
            value: value.trim().to_string(),
        });
    }
}

/// The unit text in the here-documents of a shell script that contain a
/// `[Section]` header (drop-ins it writes), with their first line numbers.
fn heredoc_units(script: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut lines = script.lines().enumerate();
    while let Some((_, l)) = lines.next() {
        let Some(pos) = l.find("<<") else { continue };
        let word: String = l[pos + 2..]
            .trim_start_matches('-')
            .trim_matches(|c| c == '\'' || c == '"')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if word.is_empty() {
            continue;
        }
        let mut body = String::new();
        let mut first = 0;
        for (j, b) in lines.by_ref() {
            if b.trim() == word {
                break;
            }
            if first == 0 {
                first = j + 1;
            }
            body.push_str(b);
            body.push('\n');
        }
        if body.lines().any(|b| {
            let b = b.trim();
            b.starts_with('[') && b.ends_with(']') && !b.contains(' ')
        }) {
            out.push((first, body));
        }
    }
    out
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(REPO).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every directive vhostfix ships or writes.
fn shipped() -> Vec<Line> {
    let mut out = Vec::new();
    let dir = Path::new(REPO).join("packaging/systemd");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 4, "{names:?}");
    for n in &names {
        let ext = n.rsplit('.').next().unwrap_or("");
        assert!(
            ["service", "socket", "timer", "target", "path", "mount", "slice"].contains(&ext),
            "packaging/systemd/{n}: not a unit file; this test reads every file there"
        );
        let f = format!("packaging/systemd/{n}");
        parse(&f, &read(&f), 1, &mut out);
    }
    for script in ["packaging/transparent-mode", "packaging/systemd-generator"] {
        let docs = heredoc_units(&read(script));
        assert!(!docs.is_empty(), "{script}: no drop-in found");
        for (first, body) in docs {
            parse(script, &body, first, &mut out);
        }
    }
    out
}

fn entry(key: &str) -> Option<&'static Directive> {
    TABLE.iter().find(|d| d.name == key)
}

/// A value without the prefixes that do not change its meaning here.
fn bare(value: &str) -> &str {
    value.trim_start_matches('~')
}

#[test]
fn every_directive_is_in_the_table() {
    let mut missing = Vec::new();
    for l in shipped() {
        match entry(&l.key) {
            None => missing.push(format!(
                "{}:{}: {}= is not in the table of tests/systemd_units.rs: add the systemd release that introduced it (man page \"Added in version\", or NEWS)",
                l.file, l.line, l.key
            )),
            Some(d) => assert!(
                d.sections.contains(&l.section.as_str()),
                "{}:{}: {}= in [{}], the table knows it in {:?}",
                l.file,
                l.line,
                l.key,
                l.section,
                d.sections
            ),
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn the_table_has_no_directive_nothing_uses() {
    let used: BTreeSet<String> = shipped().into_iter().map(|l| l.key).collect();
    let unused: Vec<&str> = TABLE
        .iter()
        .map(|d| d.name)
        .filter(|n| !used.contains(*n))
        .collect();
    assert!(unused.is_empty(), "in the table but in no unit: {unused:?}");
}

/// What a directive line does on a release: `None` when it applies as
/// written, else what happens instead.
fn on_release(l: &Line, release: u32) -> Option<&'static str> {
    let d = entry(&l.key)?;
    if d.since.is_some_and(|s| s > release) {
        return Some(d.before);
    }
    d.values
        .iter()
        .find(|v| bare(&l.value).starts_with(v.starts))
        .filter(|v| v.since > release)
        .map(|v| v.before)
}

#[test]
fn older_releases_ignore_or_are_mended() {
    let generator = read("packaging/systemd-generator");
    for l in shipped() {
        let Some(d) = entry(&l.key) else { continue };
        for v in d.values {
            if !v.reset_by_generator || !bare(&l.value).starts_with(v.starts) {
                continue;
            }
            // A release that would misread the line: the generator's drop-in
            // must empty the directive before anything else (an empty
            // assignment resets it on every release, 219 included).
            assert!(
                generator.lines().any(|g| g.trim() == format!("{}=", l.key)),
                "{}:{}: {}={} breaks the service before systemd {}, and packaging/systemd-generator does not reset {}=",
                l.file,
                l.line,
                l.key,
                l.value,
                v.since,
                l.key
            );
            assert!(
                generator.contains(&format!("-lt {}", v.since)),
                "packaging/systemd-generator does not write its drop-in below systemd {}",
                v.since
            );
        }
        // Every line is either in force on 252 or only about older releases.
        assert_eq!(
            on_release(&l, 252),
            None,
            "{}:{}: {}={} does not apply on systemd 252",
            l.file,
            l.line,
            l.key,
            l.value
        );
    }
}

/// The docs table: each protection of vhostfix-proxy.service and what each
/// release makes of it.
fn render() -> String {
    let lines: Vec<Line> = shipped()
        .into_iter()
        .filter(|l| {
            l.file == "packaging/systemd/vhostfix-proxy.service" || l.key == "FileDescriptorName"
        })
        .collect();
    let mut s = String::from("| Directive | What it does | systemd ");
    s.push_str(
        &RELEASES
            .iter()
            .map(|r| r.1)
            .collect::<Vec<_>>()
            .join(" | systemd "),
    );
    s.push_str(" | Added in |\n|---|---|---|---|---|---|\n");
    let mut seen = BTreeSet::new();
    for d in TABLE {
        let of_d: Vec<&Line> = lines.iter().filter(|l| l.key == d.name).collect();
        let interesting = !d.protects.is_empty() || d.name == "FileDescriptorName";
        if of_d.is_empty() || !interesting || !seen.insert(d.name) {
            continue;
        }
        let mut cells = Vec::new();
        for (rel, _) in RELEASES {
            // The line that applies last decides (e.g. ProtectSystem=full,
            // then =strict; SystemCallFilter= allow list, then refinements).
            let cell = of_d
                .iter()
                .find_map(|l| on_release(l, rel).filter(|c| *c != IGNORED || of_d.len() == 1))
                .or_else(|| {
                    of_d.iter()
                        .all(|l| on_release(l, rel).is_some())
                        .then_some(IGNORED)
                })
                .unwrap_or("yes");
            cells.push(cell);
        }
        let values: Vec<String> = of_d
            .iter()
            .map(|l| format!("`{}={}`", l.key, l.value))
            .collect();
        let mut since = d.since.map_or("earlier".to_string(), |v| v.to_string());
        since.push_str(&format!(" ({})", d.source));
        for v in d.values {
            if of_d.iter().any(|l| bare(&l.value).starts_with(v.starts)) && v.starts != "@" {
                since.push_str(&format!("; `{}`: {} ({})", v.starts, v.since, v.source));
            }
        }
        let what = if d.protects.is_empty() {
            "names the socket for the proxy"
        } else {
            d.protects
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            values.join("<br>"),
            what,
            cells.join(" | "),
            since
        ));
    }
    s
}

#[test]
fn docs_table_matches() {
    let table = render();
    let doc = read("docs/proxy.md");
    let begin = "<!-- systemd-releases: rendered by tests/systemd_units.rs -->\n";
    let end = "<!-- /systemd-releases -->";
    let (Some(a), Some(b)) = (doc.find(begin), doc.find(end)) else {
        panic!("docs/proxy.md: no {begin:?} ... {end:?} block");
    };
    let current = &doc[a + begin.len()..b];
    if current != table {
        if std::env::var_os("VHOSTFIX_BLESS").is_some() {
            let new = format!("{}{}{}", &doc[..a + begin.len()], table, &doc[b..]);
            std::fs::write(Path::new(REPO).join("docs/proxy.md"), new).unwrap();
        } else {
            panic!(
                "docs/proxy.md's table differs (VHOSTFIX_BLESS=1 rewrites it); expected:\n{table}"
            );
        }
    }
}

#[test]
fn the_parser_finds_what_it_must() {
    // A drop-in of transparent-mode, a value rule, an unknown directive.
    let mut v = Vec::new();
    for (first, body) in heredoc_units(&read("packaging/transparent-mode")) {
        parse("t", &body, first, &mut v);
    }
    assert!(v
        .iter()
        .any(|l| l.key == "OnFailure" && l.section == "Unit"));
    assert!(v
        .iter()
        .any(|l| l.key == "ListenStream" && l.value.is_empty()));
    let strict = Line {
        file: "x".into(),
        line: 1,
        section: "Service".into(),
        key: "ProtectSystem".into(),
        value: "strict".into(),
    };
    assert!(on_release(&strict, 219).is_some_and(|c| c.contains("full")));
    assert_eq!(on_release(&strict, 239), None);
    assert!(entry("ProtectProc").is_none());
}
