//! Prometheus' text exposition format (version 0.0.4), the one writer for the
//! audit's textfile and the proxy's counters, and the atomic file write
//! node_exporter's textfile collector needs.

use std::fmt::{Display, Write as _};
use std::path::Path;

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Gauge,
    Counter,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// A document being written: families, each followed by its samples.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    text: String,
}

impl Exposition {
    /// Starts a family: `# HELP` (when `help` is not empty) and `# TYPE`.
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        if !help.is_empty() {
            let _ = writeln!(self.text, "# HELP {name} {help}");
        }
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.as_str());
        self
    }

    /// One sample; label values are escaped.
    pub(crate) fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl Display,
    ) -> &mut Self {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
        self
    }

    pub(crate) fn finish(self) -> String {
        self.text
    }
}

/// A label value: backslash, quote and newline escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes `text` to `path` so that a reader sees the old file or the new one,
/// never half of one: a temporary file in the same directory, then rename
/// (node_exporter's textfile collector reads `*.prom` at any moment).
pub(crate) fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?;
    // Not *.prom, so the collector never reads it half written.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaped_labels() {
        let mut e = Exposition::default();
        e.family("a_total", Kind::Counter, "")
            .sample("a_total", &[], 3)
            .family("b", Kind::Gauge, "What b is.")
            .sample("b", &[("x", "a\"b\\c\nd"), ("y", "1")], 0);
        assert_eq!(
            e.finish(),
            "# TYPE a_total counter\na_total 3\n# HELP b What b is.\n# TYPE b gauge\nb{x=\"a\\\"b\\\\c\\nd\",y=\"1\"} 0\n"
        );
    }

    #[test]
    fn textfile_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("vhostfix-prom-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("vhostfix.prom");
        write_atomically(&p, "a 1\n").unwrap();
        write_atomically(&p, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a 2\n");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("vhostfix.prom")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
