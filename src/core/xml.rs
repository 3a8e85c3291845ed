//! The few questions the detector, the rules and the edits ask of an element,
//! answered by two kinds of element: roxmltree's full tree (the tree path,
//! for any document) and the scanner's small tree of the elements that
//! matter (`scan`, the fast path for ordinary documents).

use std::ops::Range;

/// An attribute as written: its value (normalised as XML says) and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attr<'a> {
    pub(crate) value: &'a str,
    /// From the first byte of its name to its closing quote.
    pub(crate) start: usize,
    /// The value between the quotes, as written.
    pub(crate) value_range: (usize, usize),
}

impl Attr<'_> {
    pub(crate) fn value_range(&self) -> Range<usize> {
        self.value_range.0..self.value_range.1
    }
}

/// An element of the input. Every iterator yields elements only (no text,
/// comments or instructions), in document order.
pub(crate) trait Element<'a>: Copy {
    /// The whole input text.
    fn input(self) -> &'a str;
    /// The namespace URI of the element's name, if any.
    fn namespace(self) -> Option<&'a str>;
    /// The local name.
    fn name(self) -> &'a str;
    /// The first attribute whose local name is `name`, in any namespace
    /// (roxmltree's `attribute_node` with a plain name).
    fn attribute_at(self, name: &str) -> Option<Attr<'a>>;
    /// From `<` of the start tag to `>` of the end tag (or of `/>`).
    fn range(self) -> Range<usize>;
    /// The child elements.
    fn elements(self) -> impl Iterator<Item = Self>;
    /// The element itself, then every element inside it.
    fn descendants(self) -> impl Iterator<Item = Self>;
    /// The text of the first child node when that is text (CDATA included).
    fn text(self) -> Option<&'a str>;
    /// The last child element, and the source text of the node before it
    /// when that node is text (`""` otherwise).
    fn last_element(self) -> Option<(Self, &'a str)>;

    /// The value of [`Element::attribute_at`].
    fn attribute(self, name: &str) -> Option<&'a str> {
        self.attribute_at(name).map(|a| a.value)
    }
}

/// True for an element named `name` in no namespace (libvirt's own elements).
pub(crate) fn is_named<'a>(node: impl Element<'a>, name: &str) -> bool {
    node.namespace().is_none() && node.name() == name
}

/// The first child element named `name` in no namespace.
pub(crate) fn child<'a, E: Element<'a>>(node: E, name: &str) -> Option<E> {
    node.elements().find(|c| is_named(*c, name))
}

impl<'a, 'i: 'a> Element<'a> for roxmltree::Node<'a, 'i> {
    fn input(self) -> &'a str {
        self.document().input_text()
    }

    fn namespace(self) -> Option<&'a str> {
        self.tag_name().namespace()
    }

    fn name(self) -> &'a str {
        self.tag_name().name()
    }

    fn attribute_at(self, name: &str) -> Option<Attr<'a>> {
        self.attribute_node(name).map(|a| {
            // Not `range_value()`: it counts the spaces around `=` in a u8
            // and misplaces the value after 255 of them.
            let r = a.range();
            let src = &self.input()[r.clone()];
            let eq = src.find('=').unwrap_or(0) + 1;
            let quote = eq + src[eq..].find(['\'', '"']).unwrap_or(0);
            Attr {
                value: a.value(),
                start: r.start,
                value_range: (r.start + quote + 1, r.end - 1),
            }
        })
    }

    fn range(self) -> Range<usize> {
        roxmltree::Node::range(&self)
    }

    fn elements(self) -> impl Iterator<Item = Self> {
        self.children().filter(|c| c.is_element())
    }

    fn descendants(self) -> impl Iterator<Item = Self> {
        roxmltree::Node::descendants(&self).filter(|c| c.is_element())
    }

    fn text(self) -> Option<&'a str> {
        roxmltree::Node::text(&self)
    }

    fn last_element(self) -> Option<(Self, &'a str)> {
        let last = self.children().rfind(|c| c.is_element())?;
        let lead = last
            .prev_sibling()
            .filter(|p| p.is_text())
            .map_or("", |p| &self.input()[roxmltree::Node::range(&p)]);
        Some((last, lead))
    }
}
