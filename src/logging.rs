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

use log::{LevelFilter, Log, Metadata, Record};
use std::fmt::{self, Write as _};
use std::io::Write;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static TO_STDERR: AtomicBool = AtomicBool::new(true);

/// True unless the installed logger writes to syslog. A message meant for the
/// user on stderr need not be logged again when the log is stderr too.
pub fn to_stderr() -> bool {
    TO_STDERR.load(Ordering::Relaxed)
}

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
pub fn init() -> Option<String> {
    install(false)
}

/// Installs the logger for the hook. Without syslog, and unless `VHOSTFIX_LOG`
/// names a target or a level, stderr gets warnings and errors only: libvirt
/// shows a refused start's stderr to the user, who needs the refusal, not an
/// extra `vhostfix: info:` line before it (nor a note that syslog is missing).
pub fn init_hook() -> Option<String> {
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

/// True for characters that must not reach a log line raw: C0/C1 controls
/// (newline, carriage return, ESC, DEL...), the Unicode line and paragraph
/// separators, and bidirectional overrides that reorder what a reader sees.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn write_escaped(f: &mut fmt::Formatter<'_>, c: char) -> fmt::Result {
    match c {
        '\n' => f.write_str("\\n"),
        '\r' => f.write_str("\\r"),
        '\t' => f.write_str("\\t"),
        c => write!(f, "\\u{{{:x}}}", u32::from(c)),
    }
}

/// A value from outside (a domain name, a path, a string a client sent) as it
/// appears in a log line or message: in single quotes, with backslash, quote
/// and every control character escaped (`\n`, `\u{1b}`), so a name can neither
/// start a new log line nor forge a field or a terminal escape.
pub fn field(value: &str) -> impl fmt::Display + '_ {
    Field(value)
}

struct Field<'a>(&'a str);

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('\'')?;
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '\'' => f.write_str("\\'")?,
                c if needs_escape(c) => write_escaped(f, c)?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('\'')
    }
}

/// A whole message on one line: control characters escaped as in [`field`],
/// everything else (backslashes and quotes included) kept. The logger applies
/// it to every message; use [`field`] for each outside value as well, so that
/// a reader can tell where the value ends.
pub fn one_line(message: &str) -> impl fmt::Display + '_ {
    OneLine(message)
}

struct OneLine<'a>(&'a str);

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if needs_escape(c) {
                write_escaped(f, c)?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_quotes_and_escapes() {
        assert_eq!(field("vm1").to_string(), "'vm1'");
        assert_eq!(field("").to_string(), "''");
        assert_eq!(field("a\nb").to_string(), "'a\\nb'");
        assert_eq!(field("x\r\tz").to_string(), "'x\\r\\tz'");
        assert_eq!(field("\x1b[31mred").to_string(), "'\\u{1b}[31mred'");
        assert_eq!(field("it's").to_string(), "'it\\'s'");
        assert_eq!(field("a\\nb").to_string(), "'a\\\\nb'");
        assert_eq!(
            field("\u{7f}\u{85}\u{2028}\u{202e}").to_string(),
            "'\\u{7f}\\u{85}\\u{2028}\\u{202e}'"
        );
        assert_eq!(field("--guests=any").to_string(), "'--guests=any'");
        assert_eq!(
            field("Windows Server 2019 (é)").to_string(),
            "'Windows Server 2019 (é)'"
        );
    }

    #[test]
    fn forged_log_line_stays_on_one_line() {
        let name = "vm1' action=allow\nvhostfix: info: domain='evil";
        let line = format!("domain={} action=deny", field(name));
        assert!(!line.contains('\n'));
        assert_eq!(
            line,
            "domain='vm1\\' action=allow\\nvhostfix: info: domain=\\'evil' action=deny"
        );
    }

    #[test]
    fn one_line_escapes_controls_only() {
        assert_eq!(one_line("plain 'x' \\ y").to_string(), "plain 'x' \\ y");
        assert_eq!(one_line("a\nb\x1bc").to_string(), "a\\nb\\u{1b}c");
    }

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
