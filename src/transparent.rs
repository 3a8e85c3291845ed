//! What `transparent-mode` (packaging/transparent-mode) recorded about
//! transparent mode, for `vhostfix audit --prometheus` and
//! `vhostfix proxy --stats`: whether the proxy is in front of libvirt's
//! sockets, or was taken away from them when it failed for good.
//!
//! The record is a file of `key=value` lines (`state=`, `since=` in Unix
//! seconds, `reason=`) that `transparent-mode` writes: `enable` writes
//! `state=on`, `disable` removes the file (off), and the unit that systemd
//! starts when the proxy fails for good writes `handed-back` ([proxy]
//! failure_policy "open": libvirt serves its own sockets again) or
//! `failed-closed` (policy "closed": the sockets stay with the failed proxy).

use crate::prometheus::{Exposition, Kind};
use std::path::{Path, PathBuf};

/// Where `transparent-mode` keeps its record.
pub(crate) const STATE_PATH: &str = "/var/lib/vhostfix/transparent-mode";
/// Environment variable naming another record (tests).
pub(crate) const STATE_ENV: &str = "VHOSTFIX_TRANSPARENT_STATE";

/// The state transparent mode is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Not enabled (no record).
    Off,
    /// The proxy owns libvirt's canonical sockets.
    On,
    /// The proxy failed for good and libvirt got its sockets back.
    HandedBack,
    /// The proxy failed for good and keeps libvirt's sockets.
    FailedClosed,
    /// A record this build cannot read.
    Unknown,
}

impl Mode {
    pub(crate) const ALL: [Mode; 5] = [
        Mode::On,
        Mode::Off,
        Mode::HandedBack,
        Mode::FailedClosed,
        Mode::Unknown,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::On => "on",
            Mode::HandedBack => "handed-back",
            Mode::FailedClosed => "failed-closed",
            Mode::Unknown => "unknown",
        }
    }
}

/// The record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) mode: Mode,
    /// When the state began (Unix seconds; 0 when not recorded).
    pub(crate) since: u64,
    pub(crate) reason: String,
}

impl Record {
    /// The record at `path`; a missing file means off.
    pub(crate) fn read(path: &Path) -> Record {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(_) => "state=?".into(),
        };
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
                .map(str::trim)
        };
        let mode = match field("state") {
            None if text.trim().is_empty() => Mode::Off,
            Some("on") => Mode::On,
            Some("off") => Mode::Off,
            Some("handed-back") => Mode::HandedBack,
            Some("failed-closed") => Mode::FailedClosed,
            _ => Mode::Unknown,
        };
        Record {
            mode,
            since: field("since").and_then(|s| s.parse().ok()).unwrap_or(0),
            reason: field("reason").unwrap_or("").to_string(),
        }
    }

    /// The record `transparent-mode` keeps ($VHOSTFIX_TRANSPARENT_STATE, else
    /// `STATE_PATH`).
    pub(crate) fn current() -> Record {
        let path = std::env::var_os(STATE_ENV)
            .filter(|p| !p.is_empty())
            .map_or_else(|| PathBuf::from(STATE_PATH), PathBuf::from);
        Record::read(&path)
    }

    /// One sentence for an operator when the proxy is not serving in front of
    /// libvirt although transparent mode was enabled.
    pub(crate) fn note(&self) -> Option<String> {
        let why = if self.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.reason)
        };
        match self.mode {
            Mode::HandedBack => Some(format!(
                "transparent mode: vhostfix is not in front of libvirt since {}: the proxy failed for good{why} and failure_policy \"open\" gave libvirt its sockets back; `transparent-mode enable` puts it back",
                utc(self.since)
            )),
            Mode::FailedClosed => Some(format!(
                "transparent mode: the proxy failed for good at {}{why} and failure_policy \"closed\" keeps libvirt's sockets: libvirt clients are refused",
                utc(self.since)
            )),
            _ => None,
        }
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC` (days to a civil date as in
/// the proleptic Gregorian calendar).
fn utc(t: u64) -> String {
    let (days, secs) = (t / 86_400, t % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The Prometheus text for the record: one `vhostfix_proxy_transparent`
/// gauge per state, 1 for the current one, and when it began.
pub(crate) fn prometheus(r: &Record) -> String {
    let mut e = Exposition::default();
    let name = "vhostfix_proxy_transparent";
    e.family(
        name,
        Kind::Gauge,
        "1 for the state of transparent mode: on (the proxy owns libvirt's sockets), off, handed-back (the proxy failed for good; libvirt serves its clients without vhostfix), failed-closed (the proxy failed for good and keeps libvirt's sockets).",
    );
    for m in Mode::ALL {
        e.sample(name, &[("state", m.as_str())], u8::from(m == r.mode));
    }
    let name = "vhostfix_proxy_transparent_since_seconds";
    e.family(
        name,
        Kind::Gauge,
        "When transparent mode entered its state (Unix time; 0 unknown).",
    )
    .sample(name, &[], r.since);
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(text: Option<&str>) -> Record {
        let dir = std::env::temp_dir().join(format!(
            "vhostfix-transparent-{}-{}",
            std::process::id(),
            text.map_or(0, str::len)
        ));
        let _ = std::fs::create_dir_all(&dir);
        let p = dir.join("state");
        let _ = std::fs::remove_file(&p);
        if let Some(t) = text {
            std::fs::write(&p, t).unwrap();
        }
        let r = Record::read(&p);
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    #[test]
    fn reads_each_state() {
        assert_eq!(record(None).mode, Mode::Off);
        assert_eq!(record(Some("state=on\nsince=5\n")).mode, Mode::On);
        let r = record(Some(
            "state=handed-back\nsince=1700000000\nreason=vhostfix-proxy.service: start-limit-hit\n",
        ));
        assert_eq!(r.mode, Mode::HandedBack);
        assert_eq!(r.since, 1_700_000_000);
        assert_eq!(r.reason, "vhostfix-proxy.service: start-limit-hit");
        assert!(r.note().unwrap().contains("gave libvirt its sockets back"));
        assert_eq!(
            record(Some("state=failed-closed\n")).mode,
            Mode::FailedClosed
        );
        assert_eq!(record(Some("state=sideways\n")).mode, Mode::Unknown);
        assert_eq!(record(Some("state=on\n")).note(), None);
    }

    #[test]
    fn the_gauge_in_docs_is_what_this_renders() {
        let r = Record {
            mode: Mode::HandedBack,
            since: 1_796_089_385,
            reason: String::new(),
        };
        let shown: String = prometheus(&r)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("    {l}\n"))
            .collect();
        assert!(
            include_str!("../docs/proxy.md").contains(&shown),
            "docs/proxy.md should show:\n{shown}"
        );
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_825_600), "2000-02-29 12:00:00 UTC");
        assert_eq!(utc(1_798_761_599), "2026-12-31 23:59:59 UTC");
    }

    #[test]
    fn prometheus_has_one_gauge_per_state() {
        let r = Record {
            mode: Mode::HandedBack,
            since: 7,
            reason: String::new(),
        };
        let p = prometheus(&r);
        assert!(
            p.contains("vhostfix_proxy_transparent{state=\"handed-back\"} 1\n"),
            "{p}"
        );
        assert!(
            p.contains("vhostfix_proxy_transparent{state=\"on\"} 0\n"),
            "{p}"
        );
        assert!(
            p.contains("vhostfix_proxy_transparent_since_seconds 7\n"),
            "{p}"
        );
        assert_eq!(p.matches("} 1\n").count(), 1);
    }
}
