//! Property tests over generated domains: whatever the shape (quotes, line
//! endings, comments, NIC types and models, OS evidence, policy), the output
//! parses, only vhost-user interfaces change and only in their model, a second
//! pass is a no-op, and an unchanged document comes back byte-identical.

mod support;

use proptest::prelude::*;
use vhostfix::{analyze, NicStatus, Policy};
use vhostfix::{Guests, TargetModel};

#[derive(Debug, Clone)]
struct Nic {
    kind: &'static str,
    model: Option<&'static str>, // None: no <model>; Some(""): <model/> without type
    mac: bool,
    comment: bool,
}

#[derive(Debug, Clone)]
struct Doc {
    quote: char,
    eol: &'static str,
    indent: &'static str,
    signal: usize,
    nics: Vec<Nic>,
    lead_comment: bool,
}

fn nic() -> impl Strategy<Value = Nic> {
    (
        prop::sample::select(vec![
            "vhostuser",
            "vhostuser",
            "bridge",
            "network",
            "direct",
            "user",
        ]),
        prop::option::of(prop::sample::select(vec![
            "e1000",
            "e1000e",
            "rtl8139",
            "virtio",
            "virtio-transitional",
            "virtio-non-transitional",
            "VIRTIO",
            "",
        ])),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(kind, model, mac, comment)| Nic {
            kind,
            model,
            mac,
            comment,
        })
}

fn doc() -> impl Strategy<Value = Doc> {
    (
        prop::sample::select(vec!['\'', '"']),
        prop::sample::select(vec!["\n", "\r\n"]),
        prop::sample::select(vec!["  ", "    ", "\t", ""]),
        0usize..6,
        prop::collection::vec(nic(), 0..6),
        any::<bool>(),
    )
        .prop_map(|(quote, eol, indent, signal, nics, lead_comment)| Doc {
            quote,
            eol,
            indent,
            signal,
            nics,
            lead_comment,
        })
}

fn render(d: &Doc) -> String {
    let q = d.quote;
    let (e, i) = (d.eol, d.indent);
    let mut s = String::new();
    if d.lead_comment {
        s += &format!("<!-- generated <model type={q}e1000{q}/> -->{e}");
    }
    s += &format!("<domain type={q}kvm{q}>{e}{i}<name>gen</name>{e}");
    match d.signal {
        0 => s += &format!("{i}<clock offset={q}localtime{q}/>{e}"),
        1 => s += &format!("{i}<features><hyperv><relaxed state={q}on{q}/></hyperv></features>{e}"),
        2 => s += &format!("{i}<metadata><l:libosinfo xmlns:l={q}http://libosinfo.org/xmlns/libvirt/domain/1.0{q}><l:os id={q}http://microsoft.com/win/11{q}/></l:libosinfo></metadata>{e}"),
        3 => s += &format!("{i}<metadata><l:libosinfo xmlns:l={q}http://libosinfo.org/xmlns/libvirt/domain/1.0{q}><l:os id={q}http://debian.org/debian/12{q}/></l:libosinfo></metadata>{e}"),
        4 => s += &format!("{i}<description><![CDATA[Windows <desk>]]></description>{e}"),
        _ => {}
    }
    s += &format!("{i}<devices>{e}");
    for (n, nic) in d.nics.iter().enumerate() {
        s += &format!("{i}{i}<interface type={q}{}{q}>{e}", nic.kind);
        if nic.comment {
            s += &format!("{i}{i}{i}<!-- nic {n} -->{e}");
        }
        if nic.mac {
            s += &format!("{i}{i}{i}<mac address={q}52:54:00:00:00:{n:02x}{q}/>{e}");
        }
        if nic.kind == "vhostuser" {
            s += &format!(
                "{i}{i}{i}<source type={q}unix{q} path={q}/run/v{n}.sock{q} mode={q}server{q}/>{e}"
            );
        } else {
            s += &format!("{i}{i}{i}<source bridge={q}br{n}{q}/>{e}");
        }
        match nic.model {
            None => {}
            Some("") => s += &format!("{i}{i}{i}<model/>{e}"),
            Some(m) => s += &format!("{i}{i}{i}<model type={q}{m}{q}/>{e}"),
        }
        s += &format!("{i}{i}</interface>{e}");
    }
    s += &format!("{i}</devices>{e}</domain>{e}");
    s
}

