//! What is wrong with a domain: the rules vhostfix enforces.
//!
//! * vhost-user NICs need a virtio-net frontend (`virtio`, `virtio-transitional`,
//!   `virtio-non-transitional`); libvirt refuses anything else, or no model, at
//!   parse time (`src/conf/domain_validate.c`).
//! * vhost-user needs guest memory the backend can map: shared memory. Without it
//!   libvirt and QEMU start the guest and the NIC is silently dead.
//! * A NIC in `mode='client'` needs the backend's socket to exist at start, unless
//!   `<reconnect enabled='yes'/>` lets QEMU wait for it.
//!
//! This module only reads the tree; it neither decides policy nor touches files.

use crate::parse::Pos;
use roxmltree::Node;
use serde::{Deserialize, Serialize};

/// Models libvirt accepts on a vhost-user NIC (compared case-insensitively, as libvirt does).
pub const VIRTIO_MODELS: [&str; 3] = ["virtio", "virtio-transitional", "virtio-non-transitional"];

/// True for a model libvirt accepts on a vhost-user interface.
pub fn is_virtio_model(model: &str) -> bool {
    VIRTIO_MODELS.iter().any(|m| m.eq_ignore_ascii_case(model))
}

/// The model vhostfix writes into a violating NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TargetModel {
    #[default]
    Virtio,
    VirtioTransitional,
    VirtioNonTransitional,
}

impl TargetModel {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetModel::Virtio => "virtio",
            TargetModel::VirtioTransitional => "virtio-transitional",
            TargetModel::VirtioNonTransitional => "virtio-non-transitional",
        }
    }
}

/// Which guests get their NICs fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Guests {
    /// Only guests detected as Windows.
    #[default]
    Windows,
    /// Every guest.
    Any,
}

/// Where a vhost-user NIC's backend is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum NicSource {
    /// `<source type='unix' path='...' mode='server|client'/>`.
    Unix {
        path: String,
        mode: Option<String>,
        reconnect: bool,
    },
    /// passt: `<source dev='...'/>` with `<backend type='passt'/>`.
    Passt { dev: String },
    /// Neither shape (libvirt will complain on its own).
    Other,
}

impl std::fmt::Display for NicSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NicSource::Unix { path, mode, .. } => match mode {
                Some(m) => write!(f, "unix:{path} ({m})"),
                None => write!(f, "unix:{path}"),
            },
            NicSource::Passt { dev } => write!(f, "passt:{dev}"),
            NicSource::Other => f.write_str("no source"),
        }
    }
}

/// The `<model>` of a NIC as found.
#[derive(Debug, Clone, Copy)]
pub enum ModelSlot<'a, 'i> {
    /// No `<model>` element.
    Missing,
    /// `<model>` without a `type` attribute.
    NoType(Node<'a, 'i>),
    /// `<model type='...'>`.
    Typed(Node<'a, 'i>, roxmltree::Attribute<'a, 'i>),
}

/// A vhost-user interface found in the document.
#[derive(Debug, Clone)]
pub struct VhostUserNic<'a, 'i> {
    pub node: Node<'a, 'i>,
    /// Position among all `<interface>` devices (0-based, the order of `virsh domiflist`).
    pub index: usize,
    pub mac: Option<String>,
    pub source: NicSource,
    pub slot: ModelSlot<'a, 'i>,
    pub pos: Pos,
}

impl VhostUserNic<'_, '_> {
    /// The model as written, if any.
    pub fn model(&self) -> Option<&str> {
        match self.slot {
            ModelSlot::Typed(_, a) => Some(a.value()),
            _ => None,
        }
    }

    /// True when libvirt would refuse this NIC's model.
    pub fn violates(&self) -> bool {
        !self.model().is_some_and(is_virtio_model)
    }

    /// A short name for messages: the MAC if known, else the index.
    pub fn label(&self) -> String {
        match &self.mac {
            Some(m) => format!("nic {} ({m})", self.index),
            None => format!("nic {}", self.index),
        }
    }
}

/// First child element with this name and no namespace.
pub(crate) fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|c| is_named(*c, name))
}

pub(crate) fn is_named(node: Node, name: &str) -> bool {
    node.is_element() && node.tag_name().namespace().is_none() && node.tag_name().name() == name
}

/// The interfaces of a document: the root itself for device XML, else `/domain/devices/interface`.
pub fn interfaces<'a, 'i>(root: Node<'a, 'i>) -> Vec<Node<'a, 'i>> {
    if is_named(root, "interface") {
        return vec![root];
    }
    match child(root, "devices") {
        Some(devices) => devices
            .children()
            .filter(|c| is_named(*c, "interface"))
            .collect(),
        None => Vec::new(),
    }
}

/// Every `<interface type='vhostuser'>`, in document order.
pub fn vhostuser_nics<'a, 'i>(root: Node<'a, 'i>) -> Vec<VhostUserNic<'a, 'i>> {
    let text = root.document().input_text();
    interfaces(root)
        .into_iter()
        .enumerate()
        .filter(|(_, n)| n.attribute("type") == Some("vhostuser"))
        .map(|(index, node)| {
            let mac = child(node, "mac")
                .and_then(|m| m.attribute("address"))
                .map(String::from);
            let passt = child(node, "backend").and_then(|b| b.attribute("type")) == Some("passt");
            let source = match child(node, "source") {
                Some(s)
                    if passt || (s.attribute("dev").is_some() && s.attribute("path").is_none()) =>
                {
                    NicSource::Passt {
                        dev: s.attribute("dev").unwrap_or("").to_string(),
                    }
                }
                Some(s) if s.attribute("path").is_some() => NicSource::Unix {
                    path: s.attribute("path").unwrap_or("").to_string(),
                    mode: s.attribute("mode").map(String::from),
                    reconnect: child(s, "reconnect").and_then(|r| r.attribute("enabled"))
                        == Some("yes"),
                },
                _ => NicSource::Other,
            };
            let slot = match child(node, "model") {
                None => ModelSlot::Missing,
                Some(m) => match m.attribute_node("type") {
                    Some(a) => ModelSlot::Typed(m, a),
                    None => ModelSlot::NoType(m),
                },
            };
            VhostUserNic {
                node,
                index,
                mac,
                source,
                slot,
                pos: Pos::of(text, node.range().start),
            }
        })
        .collect()
}

