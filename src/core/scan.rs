//! The fast path: one streaming pass over the input that checks it and keeps
//! only the elements the analysis reads, instead of building roxmltree's tree
//! of every node.
//!
//! [`scan`] vouches for a document only when it is sure that roxmltree
//! accepts it within every limit and that the small tree it keeps answers the
//! analysis' questions exactly as roxmltree's tree would. For anything else
//! (any error, a limit reached, a DTD, an unusual construct: processing
//! instructions, non-ASCII names, references or carriage returns where their
//! value matters, the `xml` prefix on an element, very many attributes on one
//! element...) it returns `None` and the caller takes the tree path, which
//! gives the error with its position. So the fast path needs no error
//! messages of its own.
//!
//! It checks what roxmltree checks: characters (XML's `Char`), names, the
//! nesting of tags, the syntax of attributes, comments, CDATA and the XML
//! declaration, references, namespace prefixes and declarations, duplicate
//! attributes, and the node count and depth limits.
//!
//! What it keeps: the root; every child of a `<domain>`; the whole of
//! `<metadata>`; the children of `<clock>`, `<memoryBacking>`,
//! `<features>` and `<features><hyperv>`; `<cpu><numa>` and its children;
//! `<devices><interface>`, its children and theirs. Text is kept for
//! `<name>`, `<description>` and `<metadata>`'s `property` elements only.

use super::bytes::{find, find2, find_seq};
use super::parse::{check_declared_encoding, DocKind, InputLimits};
use super::xml::{Attr, Element};
use std::borrow::Cow;
use std::ops::Range;

const NONE: u32 = u32::MAX;
const XML_URI: &str = "http://www.w3.org/XML/1998/namespace";
const XMLNS_URI: &str = "http://www.w3.org/2000/xmlns/";
/// More attributes than this on one element: the tree path (roxmltree's
/// duplicate check is quadratic too, but this one need not be).
const MAX_ATTRS: usize = 64;

/// The elements kept from one document.
pub(crate) struct Lite<'t> {
    text: &'t str,
    kind: DocKind,
    nodes: Vec<Node<'t>>,
    attrs: Vec<LiteAttr<'t>>,
}

struct Node<'t> {
    ns: Option<&'t str>,
    local: &'t str,
    attrs: Range<u32>,
    start: usize,
    end: usize,
    first_child: u32,
    last_child: u32,
    next_sibling: u32,
    /// One past the last kept node inside this one.
    subtree_end: u32,
    text: Option<Cow<'t, str>>,
    /// The first token of the text node just before this element, if any.
    lead: Option<(usize, usize)>,
}

/// An attribute (namespace declarations are not attributes).
struct LiteAttr<'t> {
    local: &'t str,
    value: Cow<'t, str>,
    start: usize,
    value_range: (usize, usize),
}

impl<'t> Lite<'t> {
    pub(crate) fn kind(&self) -> DocKind {
        self.kind
    }

    pub(crate) fn root(&self) -> LiteElement<'_, 't> {
        LiteElement { lite: self, id: 0 }
    }
}

/// One kept element.
#[derive(Clone, Copy)]
pub(crate) struct LiteElement<'a, 't> {
    lite: &'a Lite<'t>,
    id: u32,
}

impl<'a, 't> LiteElement<'a, 't> {
    fn node(self) -> &'a Node<'t> {
        &self.lite.nodes[self.id as usize]
    }

    fn at(self, id: u32) -> Self {
        LiteElement {
            lite: self.lite,
            id,
        }
    }
}

