//! What each subcommand does: read the input, ask the core, write the
//! result (stdout: data only) and the messages (stderr), return the exit code.

use super::args::{Cli, ColorWhen, GuestOs};
use super::{man as manpages, EXIT_ERROR, EXIT_OK};
use crate::config::{self, Config};
use crate::core::analysis::{analyze, Analysis, Policy};
use crate::core::detect::{Detection, Verdict};
use crate::core::escape::{field, one_line};
use crate::core::findings::{exit, findings, Severity};
use crate::core::parse::{decode, located, InputError};
use crate::core::rules::LibvirtVersion;
use crate::core::{report, rewrite};
use crate::host;
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// The configuration with command-line overrides applied, as a core policy.
fn policy(cli: &Cli) -> Result<Policy> {
    let (mut config, _) = config::load(cli.config.as_deref())?;
    config.override_with(cli.guests, cli.target_model);
    let mut p = config.policy();
    if let Some(os) = cli.guest_os {
        let (v, w) = match os {
            GuestOs::Windows => (Verdict::Windows, "windows"),
            GuestOs::Other => (Verdict::NotWindows, "other"),
        };
        p.guest_os = Some(Detection::given(v, format!("--guest-os {w}")));
    }
    p.libvirt = libvirt_version(cli)?;
    Ok(p)
}

/// `--libvirt-version`, else `$VHOSTFIX_LIBVIRT_VERSION`, else unknown.
fn libvirt_version(cli: &Cli) -> Result<Option<LibvirtVersion>> {
    host::libvirt_version(cli.libvirt_version, || None).map_err(anyhow::Error::msg)
}

/// An input: its name for messages and its bytes (bounded by the size limit).
struct Input {
    name: String,
    bytes: Vec<u8>,
}

fn read_input(file: Option<&Path>, limit: usize) -> Result<Input> {
    let name = match file {
        None => "<stdin>".to_string(),
        Some(p) if p == Path::new("-") => "<stdin>".to_string(),
        Some(p) => p.display().to_string(),
    };
    if file.is_none() && io::stdin().is_terminal() {
        // Without a file and without a pipe there is nothing to read but
        // what someone types; '-' asks for exactly that.
        anyhow::bail!(
            "no input: give a FILE, or pipe the XML into stdin ('-' reads it from the terminal)"
        );
    }
    let bytes = if name == "<stdin>" {
        read_stdin(limit).context("reading stdin")?
    } else {
        let mut f = std::fs::File::open(&name).with_context(|| format!("{name}: cannot open"))?;
        host::read_file_bounded(&mut f, limit).with_context(|| format!("{name}: cannot read"))?
    };
    Ok(Input { name, bytes })
}

/// stdin in one read of its size when it is a file (`< domain.xml`), else as it comes.
fn read_stdin(limit: usize) -> io::Result<Vec<u8>> {
    use std::os::fd::AsFd;
    let stdin = io::stdin();
    if let Ok(fd) = stdin.as_fd().try_clone_to_owned() {
        let mut file = std::fs::File::from(fd);
        if file.metadata().is_ok_and(|m| m.is_file()) {
            return host::read_file_bounded(&mut file, limit);
        }
    }
    host::read_bounded(&mut stdin.lock(), limit, false)
}

/// Reads and analyses one input; errors name the input.
fn analyze_input(file: Option<&Path>, p: &Policy) -> Result<(Input, Analysis)> {
    let input = read_input(file, p.limits.max_input_bytes)?;
    let analysis = decode(&input.bytes, &p.limits)
        .and_then(|text| analyze(text, p))
        .map_err(|e| anyhow::anyhow!(located(&input.name, &e.to_string())))?;
    Ok((input, analysis))
}

fn text_of(input: &Input) -> &str {
    // analyze_input only succeeds on valid UTF-8.
    std::str::from_utf8(&input.bytes).unwrap_or("")
}

