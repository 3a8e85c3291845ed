//! Small helpers over roxmltree's tree shared by the detector and the rules.

use roxmltree::Node;

/// True for an element named `name` in no namespace (libvirt's own elements).
pub(crate) fn is_named(node: Node, name: &str) -> bool {
    node.is_element() && node.tag_name().namespace().is_none() && node.tag_name().name() == name
}

/// The first child element named `name` in no namespace.
pub(crate) fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|c| is_named(*c, name))
}
