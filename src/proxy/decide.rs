//! What the proxy does with one call from a client: forward it, forward a
//! corrected copy, or answer it with an error. Three steps, each a function:
//!
//! 1. [`inspect`]: is it a call that carries XML, and might that XML hold a
//!    vhost-user interface? (Most frames stop here.)
//! 2. [`judge`]: the XML analysed with the shared verdict; a device call takes
//!    the guest OS of its domain, asked of libvirt through [`Upstream`].
//! 3. [`act`]: the configured action applied to the judgement.
//!
//! Pure apart from what [`Upstream`] answers, so every branch is testable
//! without a daemon.

use super::upstream::Upstream;
use crate::config::{Config, FixedAbiAction, OnError, ProxyAction};
use crate::core::analysis::{analyze, Analysis, NicStatus, Policy};
use crate::core::escape::field;
use crate::core::findings::{findings, unchecked, Severity};
use crate::core::parse::{parse_any, InputError, InputLimits};
use crate::rpc::calls::{replace_string, xml_call, XmlCall, XmlRole};
use crate::rpc::error::{error_reply, CONFIG_UNSUPPORTED, FROM_DOMAIN};
use crate::rpc::frame::Header;
use crate::rpc::procs;

/// What to do with one frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameAction {
    /// Relay the frame as it is.
    Forward,
    /// Relay this frame instead (the XML corrected, lengths recomputed).
    Replace(Vec<u8>),
    /// Answer the call with this error reply; nothing goes upstream.
    Deny(Vec<u8>),
}

/// What the decision amounts to, for the proxy's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Not a call with vhost-user XML: nothing was looked at.
    NotInspected,
    /// Inspected; forwarded unchanged (nothing to change, or left to libvirt).
    Forwarded,
    Rewritten,
    Denied,
    /// `proxy.action = "report"`: would have been rewritten; forwarded.
    Reported,
    /// Unreadable XML or a failed lookup (`proxy.on_error` applied).
    Error,
}

/// The action plus a line for the log (`None`: not worth logging).
#[derive(Debug)]
pub(crate) struct Decision {
    pub(crate) action: FrameAction,
    pub(crate) log: Option<(log::Level, String)>,
    pub(crate) outcome: Outcome,
    /// For a call forwarded unchanged that libvirt will likely refuse: what
    /// vhostfix knows about why, and the fix, one line, for the client. The
    /// relay appends it to libvirt's error message if libvirt does refuse.
    pub(crate) note: Option<String>,
}

impl Decision {
    fn forward() -> Decision {
        Decision {
            action: FrameAction::Forward,
            log: None,
            outcome: Outcome::NotInspected,
            note: None,
        }
    }

    fn forwarded(outcome: Outcome, level: log::Level, line: String) -> Decision {
        Decision {
            action: FrameAction::Forward,
            outcome,
            log: Some((level, line)),
            note: None,
        }
    }

    fn with_note(mut self, note: String) -> Decision {
        self.note = Some(note);
        self
    }
}

/// Decides about one frame from a client. `who` describes the client for logs.
/// The libvirt release is the configuration's, else `upstream`'s.
pub(crate) fn decide(
    frame: &[u8],
    config: &Config,
    who: &str,
    upstream: &mut dyn Upstream,
) -> Decision {
    let (header, call) = match inspect(frame, who) {
        Ok(Some(found)) => found,
        Ok(None) => return Decision::forward(),
        Err(d) => return d,
    };
    if config.proxy.action == ProxyAction::Off || !may_contain_vhostuser(call.xml) {
        return Decision::forward();
    }
    let call = Call {
        header,
        call,
        config,
        who,
    };
    match judge(&call, upstream) {
        Ok(Some(j)) => act(&call, frame, &j),
        Ok(None) => Decision::forward(),
        Err(why) => call.fail(why),
    }
}

/// Step 1: the call's XML, when it carries any. `Err`: a decision already
/// (arguments that do not decode: libvirtd rejects those itself).
fn inspect<'f>(frame: &'f [u8], who: &str) -> Result<Option<(Header, XmlCall<'f>)>, Decision> {
    let Some(header) = Header::of_frame(frame) else {
        return Ok(None);
    };
    match xml_call(frame) {
        Ok(Some(c)) => Ok(Some((header, c))),
        Ok(None) => Ok(None),
        Err(e) => Err(Decision {
            action: FrameAction::Forward,
            outcome: Outcome::NotInspected,
            note: None,
            log: Some((
                log::Level::Debug,
                format!(
                    "{who} proc={}: arguments not decoded ({e}); forwarded",
                    header.procedure
                ),
            )),
        }),
    }
}