impl<'a, 't: 'a> Element<'a> for LiteElement<'a, 't> {
    fn input(self) -> &'a str {
        self.lite.text
    }

    fn namespace(self) -> Option<&'a str> {
        self.node().ns
    }

    fn name(self) -> &'a str {
        self.node().local
    }

    /// Like roxmltree, the first attribute with that local name, whatever
    /// its namespace.
    fn attribute_at(self, name: &str) -> Option<Attr<'a>> {
        let r = &self.node().attrs;
        self.lite.attrs[r.start as usize..r.end as usize]
            .iter()
            .find(|a| a.local == name)
            .map(|a| Attr {
                value: &a.value,
                start: a.start,
                value_range: a.value_range,
            })
    }

    fn range(self) -> Range<usize> {
        self.node().start..self.node().end
    }

    fn elements(self) -> impl Iterator<Item = Self> {
        let mut next = self.node().first_child;
        std::iter::from_fn(move || {
            (next != NONE).then(|| {
                let e = self.at(next);
                next = e.node().next_sibling;
                e
            })
        })
    }

    /// Complete only where every descendant is kept (`<metadata>`).
    fn descendants(self) -> impl Iterator<Item = Self> {
        (self.id..self.node().subtree_end).map(move |id| self.at(id))
    }

    /// Kept only where the analysis reads it (see the module's notes).
    fn text(self) -> Option<&'a str> {
        self.node().text.as_deref()
    }

    /// Complete only where every child is kept (`<interface>`).
    fn last_element(self) -> Option<(Self, &'a str)> {
        let last = self.node().last_child;
        (last != NONE).then(|| {
            let e = self.at(last);
            let lead = e.node().lead.map_or("", |(s, end)| &self.lite.text[s..end]);
            (e, lead)
        })
    }
}

/// What happens to the children of a kept element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Not kept, nor is anything inside.
    Skip,
    /// Kept; its children are not.
    Leaf,
    /// Kept; its children are kept as leaves.
    Children,
    Domain,
    Metadata,
    Features,
    Cpu,
    Devices,
    Interface,
}

/// The mode of a child named `local` (in no namespace when `plain`) of an
/// element in mode `parent`.
fn child_mode(parent: Mode, plain: bool, local: &str) -> Mode {
    match parent {
        Mode::Skip | Mode::Leaf => Mode::Skip,
        Mode::Children => Mode::Leaf,
        Mode::Metadata => Mode::Metadata,
        Mode::Interface => Mode::Children,
        Mode::Domain if plain => match local {
            "metadata" => Mode::Metadata,
            "features" => Mode::Features,
            "clock" | "memoryBacking" => Mode::Children,
            "cpu" => Mode::Cpu,
            "devices" => Mode::Devices,
            _ => Mode::Leaf,
        },
        Mode::Domain => Mode::Leaf,
        Mode::Features if plain && local == "hyperv" => Mode::Children,
        Mode::Features => Mode::Leaf,
        Mode::Cpu if plain && local == "numa" => Mode::Children,
        Mode::Devices if plain && local == "interface" => Mode::Interface,
        Mode::Cpu | Mode::Devices => Mode::Skip,
    }
}

/// Byte classes for names: bit 1 may start a name part, bit 2 may continue one.
const fn name_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphabetic() || b == b'_' {
            t[c] = 3;
        } else if b.is_ascii_digit() || b == b'.' || b == b'-' {
            t[c] = 2;
        }
        c += 1;
    }
    t
}
const NAME: [u8; 256] = name_classes();

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// A qualified name of ASCII name characters at `at`, `prefix:local` or
/// `local`, each part starting with a letter or `_`: its end and the
/// position of its colon. `None` for anything else (non-ASCII names are the
/// tree path's).
fn qname(b: &[u8], at: usize) -> Option<(usize, Option<usize>)> {
    let mut i = at;
    if NAME[*b.get(i)? as usize] & 1 == 0 {
        return None;
    }
    i += 1;
    let mut colon = None;
    while let Some(&c) = b.get(i) {
        if NAME[c as usize] != 0 {
            i += 1;
        } else if c == b':' && colon.is_none() && NAME[*b.get(i + 1)? as usize] & 1 != 0 {
            colon = Some(i);
            i += 2;
        } else if c == b':' || c >= 0x80 {
            return None;
        } else {
            break;
        }
    }
    Some((i, colon))
}

/// True for a character XML allows (`Char`).
fn is_xml_char(c: char) -> bool {
    if (c as u32) < 0x20 {
        matches!(c, '\t' | '\n' | '\r')
    } else {
        !matches!(c as u32, 0xFFFE | 0xFFFF)
    }
}

