//! Man pages: vhostfix(1), one page per subcommand, and vhostfix.toml(5).
//!
//! The options come from the clap definitions (clap_mangen renders them), the
//! configuration page from the packaged, commented `packaging/vhostfix.toml`,
//! so neither can drift from the program. What clap does not know (exit
//! status, files, environment, examples) is in the [`PAGES`] table. A page
//! only ever refers to pages this module writes: no `vhostfix-help(1)`.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

/// One subcommand page and what clap cannot say about it.
pub(crate) struct Page {
    /// The subcommand; its page is `vhostfix-NAME(1)`.
    pub(crate) name: &'static str,
    /// The EXIT STATUS section.
    pub(crate) exit: &'static str,
    /// The EXAMPLES section: (command line, what it does).
    pub(crate) examples: &'static [(&'static str, &'static str)],
    /// Sections of the page's own, after the options: (title, text).
    pub(crate) sections: &'static [(&'static str, &'static str)],
}

const EXIT_FILTER: &str = "0: the corrected XML (or the input, unchanged) is on stdout; what vhostfix could not fix is a warning on stderr. 2: bad input, bad configuration, or an I/O failure; a message on stderr says which.";
const EXIT_CHECK: &str = "0: nothing to change and nothing refused (warnings allowed). 1: vhostfix would change something, and that fixes everything wrong. 3: vhostfix cannot make it work: libvirt or the vhostfix hook will refuse it even after vhostfix (a model left alone by policy, a missing client socket), or its vhost-user NIC would stay dead (guest memory not shared: by default the hook lets such a guest start with a warning); the message says why. 2: bad input, bad configuration, or an I/O failure. With several files the worst status wins, in the order 2, 3, 1, 0.";
const EXIT_MAIN: &str = "filter: 0, or 2 on an error. diff, check and audit: 0 nothing to change and nothing refused, 1 vhostfix would change something and that fixes everything wrong, 3 vhostfix cannot make something work (libvirt or the hook will refuse it, or its vhost-user NIC would stay dead), 2 an error. hook: 0 allow, 1 refuse. proxy, config, completions, man: 0, or 2 on an error. Each page says more.";
const EXIT_SIMPLE: &str = "0: success. 2: an error, described on stderr.";
const EXIT_HOOK: &str = "0: allow the operation. 1: refuse it; the reason is on stderr, which libvirt shows to the user. An internal error (unreadable domain XML or configuration, wrong arguments) exits 0 and is logged when hook.on_error is \"allow\" (the default), and exits 1 when it is \"deny\".";
const EXIT_AUDIT: &str = "0: every domain is compliant (warnings allowed). 1: at least one domain has a NIC vhostfix would fix, and nothing is refused. 3: vhostfix cannot make at least one domain work: libvirt or the hook will refuse it, or its vhost-user NIC would stay dead. 2: libvirt could not be reached or answered with an error; with --prometheus the file still records the failure (vhostfix_audit_success 0).";
const EXIT_PROXY: &str = "0: stopped by SIGTERM or SIGINT after draining calls in flight, or --stats printed. 2: the proxy could not start (configuration, sockets) or --stats could not reach it.";

/// Every subcommand with a page, in the order vhostfix(1) lists them. A new
/// subcommand is one line here (a test fails until it has one).
pub(crate) const PAGES: &[Page] = &[
    Page {
        name: "filter",
        exit: EXIT_FILTER,
        examples: FILTER,
        sections: &[],
    },
    Page {
        name: "diff",
        exit: EXIT_CHECK,
        examples: DIFF,
        sections: &[],
    },
    Page {
        name: "check",
        exit: EXIT_CHECK,
        examples: CHECK,
        sections: &[],
    },
    Page {
        name: "audit",
        exit: EXIT_AUDIT,
        examples: AUDIT,
        sections: &[],
    },
    Page {
        name: "config",
        exit: EXIT_SIMPLE,
        examples: CONFIG,
        sections: &[],
    },
    Page {
        name: "hook",
        exit: EXIT_HOOK,
        examples: HOOK,
        sections: &[],
    },
    Page {
        name: "proxy",
        exit: EXIT_PROXY,
        examples: PROXY,
        sections: PROXY_SECTIONS,
    },
    Page {
        name: "completions",
        exit: EXIT_SIMPLE,
        examples: COMPLETIONS,
        sections: &[],
    },
    Page {
        name: "man",
        exit: EXIT_SIMPLE,
        examples: MAN,
        sections: &[],
    },
];

