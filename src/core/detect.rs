//! Guest OS detection: is this domain a Windows guest, and on what evidence?
//!
//! The signals and their strength follow what each management stack writes
//! (see the project's notes on ZStack, nova, CloudStack, oVirt, KubeVirt and
//! virt-install). A missed Windows guest stays unbootable while a Linux guest
//! taken for Windows only gets the virtio model libvirt demands anyway, so the
//! heuristics favour recall. Order of precedence:
//!
//! 1. vhostfix's own override in `<metadata>` decides alone;
//! 2. strong evidence (libosinfo os id, nova `os_type`): any strong "windows"
//!    wins, else any strong "not windows" wins;
//! 3. heuristics (hyperv enlightenments, hypervclock timer, a description
//!    naming Windows, a localtime clock): any one says windows;
//! 4. otherwise unknown.

use super::parse::{InputError, Pos};
use super::xml::{child, Element};
use serde::{Deserialize, Serialize};

/// XML namespace of vhostfix's per-domain override:
/// `<metadata><vhostfix:guest xmlns:vhostfix="urn:vhostfix:guest:1" os="windows"/></metadata>`.
pub(crate) const OVERRIDE_NS: &str = "urn:vhostfix:guest:1";
const LIBOSINFO_NS: &str = "http://libosinfo.org/xmlns/libvirt/domain/1.0";
const NOVA_NS_PREFIX: &str = "http://openstack.org/xmlns/libvirt/nova/";

/// The detector's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Windows,
    NotWindows,
    Unknown,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Windows => "windows",
            Verdict::NotWindows => "not-windows",
            Verdict::Unknown => "unknown",
        })
    }
}

/// One kind of evidence; each can be switched off in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signal {
    Override,
    Libosinfo,
    NovaOsType,
    Hyperv,
    Hypervclock,
    Description,
    LocaltimeClock,
    /// Supplied by the caller (e.g. `--guest-os`, or the domain a device is attached to).
    Caller,
}

/// How much a signal weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Weight {
    Heuristic,
    Strong,
    Override,
}

/// One piece of evidence found in the XML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    pub signal: Signal,
    /// True when it points to Windows, false when it points away from it.
    pub windows: bool,
    pub weight: Weight,
    /// What was found, in words (`libosinfo os id http://microsoft.com/win/10`).
    pub detail: String,
    pub pos: Option<Pos>,
    /// True for the evidence that decided the verdict.
    pub decisive: bool,
}

/// The verdict with all evidence found (decisive or not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detection {
    pub verdict: Verdict,
    pub evidence: Vec<Evidence>,
}

impl Detection {
    /// A verdict given from outside, e.g. for a device whose domain was looked up elsewhere.
    pub fn given(verdict: Verdict, detail: impl Into<String>) -> Detection {
        Detection {
            verdict,
            evidence: vec![Evidence {
                signal: Signal::Caller,
                windows: verdict == Verdict::Windows,
                weight: Weight::Override,
                detail: detail.into(),
                pos: None,
                decisive: true,
            }],
        }
    }

    /// The decisive evidence, in one line (`hyperv enlightenments on (relaxed, vapic)`).
    pub(crate) fn reason(&self) -> String {
        let parts: Vec<&str> = self
            .evidence
            .iter()
            .filter(|e| e.decisive)
            .map(|e| e.detail.as_str())
            .collect();
        if parts.is_empty() {
            "no evidence either way".into()
        } else {
            parts.join("; ")
        }
    }
}

/// Which signals are consulted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Signals {
    pub r#override: bool,
    pub libosinfo: bool,
    pub nova_os_type: bool,
    pub hyperv: bool,
    pub hypervclock: bool,
    pub description: bool,
    pub localtime_clock: bool,
}

impl Default for Signals {
    fn default() -> Self {
        Signals {
            r#override: true,
            libosinfo: true,
            nova_os_type: true,
            hyperv: true,
            hypervclock: true,
            description: true,
            localtime_clock: true,
        }
    }
}

/// Evidence as it is found, in the order the signals are examined.
struct Found<'t> {
    text: &'t str,
    list: Vec<Evidence>,
}

impl Found<'_> {
    fn push<'a>(
        &mut self,
        at: impl Element<'a>,
        signal: Signal,
        windows: bool,
        weight: Weight,
        detail: String,
    ) {
        self.list.push(Evidence {
            signal,
            windows,
            weight,
            detail,
            pos: Some(Pos::of(self.text, at.range().start)),
            decisive: false,
        });
    }
}

