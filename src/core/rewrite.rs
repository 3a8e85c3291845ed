//! Minimal byte-range edits on the original text.
//!
//! vhostfix never re-serialises the tree: it computes a few `(range, replacement)`
//! edits and splices them into the input, so comments, CDATA, namespace prefixes,
//! quoting, attribute order and line endings all survive, and a diff of the result
//! shows exactly the changed lines.

use super::rules::{ModelSlot, VhostUserNic};
use super::xml::Element;
use std::io::{self, IoSlice, Write};
use std::ops::Range;

/// Replace `range` of the input with `with`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub range: Range<usize>,
    pub with: String,
}

/// The edit that gives `nic` the model `target`.
///
/// * `<model type='e1000'/>`: only the attribute value changes (quote kept).
/// * `<model/>` without a type: ` type='virtio'` is added after the name.
/// * no `<model>`: a new `<model type='virtio'/>` goes after the last child
///   element, preceded by the same whitespace (line ending and indentation) that
///   precedes that child, so it sits on its own line like its siblings.
pub(crate) fn model_edit<'a, E: Element<'a>>(
    text: &str,
    nic: &VhostUserNic<'a, E>,
    target: &str,
) -> Edit {
    match nic.slot {
        ModelSlot::Typed(attr) => Edit {
            range: attr.value_range(),
            with: target.to_string(),
        },
        ModelSlot::NoType(model) => {
            let at = model.range().start + 1 + tag_name_len(text, model.range().start + 1);
            Edit {
                range: at..at,
                with: format!(" type='{target}'"),
            }
        }
        ModelSlot::Missing => insert_model(text, nic.node, target),
    }
}

fn tag_name_len(text: &str, from: usize) -> usize {
    text[from..]
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .unwrap_or(0)
}

fn insert_model<'a>(text: &str, iface: impl Element<'a>, target: &str) -> Edit {
    let element = format!("<model type='{target}'/>");
    if let Some((last, lead)) = iface.last_element() {
        let lead = if lead.chars().all(char::is_whitespace) {
            lead
        } else {
            ""
        };
        let at = last.range().end;
        return Edit {
            range: at..at,
            with: format!("{lead}{element}"),
        };
    }
    let r = iface.range();
    let src = &text[r.clone()];
    if src.ends_with("/>") {
        // <interface type='vhostuser'/>: open it up to hold the model.
        let name_end = r.start + 1 + tag_name_len(text, r.start + 1);
        let name = &text[r.start + 1..name_end];
        let slash = r.end - 2;
        // Keep any whitespace before "/>" inside the start tag.
        Edit {
            range: slash..r.end,
            with: format!(">{element}</{name}>"),
        }
    } else {
        // <interface ...>text or nothing</interface>: insert before the close tag.
        let close = src.rfind("</").map_or(r.end, |i| r.start + i);
        Edit {
            range: close..close,
            with: element,
        }
    }
}

/// Splices sorted, non-overlapping edits into `text`.
pub fn apply(text: &str, edits: &[Edit]) -> String {
    let grow: usize = edits.iter().map(|e| e.with.len()).sum();
    let mut out = Vec::with_capacity(text.len() + grow);
    // Writing into a Vec cannot fail.
    let _ = write_edited(&mut out, text, edits);
    String::from_utf8(out).unwrap_or_default()
}

/// Streams `text` with `edits` applied into `w`, without building a copy:
/// the pieces go out in vectored writes (on a file or a pipe, one `writev`
/// for up to 1024 pieces).
pub fn write_edited<W: Write>(w: &mut W, text: &str, edits: &[Edit]) -> io::Result<()> {
    let bytes = text.as_bytes();
    let mut pieces = Vec::with_capacity(2 * edits.len() + 1);
    let mut at = 0;
    for e in edits {
        pieces.push(IoSlice::new(&bytes[at..e.range.start]));
        pieces.push(IoSlice::new(e.with.as_bytes()));
        at = e.range.end;
    }
    pieces.push(IoSlice::new(&bytes[at..]));
    pieces.retain(|p| !p.is_empty());
    let mut rest = &mut pieces[..];
    while !rest.is_empty() {
        match w.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::vhostuser_nics;

    fn fix(xml: &str) -> String {
        let doc = roxmltree::Document::parse(xml).unwrap();
        let edits: Vec<Edit> = vhostuser_nics(doc.root_element())
            .iter()
            .map(|n| model_edit(xml, n, "virtio"))
            .collect();
        apply(xml, &edits)
    }

    #[test]
    fn keeps_double_quotes_and_long_form() {
        assert_eq!(
            fix(r#"<interface type="vhostuser"><model type="e1000"></model></interface>"#),
            r#"<interface type="vhostuser"><model type="virtio"></model></interface>"#
        );
    }

    #[test]
    fn adds_type_to_bare_model() {
        assert_eq!(
            fix("<interface type='vhostuser'><model/></interface>"),
            "<interface type='vhostuser'><model type='virtio'/></interface>"
        );
    }

    #[test]
    fn inserts_on_its_own_line_with_crlf() {
        let before = "<interface type='vhostuser'>\r\n  <mac address='52:54:00:00:00:01'/>\r\n  <source type='unix' path='/s' mode='server'/>\r\n</interface>";
        let after = "<interface type='vhostuser'>\r\n  <mac address='52:54:00:00:00:01'/>\r\n  <source type='unix' path='/s' mode='server'/>\r\n  <model type='virtio'/>\r\n</interface>";
        assert_eq!(fix(before), after);
    }

    #[test]
    fn opens_a_self_closing_interface() {
        assert_eq!(
            fix("<interface type='vhostuser' />"),
            "<interface type='vhostuser' ><model type='virtio'/></interface>"
        );
        assert_eq!(
            fix("<interface type='vhostuser'></interface>"),
            "<interface type='vhostuser'><model type='virtio'/></interface>"
        );
    }
}