const FILTER: &[(&str, &str)] = &[
    ("vhostfix filter dom.xml > fixed.xml", "Write the corrected domain XML to fixed.xml; what changed is listed on stderr."),
    ("virsh dumpxml win10 | vhostfix filter | virsh define /dev/stdin", "Correct a defined domain in a pipeline."),
    ("vhostfix --guest-os windows filter nic.xml | virsh attach-device win10 /dev/stdin --config", "Correct interface XML, whose guest OS cannot be detected from it. XML of other devices passes through unchanged."),
];
const DIFF: &[(&str, &str)] = &[(
    "vhostfix diff dom.xml",
    "Show what filter would change, as a unified diff; exit 1 when something would.",
)];
const CHECK: &[(&str, &str)] = &[
    (
        "vhostfix check /etc/libvirt/qemu/*.xml",
        "Report the guest OS verdict, its evidence and every vhost-user NIC of each file.",
    ),
    (
        "vhostfix check --json dom.xml",
        "The same as one JSON object per file, for automation.",
    ),
];
const AUDIT: &[(&str, &str)] = &[
    (
        "vhostfix audit",
        "List every domain of the local libvirt (live and inactive XML) with its verdict.",
    ),
    (
        "vhostfix audit --json --connect /run/libvirt/virtqemud-sock",
        "The same through another socket, as one JSON document.",
    ),
    (
        "vhostfix audit --prometheus /var/lib/prometheus/node-exporter/vhostfix.prom",
        "Also write the counts for node_exporter's textfile collector (e.g. from a timer).",
    ),
];
const CONFIG: &[(&str, &str)] = &[
    (
        "vhostfix config check",
        "Validate the configuration file that applies (see vhostfix.toml(5)).",
    ),
    (
        "vhostfix config check /tmp/new.toml",
        "Validate another file before installing it.",
    ),
    (
        "vhostfix config show",
        "Print the effective configuration, defaults included, as TOML.",
    ),
];
const HOOK: &[(&str, &str)] = &[
    ("/usr/lib/vhostfix/libvirt-hooks install", "Link the hook as /etc/libvirt/hooks/qemu.d/50-vhostfix, where libvirt runs it (the packages do this)."),
    ("/usr/lib/vhostfix/libvirt-hooks status", "Show where the hook is and whether the running libvirt daemon calls it now."),
    ("vhostfix hook qemu win10 prepare begin - < dom.xml", "Run the admission checks of a guest start by hand."),
    ("vhostfix --config /tmp/t.toml hook qemu win10 prepare begin - < dom.xml", "The same with another configuration: options go before qemu."),
];
const PROXY: &[(&str, &str)] = &[
    (
        "systemctl enable --now vhostfix-proxy",
        "Run the packaged proxy on /run/vhostfix/libvirt-sock.",
    ),
    (
        "virsh -c 'qemu:///system?socket=/run/vhostfix/libvirt-sock' define win.xml",
        "Define a domain through it.",
    ),
    (
        "vhostfix proxy --stats --format prometheus",
        "Print the counters of the running proxy.",
    ),
];
const PROXY_SECTIONS: &[(&str, &str)] = &[
    ("TRANSPARENT MODE", "By default clients reach the proxy only when they ask for it (qemu:///system?socket=/run/vhostfix/libvirt-sock). /usr/lib/vhostfix/transparent-mode enable moves libvirt's own sockets into /run/libvirt/real and gives their paths to the proxy's socket units, so that every local client goes through it; transparent-mode disable gives them back, transparent-mode status says which is in effect. Removing the package runs disable."),
    ("SIGNALS", "SIGHUP rereads the configuration (socket settings apply at the next start); a configuration that does not load leaves the previous one in force and says so in the log. SIGTERM and SIGINT stop accepting, wait up to proxy.drain_seconds for calls and streams in flight, close the rest and exit."),
    ("ADMIN SOCKET", "The proxy answers on proxy.admin_socket (default /run/vhostfix/admin-sock, root only) with its counters; vhostfix proxy --stats reads them. A proxy started with --listen and the default admin_socket puts it beside that socket, as admin-sock in the same directory, and --stats --listen PATH finds it there; --admin-socket names it on both sides."),
    ("DOCUMENTATION", "/usr/share/doc/vhostfix/proxy.md: deployment, transparent mode, limits, what a client sees when the proxy is down, and how to bypass it."),
];
const COMPLETIONS: &[(&str, &str)] = &[(
    "vhostfix completions bash > /etc/bash_completion.d/vhostfix",
    "Install bash completion (the packages ship bash, zsh and fish completions).",
)];
const MAN: &[(&str, &str)] = &[(
    "vhostfix man --dir /tmp/man",
    "Write every page (vhostfix.1, vhostfix-*.1, vhostfix.toml.5) into /tmp/man.",
)];