/// The character reference or predefined entity at `at` (`&...;`): the
/// character and the reference's length. `None` for anything else, which
/// without a DTD is an error (or unusual enough for the tree path).
fn reference(b: &[u8], at: usize) -> Option<(char, usize)> {
    let rest = b.get(at + 1..)?;
    let semi = find(b';', &rest[..rest.len().min(12)])?;
    let body = &rest[..semi];
    let number = |digits: &[u8], radix: u32| -> Option<char> {
        let digits = std::str::from_utf8(digits).ok()?;
        char::from_u32(u32::from_str_radix(digits, radix).ok()?)
    };
    let c = match body {
        b"lt" => '<',
        b"gt" => '>',
        b"amp" => '&',
        b"quot" => '"',
        b"apos" => '\'',
        [b'#', b'x', hex @ ..] if !hex.is_empty() && hex.iter().all(u8::is_ascii_hexdigit) => {
            number(hex, 16)?
        }
        [b'#', dec @ ..] if !dec.is_empty() && dec.iter().all(u8::is_ascii_digit) => {
            number(dec, 10)?
        }
        _ => return None,
    };
    is_xml_char(c).then_some((c, semi + 2))
}

/// Checks every byte of the document in one pass: only XML characters
/// (no control characters but tab, LF and CR; no U+FFFE or U+FFFF), every
/// `&` a well-formed reference (in comments and CDATA too, where any `&`
/// would be allowed: those documents take the tree path). Returns how many
/// `]]>` the text holds, which must all end CDATA sections.
fn check_bytes(b: &[u8]) -> Option<usize> {
    const CHUNK: usize = 64;
    let mut ends = 0;
    for (n, chunk) in b.chunks(CHUNK).enumerate() {
        // Without branches, so that it runs in vector lanes.
        let flag = chunk.iter().fold(0u8, |acc, &c| {
            let control = (c < 0x20) & (c != b'\t') & (c != b'\n') & (c != b'\r');
            acc | u8::from(control | (c == 0xEF) | (c == b'&') | (c == b']'))
        });
        if flag == 0 {
            continue;
        }
        for (i, &c) in chunk.iter().enumerate() {
            let at = n * CHUNK + i;
            match c {
                b'&' => {
                    reference(b, at)?;
                }
                b']' if b[at..].starts_with(b"]]>") => ends += 1,
                0xEF if b.get(at + 1) == Some(&0xBF)
                    && matches!(b.get(at + 2), Some(0xBE | 0xBF)) =>
                {
                    return None
                }
                c if c < 0x20 && !is_space(c) => return None,
                _ => {}
            }
        }
    }
    Some(ends)
}

/// An attribute value as roxmltree gives it: references replaced, tab, LF
/// and CR as spaces (CR LF as one space).
fn attribute_value(raw: &str) -> Option<Cow<'_, str>> {
    let b = raw.as_bytes();
    if !b.iter().any(|&c| matches!(c, b'&' | b'\t' | b'\n' | b'\r')) {
        return Some(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'&' => {
                let (c, len) = reference(b, i)?;
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                i += len;
                continue;
            }
            b'\r' if b.get(i + 1) == Some(&b'\n') => {}
            b'\t' | b'\n' | b'\r' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// Text with line ends normalised (CR LF and lone CR become LF).
fn line_ends(raw: &str) -> Cow<'_, str> {
    if find(b'\r', raw.as_bytes()).is_none() {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(raw.replace("\r\n", "\n").replace('\r', "\n"))
    }
}

/// An attribute of the start tag being read.
struct TagAttr<'t> {
    prefix: &'t str,
    local: &'t str,
    ns: Option<&'t str>,
    start: usize,
    value: (usize, usize),
}

/// An element whose end tag is still to come.
struct Open {
    name: (usize, usize),
    node: u32,
    mode: Mode,
    ns_mark: usize,
}

struct Scanner<'t> {
    text: &'t str,
    b: &'t [u8],
    pos: usize,
    limits: InputLimits,
    nodes: Vec<Node<'t>>,
    attrs: Vec<LiteAttr<'t>>,
    /// roxmltree's node count: its root node, elements, text nodes, comments.
    count: u64,
    cdata: usize,
    stack: Vec<Open>,
    /// In-scope namespace declarations: prefix (`""` for the default) and URI.
    ns: Vec<(&'t str, &'t str)>,
    tag: Vec<TagAttr<'t>>,
    /// The first token of the text node being read, if in one.
    run: Option<(usize, usize)>,
    /// The kept element whose text is being read.
    capture: u32,
}

