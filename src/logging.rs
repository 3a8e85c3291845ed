//! Where the hook's (and later the proxy's) decisions are logged.
//!
//! `VHOSTFIX_LOG=[TARGET][:LEVEL]`, TARGET one of `auto` (default: syslog when
//! `/dev/log` exists, else stderr), `syslog`, `stderr`; LEVEL one of `error`,
//! `warn`, `info` (default), `debug`, `trace`, `off`. Syslog uses ident
//! `vhostfix`, facility daemon. If syslog cannot be reached, stderr is used.

use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::str::FromStr;
use std::sync::Mutex;

/// Environment variable selecting the log target and level.
pub const ENV_VAR: &str = "VHOSTFIX_LOG";
const DEV_LOG: &str = "/dev/log";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Auto,
    Syslog,
    Stderr,
}

/// Parses `VHOSTFIX_LOG`; unknown words are reported and the default is kept.
pub fn parse_spec(spec: &str) -> Result<(Target, LevelFilter), String> {
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
        let msg = record.args().to_string();
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

/// Installs the logger once; later calls do nothing. Returns a note for the
/// caller to print when the spec was bad or syslog was unreachable.
pub fn init() -> Option<String> {
    let spec = std::env::var(ENV_VAR).unwrap_or_default();
    let (mut note, (target, level)) = match parse_spec(&spec) {
        Ok(v) => (None, v),
        Err(e) => (Some(e), (Target::Auto, LevelFilter::Info)),
    };
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
                note = Some(format!("cannot reach syslog ({e}); logging to stderr"));
                Sink::Stderr
            }
        }
    } else {
        Sink::Stderr
    };
    let logger = Logger {
        sink: Mutex::new(sink),
        level,
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
    note
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
}
