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
//! [`crate::logging::field`].

use crate::config::{self, Action, Config, OnError};
use crate::logging::{field, one_line};
use crate::verdict::{self, nic_place, Kind};
use crate::{Analysis, NicStatus};
use std::io::Read;
use std::path::Path;

/// The arguments libvirt passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCall {
    pub object: String,
    pub name: String,
    pub op: String,
    pub subop: String,
    pub extra: String,
}

/// Exit status that tells libvirt to abort the operation.
pub const DENY: i32 = 1;

/// True when the program was started as a libvirt qemu hook: named `qemu`, or
/// living in a `qemu.d` directory.
pub fn invoked_as_hook(argv0: &Path) -> bool {
    argv0.file_name().is_some_and(|n| n == "qemu")
        || argv0
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|d| d == "qemu.d")
}

/// A check that found something.
struct Problem {
    action: Action,
    text: String,
}

impl HookCall {
    /// The call from the words after the hook's own name: `NAME OP SUBOP
    /// [EXTRA]`, taken positionally. Nothing here is an option: libvirt allows
    /// a domain named `--help`, `--` or `--guests=any`, and passes it as is.
    pub fn from_words(object: &str, words: &[String]) -> Result<HookCall, String> {
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

/// Runs the hook; returns the exit status. Never panics outward.
pub fn run(call: &HookCall, stdin: &mut dyn Read, config_path: Option<&Path>) -> i32 {
    run_words(Ok(call.clone()), stdin, config_path)
}

/// Runs the hook for arguments that may not have made a call (a wrong number
/// of words): like any internal error, that follows `hook.on_error`.
pub fn run_words(
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
        .map_or(crate::parse::Limits::default().max_input_bytes, |(c, _)| {
            c.limits().max_input_bytes
        });
    // libvirt writes the whole XML into a pipe: always read it to the end.
    let input = drain(stdin, limit);
    let result = std::panic::catch_unwind(|| -> Result<i32, String> {
        let call = call.as_ref().map_err(|e| format!("arguments: {e}"))?;
        let (config, _) = loaded.map_err(|e| format!("configuration: {e}"))?;
        decide(call, &input?, &config)
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
    let mut kept = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    stdin
        .take(cap)
        .read_to_end(&mut kept)
        .map_err(|e| format!("reading the domain XML from stdin: {e}"))?;
    std::io::copy(stdin, &mut std::io::sink()).map_err(|e| format!("reading stdin: {e}"))?;
    Ok(kept)
}

fn decide(call: &HookCall, input: &[u8], config: &Config) -> Result<i32, String> {
    if call.object != "qemu" {
        log::debug!(
            "hook for {} ignored: only qemu hooks are handled",
            field(&call.object)
        );
        return Ok(0);
    }
    let phase = (call.op.as_str(), call.subop.as_str());
    let checked = matches!(
        phase,
        ("prepare", "begin") | ("migrate", "begin") | ("restore", "begin")
    );
    if !checked {
        // Logged at info too, so an operator sees every phase libvirt ran.
        log::info!(
            "domain={} op={}/{} action=allow (nothing to check in this phase)",
            field(&call.name),
            one_line(&call.op),
            one_line(&call.subop)
        );
        return Ok(0);
    }
    let mut policy = config.policy();
    if policy.libvirt.is_none() {
        // The daemon running this hook is our parent.
        policy.libvirt = verdict::libvirt_version(None, || {
            verdict::daemon_libvirt_version(std::os::unix::process::parent_id())
        })
        .unwrap_or_else(|e| {
            log::warn!("{e}; the libvirt release is taken as unknown");
            None
        });
    }
    log::debug!(
        "libvirt release: {}",
        policy
            .libvirt
            .map_or_else(|| "unknown".to_string(), |v| v.to_string())
    );
    let text =
        crate::parse::decode(input, &policy.limits).map_err(|e| format!("domain XML: {e}"))?;
    let a = crate::analyze(text, &policy).map_err(|e| format!("domain XML: {e}"))?;
    let problems = if phase.0 == "prepare" {
        admission(&a, config, &policy)
    } else {
        abi(&a, config, phase.0)
    };
    let deny: Vec<&Problem> = problems
        .iter()
        .filter(|p| p.action == Action::Deny)
        .collect();
    let evidence = a.detection.reason();
    let decision = if deny.is_empty() { "allow" } else { "deny" };
    log::info!(
        "domain={} op={}/{} verdict={} evidence={} vhostuser_nics={} action={}",
        field(&call.name),
        call.op,
        call.subop,
        a.detection.verdict,
        field(&evidence),
        a.nics.len(),
        decision
    );
    for p in problems.iter().filter(|p| p.action == Action::Warn) {
        log::warn!(
            "domain={} {}/{}: {} (action warn)",
            field(&call.name),
            call.op,
            call.subop,
            p.text
        );
    }
    if deny.is_empty() {
        return Ok(0);
    }
    let verb = verb(phase.0);
    let reasons: Vec<&str> = deny.iter().map(|p| p.text.as_str()).collect();
    let message = format!(
        "vhostfix refused to {verb} domain {}: {}",
        field(&call.name),
        reasons.join("; also ")
    );
    if !crate::logging::to_stderr() {
        log::warn!("{message}");
    }
    // libvirt shows this to whoever ran `virsh start`: one line, no escapes.
    eprintln!("{}", one_line(&message));
    Ok(DENY)
}

/// `prepare begin`: the shared verdict (`crate::verdict`), each finding
/// subject to its `[hook.checks]` key: (a) model, (b) shared memory, (c) client socket.
fn admission(a: &Analysis, config: &Config, policy: &crate::Policy) -> Vec<Problem> {
    let checks = &config.hook.checks;
    verdict::findings(a, policy, &verdict::probe_socket)
        .into_iter()
        .filter_map(|f| {
            let action = match f.kind {
                Kind::Model => checks.model,
                Kind::SharedMemory => checks.shared_memory,
                Kind::ClientSocket => checks.client_socket,
                // libvirt itself refuses these, or they work today.
                Kind::ModelOutOfScope | Kind::MemfdDefault => return None,
            };
            (action != Action::Off).then_some(Problem {
                action,
                text: f.message,
            })
        })
        .collect()
}

/// `migrate begin` / `restore begin`: the model cannot change here.
fn abi(a: &Analysis, config: &Config, op: &str) -> Vec<Problem> {
    if config.hook.checks.model == Action::Off {
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