/// A call being decided on, with what every step needs.
struct Call<'a> {
    header: Header,
    call: XmlCall<'a>,
    config: &'a Config,
    who: &'a str,
}

impl Call<'_> {
    /// The domain's name for messages: the call's, else the XML's, else `?`.
    fn subject(&self, a: Option<&Analysis>) -> String {
        match (&self.call.domain, a.and_then(|a| a.domain.as_ref())) {
            (Some(d), _) => d.name_lossy(),
            (None, Some(n)) => n.clone(),
            (None, None) => "?".into(),
        }
    }

    /// The XML could not be judged: `proxy.on_error` decides.
    fn fail(&self, why: String) -> Decision {
        let name = self.subject(None);
        let what = format!(
            "{} proc={} domain={}",
            self.who,
            self.call.name,
            field(&name)
        );
        match self.config.proxy.on_error {
            OnError::Allow => Decision::forwarded(
                Outcome::Error,
                log::Level::Warn,
                format!("{what}: {why}; forwarded unchanged (proxy.on_error = \"allow\")"),
            ),
            OnError::Deny => {
                let msg = format!(
                    "unsupported configuration: vhostfix could not check {} of domain {}: {why}",
                    self.call.name,
                    field(&name)
                );
                refusal(
                    &self.header,
                    &msg,
                    format!("{what}: {why}; denied (proxy.on_error = \"deny\")"),
                    Outcome::Error,
                )
            }
        }
    }
}

/// What step 2 found.
struct Judgement<'t> {
    /// The XML the analysis is of (a wrapped `<domain>` is a slice of the call's).
    text: &'t str,
    analysis: Analysis,
    policy: Policy,
    /// The messages of findings libvirt or the hook will refuse whatever the proxy does.
    refused: Vec<String>,
}

/// Step 2: the XML analysed with the shared verdict. `Ok(None)`: nothing for
/// the proxy in it after all (no `<domain>` in a wrapper, device XML other
/// than an `<interface>`, a device call without a domain). `Err`: why it
/// could not be judged.
fn judge<'t>(c: &Call<'t>, upstream: &mut dyn Upstream) -> Result<Option<Judgement<'t>>, String> {
    let mut policy = c.config.policy();
    policy.libvirt = upstream.lib_version();
    let text =
        std::str::from_utf8(c.call.xml).map_err(|_| "the XML is not valid UTF-8".to_string())?;
    // Some calls carry the guest's <domain> inside a document of their own.
    let text = match wrapper_of(c.call.procedure) {
        Some((root, what)) => match embedded_domain(text, root, &policy.limits) {
            Ok(Some(t)) => t,
            Ok(None) => return Ok(None),
            Err(e) => return Err(format!("{what}: {e}")),
        },
        None => text,
    };
    if c.call.role == XmlRole::Device {
        let Some(dom) = c.call.domain else {
            return Ok(None);
        };
        let os = upstream.domain_xml(&dom).and_then(|xml| {
            analyze(&xml, &c.config.policy())
                .map(|a| a.detection)
                .map_err(|e| format!("domain XML from libvirt: {e}"))
        });
        let os = os.map_err(|e| format!("looking up domain {}: {e}", field(&dom.name_lossy())))?;
        policy.guest_os = Some(os);
    }
    let analysis = match analyze(text, &policy) {
        Ok(a) => a,
        // Device XML other than an <interface> is none of our business.
        Err(InputError::UnexpectedRoot { .. }) if c.call.role == XmlRole::Device => {
            return Ok(None)
        }
        Err(e) => return Err(format!("XML: {e}")),
    };
    // The shared verdict; sockets are not probed at define time (the backend
    // need not run yet; the hook checks them at start).
    let refused = findings(&analysis, &policy, &unchecked)
        .into_iter()
        .filter(|f| f.severity == Severity::Refused)
        .map(|f| f.message)
        .collect();
    Ok(Some(Judgement {
        text,
        analysis,
        policy,
        refused,
    }))
}

/// The start of a decision's log line: who, which call, which domain, the
/// verdict and its evidence, the release of libvirt.
fn log_head(c: &Call<'_>, j: &Judgement<'_>) -> String {
    let a = &j.analysis;
    format!(
        "{} proc={} domain={} verdict={} evidence={} vhostuser_nics={} libvirt={}",
        c.who,
        c.call.name,
        field(&c.subject(Some(a))),
        a.detection.verdict,
        field(&a.detection.reason()),
        a.nics.len(),
        j.policy
            .libvirt
            .map_or_else(|| "unknown".to_string(), |v| v.to_string())
    )
}

