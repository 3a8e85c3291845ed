//! The libvirt qemu hook: admission checks when a guest starts.
//!
//! libvirt runs `/etc/libvirt/hooks/qemu` and every executable in
//! `/etc/libvirt/hooks/qemu.d/` as `NAME OP SUBOP EXTRA` with the domain XML on
//! stdin (libvirt's hooks documentation). What a hook can do depends on the phase:
//!
//! * `prepare begin`: stdout is ignored, a non-zero exit aborts the start and
//!   libvirt shows our stderr to the user. So the hook can only *deny* here.
//!   (A vhost-user NIC with the wrong model never even reaches this phase on
//!   libvirt releases that validate it while parsing.)
//! * `migrate begin`, `restore begin`: stdout would replace the XML, but the NIC
//!   model is guest ABI and cannot change; we print nothing and deny violations.
//! * everything else: nothing to do.
//!
//! A bug or unreadable input never blocks a VM unless `hook.on_error = "deny"`.
//!
//! The words libvirt passes are taken by position, never parsed as options:
//! libvirt allows domain names such as `--help`, `--` or `--guests=any`.
//! Every outside value in a log line or message goes through
//! [`crate::core::escape::field`].

use crate::config::{self, CheckAction, Config, OnError};
use crate::core::analysis::{analyze, Analysis, NicStatus, Policy};
use crate::core::escape::{field, one_line};
use crate::core::findings::{findings, nic_place};
use crate::core::parse::{decode, InputLimits};
use crate::host;
use std::io::Read;
use std::path::Path;

/// The arguments libvirt passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HookCall {
    pub(crate) object: String,
    pub(crate) name: String,
    pub(crate) op: String,
    pub(crate) subop: String,
    pub(crate) extra: String,
}

/// Exit status that tells libvirt to abort the operation.
pub(crate) const DENY: i32 = 1;

/// True when the program was started as a libvirt qemu hook: named `qemu`, or
/// living in a `qemu.d` directory.
pub(crate) fn invoked_as_hook(argv0: &Path) -> bool {
    argv0.file_name().is_some_and(|n| n == "qemu")
        || argv0
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|d| d == "qemu.d")
}

/// A check that found something.
struct Problem {
    action: CheckAction,
    text: String,
}

impl HookCall {
    /// The call from the words after the hook's own name: `NAME OP SUBOP
    /// [EXTRA]`, taken positionally. Nothing here is an option: libvirt allows
    /// a domain named `--help`, `--` or `--guests=any`, and passes it as is.
    pub(crate) fn from_words(object: &str, words: &[String]) -> Result<HookCall, String> {
        match words {
            [name, op, subop] | [name, op, subop, _] => Ok(HookCall {
                object: object.to_string(),
                name: name.clone(),
                op: op.clone(),
                subop: subop.clone(),
                extra: words.get(3).cloned().unwrap_or_else(|| "-".into()),
            }),
            _ => Err(format!(
                "expected the arguments NAME OP SUBOP [EXTRA] after {}, as libvirt passes them; got {} word(s)",
                field(object),
                words.len()
            )),
        }
    }
}

/// Runs the hook for arguments that may not have made a call (a wrong number
/// of words): like any internal error, that follows `hook.on_error`.
pub(crate) fn run_words(
    call: Result<HookCall, String>,
    stdin: &mut dyn Read,
    config_path: Option<&Path>,
) -> i32 {
    let loaded = config::load(config_path);
    let on_error = loaded
        .as_ref()
        .map_or(OnError::Allow, |(c, _)| c.hook.on_error);
    let limit = loaded
        .as_ref()
        .map_or(InputLimits::default().max_input_bytes, |(c, _)| {
            c.limits().max_input_bytes
        });
    // libvirt writes the whole XML into a pipe: always read it to the end.
    let input = drain(stdin, limit);
    let result = std::panic::catch_unwind(|| -> Result<i32, String> {
        let call = call.as_ref().map_err(|e| format!("arguments: {e}"))?;
        let (config, _) = loaded.map_err(|e| format!("configuration: {e}"))?;
        judge_call(call, &input?, &config)
    });
    let failure = match result {
        Ok(Ok(code)) => return code,
        Ok(Err(e)) => e,
        Err(_) => "internal error (panic)".to_string(),
    };
    let (subject, user_subject) = match &call {
        Ok(c) => (
            format!(
                "domain {} {}/{}",
                field(&c.name),
                one_line(&c.op),
                one_line(&c.subop)
            ),
            format!("{} domain {}", verb(&c.op), field(&c.name)),
        ),
        Err(_) => (
            "hook call".to_string(),
            "run the domain operation".to_string(),
        ),
    };
    match on_error {
        OnError::Allow => {
            log::error!("{subject}: {failure}; allowing (hook.on_error = \"allow\")");
            0
        }
        OnError::Deny => {
            if !crate::logging::to_stderr() {
                log::error!("{subject}: {failure}; denying (hook.on_error = \"deny\")");
            }
            eprintln!(
                "vhostfix refused to {user_subject}: {} (hook.on_error = \"deny\"; \"allow\" lets the guest start and only logs this)",
                one_line(&failure)
            );
            DENY
        }
    }
}

/// What the user was doing, for messages: `prepare` is part of starting a guest.
fn verb(op: &str) -> &str {
    match op {
        "prepare" => "start",
        other => other,
    }
}

/// Reads all of stdin; keeps at most `limit + 1` bytes.
fn drain(stdin: &mut dyn Read, limit: usize) -> Result<Vec<u8>, String> {
    host::read_bounded(stdin, limit, true)
        .map_err(|e| format!("reading the domain XML from stdin: {e}"))
}