pub(super) fn filter(cli: &Cli, file: Option<&Path>, quiet: bool) -> Result<u8> {
    let p = policy(cli)?;
    let input = read_input(file, p.limits.max_input_bytes)?;
    let analysis = decode(&input.bytes, &p.limits).and_then(|t| analyze(t, &p));
    let a = match analysis {
        Ok(a) => a,
        // As a pipeline stage (`... | vhostfix filter | virsh attach-device`),
        // XML of any other device is not ours to judge: it passes unchanged.
        Err(InputError::UnexpectedRoot { name, .. }) => {
            let mut out = io::stdout().lock();
            out.write_all(&input.bytes)?;
            out.flush()?;
            if !quiet {
                eprintln!(
                    "vhostfix: note: {}: <{}> is neither a domain nor an interface; passed through unchanged",
                    input.name,
                    one_line(&name)
                );
            }
            return Ok(EXIT_OK);
        }
        Err(e) => anyhow::bail!(located(&input.name, &e.to_string())),
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    rewrite::write_edited(&mut out, text_of(&input), &a.edits)?;
    out.flush()?;
    if !quiet {
        // One write for every message (stderr is unbuffered).
        let mut messages = String::new();
        for line in report::change_lines(&a) {
            messages += &format!("vhostfix: changed: {line}\n");
        }
        for w in &a.warnings {
            messages += &format!("vhostfix: warning: {}: {w}\n", a.subject());
        }
        io::stderr().lock().write_all(messages.as_bytes())?;
    }
    Ok(EXIT_OK)
}

pub(super) fn diff(cli: &Cli, file: Option<&Path>, color: ColorWhen) -> Result<u8> {
    let p = policy(cli)?;
    let (input, a) = analyze_input(file, &p)?;
    let findings = findings(&a, &p, &host::probe_socket);
    {
        let mut err = io::stderr().lock();
        // The fixes are the diff; what vhostfix cannot fix goes to stderr,
        // under its severity (as check's report has it).
        for f in findings.iter().filter(|f| f.severity != Severity::Fixable) {
            writeln!(
                err,
                "vhostfix: {}: {}: {}",
                f.severity,
                a.subject(),
                f.message
            )?;
        }
    }
    let status = exit::of(&findings);
    if !a.changes() {
        // Nothing to show; libvirt or the hook may still refuse it (3).
        return Ok(status);
    }
    let old = text_of(&input);
    let new = a.output(old);
    let label = if input.name == "<stdin>" {
        "stdin"
    } else {
        input.name.as_str()
    };
    let text = similar::TextDiff::from_lines(old, new.as_str())
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{label}"), &format!("b/{label}"))
        .to_string();
    let colored = match color {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => {
            io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    if colored {
        for line in text.split_inclusive('\n') {
            let code = match line.as_bytes().first() {
                Some(b'+') if !line.starts_with("+++") => "32",
                Some(b'-') if !line.starts_with("---") => "31",
                Some(b'@') => "36",
                _ => "",
            };
            if code.is_empty() {
                out.write_all(line.as_bytes())?;
            } else {
                let body = line.trim_end_matches('\n');
                write!(out, "\x1b[{code}m{body}\x1b[0m")?;
                if line.ends_with('\n') {
                    out.write_all(b"\n")?;
                }
            }
        }
    } else {
        out.write_all(text.as_bytes())?;
    }
    out.flush()?;
    Ok(status)
}

pub(super) fn check(cli: &Cli, files: &[PathBuf], json: bool) -> Result<u8> {
    let p = policy(cli)?;
    // No file: stdin (and not a terminal, see read_input).
    let files: Vec<Option<&Path>> = if files.is_empty() {
        vec![None]
    } else {
        files.iter().map(|f| Some(f.as_path())).collect()
    };
    let mut worst = EXIT_OK;
    let mut out = io::BufWriter::new(io::stdout().lock());
    for f in files {
        match analyze_input(f, &p) {
            Ok((input, a)) => {
                // The hook's verdict: anything it or libvirt would refuse.
                let findings = findings(&a, &p, &host::probe_socket);
                worst = exit::worse(worst, exit::of(&findings));
                if json {
                    writeln!(out, "{}", report::json(&input.name, &a, &findings))?;
                } else {
                    out.write_all(report::text(&input.name, &a, &findings).as_bytes())?;
                }
            }
            Err(e) => {
                worst = exit::worse(worst, EXIT_ERROR);
                if json {
                    let name = match f {
                        Some(f) if f != Path::new("-") => f.display().to_string(),
                        _ => "<stdin>".into(),
                    };
                    writeln!(out, "{}", report::json_error(&name, &format!("{e:#}")))?;
                }
                out.flush()?;
                eprintln!("vhostfix: error: {e:#}");
            }
        }
    }
    out.flush()?;
    Ok(worst)
}

pub(super) fn audit(
    cli: &Cli,
    connect: Option<&str>,
    json: bool,
    prometheus: Option<&Path>,
    next_start: bool,
) -> Result<u8> {
    // A configuration that does not load still gets its metrics written
    // (audit failed; transparent mode's state), then the error.
    let result = policy(cli).and_then(|p| {
        let (config, _) = config::load(cli.config.as_deref())?;
        let a = crate::audit::run(connect, &p, p.libvirt, &host::probe_socket)
            .map_err(|e| anyhow::anyhow!("audit: {e}"))?;
        Ok((config, a))
    });
    if let Some(path) = prometheus {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut text = crate::audit::prometheus(result.as_ref().ok().map(|(_, a)| a), now);
        text.push_str(&crate::transparent::prometheus(
            &crate::transparent::Record::current(),
        ));
        crate::prometheus::write_atomically(path, &text)
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    let (config, a) = result?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    if next_start {
        let starts = crate::audit::at_next_start(&a, &config.hook.checks);
        out.write_all(crate::audit::next_start_text(&a, &starts).as_bytes())?;
        out.flush()?;
        return Ok(crate::audit::next_start_exit(&a, &starts));
    }
    if json {
        writeln!(out, "{}", crate::audit::json(&a))?;
    } else {
        out.write_all(crate::audit::table(&a).as_bytes())?;
    }
    out.flush()?;
    for r in a.domains.iter().filter(|r| r.error.is_some()) {
        eprintln!(
            "vhostfix: error: domain {} ({} XML): {}",
            field(&r.domain),
            r.xml.as_str(),
            r.error.as_deref().unwrap_or("")
        );
    }
    Ok(a.exit_code())
}

pub(super) fn config_check(path: Option<&Path>) -> Result<u8> {
    let (_, source) = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot read", p.display()))?;
            (
                Config::from_toml(&text, &p.display().to_string())?,
                config::Source::File(p.to_path_buf()),
            )
        }
        None => config::load(None)?,
    };
    eprintln!("vhostfix: configuration ok: {source}");
    Ok(EXIT_OK)
}

pub(super) fn config_show(cli: &Cli) -> Result<u8> {
    let (mut config, source) = config::load(cli.config.as_deref())?;
    config.override_with(cli.guests, cli.target_model);
    let mut out = io::stdout().lock();
    writeln!(out, "# effective vhostfix configuration, from {source}")?;
    out.write_all(config.to_toml().as_bytes())?;
    Ok(EXIT_OK)
}

/// `vhostfix proxy --stats`: the running proxy's counters, and whether
/// transparent mode still has it in front of libvirt.
pub(super) fn proxy_stats(
    cli: &Cli,
    format: &str,
    listen: Option<&Path>,
    admin_socket: Option<&Path>,
) -> Result<u8> {
    let (config, _) = config::load(cli.config.as_deref())?;
    let path = crate::proxy::admin::socket_path(admin_socket, listen, &config.proxy);
    // As transparent-mode recorded it.
    let record = crate::transparent::Record::current();
    let mut pairs = match crate::proxy::admin::fetch(&path) {
        Ok(p) => p,
        Err(e) => {
            return Err(match record.note() {
                Some(n) => e.context(n),
                None => e,
            })
        }
    };
    pairs.push(("transparent".into(), record.mode.as_str().into()));
    print!("{}", crate::proxy::admin::render(&pairs, format));
    if format == "prometheus" {
        print!("{}", crate::transparent::prometheus(&record));
    }
    Ok(EXIT_OK)
}

/// `vhostfix proxy`: runs until SIGTERM.
pub(super) fn proxy(opts: crate::proxy::Options) -> Result<u8> {
    if let Some(note) = crate::logging::init() {
        eprintln!("vhostfix: note: {note}");
    }
    crate::proxy::run(&opts)?;
    Ok(EXIT_OK)
}

pub(super) fn man(page: Option<&str>, dir: Option<&Path>) -> Result<u8> {
    let cmd = Cli::command();
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
        manpages::write_all(&cmd, dir)?;
        return Ok(EXIT_OK);
    }
    let text = manpages::page(&cmd, page.unwrap_or("vhostfix"))?;
    if io::stdout().is_terminal() {
        // As `man vhostfix` would show it, where man(1) is installed.
        match show_with_man(&text) {
            Ok(()) => return Ok(EXIT_OK),
            Err(e) => eprintln!("vhostfix: note: cannot run man -l - ({e}); printing roff"),
        }
    }
    io::stdout().lock().write_all(text.as_bytes())?;
    Ok(EXIT_OK)
}

/// Renders roff with `man -l -` (its pager, on this terminal).
fn show_with_man(text: &str) -> io::Result<()> {
    let mut child = std::process::Command::new("man")
        .args(["-l", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes())?;
    }
    let status = child.wait()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("man exited with {status}")))
    }
}