/// "nic 0 (MAC) e1000 -> virtio, ..." for the NICs the analysis fixes.
fn fix_list(a: &Analysis) -> String {
    a.nics
        .iter()
        .filter(|n| n.status == NicStatus::Fixed)
        .map(|n| {
            format!(
                "{} {} -> {}",
                n.label(),
                n.model_text(),
                n.new_model.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Step 3: the configured action applied to a judgement.
fn act(c: &Call<'_>, frame: &[u8], j: &Judgement<'_>) -> Decision {
    let a = &j.analysis;
    let what = log_head(c, j);
    if !a.changes() {
        return unchanged(a, &j.refused, what);
    }
    let fixes = fix_list(a);
    let deny = |why: &str, key: &str| -> Decision {
        let msg = deny_message(&c.call, a, &c.subject(Some(a)), why);
        refusal(
            &c.header,
            &msg,
            format!("{what} action=deny ({key}): {fixes}"),
            Outcome::Denied,
        )
    };
    if c.call.role == XmlRole::FixedAbi {
        return match c.config.proxy.fixed_abi_calls {
            FixedAbiAction::Deny => deny(
                "this call keeps the guest's ABI (a saved, migrating or snapshotted guest), so the NIC model cannot change here; shut the guest down, correct its definition and boot it fresh",
                "proxy.fixed_abi_calls = \"deny\"",
            ),
            FixedAbiAction::Forward => Decision::forwarded(
                Outcome::Forwarded,
                log::Level::Warn,
                format!("{what} action=forward (fixed guest ABI, libvirt decides): {fixes}"),
            )
            .with_note(format!(
                "vhostfix: {fixes} would be needed, but this call keeps the guest's ABI, so the NIC model cannot change here; fix: shut the guest down, correct its definition (vhostfix filter) and boot it fresh"
            )),
        };
    }
    match c.config.proxy.action {
        ProxyAction::Deny => deny(
            "set a virtio model in the definition (vhostfix filter does this)",
            "proxy.action = \"deny\"",
        ),
        ProxyAction::Report => Decision::forwarded(
            Outcome::Reported,
            log::Level::Warn,
            format!(
                "{what} action=report (proxy.action = \"report\": forwarded unchanged; \"fix\" would rewrite): {fixes}"
            ),
        )
        .with_note(format!(
            "vhostfix forwarded this unchanged (proxy.action = \"report\"); with proxy.action = \"fix\" it would have set {fixes}"
        )),
        ProxyAction::Fix | ProxyAction::Off => {
            let new = a.output(j.text);
            match replace_string(frame, c.call.range.clone(), new.as_bytes()) {
                Some(f) => Decision {
                    action: FrameAction::Replace(f),
                    outcome: Outcome::Rewritten,
                    log: Some((log::Level::Info, format!("{what} action=rewrite: {fixes}"))),
                    note: None,
                },
                None => c.fail("the corrected XML would exceed libvirt's size limits".into()),
            }
        }
    }
}

/// Nothing to change: forwarded, with a warning when libvirt or the hook
/// will refuse it anyway.
fn unchanged(a: &Analysis, refused: &[String], what: String) -> Decision {
    let left = if a.violations_left() {
        " (out of scope, left to libvirt)"
    } else {
        ""
    };
    if refused.is_empty() {
        Decision::forwarded(
            Outcome::Forwarded,
            log::Level::Info,
            format!("{what} action=forward{left}"),
        )
    } else {
        Decision::forwarded(
            Outcome::Forwarded,
            log::Level::Warn,
            format!(
                "{what} action=forward{left}; not fixable here: {}",
                refused.join("; ")
            ),
        )
        .with_note(format!("vhostfix: {}", refused.join("; also ")))
    }
}

/// The root element of the document a call wraps its `<domain>` in, and what
/// to call that document in messages: a snapshot redefinition's
/// `<domainsnapshot>`, an incoming migration's cookie (`<qemu-migration>`,
/// whose `<domain>` is the persistent definition sent with
/// VIR_MIGRATE_PERSIST_DEST).
fn wrapper_of(procedure: i32) -> Option<(&'static str, &'static str)> {
    match procedure {
        procs::DOMAIN_SNAPSHOT_CREATE_XML => Some(("domainsnapshot", "snapshot XML")),
        procs::DOMAIN_MIGRATE_FINISH3 | procs::DOMAIN_MIGRATE_FINISH3_PARAMS => {
            Some(("qemu-migration", "migration cookie"))
        }
        _ => None,
    }
}

/// The `<domain>` child of a `root` document, as the original text; `None`
/// when the document has another root or no `<domain>`.
fn embedded_domain<'t>(
    text: &'t str,
    root_name: &str,
    limits: &InputLimits,
) -> Result<Option<&'t str>, InputError> {
    let doc = parse_any(text, limits)?;
    let root = doc.root_element();
    if root.tag_name().name() != root_name {
        return Ok(None);
    }
    Ok(root
        .children()
        .find(|c| {
            c.is_element() && c.tag_name().name() == "domain" && c.tag_name().namespace().is_none()
        })
        .map(|d| &text[d.range()]))
}

/// A refused call: libvirt's "unsupported configuration" error reply, and a warning for the log.
fn refusal(header: &Header, message: &str, log: String, outcome: Outcome) -> Decision {
    Decision {
        outcome,
        note: None,
        action: FrameAction::Deny(error_reply(
            header,
            CONFIG_UNSUPPORTED,
            FROM_DOMAIN,
            message,
        )),
        log: Some((log::Level::Warn, log)),
    }
}

fn deny_message(call: &XmlCall<'_>, a: &Analysis, name: &str, fix: &str) -> String {
    let nics: Vec<String> = a
        .nics
        .iter()
        .filter(|n| n.status == NicStatus::Fixed)
        .map(|n| format!("vhost-user {} has model {}", n.label(), n.model_text()))
        .collect();
    format!(
        "unsupported configuration: vhostfix refused {} for domain {}: {}, but vhost-user requires a virtio-net frontend (guest {}: {}); fix: {fix}",
        call.name,
        field(name),
        nics.join(", "),
        a.detection.verdict,
        a.detection.reason()
    )
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The quick check before parsing: false only when the XML certainly holds no
/// vhost-user interface as libvirt will read it. The literal word is not enough:
/// a character reference (`type='vhost&#117;ser'`) spells it without the bytes,
/// a DOCTYPE can declare entities that do (the parser refuses DTDs, and so must
/// be asked), and a document that is not UTF-8 (a UTF-16 byte-order mark, NUL
/// bytes) hides it from a byte search. Any of these means: parse it.
pub(crate) fn may_contain_vhostuser(xml: &[u8]) -> bool {
    contains(xml, b"vhostuser")
        || contains(xml, b"&#")
        || xml
            .windows(b"<!doctype".len())
            .any(|w| w.eq_ignore_ascii_case(b"<!doctype"))
        || xml.contains(&0)
        || xml.starts_with(&[0xfe, 0xff])
        || xml.starts_with(&[0xff, 0xfe])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::LibvirtVersion;
    use crate::rpc::error::decode_error;
    use crate::rpc::frame::{build_frame, frame_len, mtype, payload, status, PROG_REMOTE};
    use crate::rpc::xdr::{put_i32, put_string, put_u32, DomainRef};
    use crate::rpc::{calls, procs};

    /// libvirt as the tests need it: the domain lookup's answer (`None`: no
    /// lookup may happen) and the release.
    #[derive(Default)]
    struct Fake {
        answer: Option<Result<String, String>>,
        version: Option<LibvirtVersion>,
        looked: Vec<String>,
        versions_asked: usize,
    }

    impl Fake {
        fn answering(answer: Result<&str, &str>) -> Fake {
            Fake {
                answer: Some(answer.map(String::from).map_err(String::from)),
                ..Fake::default()
            }
        }

        fn at(version: &str) -> Fake {
            Fake {
                version: version.parse().ok(),
                ..Fake::default()
            }
        }
    }

    impl Upstream for Fake {
        fn domain_xml(&mut self, dom: &DomainRef<'_>) -> Result<String, String> {
            self.looked.push(dom.name_lossy());
            self.answer.clone().expect("no lookup expected")
        }

        fn lib_version(&mut self) -> Option<LibvirtVersion> {
            self.versions_asked += 1;
            self.version
        }
    }

    const WIN: &str = include_str!("../../examples/windows-vhostuser.xml");
    const NIC: &str = "<interface type='vhostuser'><source type='unix' path='/run/x.sock' mode='server'/><model type='e1000'/></interface>";

    fn call(procedure: i32, args: &[u8]) -> Vec<u8> {
        let h = Header {
            prog: PROG_REMOTE,
            vers: 1,
            procedure,
            mtype: mtype::CALL,
            serial: 5,
            status: status::OK,
        };
        build_frame(&h, args)
    }

    fn define(xml: &str) -> Vec<u8> {
        let mut a = Vec::new();
        put_string(&mut a, xml.as_bytes());
        call(procs::DOMAIN_DEFINE_XML, &a)
    }

    fn attach(dom: &str, xml: &str) -> Vec<u8> {
        let mut a = Vec::new();
        put_string(&mut a, dom.as_bytes());
        a.extend_from_slice(&[1u8; 16]);
        put_i32(&mut a, -1);
        put_string(&mut a, xml.as_bytes());
        put_u32(&mut a, 2);
        call(procs::DOMAIN_ATTACH_DEVICE_FLAGS, &a)
    }

    fn xml_of(frame: &[u8]) -> String {
        String::from_utf8(calls::xml_call(frame).unwrap().unwrap().xml.to_vec()).unwrap()
    }

    #[test]
    fn windows_domain_is_rewritten() {
        let d = decide(
            &define(WIN),
            &Config::default(),
            "uid=0",
            &mut Fake::default(),
        );
        let FrameAction::Replace(f) = d.action else {
            panic!("{:?}", d.action)
        };
        let xml = xml_of(&f);
        assert!(xml.contains("<model type='virtio'/>"));
        assert_eq!(xml.len(), WIN.len() + 1);
        assert!(d.log.unwrap().1.contains("action=rewrite"));
    }

    fn snapshot(flags: u32) -> Vec<u8> {
        let inner = WIN.trim_start_matches(|c| c != '<');
        let snap = format!(
            "<domainsnapshot><name>s1</name><state>shutoff</state>{inner}</domainsnapshot>"
        );
        let mut a = Vec::new();
        put_string(&mut a, b"win2019-vhu");
        a.extend_from_slice(&[1u8; 16]);
        put_i32(&mut a, -1);
        put_string(&mut a, snap.as_bytes());
        put_u32(&mut a, flags);
        call(procs::DOMAIN_SNAPSHOT_CREATE_XML, &a)
    }

    #[test]
    fn snapshot_redefinition_is_checked_as_fixed_abi() {
        let mut c = Config::default();
        c.proxy.fixed_abi_calls = FixedAbiAction::Deny;
        // A plain snapshot (no REDEFINE) carries no domain to check.
        let d = decide(&snapshot(0), &c, "uid=0", &mut Fake::default());
        assert_eq!(d.action, FrameAction::Forward);
        let d = decide(
            &snapshot(calls::SNAPSHOT_CREATE_REDEFINE),
            &c,
            "uid=0",
            &mut Fake::default(),
        );
        let FrameAction::Deny(reply) = d.action else {
            panic!("{:?}", d.action)
        };
        let e = decode_error(payload(&reply)).unwrap();
        let m = e.message.unwrap();
        assert!(
            m.contains("vhostfix refused DOMAIN_SNAPSHOT_CREATE_XML for domain 'win2019-vhu'"),
            "{m}"
        );
        assert!(m.contains("has model e1000"), "{m}");
        // Forwarded unchanged by default: the guest ABI is fixed, libvirt decides.
        let d = decide(
            &snapshot(1),
            &Config::default(),
            "uid=0",
            &mut Fake::default(),
        );
        assert_eq!(d.action, FrameAction::Forward);
    }

    /// Issue 20: a call forwarded unchanged that libvirt will refuse
    /// carries a note for the client; a rewrite or a clean call does not.
    #[test]
    fn refusals_libvirt_will_make_get_a_note_for_the_client() {
        let other = WIN.replace(
            "<metadata>",
            "<metadata><v:guest xmlns:v=\"urn:vhostfix:guest:1\" os=\"other\"/>",
        );
        let d = decide(
            &define(&other),
            &Config::default(),
            "uid=0",
            &mut Fake::at("9.0.0"),
        );
        assert_eq!(d.action, FrameAction::Forward);
        let note = d.note.unwrap();
        assert!(
            note.starts_with("vhostfix: vhost-user nic 0 (52:54:00:5a:01:01) on socket /run/vhu-test/vhu0.sock has model e1000, which libvirt 9.0.0 refuses"),
            "{note}"
        );
        assert!(note.contains("; fix: mark a Windows guest with"), "{note}");
        let d = decide(
            &define(WIN),
            &Config::default(),
            "uid=0",
            &mut Fake::default(),
        );
        assert!(matches!(d.action, FrameAction::Replace(_)));
        assert_eq!(d.note, None);
        let plain = WIN.replace("e1000", "virtio");
        let d = decide(
            &define(&plain),
            &Config::default(),
            "uid=0",
            &mut Fake::default(),
        );
        assert_eq!(d.note, None);
        let mut report = Config::default();
        report.proxy.action = ProxyAction::Report;
        let d = decide(&define(WIN), &report, "uid=0", &mut Fake::default());
        assert!(
            d.note.unwrap().contains("with proxy.action = \"fix\" it would have set nic 0 (52:54:00:5a:01:01) e1000 -> virtio"),
        );
    }

    #[test]
    fn unrelated_calls_are_forwarded_untouched() {
        let plain = WIN.replace("vhostuser", "network");
        let d = decide(
            &define(&plain),
            &Config::default(),
            "uid=0",
            &mut Fake::default(),
        );
        assert_eq!(d.action, FrameAction::Forward);
        let d = decide(
            &call(3, &[]),
            &Config::default(),
            "uid=0",
            &mut Fake::default(),
        );
        assert_eq!(d.action, FrameAction::Forward);
    }

    #[test]
    fn deny_policy_answers_with_config_unsupported() {
        let mut c = Config::default();
        c.proxy.action = ProxyAction::Deny;
        let d = decide(&define(WIN), &c, "uid=0", &mut Fake::default());
        let FrameAction::Deny(reply) = d.action else {
            panic!()
        };
        let h = Header::of_frame(&reply).unwrap();
        assert_eq!(
            (h.serial, h.mtype, h.status, h.procedure),
            (5, mtype::REPLY, status::ERROR, 11)
        );
        let e = decode_error(payload(&reply)).unwrap();
        assert_eq!((e.code, e.domain), (67, 20));
        let m = e.message.unwrap();
        assert!(m.starts_with("unsupported configuration: vhostfix refused DOMAIN_DEFINE_XML for domain 'win2019-vhu'"), "{m}");
        assert!(m.contains("model e1000"), "{m}");
    }

    #[test]
    fn device_takes_the_os_of_its_domain() {
        let mut lookup = Fake::answering(Ok(WIN));
        let d = decide(
            &attach("win2019-vhu", NIC),
            &Config::default(),
            "uid=0",
            &mut lookup,
        );
        let FrameAction::Replace(f) = d.action else {
            panic!("{:?}", d.action)
        };
        assert!(xml_of(&f).contains("<model type='virtio'/>"));
        assert_eq!(lookup.looked, vec!["win2019-vhu".to_string()]);
        // Flags after the XML survive.
        assert_eq!(&f[f.len() - 4..], &2u32.to_be_bytes());

        let linux = "<domain type='qemu'><name>l</name><os><type>hvm</type></os></domain>";
        let mut lookup = Fake::answering(Ok(linux));
        let d = decide(&attach("l", NIC), &Config::default(), "uid=0", &mut lookup);
        assert_eq!(d.action, FrameAction::Forward);
    }

    /// Issue 9 finding 9: names and evidence from the client are escaped in the log.
    #[test]
    fn names_in_log_lines_are_escaped() {
        let evil = WIN.replace(
            "<name>win2019-vhu</name>",
            "<name>a&#10;vhostfix: info: x' action=allow\u{85}\u{202e}</name>",
        );
        let d = decide(
            &define(&evil),
            &Config::default(),
            "uid=0",
            &mut Fake::default(),
        );
        let (_, line) = d.log.unwrap();
        // (ESC cannot occur in XML; NEL and a bidi override can.)
        assert!(!line.contains('\n') && !line.contains('\u{85}'), "{line}");
        assert!(
            line.contains("domain='a\\nvhostfix: info: x\\' action=allow\\u{85}\\u{202e}' verdict=windows evidence='"),
            "{line}"
        );
        let mut lookup = Fake::answering(Err("Domain not found: 'x\ny'"));
        let d = decide(
            &attach("g\none", NIC),
            &Config::default(),
            "uid=0",
            &mut lookup,
        );
        let (_, line) = d.log.unwrap();
        assert!(line.contains("looking up domain 'g\\none': "), "{line}");
    }

    #[test]
    fn failed_lookup_follows_on_error() {
        let mut lookup = Fake::answering(Err("no such domain"));
        let d = decide(
            &attach("gone", NIC),
            &Config::default(),
            "uid=0",
            &mut lookup,
        );
        assert_eq!(d.action, FrameAction::Forward);
        let mut c = Config::default();
        c.proxy.on_error = OnError::Deny;
        let d = decide(&attach("gone", NIC), &c, "uid=0", &mut lookup);
        assert!(matches!(d.action, FrameAction::Deny(_)));
    }

    /// An incoming migration's finish: the cookie holds the persistent
    /// definition; `params` selects FINISH3_PARAMS over FINISH3.
    fn finish(params: bool, cookie_domain: bool, cancelled: i32) -> Vec<u8> {
        let inner = WIN.trim_start_matches(|c| c != '<');
        let cookie = format!(
            "<qemu-migration>\n  <name>win2019-vhu</name>\n  <uuid>0c4b5c2e-0000-4000-8000-000000000001</uuid>\n  <hostname>src</hostname>\n  <hostuuid>0c4b5c2e-0000-4000-8000-000000000002</hostuuid>\n  <feature name='persistent'/>\n{}</qemu-migration>\n\0",
            if cookie_domain { inner } else { "" }
        );
        let mut a = Vec::new();
        if params {
            put_u32(&mut a, 1);
            put_string(&mut a, b"migrate_uri");
            put_i32(&mut a, 7);
            put_string(&mut a, b"tcp://dst:49152");
        } else {
            put_string(&mut a, b"win2019-vhu");
        }
        put_string(&mut a, cookie.as_bytes());
        if params {
            put_u32(&mut a, 8); // VIR_MIGRATE_PERSIST_DEST
        } else {
            put_u32(&mut a, 0); // dconnuri: none
            put_u32(&mut a, 1);
            put_string(&mut a, b"tcp://dst:49152");
            a.extend_from_slice(&8u64.to_be_bytes());
        }
        put_i32(&mut a, cancelled);
        let p = if params {
            procs::DOMAIN_MIGRATE_FINISH3_PARAMS
        } else {
            procs::DOMAIN_MIGRATE_FINISH3
        };
        call(p, &a)
    }

    #[test]
    fn migration_finish_checks_the_persistent_definition_in_the_cookie() {
        let mut deny = Config::default();
        deny.proxy.fixed_abi_calls = FixedAbiAction::Deny;
        for params in [false, true] {
            let name = if params {
                "DOMAIN_MIGRATE_FINISH3_PARAMS"
            } else {
                "DOMAIN_MIGRATE_FINISH3"
            };
            let f = finish(params, true, 0);
            let d = decide(&f, &deny, "uid=0", &mut Fake::default());
            let FrameAction::Deny(r) = d.action else {
                panic!("{name}: {:?}", d.action)
            };
            let m = decode_error(payload(&r)).unwrap().message.unwrap();
            assert!(
                m.contains(&format!("vhostfix refused {name} for domain 'win2019-vhu'")),
                "{m}"
            );
            assert!(m.contains("has model e1000"), "{m}");
            // The default forwards, and says so in the log.
            let d = decide(&f, &Config::default(), "uid=0", &mut Fake::default());
            assert_eq!(d.action, FrameAction::Forward, "{name}");
            let (level, line) = d.log.unwrap();
            assert_eq!(level, log::Level::Warn);
            assert!(line.contains("fixed guest ABI"), "{line}");
            // A cancelled finish only cleans up; a cookie without a persistent
            // definition has nothing to check.
            let d = decide(
                &finish(params, true, 1),
                &deny,
                "uid=0",
                &mut Fake::default(),
            );
            assert_eq!(d.action, FrameAction::Forward, "{name} cancelled");
            let d = decide(
                &finish(params, false, 0),
                &deny,
                "uid=0",
                &mut Fake::default(),
            );
            assert_eq!(d.action, FrameAction::Forward, "{name} without <domain>");
        }
    }

    #[test]
    fn fixed_abi_calls_are_forwarded_or_denied() {
        let mut a = Vec::new();
        put_string(&mut a, b"/var/lib/x.save");
        put_u32(&mut a, 1);
        put_string(&mut a, WIN.as_bytes());
        put_u32(&mut a, 0);
        let f = call(procs::DOMAIN_RESTORE_FLAGS, &a);
        let d = decide(&f, &Config::default(), "uid=0", &mut Fake::default());
        assert_eq!(d.action, FrameAction::Forward);
        let mut c = Config::default();
        c.proxy.fixed_abi_calls = FixedAbiAction::Deny;
        let d = decide(&f, &c, "uid=0", &mut Fake::default());
        let FrameAction::Deny(r) = d.action else {
            panic!()
        };
        assert!(decode_error(payload(&r))
            .unwrap()
            .message
            .unwrap()
            .contains("ABI"));
    }

    #[test]
    fn non_interface_devices_and_bad_xml() {
        let disk = "<disk type='file'><source file='/vhostuser'/></disk>";
        let mut lookup = Fake::answering(Ok(WIN));
        let d = decide(&attach("w", disk), &Config::default(), "uid=0", &mut lookup);
        assert_eq!(d.action, FrameAction::Forward);
        let d = decide(
            &define("<domain><vhostuser"),
            &Config::default(),
            "uid=0",
            &mut Fake::default(),
        );
        assert_eq!(d.action, FrameAction::Forward);
    }

    #[test]
    fn the_upstream_release_decides_what_is_a_violation() {
        // No <model>: libvirt 11.3 fills in virtio itself, 9.0 refuses it.
        let xml = WIN.replace("<model type='e1000'/>", "");
        assert_ne!(xml, WIN);
        let mut v11 = Fake::at("11.3.0");
        let d = decide(&define(&xml), &Config::default(), "uid=0", &mut v11);
        assert_eq!(d.action, FrameAction::Forward);
        assert!(d.log.unwrap().1.contains("libvirt=11.3.0 action=forward"));
        assert_eq!(v11.versions_asked, 1);
        let d = decide(
            &define(&xml),
            &Config::default(),
            "uid=0",
            &mut Fake::at("9.0.0"),
        );
        assert!(
            matches!(d.action, FrameAction::Replace(_)),
            "{:?}",
            d.action
        );
        // Calls without vhost-user XML never ask.
        let plain = WIN.replace("vhostuser", "network");
        let mut never = Fake::at("9.0.0");
        let d = decide(&define(&plain), &Config::default(), "uid=0", &mut never);
        assert_eq!(d.action, FrameAction::Forward);
        assert_eq!(never.versions_asked, 0);
    }

    #[test]
    fn quick_check_cannot_be_bypassed_by_references() {
        for (xml, may) in [
            ("<interface type='vhostuser'/>", true),
            ("<interface type='vhost&#117;ser'/>", true),
            ("<interface type='&#x76;hostuser'/>", true),
            (
                "<!DOCTYPE d [<!ENTITY v 'vhostuser'>]><interface type='&v;'/>",
                true,
            ),
            ("<!doctype d><interface/>", true),
            ("<interface type='network'/>", false),
            ("<interface type='bridge'>&amp;&lt;</interface>", false),
            ("", false),
        ] {
            assert_eq!(may_contain_vhostuser(xml.as_bytes()), may, "{xml}");
        }
        let utf16: Vec<u8> = [0xff, 0xfe]
            .into_iter()
            .chain("<domain/>".bytes().flat_map(|b| [b, 0]))
            .collect();
        assert!(may_contain_vhostuser(&utf16));
    }

    #[test]
    fn character_reference_in_the_type_is_rewritten_like_filter_does() {
        let xml = WIN.replace("type='vhostuser'", "type='vhost&#117;ser'");
        assert_ne!(xml, WIN);
        let d = decide(
            &define(&xml),
            &Config::default(),
            "uid=0",
            &mut Fake::default(),
        );
        let FrameAction::Replace(f) = d.action else {
            panic!("{:?}", d.action)
        };
        let out = xml_of(&f);
        assert!(out.contains("<model type='virtio'/>"), "{out}");
        assert!(
            out.contains("vhost&#117;ser"),
            "only the model changes: {out}"
        );
    }

    proptest::proptest! {
        /// Damaged calls never panic the decision and a replacement stays a valid frame.
        #[test]
        fn damaged_frames_never_panic(cut in 0usize..1400, flip in 0usize..1400, byte in proptest::prelude::any::<u8>()) {
            let mut f = define(WIN);
            if flip < f.len() { f[flip] ^= byte; }
            f.truncate(cut.max(28));
            let d = decide(&f, &Config::default(), "t", &mut Fake::answering(Ok(WIN)));
            if let FrameAction::Replace(r) = d.action {
                proptest::prop_assert_eq!(frame_len(r[..4].try_into().unwrap()), Ok(r.len()));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = decide(&data, &Config::default(), "t", &mut Fake::answering(Err("x")));
            let _ = crate::rpc::frame::fd_count(&data);
            let _ = decode_error(&data);
        }
    }
}