/// Scans `text`; `None` when the document needs the tree path.
pub(crate) fn scan<'t>(text: &'t str, limits: &InputLimits) -> Option<Lite<'t>> {
    if text.len() > limits.max_input_bytes {
        return None;
    }
    check_declared_encoding(text).ok()?;
    let b = text.as_bytes();
    let ends = check_bytes(b)?;
    let mut s = Scanner {
        text,
        b,
        pos: 0,
        limits: *limits,
        nodes: Vec::with_capacity(64),
        attrs: Vec::with_capacity(128),
        count: 1,
        cdata: 0,
        stack: Vec::with_capacity(32),
        ns: Vec::new(),
        tag: Vec::with_capacity(16),
        run: None,
        capture: NONE,
    };
    s.prolog()?;
    s.content()?;
    s.epilog()?;
    if s.cdata != ends || s.count > u64::from(limits.max_nodes) {
        return None;
    }
    let kind = if s.nodes[0].local == "domain" {
        DocKind::Domain
    } else {
        DocKind::Interface
    };
    Some(Lite {
        text,
        kind,
        nodes: s.nodes,
        attrs: s.attrs,
    })
}

impl<'t> Scanner<'t> {
    fn starts_with(&self, s: &[u8]) -> bool {
        self.b[self.pos..].starts_with(s)
    }

    fn byte(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    /// Skips XML white space; true when there was some.
    fn spaces(&mut self) -> bool {
        let from = self.pos;
        while self.byte().is_some_and(is_space) {
            self.pos += 1;
        }
        self.pos > from
    }

    fn expect(&mut self, s: &[u8]) -> Option<()> {
        self.starts_with(s).then(|| self.pos += s.len())
    }

    /// `S? '=' S?` and a quoted value: the value's range.
    fn eq_quoted(&mut self) -> Option<(usize, usize)> {
        self.spaces();
        self.expect(b"=")?;
        self.spaces();
        let quote = self.byte().filter(|&q| q == b'\'' || q == b'"')?;
        let start = self.pos + 1;
        let len = find2(quote, b'<', &self.b[start..])?;
        if self.b[start + len] != quote {
            return None;
        }
        self.pos = start + len + 1;
        Some((start, start + len))
    }

    /// The XML declaration, in the forms every tool writes; the rest is the tree's.
    fn declaration(&mut self) -> Option<()> {
        if self.starts_with(b"\xEF\xBB\xBF") {
            self.pos += 3;
        }
        if !self.starts_with(b"<?xml ") {
            return Some(());
        }
        self.pos += 5;
        self.spaces();
        self.expect(b"version")?;
        let (s, e) = self.eq_quoted()?;
        let ok = |r: &[u8], f: fn(&u8) -> bool| !r.is_empty() && r.iter().all(f);
        if !ok(&self.b[s..e], |c| c.is_ascii_digit() || *c == b'.') {
            return None;
        }
        let mut space = self.spaces();
        if space && self.starts_with(b"encoding") {
            self.pos += 8;
            let (s, e) = self.eq_quoted()?;
            if !ok(&self.b[s..e], |c| {
                c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-')
            }) {
                return None;
            }
            space = self.spaces();
        }
        if space && self.starts_with(b"standalone") {
            self.pos += 10;
            let (s, e) = self.eq_quoted()?;
            if !matches!(&self.b[s..e], b"yes" | b"no") {
                return None;
            }
            self.spaces();
        }
        self.expect(b"?>")
    }

    /// `<!-- ... -->` at `pos`.
    fn comment(&mut self) -> Option<()> {
        let from = self.pos + 4;
        let len = find_seq(&self.b[from..], b"-->")?;
        let body = &self.b[from..from + len];
        if find_seq(body, b"--").is_some() || body.ends_with(b"-") {
            return None;
        }
        self.pos = from + len + 3;
        self.count += 1;
        self.end_run();
        Some(())
    }

    /// Before the root: white space and comments.
    fn prolog(&mut self) -> Option<()> {
        self.declaration()?;
        loop {
            self.spaces();
            if self.starts_with(b"<!--") {
                self.comment()?;
            } else if self.byte() == Some(b'<')
                && self
                    .b
                    .get(self.pos + 1)
                    .is_some_and(|&c| NAME[c as usize] & 1 != 0)
            {
                return self.start_tag();
            } else {
                return None;
            }
        }
    }

    /// After the root: white space and comments.
    fn epilog(&mut self) -> Option<()> {
        loop {
            self.spaces();
            if self.pos == self.b.len() {
                return Some(());
            }
            if !self.starts_with(b"<!--") {
                return None;
            }
            self.comment()?;
        }
    }

    fn end_run(&mut self) {
        self.run = None;
        self.capture = NONE;
    }

    /// A piece of text (`text` token or CDATA content) at `range`, the token at `token`.
    fn text_piece(&mut self, piece: &'t str, token: (usize, usize), is_cdata: bool) -> Option<()> {
        if self.run.is_none() {
            self.run = Some(token);
            self.count += 1;
        }
        if self.capture != NONE {
            if !is_cdata && find(b'&', piece.as_bytes()).is_some() {
                return None;
            }
            let piece = line_ends(piece);
            let node = &mut self.nodes[self.capture as usize];
            node.text = Some(match node.text.take() {
                None => piece,
                Some(before) => Cow::Owned(before.into_owned() + &piece),
            });
        }
        Some(())
    }

    /// Everything inside the root element, up to its end tag.
    fn content(&mut self) -> Option<()> {
        while !self.stack.is_empty() {
            let lt = self.pos + find(b'<', &self.b[self.pos..])?;
            if lt > self.pos {
                let piece = &self.text[self.pos..lt];
                self.text_piece(piece, (self.pos, lt), false)?;
                self.pos = lt;
            }
            match *self.b.get(lt + 1)? {
                b'/' => self.end_tag()?,
                b'!' if self.starts_with(b"<!--") => self.comment()?,
                b'!' if self.starts_with(b"<![CDATA[") => {
                    let from = lt + 9;
                    let len = find_seq(&self.b[from..], b"]]>")?;
                    let end = from + len + 3;
                    self.text_piece(&self.text[from..from + len], (lt, end), true)?;
                    self.cdata += 1;
                    self.pos = end;
                }
                _ => self.start_tag()?,
            }
        }
        Some(())
    }

    /// `</name S? >`, which must close the innermost open element.
    fn end_tag(&mut self) -> Option<()> {
        let open = self.stack.pop()?;
        let (s, e) = open.name;
        let name = &self.b[s..e];
        let at = self.pos + 2;
        if !self.b[at..].starts_with(name) {
            return None;
        }
        self.pos = at + name.len();
        let next = self.byte()?;
        if NAME[next as usize] != 0 || next == b':' || next >= 0x80 {
            return None;
        }
        self.spaces();
        self.expect(b">")?;
        self.ns.truncate(open.ns_mark);
        if open.node != NONE {
            let end_index = self.nodes.len() as u32;
            let n = &mut self.nodes[open.node as usize];
            n.end = self.pos;
            n.subtree_end = end_index;
        }
        self.end_run();
        Some(())
    }

    /// The namespace URI bound to `prefix` (`""`: the default namespace).
    fn resolve(&self, prefix: &str) -> Option<&'t str> {
        self.ns
            .iter()
            .rev()
            .find(|(p, _)| *p == prefix)
            .map(|(_, u)| *u)
    }

