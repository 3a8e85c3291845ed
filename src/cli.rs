//! The command line: `filter`, `diff`, `check`, `config`, `hook`, and the
//! generated `completions` and `man` pages (from these same definitions).
//!
//! Exit codes (like grep's): 0 success / nothing to change / compliant,
//! 1 something would change (`diff`, `check`), 2 error. stdout carries only data.

use crate::config::{self, Config};
use crate::detect::{Detection, Verdict};
use crate::hook::{self, HookCall};
use crate::rules::{Guests, LibvirtVersion, TargetModel};
use crate::verdict::{self, Severity};
use crate::{report, Policy};
use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

/// Exit status: success, compliant, nothing would change.
pub const EXIT_OK: u8 = 0;
/// Exit status: something would change / is not compliant.
pub const EXIT_CHANGE: u8 = 1;
/// Exit status: bad input, bad configuration, or an I/O failure.
pub const EXIT_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "vhostfix",
    version,
    about = "Switch the vhost-user NICs of Windows guests to virtio in libvirt domain XML",
    long_about = "vhostfix finds <interface type='vhostuser'> NICs whose model libvirt will refuse \
(e1000, e1000e, rtl8139, or none) in Windows guests and switches them to virtio with a minimal \
edit, reports what it changed and why, and acts as a libvirt qemu hook that refuses early what \
cannot work.",
    after_help = "Exit status: 0 ok / nothing to change, 1 something would change or would be refused (diff, check, audit), 2 error.\n\
Configuration: --config PATH, else $VHOSTFIX_CONFIG, else /etc/vhostfix/vhostfix.toml.\n\
Logging (hook, proxy): VHOSTFIX_LOG=[auto|syslog|stderr][:LEVEL]."
)]
pub struct Cli {
    /// Configuration file (default: $VHOSTFIX_CONFIG or /etc/vhostfix/vhostfix.toml).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Which guests get their vhost-user NICs fixed (overrides the configuration).
    #[arg(long, global = true, value_enum)]
    pub guests: Option<Guests>,
    /// The model written into a violating NIC (overrides the configuration).
    #[arg(long, global = true, value_enum)]
    pub target_model: Option<TargetModel>,
    /// Take the guest OS as given instead of detecting it (useful for device XML).
    #[arg(long, global = true, value_enum)]
    pub guest_os: Option<GuestOs>,
    /// Apply the rules of this libvirt release (e.g. 9.0.0), where releases
    /// differ; default: unknown (advice that holds on every release), for
    /// `audit` the release of the daemon it talks to.
    #[arg(
        long,
        global = true,
        value_name = "X.Y.Z",
        env = "VHOSTFIX_LIBVIRT_VERSION"
    )]
    pub libvirt_version: Option<LibvirtVersion>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GuestOs {
    Windows,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read a domain or interface XML, write the corrected XML to stdout.
    Filter {
        /// Input file; stdin when absent or '-'.
        file: Option<PathBuf>,
        /// Do not print the per-change summary and warnings on stderr.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show what `filter` would change, as a unified diff (exit 1 when something would).
    Diff {
        /// Input file; stdin when absent or '-'.
        file: Option<PathBuf>,
        /// Colour the diff: auto (a terminal and no NO_COLOR), always, never.
        #[arg(long, value_enum, default_value_t = ColorWhen::Auto)]
        color: ColorWhen,
    },
    /// Report the guest OS verdict, its evidence and every vhost-user NIC
    /// (exit 0 compliant, 1 not compliant, 2 error).
    Check {
        /// Input files; stdin when none or '-'.
        files: Vec<PathBuf>,
        /// One JSON object per file (one per line), for automation.
        #[arg(long)]
        json: bool,
    },
    /// List every domain libvirt knows (defined and running; live and inactive XML)
    /// with the verdict of `check` and the hook's admission checks
    /// (exit 0 all compliant, 1 something fixable or refused, 2 error).
    #[command(
        after_help = "Connects read-only to libvirt's socket: libvirtd's (/run/libvirt/libvirt-sock), \
virtqemud's (/run/libvirt/virtqemud-sock) or the vhostfix proxy's. A running domain gets two rows: \
its live XML and its inactive XML (the next boot)."
    )]
    Audit {
        /// qemu:///system (optionally ?socket=PATH) or a socket path (default:
        /// virtqemud-sock when it exists, else libvirt-sock, in /run/libvirt).
        #[arg(long, value_name = "URI|SOCKET")]
        connect: Option<String>,
        /// One JSON document on stdout instead of the table.
        #[arg(long)]
        json: bool,
        /// Also write the results in Prometheus' text format to FILE, atomically
        /// (for node_exporter's textfile collector, e.g.
        /// /var/lib/prometheus/node-exporter/vhostfix.prom).
        #[arg(long, value_name = "FILE")]
        prometheus: Option<PathBuf>,
    },
    /// Validate or show the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run as a libvirt hook: `vhostfix [OPTIONS] hook qemu NAME OP SUBOP [EXTRA]`,
    /// domain XML on stdin (exit 1 refuses the operation).
    #[command(after_help = HOOK_AFTER_HELP)]
    Hook {
        /// The words libvirt passes, in its order: OBJECT (only `qemu` is
        /// handled), NAME (the domain), OP and SUBOP (the phase, e.g. `prepare
        /// begin`), EXTRA (`-` when absent). Taken as they are, never as
        /// options: a domain may be named `--help` or `--`. Options go before
        /// OBJECT.
        #[arg(
            value_name = "OBJECT NAME OP SUBOP [EXTRA]",
            required = true,
            num_args = 1..,
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        words: Vec<std::ffi::OsString>,
    },
    /// Run the libvirt API admission proxy: relay libvirt clients from --listen to
    /// --upstream and correct domain and device XML on the way (runs until SIGTERM).
    Proxy {
        /// Socket to listen on (default: proxy.listen, /run/vhostfix/libvirt-sock).
        #[arg(long, value_name = "PATH")]
        listen: Option<PathBuf>,
        /// libvirt's socket (default: proxy.upstream, else /run/libvirt/virtqemud-sock
        /// when it exists, else /run/libvirt/libvirt-sock).
        #[arg(long, value_name = "PATH")]
        upstream: Option<PathBuf>,
        /// Also listen on this read-only socket (default: proxy.listen_ro).
        #[arg(long, value_name = "PATH")]
        listen_ro: Option<PathBuf>,
        /// libvirt's read-only socket (default: proxy.upstream_ro, else UPSTREAM-ro).
        #[arg(long, value_name = "PATH")]
        upstream_ro: Option<PathBuf>,
        /// Print the counters of the running proxy (read from proxy.admin_socket,
        /// root only) and exit.
        #[arg(long)]
        stats: bool,
        /// Format of --stats: "text" (name value lines), "json" or "prometheus".
        #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json", "prometheus"], requires = "stats")]
        format: String,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell to print the script for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page vhostfix(1), or write every page into DIR: vhostfix.1,
    /// vhostfix-SUBCOMMAND.1 and vhostfix.toml.5 (the configuration file).
    Man {
        /// Directory to write the pages into (created if needed).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file (default: the one that applies).
    Check { path: Option<PathBuf> },
    /// Print the effective configuration, defaults included, as TOML.
    Show,
}

const HOOK_AFTER_HELP: &str = "libvirt runs /etc/libvirt/hooks/qemu and every executable in \
/etc/libvirt/hooks/qemu.d/ as `NAME OP SUBOP EXTRA`; vhostfix started under either name \
(a symlink) acts as this subcommand with OBJECT qemu and takes those four words as they are. \
It checks `prepare begin` (admission), `migrate begin` and `restore begin` (the NIC model \
cannot change there) and never writes to stdout, which libvirt would take as new domain \
XML. Exit status: 0 allow, 1 refuse (the reason on stderr, which libvirt shows to the \
user). An internal error (unreadable XML or configuration, wrong arguments) follows \
hook.on_error: \"allow\" (the default) logs it and exits 0, \"deny\" exits 1.";

/// Runs the hook for `OBJECT` and the words after it, exactly as libvirt
/// passed them (no option parsing: domain names may look like options); the
/// configuration from `config`, else $VHOSTFIX_CONFIG or the default file.
/// Returns the exit status for libvirt.
pub fn hook_main(object: &str, words: &[std::ffi::OsString], config: Option<&Path>) -> u8 {
    if let Some(note) = crate::logging::init_hook() {
        eprintln!("vhostfix: note: {note}");
    }
    let words: Vec<String> = words
        .iter()
        .map(|w| w.to_string_lossy().into_owned())
        .collect();
    let call = HookCall::from_words(object, &words);
    let code = hook::run_words(call, &mut io::stdin().lock(), config);
    u8::try_from(code).unwrap_or(EXIT_ERROR)
}

/// Parses the command line and runs it; returns the exit status.
pub fn main(args: Vec<std::ffi::OsString>) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ERROR } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => EXIT_OK,
        Err(e) => {
            eprintln!("vhostfix: error: {e:#}");
            EXIT_ERROR
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(|io| io.kind() == io::ErrorKind::BrokenPipe)
}

