//! The fast path (a streaming scan that keeps a few elements) and the tree
//! path (roxmltree's whole tree) must give the same answer on every input the
//! fast path vouches for, and the fast path must vouch for the ordinary
//! documents (else the speed is lost without any test failing). Whatever it
//! does not vouch for goes to the tree path, so errors and limits keep their
//! exact texts.

mod support;

use proptest::prelude::*;
use std::path::PathBuf;
use vhostfix::stages::{analyze_fast, analyze_tree};
use vhostfix::{decode, Detection, Guests, InputLimits, Policy, Verdict};

/// Both paths on `text`; the fast one's answer if it gave one.
fn agree(text: &str, policy: &Policy) -> Result<bool, TestCaseError> {
    let tree = format!("{:?}", analyze_tree(text, policy));
    match analyze_fast(text, policy) {
        Some(fast) => {
            prop_assert_eq!(format!("{fast:?}"), tree, "on {:?}", text);
            Ok(true)
        }
        None => Ok(false),
    }
}

fn policies() -> Vec<Policy> {
    vec![
        Policy::default(),
        Policy {
            guests: Guests::Any,
            libvirt: Some("11.3.0".parse().unwrap()),
            ..Policy::default()
        },
        Policy {
            guest_os: Some(Detection::given(Verdict::Windows, "test")),
            ..Policy::default()
        },
    ]
}

/// Golden inputs that the fast path leaves to the tree: errors, limits, and
/// the one ordinary file with a processing instruction.
const TREE_CASES: [&str; 8] = [
    "bad_empty",
    "bad_entity_bomb",
    "bad_latin1_declaration",
    "bad_mismatched_tag",
    "bad_root",
    "bad_too_deep",
    "bad_truncated",
    "comments_cdata",
];

#[test]
fn golden_inputs_agree_and_ordinary_ones_take_the_fast_path() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/files");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(case) = name.strip_suffix(".xml").filter(|c| !c.ends_with(".out")) else {
            continue;
        };
        let bytes = std::fs::read(&path).unwrap();
        let Ok(text) = decode(&bytes, &InputLimits::default()) else {
            continue; // bad_not_utf8: refused before either path
        };
        for p in policies() {
            let fast = agree(text, &p).unwrap();
            assert_eq!(
                fast,
                !TREE_CASES.contains(&case),
                "{case}: fast path taken: {fast}"
            );
        }
        seen += 1;
    }
    assert!(seen >= 35, "only {seen} golden inputs found");
}