const ENVIRONMENT: &[(&str, &str)] = &[
    ("VHOSTFIX_CONFIG", "The configuration file when --config is not given (default /etc/vhostfix/vhostfix.toml)."),
    ("VHOSTFIX_LOG", "Where the hook and the proxy log, and from which level: [auto|syslog|stderr][:LEVEL], LEVEL one of error, warn, info (default), debug, trace, off. auto (the default) is syslog when /dev/log exists; without syslog the hook logs only warnings and errors on stderr, unless a target or level is named."),
    ("NO_COLOR", "When set and not empty, diff --color auto does not colour."),
];

const FILES: &[(&str, &str)] = &[
    ("/etc/vhostfix/vhostfix.toml", "The configuration file, see vhostfix.toml(5)."),
    ("/etc/libvirt/hooks/qemu.d/50-vhostfix", "The libvirt qemu hook, a symlink to /usr/bin/vhostfix made by /usr/lib/vhostfix/libvirt-hooks."),
    ("/usr/lib/vhostfix/libvirt-hooks", "Installs, removes and reports the hook (install, remove, status)."),
    ("/run/vhostfix/libvirt-sock", "The proxy's default socket."),
];

/// The text of roff input, escaped: backslashes, leading dots and quotes,
/// and hyphens (so that option names render as ASCII hyphens).
fn roff(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    if text.starts_with(['.', '\'']) {
        out.push_str("\\&");
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            c => out.push(c),
        }
    }
    out
}

fn section(out: &mut String, title: &str) {
    let _ = writeln!(out, ".SH \"{title}\"");
}

fn tagged(out: &mut String, tag: &str, body: &str) {
    let _ = writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff(tag), roff(body));
}

fn list(out: &mut String, title: &str, items: &[(&str, &str)]) {
    if items.is_empty() {
        return;
    }
    section(out, title);
    for (tag, body) in items {
        tagged(out, tag, body);
    }
}

/// EXIT STATUS, ENVIRONMENT, FILES, EXAMPLES and SEE ALSO of a program page.
fn program_sections(out: &mut String, exit: &str, examples: &[(&str, &str)], see_also: &str) {
    section(out, "EXIT STATUS");
    let _ = writeln!(out, "{}", roff(exit));
    list(out, "ENVIRONMENT", ENVIRONMENT);
    list(out, "FILES", FILES);
    list(out, "EXAMPLES", examples);
    section(out, "SEE ALSO");
    let _ = writeln!(out, "{}", roff(see_also));
}

fn see_also(except: &str) -> String {
    let mut refs: Vec<String> = std::iter::once("vhostfix(1)".to_string())
        .chain(PAGES.iter().map(|p| format!("vhostfix-{}(1)", p.name)))
        .filter(|r| r != except)
        .collect();
    refs.push("vhostfix.toml(5)".into());
    refs.push("virsh(1)".into());
    refs.join(", ")
}