/// The phases the hook checks: `prepare begin` (admission), `migrate begin`
/// and `restore begin` (the NIC model cannot change there).
fn checked(op: &str, subop: &str) -> bool {
    matches!(
        (op, subop),
        ("prepare", "begin") | ("migrate", "begin") | ("restore", "begin")
    )
}

/// The hook's answer to one call: 0 allow, [`DENY`] refuse (the reason on
/// stderr). `Err`: an internal error, which `hook.on_error` decides about.
fn judge_call(call: &HookCall, input: &[u8], config: &Config) -> Result<i32, String> {
    if call.object != "qemu" {
        log::debug!(
            "hook for {} ignored: only qemu hooks are handled",
            field(&call.object)
        );
        return Ok(0);
    }
    if !checked(&call.op, &call.subop) {
        // Logged at info too, so an operator sees every phase libvirt ran.
        log::info!(
            "domain={} op={}/{} action=allow (nothing to check in this phase)",
            field(&call.name),
            one_line(&call.op),
            one_line(&call.subop)
        );
        return Ok(0);
    }
    let policy = hook_policy(config);
    let text = decode(input, &policy.limits).map_err(|e| format!("domain XML: {e}"))?;
    let a = analyze(text, &policy).map_err(|e| format!("domain XML: {e}"))?;
    let problems = if call.op == "prepare" {
        admission(&a, config, &policy)
    } else {
        abi(&a, config, &call.op)
    };
    log_decision(call, &a, &problems);
    Ok(refuse(call, &problems))
}

/// The configuration's policy for the release of the libvirt daemon that
/// runs this hook (our parent, or a dispatcher's), or the one named in
/// `$VHOSTFIX_LIBVIRT_VERSION`.
fn hook_policy(config: &Config) -> Policy {
    let mut policy = config.policy();
    policy.libvirt = host::libvirt_version(None, || {
        host::daemon_libvirt_version(std::os::unix::process::parent_id())
    })
    .unwrap_or_else(|e| {
        log::warn!("{e}; the libvirt release is taken as unknown");
        None
    });
    log::debug!(
        "libvirt release: {}",
        policy
            .libvirt
            .map_or_else(|| "unknown".to_string(), |v| v.to_string())
    );
    policy
}

/// One info line per checked call, a warning per problem set to "warn".
fn log_decision(call: &HookCall, a: &Analysis, problems: &[Problem]) {
    let denied = problems.iter().any(|p| p.action == CheckAction::Deny);
    log::info!(
        "domain={} op={}/{} verdict={} evidence={} vhostuser_nics={} action={}",
        field(&call.name),
        call.op,
        call.subop,
        a.detection.verdict,
        field(&a.detection.reason()),
        a.nics.len(),
        if denied { "deny" } else { "allow" }
    );
    for p in problems.iter().filter(|p| p.action == CheckAction::Warn) {
        log::warn!(
            "domain={} {}/{}: {} (action warn)",
            field(&call.name),
            call.op,
            call.subop,
            p.text
        );
    }
}

/// 0 when nothing is denied; else the refusal on stderr (libvirt shows it to
/// whoever ran `virsh start`: one line, no escapes) and [`DENY`].
fn refuse(call: &HookCall, problems: &[Problem]) -> i32 {
    let reasons: Vec<&str> = problems
        .iter()
        .filter(|p| p.action == CheckAction::Deny)
        .map(|p| p.text.as_str())
        .collect();
    if reasons.is_empty() {
        return 0;
    }
    let message = format!(
        "vhostfix refused to {} domain {}: {}",
        verb(&call.op),
        field(&call.name),
        reasons.join("; also ")
    );
    if !crate::logging::to_stderr() {
        log::warn!("{message}");
    }
    eprintln!("{}", one_line(&message));
    DENY
}

/// `prepare begin`: the shared verdict (`crate::core::findings`), each finding
/// subject to its `[hook.checks]` key: (a) model, (b) shared memory, (c) client socket.
fn admission(a: &Analysis, config: &Config, policy: &Policy) -> Vec<Problem> {
    findings(a, policy, &host::probe_socket)
        .into_iter()
        .filter_map(|f| {
            let (action, _) = config.hook.checks.action_for(f.kind)?;
            Some(Problem {
                action,
                text: f.message,
            })
        })
        .collect()
}

/// `migrate begin` / `restore begin`: the model cannot change here.
fn abi(a: &Analysis, config: &Config, op: &str) -> Vec<Problem> {
    if config.hook.checks.model == CheckAction::Off {
        return Vec::new();
    }
    a.nics
        .iter()
        .filter(|n| n.status == NicStatus::Fixed)
        .map(|n| Problem {
            action: config.hook.checks.model,
            text: format!(
                "vhost-user {} has model {}, but vhost-user requires a virtio-net frontend and a NIC model cannot change under a running guest ({op} keeps the guest's ABI); fix: shut the guest down, correct its definition with vhostfix filter, and boot it fresh",
                nic_place(n),
                n.model_text()
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_hook_names() {
        assert!(invoked_as_hook(Path::new("/etc/libvirt/hooks/qemu")));
        assert!(invoked_as_hook(Path::new(
            "/etc/libvirt/hooks/qemu.d/50-vhostfix"
        )));
        assert!(!invoked_as_hook(Path::new("/usr/bin/vhostfix")));
        assert!(!invoked_as_hook(Path::new("vhostfix")));
    }
}