/// Byte ranges of the vhost-user `<interface>` elements, and the text of the others.
fn split(text: &str) -> (Vec<std::ops::Range<usize>>, Vec<String>) {
    let doc = roxmltree::Document::parse(text).unwrap();
    let mut vhu = Vec::new();
    let mut others = Vec::new();
    for n in doc.descendants().filter(|n| n.has_tag_name("interface")) {
        if n.attribute("type") == Some("vhostuser") {
            vhu.push(n.range());
        } else {
            others.push(text[n.range()].to_string());
        }
    }
    (vhu, others)
}

fn outside(text: &str, ranges: &[std::ops::Range<usize>]) -> String {
    let mut out = String::new();
    let mut at = 0;
    for r in ranges {
        out += &text[at..r.start];
        at = r.end;
    }
    out += &text[at..];
    out
}

/// An interface's text without its `<model>` element and the whitespace before it.
fn without_model(iface: &str) -> String {
    let doc = roxmltree::Document::parse(iface).unwrap();
    let root = doc.root_element();
    let Some(m) = root.children().find(|c| c.has_tag_name("model")) else {
        return iface.to_string();
    };
    let start = m
        .prev_sibling()
        .filter(|p| p.is_text() && p.text().unwrap_or("x").trim().is_empty())
        .map_or(m.range().start, |p| p.range().start);
    format!("{}{}", &iface[..start], &iface[m.range().end..])
}

fn policy(any_guest: bool, target: usize) -> Policy {
    Policy {
        guests: if any_guest {
            Guests::Any
        } else {
            Guests::Windows
        },
        target_model: [
            TargetModel::Virtio,
            TargetModel::VirtioTransitional,
            TargetModel::VirtioNonTransitional,
        ][target],
        ..Policy::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn edits_are_minimal_and_stable(d in doc(), any_guest in any::<bool>(), target in 0usize..3) {
        let input = render(&d);
        let p = policy(any_guest, target);
        let a = analyze(&input, &p).unwrap();
        let output = a.output(&input);

        // The output parses, and a second pass changes nothing.
        let again = analyze(&output, &p).unwrap();
        prop_assert!(again.edits.is_empty());
        prop_assert!(!again.nics.iter().any(|n| n.status == NicStatus::Fixed));

        // Unchanged documents come back byte for byte.
        if !a.changes() {
            prop_assert_eq!(&output, &input);
        }

        // Outside the vhost-user interfaces nothing differs, and the other
        // interfaces are untouched.
        let (in_vhu, in_others) = split(&input);
        let (out_vhu, out_others) = split(&output);
        prop_assert_eq!(outside(&input, &in_vhu), outside(&output, &out_vhu));
        prop_assert_eq!(in_others, out_others);

        // Inside each vhost-user interface only the model differs.
        prop_assert_eq!(in_vhu.len(), out_vhu.len());
        for (i, o) in in_vhu.iter().zip(&out_vhu) {
            prop_assert_eq!(without_model(&input[i.clone()]), without_model(&output[o.clone()]));
        }

        // Fixed NICs carry the target model; the others keep theirs.
        for (before, after) in a.nics.iter().zip(&again.nics) {
            match before.status {
                NicStatus::Fixed => prop_assert_eq!(after.model.as_deref(), Some(p.target_model.as_str())),
                _ => prop_assert_eq!(&after.model, &before.model),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Untrusted input never panics the core: arbitrary damage to a valid
    /// document either parses or yields an error with a message.
    #[test]
    fn damaged_input_never_panics(
        d in doc(),
        cuts in prop::collection::vec((any::<prop::sample::Index>(), 0usize..4, prop::sample::select(vec!["", "<", ">", "'", "&", "<!--", "]]>", "\u{feff}", "<model type='e1000'/>", "</interface>"])), 1..4),
    ) {
        let text = support::apply_damage(render(&d), cuts);
        match analyze(&text, &Policy::default()) {
            Ok(a) => {
                let out = a.output(&text);
                prop_assert!(analyze(&out, &Policy::default()).is_ok());
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let p = Policy::default();
        let _ = vhostfix::decode(&bytes, &p.limits).and_then(|t| analyze(t, &p).map(|_| ()));
    }
}