/// Pieces of a domain, each in a few spellings, some of them unusual.
fn domain() -> impl Strategy<Value = String> {
    let q = prop::sample::select(vec!["'", "\""]);
    let eol = prop::sample::select(vec!["\n", "\r\n", "", "\n\t"]);
    let head = prop::sample::select(vec![
        "",
        "<?xml version='1.0' encoding='UTF-8'?>\n",
        "<?xml version=\"1.0\"?>",
        "\u{feff}",
        "<!-- head -->\n",
        "<?xml version='1.0' standalone='yes' ?>",
    ]);
    let root_attrs = prop::sample::select(vec![
        "",
        " xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'",
        " xmlns='urn:other'",
        " id = \"5\"",
    ]);
    let evidence = prop::sample::select(vec![
        "<clock offset='localtime'/>",
        "<clock offset='utc'><timer name='hypervclock' present='yes'/></clock>",
        "<features><acpi/><hyperv mode='custom'><relaxed state='on'/><v:vapic xmlns:v='urn:v' state='on'/></hyperv></features>",
        "<features><hyperv mode='passthrough'/></features>",
        "<description>Windows &amp; more</description>",
        "<description>Windows\r\nServer</description>",
        "<description><!-- c -->Windows</description>",
        "<description>Win<![CDATA[dows]]></description>",
        "<description/>",
        "<metadata><l:libosinfo xmlns:l='http://libosinfo.org/xmlns/libvirt/domain/1.0'><l:os id='http://microsoft.com/win/10'/></l:libosinfo></metadata>",
        "<metadata><l:os xmlns:l='http://libosinfo.org/xmlns/libvirt/domain/1.0' id='http://debian.org/debian/12'/></metadata>",
        "<metadata><n:instance xmlns:n='http://openstack.org/xmlns/libvirt/nova/1.1'><n:image><n:properties><n:property name='os_type'>windows</n:property></n:properties></n:image></n:instance></metadata>",
        "<metadata><n:property xmlns:n='http://openstack.org/xmlns/libvirt/nova/1.1' name='os_type'> Windows\r\n</n:property></metadata>",
        "<metadata><n:property xmlns:n='http://openstack.org/xmlns/libvirt/nova/1.1' name='os_type'>win&#100;ows</n:property></metadata>",
        "<metadata><v:guest xmlns:v='urn:vhostfix:guest:1' os='windows'/></metadata>",
        "<metadata><v:guest xmlns:v='urn:vhostfix:guest:1' os='other'/><guest xmlns='urn:vhostfix:guest:1' os='windows'/></metadata>",
        "<metadata><v:guest xmlns:v='urn:vhostfix:guest:1' os='linux'/></metadata>",
        "<metadata><guest xmlns='urn:vhostfix:guest:1' os='win&#x64;ows'/></metadata>",
        "<name>win&lt;1&gt;</name>",
        "<name>\r\n win \r\n</name>",
        "",
    ]);
    let memory = prop::sample::select(vec![
        "",
        "<memoryBacking><access mode='shared'/></memoryBacking>",
        "<memoryBacking><source type='memfd'/></memoryBacking>",
        "<memoryBacking><hugepages/><access mode = \"private\" /></memoryBacking>",
        "<cpu><topology sockets='1'/><numa><cell id='0' memAccess='shared'/><cell id='1'/></numa></cpu>",
        "<cpu><x:numa xmlns:x='urn:x'><cell id='0' memAccess='private'/></x:numa><numa><cell memAccess='shared'/></numa></cpu>",
    ]);
    let nic = prop::sample::select(vec![
        "<interface type='vhostuser'><mac address='52:54:00:00:00:01'/><source type='unix' path='/s' mode='client'><reconnect enabled='yes'/></source><model type='e1000'/></interface>",
        "<interface type='vhostuser'>\n  <source type='unix' path='/s&amp;t' mode='server'/>\n  <!-- x -->\n  <model type='virtio'/>\n</interface>",
        "<interface type='vhostuser'>\r\n    <mac address='52:54:00:00:00:02'/>\r\n    <source dev='/p'/>\r\n  </interface>",
        "<interface type='vhostuser'>\n  <source dev='x'/><backend type='passt'/>\n  <![CDATA[ ]]>\n  <alias name='n'/></interface>",
        "<interface type='vhostuser'/>",
        "<interface type='vhostuser' ></interface>",
        "<interface type='vhostuser'>text</interface>",
        "<interface type=\"vhostuser\"><model type=\"&#101;1000\"></model></interface>",
        "<interface type='vhost&#117;ser'><model/></interface>",
        "<interface type='vhostuser\n'><model type='e1000'/></interface>",
        "<interface type='vhostuser'><model type='e1000' xmlns:m='urn:m' m:type='x'/></interface>",
        "<interface type='vhostuser'><model    type  =   'e1000'/></interface>",
        "<interface type='bridge'><model type='e1000'/></interface>",
        "<i:interface xmlns:i='urn:i' type='vhostuser'><model type='e1000'/></i:interface>",
        "<interface xmlns='urn:i' type='vhostuser'><model type='e1000'/></interface>",
        "<disk type='file'><source file='/a'/><backingStore type='file'><format type='qcow2'/></backingStore></disk>",
        "<qemu:commandline><qemu:arg value='-x'/></qemu:commandline>",
    ]);
    (
        head,
        root_attrs,
        q,
        eol,
        prop::collection::vec(evidence, 0..3),
        memory,
        prop::collection::vec(nic, 0..5),
    )
        .prop_map(|(head, root_attrs, q, eol, evidence, memory, nics)| {
            let mut s =
                format!("{head}<domain type={q}kvm{q}{root_attrs}>{eol}<name>g</name>{eol}");
            for e in evidence {
                s += e;
                s += eol;
            }
            s += memory;
            s += eol;
            s += "<devices>";
            s += eol;
            for n in nics {
                s += n;
                s += eol;
            }
            s += "</devices>";
            s += eol;
            s += "</domain>";
            s += eol;
            s.replace('\'', q)
        })
}

/// Small damage, much of it of the kinds the scan must notice.
fn damage() -> impl Strategy<Value = Vec<(prop::sample::Index, usize, &'static str)>> {
    prop::collection::vec(
        (
            any::<prop::sample::Index>(),
            0usize..3,
            prop::sample::select(vec![
                "",
                "<",
                ">",
                "'",
                "\"",
                "&",
                "&amp;",
                "&#0;",
                "&#xFFFE;",
                "&bogus;",
                "&#65",
                "]]>",
                "<!--",
                "-->",
                "--",
                "<![CDATA[",
                "<?pi x?>",
                "<!DOCTYPE d>",
                "\r",
                "\u{1}",
                "\u{fffe}",
                "é",
                "<é/>",
                "=",
                " ",
                "/",
                ":",
                "x:",
                "xmlns",
                " a='1'",
                " a='1' a='2'",
                " xmlns:p='urn:p' p:a='1' q:a='2'",
                " xmlns=''",
                "</a>",
                "<a>",
                "<x:a/>",
                "<xml:a/>",
                " xml:lang='en'",
                " xmlns:xml='urn:x'",
                "\u{feff}",
            ]),
        ),
        0..3,
    )
}

