//! The configuration file (`/etc/vhostfix/vhostfix.toml`) and how it is found.
//!
//! Lookup: `--config PATH`, else `$VHOSTFIX_CONFIG`, else the default path. A
//! missing default file means built-in defaults; a missing file that was named
//! explicitly is an error. Unknown keys and bad values are errors naming the file,
//! the line and the key.

use crate::core::analysis::Policy;
use crate::core::detect::Signals;
use crate::core::findings::Kind;
use crate::core::parse::{located, InputLimits, Pos};
use crate::core::rules::{Guests, TargetModel};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the packaged configuration lives.
pub(crate) const DEFAULT_PATH: &str = "/etc/vhostfix/vhostfix.toml";
/// Environment variable naming another configuration file.
pub(crate) const ENV_VAR: &str = "VHOSTFIX_CONFIG";

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    /// Which guests get their vhost-user NICs fixed: "windows" or "any".
    pub(crate) guests: Guests,
    /// The model written into a violating NIC.
    pub(crate) target_model: TargetModel,
    /// Detection signals, each on or off.
    pub(crate) detect: Signals,
    pub(crate) limits: LimitsConfig,
    pub(crate) hook: HookConfig,
    pub(crate) proxy: ProxyConfig,
}

/// Input bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LimitsConfig {
    pub(crate) max_input_bytes: u64,
    pub(crate) max_depth: u32,
    pub(crate) max_nodes: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = InputLimits::default();
        LimitsConfig {
            max_input_bytes: l.max_input_bytes as u64,
            max_depth: l.max_depth,
            max_nodes: l.max_nodes,
        }
    }
}

/// What the libvirt hook does.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct HookConfig {
    /// On an internal error or unreadable XML: "allow" (log and let the VM start) or "deny".
    pub(crate) on_error: OnError,
    pub(crate) checks: HookChecks,
}

/// One action per admission check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct HookChecks {
    /// A vhost-user NIC with a non-virtio model in an in-scope guest.
    pub(crate) model: CheckAction,
    /// A vhost-user NIC while guest memory is not shared. "warn" by default:
    /// before libvirt 11.2 such a guest starts (its vhost-user NIC dead, its
    /// other NICs working), and installing vhostfix must not stop a guest
    /// that starts today; libvirt 11.2 and later refuse it themselves.
    pub(crate) shared_memory: CheckAction,
    /// A client-mode vhost-user NIC whose socket does not exist and no reconnect.
    pub(crate) client_socket: CheckAction,
}

impl Default for HookChecks {
    fn default() -> Self {
        HookChecks {
            model: CheckAction::Deny,
            shared_memory: CheckAction::Warn,
            client_socket: CheckAction::Deny,
        }
    }
}

impl HookChecks {
    /// What the hook does at `prepare begin` about a finding of `kind`, and
    /// the `[hook.checks]` key that says so; `None` for findings the hook
    /// does not act on (libvirt itself refuses them, or they work today).
    pub(crate) fn action_for(&self, kind: Kind) -> Option<(CheckAction, &'static str)> {
        let (action, key) = match kind {
            Kind::Model => (self.model, "model"),
            Kind::SharedMemory => (self.shared_memory, "shared_memory"),
            Kind::ClientSocket => (self.client_socket, "client_socket"),
            Kind::ModelOutOfScope | Kind::MemfdDefault => return None,
        };
        (action != CheckAction::Off).then_some((action, key))
    }
}

/// What the hook does when an admission check finds something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CheckAction {
    Deny,
    Warn,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OnError {
    #[default]
    Allow,
    Deny,
}

