//! Parsing untrusted libvirt XML into a tree that keeps byte positions.
//!
//! Input is either a whole domain (`<domain>`, what `virsh define` sends) or a
//! single device (`<interface>`, what hot-plug sends). Everything here is
//! bounded: size, element depth and node count, and DTDs are refused outright,
//! so an entity bomb never expands. Every error carries a `line:col` position
//! (1-based, columns in characters) where one exists.

use super::bytes;
use std::fmt;

/// Bounds applied to every input before and while it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    pub max_input_bytes: usize,
    pub max_depth: u32,
    pub max_nodes: u32,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_input_bytes: 32 * 1024 * 1024,
            max_depth: 256,
            max_nodes: 1_000_000,
        }
    }
}

/// A position in the input, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// `NAME:LINE:COL: what` when `message` starts with a position (the form
/// compilers use, which editors jump to), else `NAME: message`.
pub(crate) fn located(name: &str, message: &str) -> String {
    let positioned = message.split_once(": ").is_some_and(|(head, _)| {
        head.split_once(':').is_some_and(|(l, c)| {
            !l.is_empty()
                && !c.is_empty()
                && l.bytes().all(|b| b.is_ascii_digit())
                && c.bytes().all(|b| b.is_ascii_digit())
        })
    });
    if positioned {
        format!("{name}:{message}")
    } else {
        format!("{name}: {message}")
    }
}

impl Pos {
    /// Position of byte offset `at` in `text` (which must be a char boundary).
    pub(crate) fn of(text: &str, at: usize) -> Pos {
        let before = &text.as_bytes()[..at.min(text.len())];
        let line = bytes::count(b'\n', before) + 1;
        let line_start = bytes::rfind(b'\n', before).map_or(0, |i| i + 1);
        let mut col = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        // A byte-order mark is not a column anyone sees.
        if line_start == 0 && before.starts_with("\u{feff}".as_bytes()) {
            col -= 1;
        }
        Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(col).unwrap_or(u32::MAX),
        }
    }
}

/// Computes positions for offsets visited in increasing order in O(total length):
/// a document with thousands of NICs must not be rescanned from the start for each.
pub(crate) struct PosCursor<'a> {
    text: &'a str,
    at: usize,
    pos: Pos,
}

impl<'a> PosCursor<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        PosCursor {
            text,
            at: 0,
            pos: Pos { line: 1, col: 1 },
        }
    }

    /// Position of byte offset `to`; offsets before the last one restart the scan.
    pub(crate) fn pos(&mut self, to: usize) -> Pos {
        let to = to.min(self.text.len());
        if to < self.at || !self.text.is_char_boundary(to) {
            return Pos::of(self.text, to);
        }
        let span = &self.text.as_bytes()[self.at..to];
        let newlines = bytes::count(b'\n', span);
        if newlines > 0 {
            let last = bytes::rfind(b'\n', span).unwrap_or(0);
            let tail = &self.text[self.at + last + 1..to];
            self.pos.line = self
                .pos
                .line
                .saturating_add(u32::try_from(newlines).unwrap_or(u32::MAX));
            self.pos.col = u32::try_from(tail.chars().count() + 1).unwrap_or(u32::MAX);
        } else {
            let mid = &self.text[self.at..to];
            let seen = mid
                .chars()
                .filter(|&c| !(self.at == 0 && c == '\u{feff}'))
                .count();
            self.pos.col = self
                .pos
                .col
                .saturating_add(u32::try_from(seen).unwrap_or(u32::MAX));
        }
        self.at = to;
        self.pos
    }
}

/// Why an input was refused. The texts are part of the interface (tests pin them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("input is empty: expected a libvirt <domain> or <interface> XML document")]
    Empty,
    #[error("input is larger than {limit} bytes (limits.max_input_bytes)")]
    TooLarge { limit: usize },
    #[error("{pos}: input is not valid UTF-8 (byte 0x{byte:02x}); libvirt XML must be UTF-8")]
    NotUtf8 { pos: Pos, byte: u8 },
    #[error("{pos}: the XML declaration names encoding '{encoding}'; only UTF-8 is accepted")]
    Encoding { pos: Pos, encoding: String },
    #[error("{pos}: a document type declaration (DTD) was found; DTDs and entity declarations are refused")]
    Dtd { pos: Pos },
    #[error("{pos}: malformed XML: {reason}")]
    Malformed { pos: Pos, reason: String },
    #[error("{pos}: elements are nested more than {limit} deep (limits.max_depth)")]
    TooDeep { pos: Pos, limit: u32 },
    #[error("the document has more than {limit} nodes (limits.max_nodes)")]
    TooManyNodes { limit: u32 },
    #[error("{pos}: the root element is <{name}>; expected a libvirt <domain> or <interface>")]
    UnexpectedRoot { pos: Pos, name: String },
    #[error("{pos}: vhostfix metadata: os='{value}' is not 'windows' or 'other'")]
    BadOverride { pos: Pos, value: String },
}