fn run(cli: Cli) -> Result<u8> {
    match &cli.command {
        Command::Filter { file, quiet } => filter(&cli, file.as_deref(), *quiet),
        Command::Diff { file, color } => diff(&cli, file.as_deref(), *color),
        Command::Check { files, json } => check(&cli, files, *json),
        Command::Audit {
            connect,
            json,
            prometheus,
        } => audit(&cli, connect.as_deref(), *json, prometheus.as_deref()),
        Command::Config(ConfigCommand::Check { path }) => {
            config_check(path.as_deref().or(cli.config.as_deref()))
        }
        Command::Config(ConfigCommand::Show) => config_show(&cli),
        Command::Hook { words } => {
            let (object, rest) = words
                .split_first()
                .map_or((String::new(), &[][..]), |(o, r)| {
                    (o.to_string_lossy().into_owned(), r)
                });
            Ok(hook_main(&object, rest, cli.config.as_deref()))
        }
        Command::Proxy {
            stats: true,
            format,
            ..
        } => {
            let (config, _) = crate::config::load(cli.config.as_deref())?;
            // Whether transparent mode still has the proxy in front of
            // libvirt, as transparent-mode recorded it.
            let record = crate::transparent::Record::current();
            let mut pairs = match crate::proxy::admin::fetch(&config.proxy.admin_socket) {
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
        Command::Proxy {
            listen,
            upstream,
            listen_ro,
            upstream_ro,
            ..
        } => {
            if let Some(note) = crate::logging::init() {
                eprintln!("vhostfix: note: {note}");
            }
            let opts = crate::proxy::Options {
                config: cli.config.clone(),
                listen: listen.clone(),
                upstream: upstream.clone(),
                listen_ro: listen_ro.clone(),
                upstream_ro: upstream_ro.clone(),
                guests: cli.guests,
                target_model: cli.target_model,
            };
            crate::proxy::run(&opts)?;
            Ok(EXIT_OK)
        }
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "vhostfix", &mut io::stdout().lock());
            Ok(EXIT_OK)
        }
        Command::Man { dir } => man(dir.as_deref()),
    }
}

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
    p.libvirt = cli.libvirt_version;
    Ok(p)
}