/// Attributes, some of them wrong, right after the name of a start tag.
fn tag_damage() -> impl Strategy<Value = Vec<(prop::sample::Index, &'static str)>> {
    prop::collection::vec(
        (
            any::<prop::sample::Index>(),
            prop::sample::select(vec![
                " a='1' a='2'",
                " a='1' b='2'",
                " xmlns:p='urn:p' xmlns:q='urn:p' p:a='1' q:a='2'",
                " xmlns:p='urn:p' xmlns:q='urn:q' p:a='1' q:a='2'",
                " xmlns:p='urn:p' xmlns:p='urn:q'",
                " xmlns='urn:d' xmlns='urn:e'",
                " p:a='1'",
                " xml:lang='en' xml:lang='de'",
                " xmlns:xml='http://www.w3.org/XML/1998/namespace'",
                " xmlns:x='http://www.w3.org/2000/xmlns/'",
                " xmlns=''",
                " xmlns:p=''",
                " type='vhostuser'",
                " type='bridge'",
                " a:xmlns='urn:a'",
                " a='<'",
                " a='&#x9;b\r\nc'",
                " a=\"x'y\"",
                " a = 'x'",
                "a='x'",
                " a",
                " a=x",
            ]),
        ),
        1..3,
    )
}

/// Ends of the names of start tags.
fn tag_name_ends(text: &str) -> Vec<usize> {
    let b = text.as_bytes();
    (0..b.len())
        .filter(|&i| b[i] == b'<' && b.get(i + 1).is_some_and(u8::is_ascii_alphabetic))
        .map(|i| {
            i + 1
                + b[i + 1..]
                    .iter()
                    .position(|c| b" />\r\n\t".contains(c))
                    .unwrap_or(b.len() - i - 1)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn fast_path_agrees_with_the_tree(doc in domain(), cuts in damage(), policy in 0usize..3) {
        let text = support::apply_damage(doc, cuts);
        agree(&text, &policies()[policy])?;
    }

    #[test]
    fn fast_path_agrees_on_attributes(doc in domain(), cuts in tag_damage(), policy in 0usize..3) {
        let mut text = doc;
        for (at, with) in cuts {
            let ends = tag_name_ends(&text);
            let i = ends[at.index(ends.len())];
            text.insert_str(i, with);
        }
        agree(&text, &policies()[policy])?;
    }

    /// The node and depth limits hold to the node: one under the count
    /// sends the document to the tree path, which refuses it.
    #[test]
    fn limits_hold_to_the_node(doc in domain()) {
        if analyze_tree(&doc, &Policy::default()).is_err() {
            return Ok(());
        }
        let tree = roxmltree::Document::parse(&doc).unwrap();
        let nodes = u32::try_from(tree.descendants().count()).unwrap();
        let depth = tree
            .descendants()
            .filter(|n| n.is_element())
            .map(|n| n.ancestors().filter(|a| a.is_element()).count())
            .max()
            .unwrap();
        let depth = u32::try_from(depth).unwrap();
        let with = |max_nodes, max_depth| Policy {
            limits: InputLimits { max_nodes, max_depth, ..InputLimits::default() },
            ..Policy::default()
        };
        let exact = with(nodes, depth);
        prop_assert!(analyze_tree(&doc, &exact).is_ok());
        let fast = agree(&doc, &exact)?;
        for p in [with(nodes - 1, depth), with(nodes, depth - 1)] {
            prop_assert!(analyze_fast(&doc, &p).is_none());
            prop_assert!(analyze_tree(&doc, &p).is_err());
        }
        // Ordinary documents take the fast path.
        if !doc.contains('&') && !doc.contains("<![CDATA[") && !doc.contains('\r') {
            prop_assert!(fast, "fast path refused {:?}", doc);
        }
    }
}

/// roxmltree's `attribute("type")` takes the first attribute with that local
/// name in any namespace; the fast path must answer the same (found by the
/// property test above).
#[test]
fn a_plain_name_finds_a_prefixed_attribute() {
    let text = "<domain><devices><interface type='vhostuser'><model xmlns:m='urn:m' m:type='x' type='e1000'/></interface></devices></domain>";
    for p in policies() {
        assert!(agree(text, &p).unwrap(), "fast path taken");
        let a = analyze_fast(text, &p).unwrap().unwrap();
        assert_eq!(a.nics[0].model.as_deref(), Some("x"));
    }
}

/// Both paths put the value of an attribute where it is, however many
/// spaces surround its `=` (roxmltree's `range_value()` counts them in a u8:
/// before, the tree path replaced the wrong bytes after 255 of them).
#[test]
fn a_value_after_many_spaces_is_found() {
    let spaces = " ".repeat(300);
    let text = format!(
        "<domain><clock offset='localtime'/><devices><interface type='vhostuser'><model type{spaces}={spaces}'e1000'/></interface></devices></domain>"
    );
    let want = text.replace("'e1000'", "'virtio'");
    let p = Policy::default();
    assert!(agree(&text, &p).unwrap(), "fast path taken");
    assert_eq!(analyze_tree(&text, &p).unwrap().output(&text), want);
    assert_eq!(
        analyze_fast(&text, &p).unwrap().unwrap().output(&text),
        want
    );
}