/// What kind of document the root element says this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DocKind {
    /// A whole `<domain>`.
    Domain,
    /// A single `<interface>` device (hot-plug, update-device).
    Interface,
}

/// A parsed input: the tree plus what kind of document it is.
pub struct Parsed<'a> {
    pub doc: roxmltree::Document<'a>,
    pub kind: DocKind,
}

/// Checks size and encoding of raw bytes and returns them as text.
pub fn decode<'a>(bytes: &'a [u8], limits: &InputLimits) -> Result<&'a str, InputError> {
    if bytes.len() > limits.max_input_bytes {
        return Err(InputError::TooLarge {
            limit: limits.max_input_bytes,
        });
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let good = e.valid_up_to();
            // The prefix is valid UTF-8 by construction.
            let prefix = std::str::from_utf8(&bytes[..good]).unwrap_or("");
            Err(InputError::NotUtf8 {
                pos: Pos::of(prefix, good),
                byte: bytes[good],
            })
        }
    }
}

/// Parses text (see [`decode`]) into a tree, enforcing every limit.
pub fn parse<'a>(text: &'a str, limits: &InputLimits) -> Result<Parsed<'a>, InputError> {
    let doc = parse_any(text, limits)?;
    let root = doc.root_element();
    let kind = match (root.tag_name().namespace(), root.tag_name().name()) {
        (None, "domain") => DocKind::Domain,
        (None, "interface") => DocKind::Interface,
        _ => {
            return Err(InputError::UnexpectedRoot {
                pos: Pos::of(text, root.range().start),
                name: qname(text, root),
            })
        }
    };
    Ok(Parsed { doc, kind })
}

/// Like [`parse`], with every limit, but for any root element (e.g. a
/// `<domainsnapshot>` that embeds a domain).
pub(crate) fn parse_any<'a>(
    text: &'a str,
    limits: &InputLimits,
) -> Result<roxmltree::Document<'a>, InputError> {
    if text.len() > limits.max_input_bytes {
        return Err(InputError::TooLarge {
            limit: limits.max_input_bytes,
        });
    }
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    if body.trim().is_empty() {
        return Err(InputError::Empty);
    }
    check_declared_encoding(text)?;
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: limits.max_nodes,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, opts)
        .map_err(|e| xml_error(text, e, limits))?;
    check_depth(&doc, limits.max_depth)?;
    Ok(doc)
}