/// An input: its name for messages and its bytes (bounded by the size limit).
struct Input {
    name: String,
    bytes: Vec<u8>,
}

fn read_input(file: Option<&Path>, limit: usize) -> Result<Input> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut bytes = Vec::new();
    let name = match file {
        None => "<stdin>".to_string(),
        Some(p) if p == Path::new("-") => "<stdin>".to_string(),
        Some(p) => p.display().to_string(),
    };
    if name == "<stdin>" {
        io::stdin()
            .lock()
            .take(cap)
            .read_to_end(&mut bytes)
            .context("reading stdin")?;
    } else {
        let f = std::fs::File::open(&name).with_context(|| format!("{name}: cannot open"))?;
        // One allocation of the right size instead of doubling up to it.
        if let Ok(m) = f.metadata() {
            bytes.reserve_exact(usize::try_from(m.len().min(cap)).unwrap_or(0) + 1);
        }
        f.take(cap)
            .read_to_end(&mut bytes)
            .with_context(|| format!("{name}: cannot read"))?;
    }
    Ok(Input { name, bytes })
}

/// Reads and analyses one input; errors name the input.
fn analyze_input(file: Option<&Path>, p: &Policy) -> Result<(Input, crate::Analysis)> {
    let input = read_input(file, p.limits.max_input_bytes)?;
    let analysis = crate::parse::decode(&input.bytes, &p.limits)
        .and_then(|text| crate::analyze(text, p))
        .map_err(|e| anyhow::anyhow!(crate::parse::located(&input.name, &e.to_string())))?;
    Ok((input, analysis))
}

fn text_of(input: &Input) -> &str {
    // analyze_input only succeeds on valid UTF-8.
    std::str::from_utf8(&input.bytes).unwrap_or("")
}

