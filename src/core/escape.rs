//! Outside values in messages and log lines: quoted and escaped so that a
//! domain name or a string a client sent can neither start a new log line nor
//! forge a field or a terminal escape. Pure: used by the core's messages and by
//! the logger alike.

use std::fmt::{self, Write as _};

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
pub(crate) fn field(value: &str) -> impl fmt::Display + '_ {
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
pub(crate) fn one_line(message: &str) -> impl fmt::Display + '_ {
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
}