    /// The attributes and namespace declarations of the start tag at `pos`
    /// (its name read), up to its end: `Some(true)` for `/>`, `Some(false)`
    /// for `>`. Declarations go onto `ns` above `ns_mark`, attributes into
    /// `tag`.
    #[inline]
    fn attributes(&mut self, ns_mark: usize) -> Option<bool> {
        let b = self.b;
        loop {
            let space = self.spaces();
            match self.byte()? {
                b'>' => {
                    self.pos += 1;
                    return Some(false);
                }
                b'/' => {
                    self.pos += 1;
                    self.expect(b">")?;
                    return Some(true);
                }
                _ if !space => return None,
                _ => {}
            }
            let at = self.pos;
            let (end, colon) = qname(b, at)?;
            self.pos = end;
            let value = self.eq_quoted()?;
            let (prefix, local) = match colon {
                Some(c) => (&self.text[at..c], &self.text[c + 1..end]),
                None => ("", &self.text[at..end]),
            };
            if prefix == "xmlns" || (prefix.is_empty() && local == "xmlns") {
                // A namespace declaration.
                let uri = &self.text[value.0..value.1];
                let bound = if prefix.is_empty() { "" } else { local };
                if uri.is_empty()
                    || uri == XML_URI
                    || uri == XMLNS_URI
                    || bound == "xml"
                    || bound == "xmlns"
                    || uri
                        .bytes()
                        .any(|c| matches!(c, b'&' | b'\t' | b'\n' | b'\r'))
                    || self.ns.len() - ns_mark == MAX_ATTRS
                    || self.ns[ns_mark..].iter().any(|(p, _)| *p == bound)
                {
                    return None;
                }
                self.ns.push((bound, uri));
            } else if local == "xmlns" {
                return None;
            } else {
                if self.tag.len() == MAX_ATTRS {
                    return None;
                }
                self.tag.push(TagAttr {
                    prefix,
                    local,
                    ns: None,
                    start: at,
                    value,
                });
            }
        }
    }

