//! What the proxy does with one call: forward it, forward a corrected copy, or
//! answer it with an error. Pure: the domain lookup a device call needs is
//! passed in, so every branch is testable without a daemon.

use super::wire::{self, err, Header, XmlCall, XmlRole};
use crate::config::{Config, FixedAbiAction, OnError, ProxyAction};
use crate::logging::field;
use crate::rules::LibvirtVersion;
use crate::verdict::{self, Severity};
use crate::{Analysis, NicStatus};

/// The action for one frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Relay the frame as it is.
    Forward,
    /// Relay this frame instead (the XML corrected, lengths recomputed).
    Replace(Vec<u8>),
    /// Answer the call with this error reply; nothing goes upstream.
    Deny(Vec<u8>),
}

/// What the decision amounts to, for the proxy's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
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
pub struct Decision {
    pub action: Action,
    pub log: Option<(log::Level, String)>,
    pub outcome: Outcome,
}

impl Decision {
    fn forward() -> Decision {
        Decision {
            action: Action::Forward,
            log: None,
            outcome: Outcome::NotInspected,
        }
    }
}

/// Looks up the XML of the domain a device call names.
pub type Lookup<'a> = dyn FnMut(&wire::DomainRef<'_>) -> Result<String, String> + 'a;

/// Decides about one frame from a client. `who` describes the client for logs.
/// The libvirt release is the configuration's (`None`: unknown).
pub fn decide(frame: &[u8], config: &Config, who: &str, lookup: &mut Lookup<'_>) -> Decision {
    decide_with(frame, config, who, lookup, &mut || None)
}