/// What the API proxy (`vhostfix proxy`) does. Socket settings apply at start;
/// SIGHUP reloads everything else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ProxyConfig {
    /// Read-write socket clients connect to (`--listen` overrides).
    pub(crate) listen: PathBuf,
    /// libvirt's read-write socket (`--upstream` overrides). Empty: `virtqemud-sock`
    /// when it exists, else `libvirt-sock`, both in /run/libvirt.
    pub(crate) upstream: PathBuf,
    /// Optional read-only socket; its clients go only to `upstream_ro`.
    pub(crate) listen_ro: PathBuf,
    /// libvirt's read-only socket. Empty: `upstream` with `-ro` appended.
    pub(crate) upstream_ro: PathBuf,
    /// Mode of the read-write socket, octal.
    pub(crate) socket_mode: String,
    /// Mode of the read-only socket, octal.
    pub(crate) socket_mode_ro: String,
    /// Group owning both sockets.
    pub(crate) socket_group: String,
    /// Groups whose members are admitted besides root (e.g. "libvirt").
    pub(crate) allowed_groups: Vec<String>,
    /// A domain or device whose vhost-user NIC needs a virtio model: "fix" rewrites
    /// the XML, "deny" refuses the call, "off" forwards it unchanged.
    pub(crate) action: ProxyAction,
    /// Calls that cannot change a guest's NIC model (restore, save image define)
    /// carrying such a NIC: "forward" unchanged (libvirt decides) or "deny".
    pub(crate) fixed_abi_calls: FixedAbiAction,
    /// Unreadable XML or a failed domain lookup: "allow" forwards the call unchanged.
    pub(crate) on_error: OnError,
    /// SASL user for the proxy's own lookups, where libvirt asks for SASL on
    /// the read-only socket too (empty: none; the read-only socket usually
    /// needs no authentication).
    pub(crate) lookup_sasl_username: String,
    /// File whose first line is that user's password.
    pub(crate) lookup_sasl_password_file: PathBuf,
    /// Seconds SIGTERM waits for calls in flight before closing connections.
    pub(crate) drain_seconds: u32,
    /// What transparent mode does when the proxy fails for good (systemd gave
    /// up restarting it): "open" gives libvirt its sockets back, "closed"
    /// leaves them with the failed proxy. Read by `transparent-mode`.
    pub(crate) failure_policy: FailurePolicy,
    /// Microseconds a relay thread polls for libvirt's reply before sleeping
    /// (0: never poll). Trades CPU for latency; see docs/proxy.md.
    pub(crate) busy_poll_us: u32,
    /// With `busy_poll_us = 0`: poll for libvirt's reply only while that
    /// measurably shortens a client's calls and the CPUs have time to spare
    /// (false: never poll). See docs/proxy.md.
    pub(crate) adaptive_poll: bool,
    /// Most client connections relayed at once (all users).
    pub(crate) max_clients: u32,
    /// Most connections one non-root user may hold.
    pub(crate) max_clients_per_user: u32,
    /// Connections out of `max_clients` that only root may use.
    pub(crate) reserved_for_root: u32,
    /// Most non-root upstream connections that have not finished opening
    /// (libvirtd stops accepting anyone past its max_anonymous_clients, 20).
    pub(crate) max_unauthenticated: u32,
    /// Seconds a client has from connecting to a successful CONNECT_OPEN.
    pub(crate) auth_timeout_seconds: u32,
    /// Seconds a frame may take to arrive once its first byte came.
    pub(crate) frame_timeout_seconds: u32,
    /// Largest call (MiB) whose XML the proxy reads; larger calls are refused.
    pub(crate) max_call_mib: u32,
    /// Most MiB all non-root clients' calls may hold in the proxy at once.
    pub(crate) max_buffered_mib: u32,
    /// Root-only socket where `vhostfix proxy --stats` reads the counters
    /// (empty: none).
    pub(crate) admin_socket: PathBuf,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: PathBuf::from("/run/vhostfix/libvirt-sock"),
            upstream: PathBuf::new(),
            listen_ro: PathBuf::new(),
            upstream_ro: PathBuf::new(),
            socket_mode: "0660".into(),
            socket_mode_ro: "0666".into(),
            socket_group: "root".into(),
            allowed_groups: Vec::new(),
            action: ProxyAction::Fix,
            fixed_abi_calls: FixedAbiAction::Forward,
            on_error: OnError::Allow,
            lookup_sasl_username: String::new(),
            lookup_sasl_password_file: PathBuf::new(),
            drain_seconds: 5,
            failure_policy: FailurePolicy::Open,
            busy_poll_us: 0,
            adaptive_poll: true,
            max_clients: 512,
            max_clients_per_user: 32,
            reserved_for_root: 32,
            max_unauthenticated: 10,
            auth_timeout_seconds: 15,
            frame_timeout_seconds: 30,
            max_call_mib: 16,
            max_buffered_mib: 48,
            admin_socket: PathBuf::from("/run/vhostfix/admin-sock"),
        }
    }
}