    /// Each attribute's namespace, once every declaration of its tag is
    /// known; `None` for an unbound prefix or a repeated attribute.
    #[inline]
    fn resolve_attributes(&mut self) -> Option<()> {
        for i in 0..self.tag.len() {
            let ns = match self.tag[i].prefix {
                "" => None,
                "xml" => Some(XML_URI),
                p => Some(self.resolve(p)?),
            };
            let a = &self.tag[i];
            if self.tag[..i]
                .iter()
                .any(|o| o.local == a.local && o.ns == ns)
            {
                return None;
            }
            self.tag[i].ns = ns;
        }
        Some(())
    }

    /// `<name attributes... >` or `/>` at `pos`.
    fn start_tag(&mut self) -> Option<()> {
        let b = self.b;
        let start = self.pos;
        let (name_end, colon) = qname(b, start + 1)?;
        self.pos = name_end;
        self.tag.clear();
        let ns_mark = self.ns.len();
        let empty = self.attributes(ns_mark)?;
        let end = self.pos;

        // Names resolved once every declaration of the tag is known.
        let (prefix, local) = match colon {
            Some(c) => (&self.text[start + 1..c], &self.text[c + 1..name_end]),
            None => ("", &self.text[start + 1..name_end]),
        };
        let ns = match prefix {
            "" => self.resolve(""),
            "xml" | "xmlns" => return None,
            p => Some(self.resolve(p)?),
        };
        self.resolve_attributes()?;

        // The limits.
        self.count += 1;
        if self.count > u64::from(self.limits.max_nodes)
            || self.stack.len() >= self.limits.max_depth as usize
        {
            return None;
        }

        // Kept?
        let plain = ns.is_none();
        let mode = match self.stack.last() {
            None => match (plain, local) {
                (true, "domain") => Mode::Domain,
                (true, "interface") => Mode::Interface,
                _ => return None,
            },
            Some(parent) => child_mode(parent.mode, plain, local),
        };
        let mut node = NONE;
        if mode != Mode::Skip {
            node = self.keep(ns, local, start, end)?;
        }
        let wants_text = node != NONE
            && match self.stack.last().map(|p| p.mode) {
                Some(Mode::Domain) => plain && (local == "name" || local == "description"),
                Some(Mode::Metadata) => local == "property",
                _ => false,
            };
        self.end_run();
        if empty {
            self.ns.truncate(ns_mark);
            if node != NONE {
                self.nodes[node as usize].subtree_end = node + 1;
            }
        } else {
            self.stack.push(Open {
                name: (start + 1, name_end),
                node,
                mode,
                ns_mark,
            });
            if wants_text {
                self.capture = node;
            }
        }
        Some(())
    }

    /// Adds a kept element under the innermost kept one.
    fn keep(
        &mut self,
        ns: Option<&'t str>,
        local: &'t str,
        start: usize,
        end: usize,
    ) -> Option<u32> {
        let id = self.nodes.len() as u32;
        let first_attr = self.attrs.len() as u32;
        for a in &self.tag {
            self.attrs.push(LiteAttr {
                local: a.local,
                value: attribute_value(&self.text[a.value.0..a.value.1])?,
                start: a.start,
                value_range: a.value,
            });
        }
        let attrs = first_attr..self.attrs.len() as u32;
        self.nodes.push(Node {
            ns,
            local,
            attrs,
            start,
            end,
            first_child: NONE,
            last_child: NONE,
            next_sibling: NONE,
            subtree_end: id + 1,
            text: None,
            lead: self.run,
        });
        if let Some(parent) = self.stack.last().map(|p| p.node) {
            // Every kept element but the root has a kept parent.
            if parent == NONE {
                return None;
            }
            let p = &mut self.nodes[parent as usize];
            let last = p.last_child;
            p.last_child = id;
            if last == NONE {
                p.first_child = id;
            } else {
                self.nodes[last as usize].next_sibling = id;
            }
        }
        Some(id)
    }
}