/// [`decide`], with `version` asked for the upstream libvirt's release when a
/// call needs a decision and the configuration does not name one.
pub fn decide_with(
    frame: &[u8],
    config: &Config,
    who: &str,
    lookup: &mut Lookup<'_>,
    version: &mut dyn FnMut() -> Option<LibvirtVersion>,
) -> Decision {
    let Some(header) = Header::of_frame(frame) else {
        return Decision::forward();
    };
    let call = match wire::xml_call(frame) {
        Ok(Some(c)) => c,
        Ok(None) => return Decision::forward(),
        Err(e) => {
            // libvirtd rejects undecodable arguments itself.
            return Decision {
                action: Action::Forward,
                outcome: Outcome::NotInspected,
                log: Some((
                    log::Level::Debug,
                    format!(
                        "{who} proc={}: arguments not decoded ({e}); forwarded",
                        header.procedure
                    ),
                )),
            };
        }
    };
    if config.proxy.action == ProxyAction::Off || !may_contain_vhostuser(call.xml) {
        return Decision::forward();
    }
    let subject = |a: Option<&Analysis>| -> String {
        match (&call.domain, a.and_then(|a| a.domain.as_ref())) {
            (Some(d), _) => d.name_lossy(),
            (None, Some(n)) => n.clone(),
            (None, None) => "?".into(),
        }
    };
    let fail = |why: String| -> Decision {
        let what = format!("{who} proc={} domain={}", call.name, field(&subject(None)));
        match config.proxy.on_error {
            OnError::Allow => Decision {
                action: Action::Forward,
                outcome: Outcome::Error,
                log: Some((
                    log::Level::Warn,
                    format!("{what}: {why}; forwarded unchanged (proxy.on_error = \"allow\")"),
                )),
            },
            OnError::Deny => {
                let msg = format!(
                    "unsupported configuration: vhostfix could not check {} of domain {}: {why}",
                    call.name,
                    field(&subject(None))
                );
                refusal(
                    &header,
                    &msg,
                    format!("{what}: {why}; denied (proxy.on_error = \"deny\")"),
                    Outcome::Error,
                )
            }
        }
    };
    let mut policy = config.policy();
    if policy.libvirt.is_none() {
        policy.libvirt = version();
    }
    let Ok(text) = std::str::from_utf8(call.xml) else {
        return fail("the XML is not valid UTF-8".into());
    };
    // Some calls carry the guest's <domain> inside a document of their own.
    let text = match wrapper_of(call.procedure) {
        Some((root, what)) => match embedded_domain(text, root, &policy.limits) {
            Ok(Some(t)) => t,
            Ok(None) => return Decision::forward(),
            Err(e) => return fail(format!("{what}: {e}")),
        },
        None => text,
    };
    if call.role == XmlRole::Device {
        let Some(dom) = call.domain else {
            return Decision::forward();
        };
        let os = lookup(&dom).and_then(|xml| {
            crate::analyze(&xml, &config.policy())
                .map(|a| a.detection)
                .map_err(|e| format!("domain XML from libvirt: {e}"))
        });
        match os {
            Ok(d) => policy.guest_os = Some(d),
            Err(e) => {
                return fail(format!(
                    "looking up domain {}: {e}",
                    field(&dom.name_lossy())
                ))
            }
        }
    }
    let a = match crate::analyze(text, &policy) {
        Ok(a) => a,
        // Device XML other than an <interface> is none of our business.
        Err(crate::parse::InputError::UnexpectedRoot { .. }) if call.role == XmlRole::Device => {
            return Decision::forward()
        }
        Err(e) => return fail(format!("XML: {e}")),
    };
    // The shared verdict; sockets are not probed at define time (the backend
    // need not run yet; the hook checks them at start).
    let findings = verdict::findings(&a, &policy, &verdict::unchecked);
    let refused: Vec<&str> = findings
        .iter()
        .filter(|f| f.severity == Severity::Refused)
        .map(|f| f.message.as_str())
        .collect();
    let what = format!(
        "{who} proc={} domain={} verdict={} evidence={} vhostuser_nics={} libvirt={}",
        call.name,
        field(&subject(Some(&a))),
        a.detection.verdict,
        field(&a.detection.reason()),
        a.nics.len(),
        policy
            .libvirt
            .map_or_else(|| "unknown".to_string(), |v| v.to_string())
    );
    if !a.changes() {
        let left = if a.violations_left() {
            " (out of scope, left to libvirt)"
        } else {
            ""
        };
        let (level, also) = if refused.is_empty() {
            (log::Level::Info, String::new())
        } else {
            (
                log::Level::Warn,
                format!("; not fixable here: {}", refused.join("; ")),
            )
        };
        return Decision {
            action: Action::Forward,
            outcome: Outcome::Forwarded,
            log: Some((level, format!("{what} action=forward{left}{also}"))),
        };
    }
    let fixes: Vec<String> = a
        .nics
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
        .collect();
    let deny = |why: &str, key: &str| -> Decision {
        let msg = deny_message(&call, &a, &subject(Some(&a)), why);
        refusal(
            &header,
            &msg,
            format!("{what} action=deny ({key}): {}", fixes.join(", ")),
            Outcome::Denied,
        )
    };
    if call.role == XmlRole::FixedAbi {
        return match config.proxy.fixed_abi_calls {
            FixedAbiAction::Deny => deny(
                "this call keeps the guest's ABI (a saved, migrating or snapshotted guest), so the NIC model cannot change here; shut the guest down, correct its definition and boot it fresh",
                "proxy.fixed_abi_calls = \"deny\"",
            ),
            FixedAbiAction::Forward => Decision {
                action: Action::Forward,
                outcome: Outcome::Forwarded,
                log: Some((log::Level::Warn, format!("{what} action=forward (fixed guest ABI, libvirt decides): {}", fixes.join(", ")))),
            },
        };
    }
    if config.proxy.action == ProxyAction::Deny {
        return deny(
            "set a virtio model in the definition (vhostfix filter does this)",
            "proxy.action = \"deny\"",
        );
    }
    if config.proxy.action == ProxyAction::Report {
        return Decision {
            action: Action::Forward,
            outcome: Outcome::Reported,
            log: Some((
                log::Level::Warn,
                format!(
                    "{what} action=report (proxy.action = \"report\": forwarded unchanged; \"fix\" would rewrite): {}",
                    fixes.join(", ")
                ),
            )),
        };
    }
    let new = a.output(text);
    match wire::replace_string(frame, call.range.clone(), new.as_bytes()) {
        Some(f) => Decision {
            action: Action::Replace(f),
            outcome: Outcome::Rewritten,
            log: Some((
                log::Level::Info,
                format!("{what} action=rewrite: {}", fixes.join(", ")),
            )),
        },
        None => fail("the corrected XML would exceed libvirt's size limits".into()),
    }
}