/// Renders the clap parts of a page: title, name, synopsis, description,
/// options (no SUBCOMMANDS section: clap's names pages that do not exist).
fn clap_parts(man: &clap_mangen::Man, cmd: &clap::Command) -> io::Result<String> {
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    buf.extend_from_slice(synopsis(cmd).as_bytes());
    man.render_description_section(&mut buf)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut buf)?;
    }
    if cmd.get_after_help().is_some() || cmd.get_after_long_help().is_some() {
        man.render_extra_section(&mut buf)?;
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// SYNOPSIS with each option's value (`[--listen PATH]`), which clap_mangen
/// leaves out.
fn synopsis(cmd: &clap::Command) -> String {
    let mut words = vec![format!(
        "\\fB{}\\fR",
        roff(cmd.get_bin_name().unwrap_or(cmd.get_name()))
    )];
    for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let value = a
            .get_value_names()
            .and_then(|v| v.first())
            .map(|v| v.to_string());
        let takes = a.get_action().takes_values();
        let word = match (a.get_long(), a.get_short()) {
            (Some(l), s) => {
                let flag = match s {
                    Some(s) => format!("\\fB\\-{s}\\fR|\\fB\\-\\-{}\\fR", roff(l)),
                    None => format!("\\fB\\-\\-{}\\fR", roff(l)),
                };
                match value.filter(|_| takes) {
                    Some(v) => format!("[{flag} \\fI{}\\fR]", roff(&v)),
                    None => format!("[{flag}]"),
                }
            }
            (None, _) => {
                let v = value.unwrap_or_else(|| a.get_id().as_str().to_uppercase());
                if a.is_required_set() {
                    format!("\\fI{}\\fR", roff(&v))
                } else {
                    format!("[\\fI{}\\fR]", roff(&v))
                }
            }
        };
        words.push(word);
    }
    if cmd.has_subcommands() {
        words.push("\\fICOMMAND\\fR".into());
    }
    format!(".SH SYNOPSIS\n{}\n", words.join(" "))
}

/// vhostfix(1): the program, its subcommands (each with its own page).
pub(crate) fn main_page(cmd: &clap::Command) -> io::Result<String> {
    let man = clap_mangen::Man::new(cmd.clone()).title("VHOSTFIX");
    let mut out = clap_parts(&man, cmd)?;
    section(&mut out, "SUBCOMMANDS");
    for p in PAGES {
        let about = cmd
            .find_subcommand(p.name)
            .and_then(|s| s.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        tagged(&mut out, &format!("vhostfix-{}(1)", p.name), &about);
    }
    let examples: Vec<(&str, &str)> = PAGES
        .iter()
        .filter_map(|p| p.examples.first().copied())
        .collect();
    program_sections(&mut out, EXIT_MAIN, &examples, &see_also("vhostfix(1)"));
    Ok(out)
}

/// vhostfix-NAME(1) for one entry of [`PAGES`]; `None` when clap has no
/// such subcommand.
pub(crate) fn sub_page(cmd: &clap::Command, page: &Page) -> io::Result<Option<String>> {
    let Some(sub) = cmd.find_subcommand(page.name) else {
        return Ok(None);
    };
    let name = format!("vhostfix-{}", page.name);
    let sub = sub
        .clone()
        .name(name.clone())
        .bin_name(format!("vhostfix {}", page.name));
    let man = clap_mangen::Man::new(sub.clone()).title(name.to_uppercase());
    let mut out = clap_parts(&man, &sub)?;
    for (title, text) in page.sections {
        section(&mut out, title);
        let _ = writeln!(out, "{}", roff(text));
    }
    // Nested subcommands (config check, config show) are described here.
    let nested: Vec<&clap::Command> = sub
        .get_subcommands()
        .filter(|s| s.get_name() != "help" && !s.is_hide_set())
        .collect();
    if !nested.is_empty() {
        section(&mut out, "SUBCOMMANDS");
        for s in nested {
            let args: Vec<String> = s
                .get_positionals()
                .map(|a| format!("[{}]", a.get_id().as_str().to_uppercase()))
                .collect();
            let usage = format!("vhostfix {} {} {}", page.name, s.get_name(), args.join(" "));
            let about = s.get_about().map(|a| a.to_string()).unwrap_or_default();
            tagged(&mut out, usage.trim_end(), &about);
        }
    }
    program_sections(
        &mut out,
        page.exit,
        page.examples,
        &see_also(&format!("{name}(1)")),
    );
    Ok(Some(out))
}

/// The commented packaged configuration file, the source of vhostfix.toml(5).
const PACKAGED_CONFIG: &str = include_str!("../../packaging/vhostfix.toml");

/// vhostfix.toml(5), from the comments of the packaged configuration file:
/// its opening comment is the description, each `[table]` a subsection and
/// each commented-out `#key = default` an entry with the comment above it.
pub(crate) fn config_page(version: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        ".TH VHOSTFIX.TOML 5 \"\" \"vhostfix {}\" \"File Formats\"",
        roff(version)
    );
    section(&mut out, "NAME");
    out.push_str("vhostfix.toml \\- configuration file of vhostfix\n");
    section(&mut out, "SYNOPSIS");
    out.push_str("/etc/vhostfix/vhostfix.toml\n");
    section(&mut out, "DESCRIPTION");
    let mut lines = PACKAGED_CONFIG.lines();
    config_description(&mut out, &mut lines);
    out.push_str(".PP\nThe file is TOML. A missing default file means the built-in defaults; a file named with \\-\\-config or VHOSTFIX_CONFIG must exist. Unknown keys and bad values are errors that name the file, the line and column, and the key. A change applies to the next run of the hook; a running proxy rereads the file on SIGHUP (socket settings apply at its next start).\n");
    section(&mut out, "KEYS");
    config_keys(&mut out, lines);
    config_sections(&mut out);
    out
}