fn filter(cli: &Cli, file: Option<&Path>, quiet: bool) -> Result<u8> {
    let p = policy(cli)?;
    let input = read_input(file, p.limits.max_input_bytes)?;
    let analysis =
        crate::parse::decode(&input.bytes, &p.limits).and_then(|t| crate::analyze(t, &p));
    let a = match analysis {
        Ok(a) => a,
        // As a pipeline stage (`... | vhostfix filter | virsh attach-device`),
        // XML of any other device is not ours to judge: it passes unchanged.
        Err(crate::parse::InputError::UnexpectedRoot { name, .. }) => {
            let mut out = io::stdout().lock();
            out.write_all(&input.bytes)?;
            out.flush()?;
            if !quiet {
                eprintln!(
                    "vhostfix: note: {}: <{}> is neither a domain nor an interface; passed through unchanged",
                    input.name,
                    crate::logging::one_line(&name)
                );
            }
            return Ok(EXIT_OK);
        }
        Err(e) => anyhow::bail!(crate::parse::located(&input.name, &e.to_string())),
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    crate::rewrite::write_edited(&mut out, text_of(&input), &a.edits)?;
    out.flush()?;
    if !quiet {
        let mut err = io::stderr().lock();
        for line in report::change_lines(&a) {
            writeln!(err, "vhostfix: changed: {line}")?;
        }
        for w in &a.warnings {
            writeln!(err, "vhostfix: warning: {}: {w}", a.subject())?;
        }
    }
    Ok(EXIT_OK)
}

fn diff(cli: &Cli, file: Option<&Path>, color: ColorWhen) -> Result<u8> {
    let p = policy(cli)?;
    let (input, a) = analyze_input(file, &p)?;
    let findings = verdict::findings(&a, &p, &verdict::probe_socket);
    {
        let mut err = io::stderr().lock();
        for f in findings.iter().filter(|f| f.severity != Severity::Fixable) {
            writeln!(err, "vhostfix: warning: {}: {}", a.subject(), f.message)?;
        }
    }
    if !a.changes() {
        // Nothing to show, but libvirt or the hook will refuse it.
        return Ok(if verdict::not_compliant(&findings) {
            EXIT_CHANGE
        } else {
            EXIT_OK
        });
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
    Ok(EXIT_CHANGE)
}

fn check(cli: &Cli, files: &[PathBuf], json: bool) -> Result<u8> {
    let p = policy(cli)?;
    let stdin_only = [PathBuf::from("-")];
    let files = if files.is_empty() {
        &stdin_only[..]
    } else {
        files
    };
    let mut worst = EXIT_OK;
    let mut out = io::BufWriter::new(io::stdout().lock());
    for f in files {
        match analyze_input(Some(f), &p) {
            Ok((input, a)) => {
                // The hook's verdict: anything it or libvirt would refuse.
                let findings = verdict::findings(&a, &p, &verdict::probe_socket);
                if verdict::not_compliant(&findings) {
                    worst = worst.max(EXIT_CHANGE);
                }
                if json {
                    writeln!(out, "{}", report::json(&input.name, &a, &findings))?;
                } else {
                    out.write_all(report::text(&input.name, &a, &findings).as_bytes())?;
                }
            }
            Err(e) => {
                worst = EXIT_ERROR;
                if json {
                    let name = if f == Path::new("-") {
                        "<stdin>".into()
                    } else {
                        f.display().to_string()
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

fn audit(cli: &Cli, connect: Option<&str>, json: bool, prometheus: Option<&Path>) -> Result<u8> {
    // A configuration that does not load still gets its metrics written
    // (audit failed; transparent mode's state), then the error.
    let result = policy(cli).and_then(|p| {
        crate::audit::run(connect, &p, cli.libvirt_version, &verdict::probe_socket)
            .map_err(|e| anyhow::anyhow!("audit: {e}"))
    });
    if let Some(path) = prometheus {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut text = crate::audit::prometheus(result.as_ref().ok(), now);
        text.push_str(&crate::transparent::prometheus(
            &crate::transparent::Record::current(),
        ));
        crate::audit::write_atomically(path, &text)
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    let a = result?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    if json {
        writeln!(out, "{}", crate::audit::json(&a))?;
    } else {
        out.write_all(crate::audit::table(&a).as_bytes())?;
    }
    out.flush()?;
    for r in a.domains.iter().filter(|r| r.error.is_some()) {
        eprintln!(
            "vhostfix: error: domain '{}' ({} XML): {}",
            r.domain,
            r.xml.as_str(),
            r.error.as_deref().unwrap_or("")
        );
    }
    Ok(a.exit_code())
}

fn config_check(path: Option<&Path>) -> Result<u8> {
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

fn config_show(cli: &Cli) -> Result<u8> {
    let (mut config, source) = config::load(cli.config.as_deref())?;
    config.override_with(cli.guests, cli.target_model);
    let mut out = io::stdout().lock();
    writeln!(out, "# effective vhostfix configuration, from {source}")?;
    out.write_all(config.to_toml().as_bytes())?;
    Ok(EXIT_OK)
}

fn man(dir: Option<&Path>) -> Result<u8> {
    let cmd = Cli::command();
    let Some(dir) = dir else {
        io::stdout()
            .lock()
            .write_all(crate::manpages::main_page(&cmd)?.as_bytes())?;
        return Ok(EXIT_OK);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    crate::manpages::write_all(&cmd, dir)?;
    Ok(EXIT_OK)
}