/// Whether guest RAM is shared, i.e. mappable by a vhost-user backend, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemorySharing {
    pub shared: bool,
    pub reason: String,
}

/// Decides whether the guest's memory is shared the way libvirt and QEMU would set it up.
///
/// libvirt passes `share=on|off` to QEMU's memory backend from the per-NUMA-cell
/// `memAccess`, falling back to `<memoryBacking><access mode=.../>`. When neither is
/// given, it passes nothing and QEMU's default applies: shared for
/// `memory-backend-memfd` (`<source type='memfd'/>`), private for anonymous and
/// file (hugepages) backends. Memory is shared only if every cell is.
pub fn memory_sharing(domain: Node) -> MemorySharing {
    let backing = child(domain, "memoryBacking");
    let access = backing
        .and_then(|b| child(b, "access"))
        .and_then(|a| a.attribute("mode"));
    let source = backing
        .and_then(|b| child(b, "source"))
        .and_then(|s| s.attribute("type"));
    let memfd = source == Some("memfd");
    let default_shared = match access {
        Some("shared") => true,
        Some(_) => false,
        None => memfd,
    };
    let default_reason = match (access, memfd) {
        (Some("shared"), _) => "<memoryBacking><access mode='shared'/>".to_string(),
        (Some(m), _) => format!("<memoryBacking><access mode='{m}'/>"),
        (None, true) => "<memoryBacking><source type='memfd'/> (shared by default)".to_string(),
        (None, false) => match source {
            Some(s) => {
                format!("<memoryBacking><source type='{s}'/> without <access mode='shared'/>")
            }
            None if backing.is_some_and(|b| child(b, "hugepages").is_some()) => {
                "<hugepages/> without <access mode='shared'/>".to_string()
            }
            None => "no <memoryBacking> access or memfd source".to_string(),
        },
    };
    let cells: Vec<Node> = child(domain, "cpu")
        .and_then(|c| child(c, "numa"))
        .map(|n| n.children().filter(|c| is_named(*c, "cell")).collect())
        .unwrap_or_default();
    if cells.is_empty() {
        return MemorySharing {
            shared: default_shared,
            reason: default_reason,
        };
    }
    let private: Vec<String> = cells
        .iter()
        .enumerate()
        .filter(|(_, c)| match c.attribute("memAccess") {
            Some(m) => m != "shared",
            None => !default_shared,
        })
        .map(|(i, c)| {
            c.attribute("id")
                .map_or_else(|| i.to_string(), String::from)
        })
        .collect();
    if private.is_empty() {
        let why = if cells
            .iter()
            .all(|c| c.attribute("memAccess") == Some("shared"))
        {
            "memAccess='shared' on every NUMA cell".to_string()
        } else {
            default_reason
        };
        MemorySharing {
            shared: true,
            reason: why,
        }
    } else {
        MemorySharing {
            shared: false,
            reason: format!(
                "NUMA cell {} not shared ({})",
                private.join(", "),
                default_reason
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sharing(xml: &str) -> bool {
        let doc = roxmltree::Document::parse(xml).unwrap();
        memory_sharing(doc.root_element()).shared
    }

    #[test]
    fn memory_sharing_follows_libvirt_and_qemu_defaults() {
        assert!(!sharing("<domain/>"));
        assert!(sharing(
            "<domain><memoryBacking><access mode='shared'/></memoryBacking></domain>"
        ));
        assert!(sharing(
            "<domain><memoryBacking><source type='memfd'/></memoryBacking></domain>"
        ));
        assert!(!sharing("<domain><memoryBacking><source type='memfd'/><access mode='private'/></memoryBacking></domain>"));
        assert!(!sharing(
            "<domain><memoryBacking><hugepages/></memoryBacking></domain>"
        ));
        assert!(!sharing(
            "<domain><memoryBacking><source type='file'/></memoryBacking></domain>"
        ));
        assert!(sharing("<domain><cpu><numa><cell id='0' memAccess='shared'/><cell id='1' memAccess='shared'/></numa></cpu></domain>"));
        assert!(!sharing("<domain><cpu><numa><cell id='0' memAccess='shared'/><cell id='1'/></numa></cpu></domain>"));
        assert!(!sharing("<domain><memoryBacking><access mode='shared'/></memoryBacking><cpu><numa><cell id='0' memAccess='private'/></numa></cpu></domain>"));
        assert!(sharing("<domain><memoryBacking><access mode='shared'/></memoryBacking><cpu><numa><cell id='0'/></numa></cpu></domain>"));
    }

    #[test]
    fn virtio_models_are_case_insensitive() {
        assert!(is_virtio_model("VirtIO"));
        assert!(is_virtio_model("virtio-non-transitional"));
        assert!(!is_virtio_model("e1000"));
        assert!(!is_virtio_model("virtio-net"));
    }
}