impl ProxyConfig {
    /// `socket_mode` as a number.
    pub(crate) fn mode(&self) -> u32 {
        parse_mode(&self.socket_mode).unwrap_or(0o660)
    }

    /// `socket_mode_ro` as a number.
    pub(crate) fn mode_ro(&self) -> u32 {
        parse_mode(&self.socket_mode_ro).unwrap_or(0o666)
    }
}

fn parse_mode(s: &str) -> Option<u32> {
    u32::from_str_radix(s.trim(), 8)
        .ok()
        .filter(|m| *m <= 0o777)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ProxyAction {
    #[default]
    Fix,
    Deny,
    /// Decide, log and count what would change, but forward unchanged.
    Report,
    Off,
}

/// `[proxy] failure_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FailurePolicy {
    /// libvirt serves its clients directly, unfixed (logged and counted).
    #[default]
    Open,
    /// libvirt's clients are refused until the proxy runs again.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FixedAbiAction {
    #[default]
    Forward,
    Deny,
}

/// Where the effective configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// The default file does not exist.
    BuiltIn,
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::BuiltIn => write!(f, "built-in defaults ({DEFAULT_PATH} does not exist)"),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", located(path, message))]
pub(crate) struct ConfigError {
    pub(crate) path: String,
    pub(crate) message: String,
}

impl Config {
    /// Applies command-line overrides of `guests` and `target_model`.
    pub(crate) fn override_with(
        &mut self,
        guests: Option<Guests>,
        target_model: Option<TargetModel>,
    ) {
        if let Some(g) = guests {
            self.guests = g;
        }
        if let Some(m) = target_model {
            self.target_model = m;
        }
    }

    /// The core policy this configuration describes.
    pub(crate) fn policy(&self) -> Policy {
        Policy {
            guests: self.guests,
            target_model: self.target_model,
            signals: self.detect.clone(),
            limits: self.limits(),
            guest_os: None,
            libvirt: None,
        }
    }

    pub(crate) fn limits(&self) -> InputLimits {
        InputLimits {
            max_input_bytes: usize::try_from(self.limits.max_input_bytes).unwrap_or(usize::MAX),
            max_depth: self.limits.max_depth,
            max_nodes: self.limits.max_nodes,
        }
    }