/// Examines a `<domain>` root element.
pub(crate) fn detect<'a>(
    domain: impl Element<'a>,
    signals: &Signals,
) -> Result<Detection, InputError> {
    let mut found = Found {
        text: domain.input(),
        list: Vec::new(),
    };
    if let Some(meta) = child(domain, "metadata") {
        for el in meta.descendants() {
            metadata(&mut found, el, signals)?;
        }
    }
    if signals.hyperv {
        hyperv(&mut found, domain);
    }
    if signals.hypervclock {
        hypervclock(&mut found, domain);
    }
    if signals.description {
        description(&mut found, domain);
    }
    if signals.localtime_clock {
        localtime_clock(&mut found, domain);
    }
    Ok(weigh(found.list))
}

/// One element of `<metadata>`: vhostfix's override, a libosinfo os id, or
/// nova's `os_type` image property.
fn metadata<'a>(
    found: &mut Found,
    el: impl Element<'a>,
    signals: &Signals,
) -> Result<(), InputError> {
    let ns = el.namespace();
    let name = el.name();
    if signals.r#override && ns == Some(OVERRIDE_NS) && name == "guest" {
        if let Some(attr) = el.attribute_at("os") {
            let windows = match attr.value {
                "windows" => true,
                "other" => false,
                v => {
                    return Err(InputError::BadOverride {
                        pos: Pos::of(found.text, attr.start),
                        value: v.to_string(),
                    })
                }
            };
            let detail = format!("vhostfix override os='{}'", attr.value);
            found.push(el, Signal::Override, windows, Weight::Override, detail);
        }
    } else if signals.libosinfo && ns == Some(LIBOSINFO_NS) && name == "os" {
        if let Some(id) = el.attribute("id") {
            let windows = id.starts_with("http://microsoft.com/win/")
                || id.starts_with("http://microsoft.com/winnt/");
            let detail = format!("libosinfo os id {id}");
            found.push(el, Signal::Libosinfo, windows, Weight::Strong, detail);
        }
    } else if signals.nova_os_type
        && ns.is_some_and(|n| n.starts_with(NOVA_NS_PREFIX))
        && name == "property"
        && el.attribute("name") == Some("os_type")
    {
        let value = el.text().unwrap_or("").trim();
        let windows = value.eq_ignore_ascii_case("windows");
        let detail = format!("nova image property os_type={value}");
        found.push(el, Signal::NovaOsType, windows, Weight::Strong, detail);
    }
    Ok(())
}

/// `<features><hyperv>` with an enlightenment on, or in passthrough mode.
fn hyperv<'a>(found: &mut Found, domain: impl Element<'a>) {
    let Some(hv) = child(domain, "features").and_then(|f| child(f, "hyperv")) else {
        return;
    };
    let passthrough = hv.attribute("mode") == Some("passthrough");
    let on: Vec<&str> = hv
        .elements()
        .filter(|c| c.attribute("state") == Some("on"))
        .map(|c| c.name())
        .collect();
    if !passthrough && on.is_empty() {
        return;
    }
    let detail = if passthrough {
        "hyperv enlightenments on (mode passthrough)".to_string()
    } else {
        format!("hyperv enlightenments on ({})", on.join(", "))
    };
    found.push(hv, Signal::Hyperv, true, Weight::Heuristic, detail);
}

/// `<clock><timer name='hypervclock' present='yes'/>`.
fn hypervclock<'a>(found: &mut Found, domain: impl Element<'a>) {
    let timer = child(domain, "clock").and_then(|clock| {
        clock.elements().find(|t| {
            t.name() == "timer"
                && t.attribute("name") == Some("hypervclock")
                && t.attribute("present") == Some("yes")
        })
    });
    if let Some(t) = timer {
        let detail = "hypervclock timer present".into();
        found.push(t, Signal::Hypervclock, true, Weight::Heuristic, detail);
    }
}

/// A `<description>` that names Windows (CloudStack writes the OS name there).
fn description<'a>(found: &mut Found, domain: impl Element<'a>) {
    let Some(d) = child(domain, "description") else {
        return;
    };
    let t = d.text().unwrap_or("");
    if t.to_ascii_lowercase().contains("windows") {
        let detail = format!("description '{}' names Windows", t.trim());
        found.push(d, Signal::Description, true, Weight::Heuristic, detail);
    }
}

