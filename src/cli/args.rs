//! The command line's definitions (clap): the global options, the
//! subcommands and their arguments. Completions and man pages are generated
//! from these same definitions.

use crate::core::rules::{Guests, LibvirtVersion, TargetModel};
use clap::builder::PossibleValue;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "vhostfix",
    version,
    about = "Switch the vhost-user NICs of Windows guests to virtio in libvirt domain XML",
    long_about = "vhostfix finds <interface type='vhostuser'> NICs whose model libvirt will refuse \
(e1000, e1000e, rtl8139, or none) in Windows guests and switches them to virtio with a minimal \
edit, reports what it changed and why, and acts as a libvirt qemu hook that refuses early what \
cannot work.",
    after_help = "Exit status (diff, check, audit): 0 nothing to change, 1 vhostfix would change something, 3 vhostfix cannot make it work (libvirt or the hook will refuse it, or its vhost-user NIC would stay dead), 2 error.\n\
Configuration: --config PATH, else $VHOSTFIX_CONFIG, else /etc/vhostfix/vhostfix.toml.\n\
Logging (hook, proxy): VHOSTFIX_LOG=[auto|syslog|stderr][:LEVEL]."
)]
pub(crate) struct Cli {
    /// Configuration file (default: $VHOSTFIX_CONFIG or /etc/vhostfix/vhostfix.toml).
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,
    /// Which guests get their vhost-user NICs fixed (overrides the configuration).
    #[arg(long, global = true, value_enum)]
    pub(crate) guests: Option<Guests>,
    /// The model written into a violating NIC (overrides the configuration).
    #[arg(long, global = true, value_enum)]
    pub(crate) target_model: Option<TargetModel>,
    /// Take the guest OS as given instead of detecting it (useful for device XML).
    #[arg(long, global = true, value_enum)]
    pub(crate) guest_os: Option<GuestOs>,
    /// Apply the rules of this libvirt release (e.g. 9.0.0), where releases
    /// differ; default: unknown (advice that holds on every release), for
    /// `audit` the release of the daemon it talks to.
    /// $VHOSTFIX_LIBVIRT_VERSION is read when the flag is absent.
    #[arg(long, global = true, value_name = "X.Y.Z")]
    pub(crate) libvirt_version: Option<LibvirtVersion>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum GuestOs {
    Windows,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Read a domain or interface XML, write the corrected XML to stdout.
    Filter {
        /// Input file; stdin when absent or '-'.
        file: Option<PathBuf>,
        /// Do not print the per-change summary and warnings on stderr.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show what `filter` would change, as a unified diff (exit 1 when something
    /// would, 3 when libvirt or the hook will refuse it even so).
    Diff {
        /// Input file; stdin when absent or '-'.
        file: Option<PathBuf>,
        /// Colour the diff: auto (a terminal and no NO_COLOR), always, never.
        #[arg(long, value_enum, default_value_t = ColorWhen::Auto)]
        color: ColorWhen,
    },
    /// Report the guest OS verdict, its evidence and every vhost-user NIC
    /// (exit 0 compliant, 1 vhostfix would fix it, 3 refused even so, 2 error).
    Check {
        /// Input files; stdin when none or '-'.
        files: Vec<PathBuf>,
        /// One JSON object per file (one per line), for automation.
        #[arg(long)]
        json: bool,
    },
    /// List every domain libvirt knows (defined and running; live and inactive XML)
    /// with the verdict of `check` and the hook's admission checks
    /// (exit 0 all compliant, 1 something vhostfix would fix, 3 something refused
    /// even so, 2 error).
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
        /// Instead of the table: what the hook will do when each defined guest
        /// starts next (refuse, or let it start with a warning), with the
        /// [hook.checks] setting that changes it (exit 3 when it will refuse one).
        #[arg(long, conflicts_with = "json")]
        next_start: bool,
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
        /// The root-only socket where the proxy serves its counters (default:
        /// proxy.admin_socket; when that is the default and --listen is given,
        /// admin-sock beside the --listen socket). Give the same to --stats.
        #[arg(long, value_name = "PATH")]
        admin_socket: Option<PathBuf>,
        /// Print the counters of the running proxy (from its admin socket, see
        /// --admin-socket and --listen; root only) and exit.
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
    /// Show a man page (rendered by man(1) on a terminal, roff otherwise, e.g.
    /// for `| man -l -`), or write every page into DIR: vhostfix.1,
    /// vhostfix-SUBCOMMAND.1 and vhostfix.toml.5 (the configuration file).
    Man {
        /// The page: vhostfix (default), a subcommand (proxy or vhostfix-proxy),
        /// or vhostfix.toml.
        #[arg(value_name = "PAGE", conflicts_with = "dir")]
        page: Option<String>,
        /// Directory to write every page into (created if needed).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
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

/// The global options, which every subcommand accepts.
const GLOBALS: [&str; 5] = [
    "config",
    "guests",
    "target_model",
    "guest_os",
    "libvirt_version",
];

/// The command line as `--help` shows it: the global options listed once,
/// in `vhostfix --help`, and named in one line of each subcommand's help
/// instead of repeated in full. (Completions and man pages use the plain
/// definitions: a hidden option would not be completed.)
pub(crate) fn for_help() -> clap::Command {
    use clap::CommandFactory;
    let plain = Cli::command();
    let mut globals = String::from("Global options (before or after the subcommand):\n");
    for arg in plain
        .get_arguments()
        .filter(|a| GLOBALS.contains(&a.get_id().as_str()))
    {
        let value = arg
            .get_value_names()
            .and_then(|v| v.first())
            .map_or_else(|| arg.get_id().as_str().to_uppercase(), |v| v.to_string());
        let long = arg.get_long().unwrap_or_default();
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .map(|v| v.get_name().to_string())
            .collect();
        let values = if values.is_empty() {
            String::new()
        } else {
            format!(" [{}]", values.join(", "))
        };
        globals.push_str(&format!("  --{long} <{value}>\n          {help}{values}\n"));
    }
    let mut cmd = plain.clone();
    for g in GLOBALS {
        cmd = cmd.mut_arg(g, |a| a.hide(true));
    }
    let after = match plain.get_after_help() {
        Some(h) => format!("{globals}\n{h}"),
        None => globals,
    };
    let note = "Global options, as in vhostfix --help: --config PATH, --guests, --target-model, --guest-os, --libvirt-version X.Y.Z.";
    cmd = cmd.after_help(after.clone()).after_long_help(after);
    let names: Vec<String> = plain
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(&name, |sc| {
            let after = match sc.get_after_help() {
                Some(h) => format!("{h}\n\n{note}"),
                None => note.to_string(),
            };
            sc.after_help(after)
        });
    }
    cmd
}

// The core's enums as clap values (the core itself knows nothing of clap).
impl ValueEnum for Guests {
    fn value_variants<'a>() -> &'a [Self] {
        &[Guests::Windows, Guests::Any]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            Guests::Windows => {
                PossibleValue::new("windows").help("Only guests detected as Windows")
            }
            Guests::Any => PossibleValue::new("any").help("Every guest"),
        })
    }
}

impl ValueEnum for TargetModel {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            TargetModel::Virtio,
            TargetModel::VirtioTransitional,
            TargetModel::VirtioNonTransitional,
        ]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.as_str()))
    }
}