/// The element's name as written (with its prefix, if any).
fn qname(text: &str, node: roxmltree::Node) -> String {
    let start = node.range().start + 1;
    let rest = &text[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .unwrap_or(rest.len());
    rest[..end].to_string()
}

/// roxmltree ignores the declared encoding; we only take UTF-8 (and its ASCII subset).
pub(crate) fn check_declared_encoding(text: &str) -> Result<(), InputError> {
    let start = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let body = &text[start..];
    if !body.starts_with("<?xml") {
        return Ok(());
    }
    let Some(end) = body.find("?>") else {
        return Ok(()); // roxmltree reports the malformed declaration
    };
    let decl = &body[..end];
    let Some(at) = decl.find("encoding") else {
        return Ok(());
    };
    let after = decl[at + "encoding".len()..].trim_start();
    let Some(after) = after.strip_prefix('=') else {
        return Ok(());
    };
    let after = after.trim_start();
    let Some(quote) = after.chars().next().filter(|c| *c == '\'' || *c == '"') else {
        return Ok(());
    };
    let value = &after[1..];
    let value = &value[..value.find(quote).unwrap_or(value.len())];
    let ok = ["utf-8", "utf8", "us-ascii", "ascii"]
        .iter()
        .any(|e| value.eq_ignore_ascii_case(e));
    if ok {
        Ok(())
    } else {
        Err(InputError::Encoding {
            pos: Pos::of(text, start + at),
            encoding: value.to_string(),
        })
    }
}

fn xml_error(text: &str, e: roxmltree::Error, limits: &InputLimits) -> InputError {
    use roxmltree::Error as E;
    match e {
        E::DtdDetected => {
            let at = text.find("<!DOCTYPE").unwrap_or(0);
            InputError::Dtd {
                pos: Pos::of(text, at),
            }
        }
        E::NodesLimitReached => InputError::TooManyNodes {
            limit: limits.max_nodes,
        },
        E::UnclosedRootNode | E::UnexpectedEndOfStream => InputError::Malformed {
            pos: Pos::of(text, text.len()),
            reason: "the input ends before the root element is closed (truncated?)".into(),
        },
        E::NoRootNode => InputError::Malformed {
            pos: Pos::of(text, text.len()),
            reason: "no root element found".into(),
        },
        other => {
            let p = other.pos();
            let pos = Pos {
                line: p.row,
                col: p.col,
            };
            // roxmltree ends its messages with " at L:C"; we print the position first.
            let full = other.to_string();
            let suffix = format!(" at {}", p);
            let reason = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
            InputError::Malformed { pos, reason }
        }
    }
}

/// Refuses documents nested deeper than `limit` elements (the root is depth 1).
fn check_depth(doc: &roxmltree::Document, limit: u32) -> Result<(), InputError> {
    // Elements come in document order: keep the end offsets of the open ones;
    // an element closes before the next node that starts at or after its end.
    let mut open: Vec<usize> = Vec::new();
    for node in doc.descendants().filter(|n| n.is_element()) {
        let r = node.range();
        while open.last().is_some_and(|&end| end <= r.start) {
            open.pop();
        }
        open.push(r.end);
        if open.len() > limit as usize {
            return Err(InputError::TooDeep {
                pos: Pos::of(doc.input_text(), r.start),
                limit,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_agrees_with_full_scan() {
        let t = "\u{feff}<a>\n  <b é='1'/>\n\n<c/>x</a>";
        let mut c = PosCursor::new(t);
        for i in (0..=t.len()).filter(|&i| t.is_char_boundary(i)) {
            assert_eq!(c.pos(i), Pos::of(t, i), "offset {i}");
        }
        assert_eq!(c.pos(3), Pos::of(t, 3));
    }

    #[test]
    fn located_joins_name_and_position() {
        assert_eq!(
            located("dom.xml", "5:3: malformed XML: x"),
            "dom.xml:5:3: malformed XML: x"
        );
        assert_eq!(
            located("dom.xml", "input is empty"),
            "dom.xml: input is empty"
        );
        assert_eq!(located("a", "5: x"), "a: 5: x");
        assert_eq!(located("a", "x:3: y"), "a: x:3: y");
    }

    #[test]
    fn position_counts_lines_and_characters() {
        let t = "ab\ncé\nxyz";
        assert_eq!(Pos::of(t, 0), Pos { line: 1, col: 1 });
        assert_eq!(Pos::of(t, 3), Pos { line: 2, col: 1 });
        // 'é' is two bytes but one column
        assert_eq!(Pos::of(t, 6), Pos { line: 2, col: 3 });
        assert_eq!(Pos::of(t, 7), Pos { line: 3, col: 1 });
    }

    #[test]
    fn bom_is_accepted() {
        let t = "\u{feff}<interface type='vhostuser'/>";
        let p = parse(t, &InputLimits::default()).unwrap();
        assert_eq!(p.kind, DocKind::Interface);
    }

    #[test]
    fn declared_latin1_is_refused() {
        let t = "<?xml version='1.0' encoding='ISO-8859-1'?>\n<domain/>";
        let e = parse(t, &InputLimits::default()).err().unwrap();
        assert_eq!(
            e.to_string(),
            "1:21: the XML declaration names encoding 'ISO-8859-1'; only UTF-8 is accepted"
        );
    }

    #[test]
    fn depth_limit_counts_the_root() {
        let limits = InputLimits {
            max_depth: 3,
            ..InputLimits::default()
        };
        assert!(parse("<domain><a><b/></a></domain>", &limits).is_ok());
        let e = parse("<domain><a><b><c/></b></a></domain>", &limits)
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "1:15: elements are nested more than 3 deep (limits.max_depth)"
        );
    }
}