/// `<clock offset='localtime'>` (Windows keeps its clock in local time).
fn localtime_clock<'a>(found: &mut Found, domain: impl Element<'a>) {
    if let Some(clock) =
        child(domain, "clock").filter(|c| c.attribute("offset") == Some("localtime"))
    {
        let detail = "clock offset localtime".into();
        found.push(
            clock,
            Signal::LocaltimeClock,
            true,
            Weight::Heuristic,
            detail,
        );
    }
}

/// Applies the precedence rules and marks the decisive evidence.
fn weigh(mut evidence: Vec<Evidence>) -> Detection {
    // Strongest first; within a weight, the order the signals were examined.
    evidence.sort_by_key(|e| std::cmp::Reverse(e.weight));
    let top = evidence.iter().map(|e| e.weight).max();
    let verdict = match top {
        None => Verdict::Unknown,
        Some(w) => {
            // Within the top weight, a windows signal wins (recall over precision),
            // except for the override, where the first one written wins.
            let pick_windows = if w == Weight::Override {
                evidence
                    .iter()
                    .find(|e| e.weight == w)
                    .is_some_and(|e| e.windows)
            } else {
                evidence.iter().any(|e| e.weight == w && e.windows)
            };
            let mut marked_override = false;
            for e in evidence.iter_mut().filter(|e| e.weight == w) {
                if w == Weight::Override {
                    if !marked_override {
                        e.decisive = true;
                        marked_override = true;
                    }
                } else if e.windows == pick_windows {
                    e.decisive = true;
                }
            }
            if pick_windows {
                Verdict::Windows
            } else {
                Verdict::NotWindows
            }
        }
    };
    Detection { verdict, evidence }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(xml: &str) -> Detection {
        let doc = roxmltree::Document::parse(xml).unwrap();
        detect(doc.root_element(), &Signals::default()).unwrap()
    }

    #[test]
    fn no_signal_is_unknown() {
        let d = run("<domain><clock offset='utc'/></domain>");
        assert_eq!(d.verdict, Verdict::Unknown);
        assert!(d.evidence.is_empty());
    }

    #[test]
    fn strong_other_beats_heuristics() {
        let d = run(
            r#"<domain><metadata><l:libosinfo xmlns:l="http://libosinfo.org/xmlns/libvirt/domain/1.0"><l:os id="http://redhat.com/rhel/9.0"/></l:libosinfo></metadata><clock offset='localtime'/></domain>"#,
        );
        assert_eq!(d.verdict, Verdict::NotWindows);
        assert_eq!(d.reason(), "libosinfo os id http://redhat.com/rhel/9.0");
        assert!(!d.evidence[1].decisive);
    }

    #[test]
    fn msdos_is_not_windows() {
        let d = run(
            r#"<domain><metadata><l:libosinfo xmlns:l="http://libosinfo.org/xmlns/libvirt/domain/1.0"><l:os id="http://microsoft.com/msdos/6.22"/></l:libosinfo></metadata></domain>"#,
        );
        assert_eq!(d.verdict, Verdict::NotWindows);
    }

    #[test]
    fn override_beats_everything() {
        let d = run(
            r#"<domain><metadata><v:guest xmlns:v="urn:vhostfix:guest:1" os="other"/><l:libosinfo xmlns:l="http://libosinfo.org/xmlns/libvirt/domain/1.0"><l:os id="http://microsoft.com/win/10"/></l:libosinfo></metadata></domain>"#,
        );
        assert_eq!(d.verdict, Verdict::NotWindows);
        assert_eq!(d.reason(), "vhostfix override os='other'");
    }

    #[test]
    fn disabled_signal_is_ignored() {
        let doc =
            roxmltree::Document::parse("<domain><clock offset='localtime'/></domain>").unwrap();
        let signals = Signals {
            localtime_clock: false,
            ..Signals::default()
        };
        assert_eq!(
            detect(doc.root_element(), &signals).unwrap().verdict,
            Verdict::Unknown
        );
    }

    #[test]
    fn hyperv_with_everything_off_is_no_evidence() {
        let d = run("<domain><features><hyperv mode='custom'><relaxed state='off'/></hyperv></features></domain>");
        assert_eq!(d.verdict, Verdict::Unknown);
    }
}
