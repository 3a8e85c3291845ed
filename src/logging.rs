//! Where the hook's (and later the proxy's) decisions are logged.
//!
//! `VHOSTFIX_LOG=[TARGET][:LEVEL]`, TARGET one of `auto` (default: syslog when
//! `/dev/log` exists, else stderr), `syslog`, `stderr`; LEVEL one of `error`,
//! `warn`, `info` (default), `debug`, `trace`, `off`. Syslog uses ident
//! `vhostfix`, facility daemon. If syslog cannot be reached, stderr is used
//! (for the hook in `auto` mode: warnings and errors only, see [`init_hook`]).
//!
//! Values from outside (domain names, paths, evidence) are written with
//! [`field`]; every message is kept on one line by [`one_line`].

use crate::core::escape::one_line;
use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static TO_STDERR: AtomicBool = AtomicBool::new(true);

/// True unless the installed logger writes to syslog. A message meant for the
/// user on stderr need not be logged again when the log is stderr too.
pub(crate) fn to_stderr() -> bool {
    TO_STDERR.load(Ordering::Relaxed)
}

/// Environment variable selecting the log target and level.
pub(crate) const ENV_VAR: &str = "VHOSTFIX_LOG";
const DEV_LOG: &str = "/dev/log";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Auto,
    Syslog,
    Stderr,
}

/// Parses `VHOSTFIX_LOG`; unknown words are reported and the default is kept.
pub(crate) fn parse_spec(spec: &str) -> Result<(Target, LevelFilter), String> {
    let mut target = Target::Auto;
    let mut level = LevelFilter::Info;
    for word in spec
        .split([':', ','])
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        match word {
            "auto" => target = Target::Auto,
            "syslog" => target = Target::Syslog,
            "stderr" => target = Target::Stderr,
            w => {
                level = LevelFilter::from_str(w)
                    .map_err(|_| format!("{ENV_VAR}: '{w}' is neither a target (auto, syslog, stderr) nor a level (error, warn, info, debug, trace, off)"))?
            }
        }
    }
    Ok((target, level))
}

enum Sink {
    Stderr,
    Syslog(syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>),
}

struct Logger {
    sink: Mutex<Sink>,
    level: LevelFilter,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let Ok(mut sink) = self.sink.lock() else {
            return;
        };
        // A message is one log line whatever a value inside it held.
        let msg = one_line(&record.args().to_string()).to_string();
        match &mut *sink {
            Sink::Stderr => {
                let level = record.level().to_string().to_lowercase();
                let _ = writeln!(std::io::stderr(), "vhostfix: {level}: {msg}");
            }
            Sink::Syslog(l) => {
                let _ = match record.level() {
                    log::Level::Error => l.err(msg),
                    log::Level::Warn => l.warning(msg),
                    log::Level::Info => l.info(msg),
                    log::Level::Debug | log::Level::Trace => l.debug(msg),
                };
            }
        }
    }

    fn flush(&self) {}
}

/// Installs the logger once (for the proxy); later calls do nothing. Returns a
/// note for the caller to print when the spec was bad or syslog was unreachable.
pub(crate) fn init() -> Option<String> {
    install(false)
}

/// Installs the logger for the hook. Without syslog, and unless `VHOSTFIX_LOG`
/// names a target or a level, stderr gets warnings and errors only: libvirt
/// shows a refused start's stderr to the user, who needs the refusal, not an
/// extra `vhostfix: info:` line before it (nor a note that syslog is missing).
pub(crate) fn init_hook() -> Option<String> {
    install(true)
}

fn install(hook: bool) -> Option<String> {
    let spec = std::env::var(ENV_VAR).unwrap_or_default();
    let (mut note, (target, mut level)) = match parse_spec(&spec) {
        Ok(v) => (None, v),
        Err(e) => (Some(e), (Target::Auto, LevelFilter::Info)),
    };
    let explicit_level = spec
        .split([':', ','])
        .map(str::trim)
        .any(|w| LevelFilter::from_str(w).is_ok());
    let quiet_fallback = hook && target == Target::Auto && !explicit_level;
    let want_syslog = match target {
        Target::Auto => std::path::Path::new(DEV_LOG).exists(),
        Target::Syslog => true,
        Target::Stderr => false,
    };
    let sink = if want_syslog {
        let formatter = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: "vhostfix".into(),
            pid: std::process::id(),
        };
        match syslog::unix(formatter) {
            Ok(l) => Sink::Syslog(l),
            Err(e) => {
                if !quiet_fallback {
                    note = Some(format!("cannot reach syslog ({e}); logging to stderr"));
                }
                Sink::Stderr
            }
        }
    } else {
        Sink::Stderr
    };
    if quiet_fallback && matches!(sink, Sink::Stderr) {
        level = level.min(LevelFilter::Warn);
    }
    TO_STDERR.store(matches!(sink, Sink::Stderr), Ordering::Relaxed);
    let logger = Logger {
        sink: Mutex::new(sink),
        level,
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
    note
}

/// Lines an outsider can provoke (refusals, client errors), logged without
/// letting a flood of them flood the log: the first,
/// then at most one line per `every` that says how many were not logged.
pub(crate) struct RateLimited {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimited {
    pub(crate) fn new(every: Duration) -> Self {
        RateLimited {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(suppressed)` when a line may be logged now.
    pub(crate) fn allow(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if s.0.is_some_and(|t| now.duration_since(t) < self.every) {
            s.1 += 1;
            return None;
        }
        let suppressed = s.1;
        *s = (Some(now), 0);
        Some(suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_words_in_any_order() {
        assert_eq!(parse_spec("").unwrap(), (Target::Auto, LevelFilter::Info));
        assert_eq!(
            parse_spec("stderr:debug").unwrap(),
            (Target::Stderr, LevelFilter::Debug)
        );
        assert_eq!(
            parse_spec("warn").unwrap(),
            (Target::Auto, LevelFilter::Warn)
        );
        assert_eq!(
            parse_spec("syslog").unwrap(),
            (Target::Syslog, LevelFilter::Info)
        );
        assert!(parse_spec("loud").is_err());
    }

    #[test]
    fn rate_limit_counts_what_it_holds_back() {
        let r = RateLimited::new(Duration::from_millis(50));
        assert_eq!(r.allow(), Some(0));
        assert_eq!(r.allow(), None);
        assert_eq!(r.allow(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(r.allow(), Some(2));
    }
}