    /// Parses and validates configuration text; `path` is only used in messages.
    pub(crate) fn from_toml(text: &str, path: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError {
            path: path.to_string(),
            message: describe_toml_error(text, &e),
        })?;
        config.validate().map_err(|message| ConfigError {
            path: path.to_string(),
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let l = &self.limits;
        if !(1024..=1 << 30).contains(&l.max_input_bytes) {
            return Err(format!(
                "limits.max_input_bytes = {}: must be between 1024 and 1073741824",
                l.max_input_bytes
            ));
        }
        if !(8..=4096).contains(&l.max_depth) {
            return Err(format!(
                "limits.max_depth = {}: must be between 8 and 4096",
                l.max_depth
            ));
        }
        if l.max_nodes < 64 {
            return Err(format!(
                "limits.max_nodes = {}: must be at least 64",
                l.max_nodes
            ));
        }
        let p = &self.proxy;
        for (key, v) in [
            ("socket_mode", &p.socket_mode),
            ("socket_mode_ro", &p.socket_mode_ro),
        ] {
            if parse_mode(v).is_none() {
                return Err(format!(
                    "proxy.{key} = \"{v}\": must be an octal mode such as \"0660\""
                ));
            }
        }
        if p.listen.as_os_str().is_empty() {
            return Err("proxy.listen: must not be empty".into());
        }
        if p.lookup_sasl_username.is_empty() != p.lookup_sasl_password_file.as_os_str().is_empty() {
            return Err(
                "proxy.lookup_sasl_username and proxy.lookup_sasl_password_file: set both or neither"
                    .into(),
            );
        }
        if p.drain_seconds > 600 {
            return Err(format!(
                "proxy.drain_seconds = {}: must be at most 600",
                p.drain_seconds
            ));
        }
        let bounds: [(&str, u32, u32, u32); 8] = [
            ("max_clients", p.max_clients, 1, 65536),
            ("max_clients_per_user", p.max_clients_per_user, 1, 65536),
            ("reserved_for_root", p.reserved_for_root, 0, 65536),
            ("max_unauthenticated", p.max_unauthenticated, 1, 1024),
            ("auth_timeout_seconds", p.auth_timeout_seconds, 1, 3600),
            ("frame_timeout_seconds", p.frame_timeout_seconds, 1, 3600),
            ("max_call_mib", p.max_call_mib, 1, 32),
            ("max_buffered_mib", p.max_buffered_mib, 1, 65536),
        ];
        for (key, v, lo, hi) in bounds {
            if !(lo..=hi).contains(&v) {
                return Err(format!("proxy.{key} = {v}: must be between {lo} and {hi}"));
            }
        }
        if p.reserved_for_root >= p.max_clients {
            return Err(format!(
                "proxy.reserved_for_root = {}: must be less than proxy.max_clients ({})",
                p.reserved_for_root, p.max_clients
            ));
        }
        if p.busy_poll_us > 1000 {
            return Err(format!(
                "proxy.busy_poll_us = {}: must be at most 1000",
                p.busy_poll_us
            ));
        }
        Ok(())
    }

    /// The effective configuration as TOML.
    pub(crate) fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// Turns a TOML error into one line: `line:col: key: what`.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().replace('\n', " ");
    let Some(span) = e.span() else { return msg };
    let at = span.start.min(text.len());
    let pos = Pos::of(text, at);
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line.split('=').next().unwrap_or("").trim();
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let full_key = match (table, line.contains('=') && !key.starts_with('[')) {
        (Some(t), true) => format!("{t}.{key}"),
        (None, true) => key.to_string(),
        _ => String::new(),
    };
    let msg = advice(&full_key, &msg).unwrap_or(msg);
    if full_key.is_empty() {
        format!("{pos}: {msg}")
    } else {
        format!("{pos}: {full_key}: {msg}")
    }
}

/// What to do about the easy mistakes: a misspelt key, a mode not quoted.
fn advice(key: &str, msg: &str) -> Option<String> {
    if key.ends_with("socket_mode") || key.ends_with("socket_mode_ro") {
        let unquoted = msg.contains("leading zero") || msg.contains("invalid type: integer");
        if unquoted {
            let name = key.rsplit('.').next().unwrap_or(key);
            return Some(format!(
                "write the mode as a quoted octal string, e.g. {name} = \"0660\" ({msg})"
            ));
        }
    }
    // serde: "unknown field `X`, expected one of `a`, `b`" (or "expected `a`").
    let rest = msg.strip_prefix("unknown field `")?;
    let (wrong, known) = rest.split_once('`')?;
    let known: Vec<&str> = known.split('`').skip(1).step_by(2).collect();
    let best = known
        .iter()
        .map(|k| (edit_distance(wrong, k), *k))
        .min()
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))?;
    Some(format!(
        "unknown key `{wrong}`; did you mean `{}`? (the keys here: {})",
        best.1,
        known.join(", ")
    ))
}

/// Levenshtein distance (insertions, deletions, substitutions), for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Finds the configuration file that applies, and whether it was named
/// explicitly (a named file must exist; the default one may be absent).
pub(crate) fn resolve(explicit: Option<&Path>) -> (PathBuf, bool) {
    if let Some(p) = explicit {
        return (p.to_path_buf(), true);
    }
    match std::env::var_os(ENV_VAR).filter(|v| !v.is_empty()) {
        Some(p) => (PathBuf::from(p), true),
        None => (PathBuf::from(DEFAULT_PATH), false),
    }
}

