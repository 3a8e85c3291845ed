//! The command line: `filter`, `diff`, `check`, `audit`, `config`, `hook`,
//! `proxy`, and the generated `completions` and `man` pages (from these same
//! definitions). `args` defines them, `commands` runs them, `man` renders the
//! pages. Nothing else in the crate imports this module.
//!
//! Exit codes: 0 success / nothing to change / compliant, 1 vhostfix would
//! change something (`diff`, `check`, `audit`), 3 vhostfix cannot make it
//! work (refused, or a dead NIC), 2 error (`core::findings::exit`). stdout
//! carries only data.

mod args;
mod commands;
mod man;

use crate::hook::HookCall;
use anyhow::Result;
use args::{Cli, Command, ConfigCommand};
use clap::{CommandFactory, FromArgMatches};
use std::io;
use std::path::Path;

use crate::core::findings::exit;

/// Exit status: success, compliant, nothing would change.
pub(crate) const EXIT_OK: u8 = exit::OK;
/// Exit status: bad input, bad configuration, or an I/O failure.
pub(crate) const EXIT_ERROR: u8 = exit::ERROR;

/// Runs the hook for `OBJECT` and the words after it, exactly as libvirt
/// passed them (no option parsing: domain names may look like options); the
/// configuration from `config`, else $VHOSTFIX_CONFIG or the default file.
/// Returns the exit status for libvirt.
pub(crate) fn hook_main(object: &str, words: &[std::ffi::OsString], config: Option<&Path>) -> u8 {
    if let Some(note) = crate::logging::init_hook() {
        eprintln!("vhostfix: note: {note}");
    }
    let words: Vec<String> = words
        .iter()
        .map(|w| w.to_string_lossy().into_owned())
        .collect();
    let call = HookCall::from_words(object, &words);
    let code = crate::hook::run_words(call, &mut io::stdin().lock(), config);
    u8::try_from(code).unwrap_or(EXIT_ERROR)
}

/// Parses the command line and runs it; returns the exit status.
pub(crate) fn main(args: Vec<std::ffi::OsString>) -> u8 {
    let cli = match parse_args(args) {
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

/// `Cli::try_parse_from`, without freeing clap's definitions of every
/// command and option just before the process exits (a tenth of a small
/// `filter`'s instructions, measured with callgrind).
/// Help is rendered from `args::for_help()` (the global options listed
/// once), which costs more to build: only when help is asked for.
fn parse_args(args: Vec<std::ffi::OsString>) -> Result<Cli, clap::Error> {
    let mut cmd = Cli::command();
    let parsed = match cmd.try_get_matches_from_mut(args.iter()) {
        Ok(mut m) => Cli::from_arg_matches_mut(&mut m).map_err(|e| e.format(&mut cmd)),
        Err(e) if is_help(&e) => args::for_help()
            .try_get_matches_from(args)
            .and_then(|m| Cli::from_arg_matches(&m)),
        Err(e) => Err(e),
    };
    std::mem::forget(cmd);
    parsed
}

fn is_help(e: &clap::Error) -> bool {
    use clap::error::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    )
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(|io| io.kind() == io::ErrorKind::BrokenPipe)
}

fn run(cli: Cli) -> Result<u8> {
    match &cli.command {
        Command::Filter { file, quiet } => commands::filter(&cli, file.as_deref(), *quiet),
        Command::Diff { file, color } => commands::diff(&cli, file.as_deref(), *color),
        Command::Check { files, json } => commands::check(&cli, files, *json),
        Command::Audit {
            connect,
            json,
            prometheus,
            next_start,
        } => commands::audit(
            &cli,
            connect.as_deref(),
            *json,
            prometheus.as_deref(),
            *next_start,
        ),
        Command::Config(ConfigCommand::Check { path }) => {
            commands::config_check(path.as_deref().or(cli.config.as_deref()))
        }
        Command::Config(ConfigCommand::Show) => commands::config_show(&cli),
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
            listen,
            admin_socket,
            ..
        } => commands::proxy_stats(&cli, format, listen.as_deref(), admin_socket.as_deref()),
        Command::Proxy {
            listen,
            upstream,
            listen_ro,
            upstream_ro,
            admin_socket,
            ..
        } => commands::proxy(crate::proxy::Options {
            config: cli.config.clone(),
            listen: listen.clone(),
            upstream: upstream.clone(),
            listen_ro: listen_ro.clone(),
            upstream_ro: upstream_ro.clone(),
            admin_socket: admin_socket.clone(),
            guests: cli.guests,
            target_model: cli.target_model,
        }),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "vhostfix", &mut io::stdout().lock());
            Ok(EXIT_OK)
        }
        Command::Man { page, dir } => commands::man(page.as_deref(), dir.as_deref()),
    }
}