/// The root element of the document a call wraps its `<domain>` in, and what
/// to call that document in messages: a snapshot redefinition's
/// `<domainsnapshot>`, an incoming migration's cookie (`<qemu-migration>`,
/// whose `<domain>` is the persistent definition sent with
/// VIR_MIGRATE_PERSIST_DEST).
fn wrapper_of(procedure: i32) -> Option<(&'static str, &'static str)> {
    use wire::procs::*;
    match procedure {
        DOMAIN_SNAPSHOT_CREATE_XML => Some(("domainsnapshot", "snapshot XML")),
        DOMAIN_MIGRATE_FINISH3 | DOMAIN_MIGRATE_FINISH3_PARAMS => {
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
    limits: &crate::parse::Limits,
) -> Result<Option<&'t str>, crate::parse::InputError> {
    let doc = crate::parse::parse_any(text, limits)?;
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
fn refusal(header: &wire::Header, message: &str, log: String, outcome: Outcome) -> Decision {
    Decision {
        outcome,
        action: Action::Deny(wire::error_reply(
            header,
            err::CONFIG_UNSUPPORTED,
            err::FROM_DOMAIN,
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
pub fn may_contain_vhostuser(xml: &[u8]) -> bool {
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
    use crate::proxy::wire::{
        build_frame, decode_error, mtype, payload, procs, put_i32, put_string, put_u32, status,
        PROG_REMOTE,
    };

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

    fn no_lookup() -> impl FnMut(&wire::DomainRef<'_>) -> Result<String, String> {
        |_d: &wire::DomainRef<'_>| -> Result<String, String> { panic!("no lookup expected") }
    }

    fn xml_of(frame: &[u8]) -> String {
        String::from_utf8(wire::xml_call(frame).unwrap().unwrap().xml.to_vec()).unwrap()
    }

    #[test]
    fn windows_domain_is_rewritten() {
        let d = decide(&define(WIN), &Config::default(), "uid=0", &mut no_lookup());
        let Action::Replace(f) = d.action else {
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
        let d = decide(&snapshot(0), &c, "uid=0", &mut no_lookup());
        assert_eq!(d.action, Action::Forward);
        let d = decide(
            &snapshot(wire::SNAPSHOT_CREATE_REDEFINE),
            &c,
            "uid=0",
            &mut no_lookup(),
        );
        let Action::Deny(reply) = d.action else {
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
        let d = decide(&snapshot(1), &Config::default(), "uid=0", &mut no_lookup());
        assert_eq!(d.action, Action::Forward);
    }

    #[test]
    fn unrelated_calls_are_forwarded_untouched() {
        let plain = WIN.replace("vhostuser", "network");
        let d = decide(
            &define(&plain),
            &Config::default(),
            "uid=0",
            &mut no_lookup(),
        );
        assert_eq!(d.action, Action::Forward);
        let d = decide(&call(3, &[]), &Config::default(), "uid=0", &mut no_lookup());
        assert_eq!(d.action, Action::Forward);
    }

    #[test]
    fn deny_policy_answers_with_config_unsupported() {
        let mut c = Config::default();
        c.proxy.action = ProxyAction::Deny;
        let d = decide(&define(WIN), &c, "uid=0", &mut no_lookup());
        let Action::Deny(reply) = d.action else {
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
        let mut looked = Vec::new();
        let mut lookup = |d: &wire::DomainRef<'_>| -> Result<String, String> {
            looked.push(d.name_lossy());
            Ok(WIN.to_string())
        };
        let d = decide(
            &attach("win2019-vhu", NIC),
            &Config::default(),
            "uid=0",
            &mut lookup,
        );
        let Action::Replace(f) = d.action else {
            panic!("{:?}", d.action)
        };
        assert!(xml_of(&f).contains("<model type='virtio'/>"));
        assert_eq!(looked, vec!["win2019-vhu".to_string()]);
        // Flags after the XML survive.
        assert_eq!(&f[f.len() - 4..], &2u32.to_be_bytes());

        let linux = "<domain type='qemu'><name>l</name><os><type>hvm</type></os></domain>";
        let mut lookup =
            |_d: &wire::DomainRef<'_>| -> Result<String, String> { Ok(linux.to_string()) };
        let d = decide(&attach("l", NIC), &Config::default(), "uid=0", &mut lookup);
        assert_eq!(d.action, Action::Forward);
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
            &mut no_lookup(),
        );
        let (_, line) = d.log.unwrap();
        // (ESC cannot occur in XML; NEL and a bidi override can.)
        assert!(!line.contains('\n') && !line.contains('\u{85}'), "{line}");
        assert!(
            line.contains("domain='a\\nvhostfix: info: x\\' action=allow\\u{85}\\u{202e}' verdict=windows evidence='"),
            "{line}"
        );
        let mut lookup = |_d: &wire::DomainRef<'_>| -> Result<String, String> {
            Err("Domain not found: 'x\ny'".into())
        };
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
        let mut lookup =
            |_d: &wire::DomainRef<'_>| -> Result<String, String> { Err("no such domain".into()) };
        let d = decide(
            &attach("gone", NIC),
            &Config::default(),
            "uid=0",
            &mut lookup,
        );
        assert_eq!(d.action, Action::Forward);
        let mut c = Config::default();
        c.proxy.on_error = OnError::Deny;
        let d = decide(&attach("gone", NIC), &c, "uid=0", &mut lookup);
        assert!(matches!(d.action, Action::Deny(_)));
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
            let d = decide(&f, &deny, "uid=0", &mut no_lookup());
            let Action::Deny(r) = d.action else {
                panic!("{name}: {:?}", d.action)
            };
            let m = decode_error(payload(&r)).unwrap().message.unwrap();
            assert!(
                m.contains(&format!("vhostfix refused {name} for domain 'win2019-vhu'")),
                "{m}"
            );
            assert!(m.contains("has model e1000"), "{m}");
            // The default forwards, and says so in the log.
            let d = decide(&f, &Config::default(), "uid=0", &mut no_lookup());
            assert_eq!(d.action, Action::Forward, "{name}");
            let (level, line) = d.log.unwrap();
            assert_eq!(level, log::Level::Warn);
            assert!(line.contains("fixed guest ABI"), "{line}");
            // A cancelled finish only cleans up; a cookie without a persistent
            // definition has nothing to check.
            let d = decide(&finish(params, true, 1), &deny, "uid=0", &mut no_lookup());
            assert_eq!(d.action, Action::Forward, "{name} cancelled");
            let d = decide(&finish(params, false, 0), &deny, "uid=0", &mut no_lookup());
            assert_eq!(d.action, Action::Forward, "{name} without <domain>");
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
        let d = decide(&f, &Config::default(), "uid=0", &mut no_lookup());
        assert_eq!(d.action, Action::Forward);
        let mut c = Config::default();
        c.proxy.fixed_abi_calls = FixedAbiAction::Deny;
        let d = decide(&f, &c, "uid=0", &mut no_lookup());
        let Action::Deny(r) = d.action else { panic!() };
        assert!(decode_error(payload(&r))
            .unwrap()
            .message
            .unwrap()
            .contains("ABI"));
    }

    #[test]
    fn non_interface_devices_and_bad_xml() {
        let disk = "<disk type='file'><source file='/vhostuser'/></disk>";
        let mut lookup =
            |_d: &wire::DomainRef<'_>| -> Result<String, String> { Ok(WIN.to_string()) };
        let d = decide(&attach("w", disk), &Config::default(), "uid=0", &mut lookup);
        assert_eq!(d.action, Action::Forward);
        let d = decide(
            &define("<domain><vhostuser"),
            &Config::default(),
            "uid=0",
            &mut no_lookup(),
        );
        assert_eq!(d.action, Action::Forward);
    }

    #[test]
    fn the_upstream_release_decides_what_is_a_violation() {
        // No <model>: libvirt 11.3 fills in virtio itself, 9.0 refuses it.
        let xml = WIN.replace("<model type='e1000'/>", "");
        assert_ne!(xml, WIN);
        let mut asked = 0;
        let mut v11 = || {
            asked += 1;
            "11.3.0".parse().ok()
        };
        let d = decide_with(
            &define(&xml),
            &Config::default(),
            "uid=0",
            &mut no_lookup(),
            &mut v11,
        );
        assert_eq!(d.action, Action::Forward);
        assert!(d.log.unwrap().1.contains("libvirt=11.3.0 action=forward"));
        assert_eq!(asked, 1);
        let mut v9 = || "9.0.0".parse().ok();
        let d = decide_with(
            &define(&xml),
            &Config::default(),
            "uid=0",
            &mut no_lookup(),
            &mut v9,
        );
        assert!(matches!(d.action, Action::Replace(_)), "{:?}", d.action);
        // Calls without vhost-user XML never ask.
        let mut never = || -> Option<LibvirtVersion> { panic!("asked") };
        let plain = WIN.replace("vhostuser", "network");
        let d = decide_with(
            &define(&plain),
            &Config::default(),
            "uid=0",
            &mut no_lookup(),
            &mut never,
        );
        assert_eq!(d.action, Action::Forward);
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
        let d = decide(&define(&xml), &Config::default(), "uid=0", &mut no_lookup());
        let Action::Replace(f) = d.action else {
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
            let mut lookup = |_d: &wire::DomainRef<'_>| -> Result<String, String> { Ok(WIN.to_string()) };
            let d = decide(&f, &Config::default(), "t", &mut lookup);
            if let Action::Replace(r) = d.action {
                proptest::prop_assert_eq!(wire::frame_len(r[..4].try_into().unwrap()), Ok(r.len()));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut lookup = |_d: &wire::DomainRef<'_>| -> Result<String, String> { Err("x".into()) };
            let _ = decide(&data, &Config::default(), "t", &mut lookup);
            let _ = wire::fd_count(&data);
            let _ = wire::decode_error(&data);
        }
    }
}