/// Loads the configuration that applies (see the module doc).
pub(crate) fn load(explicit: Option<&Path>) -> Result<(Config, Source), ConfigError> {
    let (path, named) = resolve(explicit);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let c = Config::from_toml(&text, &path.display().to_string())?;
            Ok((c, Source::File(path)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => {
            Ok((Config::default(), Source::BuiltIn))
        }
        Err(e) => Err(ConfigError {
            path: path.display().to_string(),
            message: format!("cannot read: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_defaults() {
        assert_eq!(Config::from_toml("", "x").unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let e = Config::from_toml("[hook]\non_eror = \"deny\"\n", "/etc/v.toml").unwrap_err();
        assert!(
            e.to_string().starts_with(
                "/etc/v.toml:2:1: hook.on_eror: unknown key `on_eror`; did you mean `on_error`?"
            ),
            "{e}"
        );
    }

    /// Issue 20: the easy mistakes say how to fix them.
    #[test]
    fn misspelt_keys_and_unquoted_modes_get_advice() {
        let e = Config::from_toml("[proxy]\nsocket_mode = 0660\n", "c.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.toml:2:15: proxy.socket_mode: write the mode as a quoted octal string, e.g. socket_mode = \"0660\" (unexpected leading zero, expected nothing)"
        );
        let e = Config::from_toml("[proxy]\nsocket_mode_ro = 666\n", "c.toml").unwrap_err();
        assert!(
            e.to_string().contains("e.g. socket_mode_ro = \"0660\""),
            "{e}"
        );
        let e = Config::from_toml("[proxy]\nmax_clinets = 5\n", "c.toml").unwrap_err();
        assert!(
            e.to_string().starts_with(
                "c.toml:2:1: proxy.max_clinets: unknown key `max_clinets`; did you mean `max_clients`? (the keys here: listen, "
            ),
            "{e}"
        );
        let e = Config::from_toml("gusts = \"any\"\n", "c.toml").unwrap_err();
        assert!(e.to_string().contains("did you mean `guests`?"), "{e}");
        // Nothing close: serde's list as it is.
        let e = Config::from_toml("[hook]\nzzzzzzzzzz = 1\n", "c.toml").unwrap_err();
        assert!(
            e.to_string()
                .ends_with("unknown field `zzzzzzzzzz`, expected `on_error` or `checks`"),
            "{e}"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
    }

    #[test]
    fn bad_value_names_key() {
        let e = Config::from_toml("guests = \"linux\"\n", "c.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.toml:1:10: guests: unknown variant `linux`, expected `windows` or `any`"
        );
    }

    #[test]
    fn defaults_round_trip_through_show() {
        let c = Config::default();
        assert_eq!(Config::from_toml(&c.to_toml(), "x").unwrap(), c);
    }

    #[test]
    fn proxy_table() {
        let c = Config::from_toml(
            "[proxy]\nallowed_groups = [\"libvirt\"]\nsocket_mode = \"0600\"\naction = \"deny\"\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(c.proxy.allowed_groups, vec!["libvirt".to_string()]);
        assert_eq!(c.proxy.mode(), 0o600);
        assert_eq!(c.proxy.action, ProxyAction::Deny);
        let e = Config::from_toml("[proxy]\nsocket_mode = \"999\"\n", "c.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.toml: proxy.socket_mode = \"999\": must be an octal mode such as \"0660\""
        );
        assert_eq!(c.proxy.failure_policy, FailurePolicy::Open);
        let c = Config::from_toml("[proxy]\nfailure_policy = \"closed\"\n", "c.toml").unwrap();
        assert_eq!(c.proxy.failure_policy, FailurePolicy::Closed);
        let e = Config::from_toml("[proxy]\nfailure_policy = \"shut\"\n", "c.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.toml:2:18: proxy.failure_policy: unknown variant `shut`, expected `open` or `closed`"
        );
        let c = Config::from_toml("[proxy]\nbusy_poll_us = 200\n", "c.toml").unwrap();
        assert_eq!(c.proxy.busy_poll_us, 200);
        assert!(c.proxy.adaptive_poll);
        let c = Config::from_toml("[proxy]\nadaptive_poll = false\n", "c.toml").unwrap();
        assert!(!c.proxy.adaptive_poll);
        let e = Config::from_toml("[proxy]\nbusy_poll_us = 5000\n", "c.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.toml: proxy.busy_poll_us = 5000: must be at most 1000"
        );
    }

    #[test]
    fn out_of_range_limit_is_refused() {
        let e = Config::from_toml("[limits]\nmax_depth = 2\n", "c.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.toml: limits.max_depth = 2: must be between 8 and 4096"
        );
    }
}