/// The opening comment of the packaged file, up to its first non-comment
/// line: indented lines verbatim, blank ones paragraph breaks.
fn config_description<'a>(out: &mut String, lines: &mut impl Iterator<Item = &'a str>) {
    let mut verbatim = false;
    // The opening comment, up to the first blank line after the first line.
    for line in lines.by_ref() {
        let Some(text) = line.strip_prefix('#') else {
            break;
        };
        let text = text.strip_prefix(' ').unwrap_or(text);
        let is_verbatim = text.starts_with("    ");
        if is_verbatim != verbatim {
            out.push_str(if is_verbatim { ".PP\n.nf\n" } else { ".fi\n" });
            verbatim = is_verbatim;
        }
        if text.trim().is_empty() {
            if !verbatim {
                out.push_str(".PP\n");
            }
        } else {
            let _ = writeln!(out, "{}", roff(if verbatim { text } else { text.trim() }));
        }
    }
    if verbatim {
        out.push_str(".fi\n");
    }
}

/// Each `[table]` a subsection, each commented-out `#key = default` an entry
/// with the comment above it.
fn config_keys<'a>(out: &mut String, lines: impl Iterator<Item = &'a str>) {
    let mut comment: Vec<String> = Vec::new();
    let mut after_key = false;
    for line in lines {
        let line = line.trim_end();
        if line.is_empty() {
            after_key = false;
            continue;
        }
        if let Some(table) = line.strip_prefix('[') {
            let _ = writeln!(out, ".SS \"[{}\"", roff(table));
            if !comment.is_empty() {
                let _ = writeln!(out, "{}", roff(&comment.join(" ")));
                comment.clear();
            }
            after_key = false;
            continue;
        }
        let Some(text) = line.strip_prefix('#') else {
            continue;
        };
        let is_key = text.split_once(" = ").is_some_and(|(k, _)| {
            !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        });
        if is_key {
            if after_key && comment.is_empty() {
                // Another key under the same comment.
                let _ = writeln!(out, ".TQ\n\\fB{}\\fR", roff(text));
            } else {
                tagged(out, text, &comment.join(" "));
                comment.clear();
            }
            after_key = true;
        } else {
            comment.push(text.trim().to_string());
            after_key = false;
        }
    }
}

/// ENVIRONMENT, FILES, EXAMPLES and SEE ALSO of vhostfix.toml(5).
fn config_sections(out: &mut String) {
    list(
        out,
        "ENVIRONMENT",
        &[(
            "VHOSTFIX_CONFIG",
            "The file to read instead of /etc/vhostfix/vhostfix.toml.",
        )],
    );
    list(
        out,
        "FILES",
        &[("/etc/vhostfix/vhostfix.toml", "The default location; the packages install it with every setting commented out, and keep your edits on upgrade.")],
    );
    list(
        out,
        "EXAMPLES",
        &[
            (
                "guests = \"any\"",
                "Fix the vhost-user NICs of every guest, not only Windows ones.",
            ),
            (
                "[hook.checks] shared_memory = \"warn\"",
                "Only log a guest whose memory is not shared instead of refusing to start it.",
            ),
        ],
    );
    section(out, "SEE ALSO");
    let _ = writeln!(
        out,
        "{}",
        roff("vhostfix(1), vhostfix-config(1), vhostfix-hook(1), vhostfix-proxy(1)")
    );
}

/// One page by name: `vhostfix`, a subcommand (`proxy` or `vhostfix-proxy`),
/// or `vhostfix.toml`.
pub(crate) fn page(cmd: &clap::Command, name: &str) -> anyhow::Result<String> {
    match name {
        "vhostfix" => Ok(main_page(cmd)?),
        "vhostfix.toml" => Ok(config_page(cmd.get_version().unwrap_or_default())),
        _ => {
            let sub = name.strip_prefix("vhostfix-").unwrap_or(name);
            match PAGES.iter().find(|p| p.name == sub) {
                Some(p) => Ok(sub_page(cmd, p)?.unwrap_or_default()),
                None => {
                    let names: Vec<&str> = PAGES.iter().map(|p| p.name).collect();
                    anyhow::bail!(
                        "no man page '{name}': the pages are vhostfix, {}, vhostfix.toml",
                        names.join(", ")
                    )
                }
            }
        }
    }
}

/// Writes every page into `dir`: vhostfix.1, vhostfix-NAME.1 for each entry
/// of [`PAGES`], and vhostfix.toml.5. Returns the file names written.
pub(crate) fn write_all(cmd: &clap::Command, dir: &Path) -> anyhow::Result<Vec<String>> {
    use anyhow::Context as _;
    let mut written = Vec::new();
    let mut put = |file: String, text: String| -> anyhow::Result<()> {
        let path = dir.join(&file);
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .with_context(|| format!("{}: cannot write", path.display()))?;
        written.push(file);
        Ok(())
    };
    put("vhostfix.1".into(), main_page(cmd)?)?;
    for p in PAGES {
        let text = sub_page(cmd, p)?
            .with_context(|| format!("no subcommand '{}' for its man page", p.name))?;
        put(format!("vhostfix-{}.1", p.name), text)?;
    }
    let version = cmd.get_version().unwrap_or_default().to_string();
    put("vhostfix.toml.5".into(), config_page(&version))?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_subcommand_has_a_page_and_every_page_a_subcommand() {
        let cmd = crate::cli::Cli::command();
        let subs: Vec<&str> = cmd
            .get_subcommands()
            .map(clap::Command::get_name)
            .filter(|n| *n != "help")
            .collect();
        for s in &subs {
            assert!(
                PAGES.iter().any(|p| p.name == *s),
                "subcommand {s} has no entry in manpages::PAGES"
            );
        }
        for p in PAGES {
            assert!(
                subs.contains(&p.name),
                "PAGES names {} which is no subcommand",
                p.name
            );
        }
    }

    #[test]
    fn roff_escapes() {
        assert_eq!(roff("--config"), "\\-\\-config");
        assert_eq!(roff(".x"), "\\&.x");
        assert_eq!(roff("a\\b"), "a\\eb");
    }

    #[test]
    fn config_page_lists_every_packaged_key() {
        let page = config_page("0");
        for line in PACKAGED_CONFIG.lines() {
            if let Some((k, _)) = line.strip_prefix('#').and_then(|l| l.split_once(" = ")) {
                if k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                    assert!(page.contains(&format!("\\fB{}", roff(k))), "{k} missing");
                }
            }
        }
        for table in ["[detect]", "[limits]", "[hook]", "[hook.checks]", "[proxy]"] {
            assert!(page.contains(&format!(".SS \"{table}\"")), "{table}");
        }
    }
}
