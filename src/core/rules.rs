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
//! Where libvirt releases differ (see [`LibvirtVersion`]), the rules follow the
//! release vhostfix runs against; an unknown release gets advice that holds on
//! every release.
//!
//! This module only reads the tree; it neither decides policy nor touches files.

use super::parse::{Pos, PosCursor};
use super::xml::{child, is_named, Attr, Element};
use serde::{Deserialize, Serialize};

/// Models libvirt accepts on a vhost-user NIC (compared case-insensitively, as libvirt does).
pub(crate) const VIRTIO_MODELS: [&str; 3] =
    ["virtio", "virtio-transitional", "virtio-non-transitional"];

/// True for a model libvirt accepts on a vhost-user interface.
pub(crate) fn is_virtio_model(model: &str) -> bool {
    VIRTIO_MODELS.iter().any(|m| m.eq_ignore_ascii_case(model))
}

/// A libvirt release, `MAJOR.MINOR.MICRO`.
///
/// Behaviour that changed between releases, and where each threshold comes from:
///
/// | threshold | what | source |
/// |---|---|---|
/// | [`LibvirtVersion::MODEL_DEFAULTS_TO_VIRTIO`] 11.1.0 | a vhost-user NIC without `<model>` is accepted and gets `virtio`; a wrong model is refused with `invalid model for interface of type 'vhostuser'` | measured: refused on 7.0 and 9.0, accepted on 11.3; release from libvirt's formatdomain docs and the vhostuser/passt series ("Since 11.1.0") |
/// | [`LibvirtVersion::SHARED_MEMORY_ENFORCED`] 11.2.0 | a domain with a vhost-user NIC and memory that is not shared, memfd without `<access mode='shared'/>` included, is refused at define/create (`'interface' requires shared memory`) | measured: accepted on 7.0 and 9.0, refused on 11.3; release from libvirt's NEWS for 11.2.0 ("vhost-user shmem check") |
///
/// Measured means run here against that release's own libvirtd (Debian 11, 12 and
/// 13: libvirt 7.0.0, 9.0.0, 11.3.0); the exact first release is NEWS' word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct LibvirtVersion {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
}

impl LibvirtVersion {
    pub(crate) const MODEL_DEFAULTS_TO_VIRTIO: LibvirtVersion = LibvirtVersion::new(11, 1, 0);
    pub(crate) const SHARED_MEMORY_ENFORCED: LibvirtVersion = LibvirtVersion::new(11, 2, 0);

    pub(crate) const fn new(major: u32, minor: u32, micro: u32) -> Self {
        LibvirtVersion {
            major,
            minor,
            micro,
        }
    }

    /// From libvirt's numeric form `major * 1_000_000 + minor * 1000 + micro`
    /// (virConnectGetLibVersion).
    pub(crate) fn from_number(n: u64) -> Option<Self> {
        let major = u32::try_from(n / 1_000_000).ok()?;
        Some(LibvirtVersion::new(
            major,
            ((n / 1000) % 1000) as u32,
            (n % 1000) as u32,
        ))
    }

    /// From a shared object's name: `libvirt.so.0.9000.0` is 9.0.0,
    /// `libvirt.so.0.11003.0` is 11.3.0 (libvirt's soname scheme).
    pub(crate) fn from_soname(name: &str) -> Option<Self> {
        let i = name.find("libvirt.so.0.")?;
        let rest = &name[i + "libvirt.so.0.".len()..];
        let mut parts = rest.split('.');
        let mm: u32 = parts.next()?.parse().ok()?;
        let micro: u32 = parts
            .next()?
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .ok()?;
        Some(LibvirtVersion::new(mm / 1000, mm % 1000, micro))
    }

    /// True when libvirt fills in `virtio` for a vhost-user NIC without a model.
    pub(crate) fn defaults_vhostuser_model(self) -> bool {
        self >= Self::MODEL_DEFAULTS_TO_VIRTIO
    }

    /// True when libvirt refuses vhost-user without shared memory at define time.
    pub(crate) fn enforces_shared_memory(self) -> bool {
        self >= Self::SHARED_MEMORY_ENFORCED
    }
}

impl std::str::FromStr for LibvirtVersion {
    type Err = String;

    /// Parses `9.0.0`, `11.3` or `libvirtd (libvirt) 9.0.0`.
    fn from_str(s: &str) -> Result<Self, String> {
        let word = s
            .split_whitespace()
            .last()
            .ok_or_else(|| "empty libvirt version".to_string())?;
        let nums: Vec<&str> = word.split('.').collect();
        let bad =
            || format!("'{s}' is not a libvirt version (expected MAJOR.MINOR.MICRO, e.g. 9.0.0)");
        if nums.len() < 2 || nums.len() > 3 {
            return Err(bad());
        }
        let n = |i: usize| -> Result<u32, String> {
            nums.get(i).map_or(Ok(0), |t| t.parse().map_err(|_| bad()))
        };
        Ok(LibvirtVersion::new(n(0)?, n(1)?, n(2)?))
    }
}

impl std::fmt::Display for LibvirtVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// The model vhostfix writes into a violating NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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
pub(crate) enum ModelSlot<'a, E> {
    /// No `<model>` element.
    Missing,
    /// `<model>` without a `type` attribute.
    NoType(E),
    /// `<model type='...'>`: its `type` attribute.
    Typed(Attr<'a>),
}

/// A vhost-user interface found in the document.
#[derive(Debug, Clone)]
pub(crate) struct VhostUserNic<'a, E> {
    pub(crate) node: E,
    /// Position among all `<interface>` devices (0-based, the order of `virsh domiflist`).
    pub(crate) index: usize,
    pub(crate) mac: Option<String>,
    pub(crate) source: NicSource,
    pub(crate) slot: ModelSlot<'a, E>,
    pub(crate) pos: Pos,
}

impl<'a, E: Element<'a>> VhostUserNic<'a, E> {
    /// The model as written, if any.
    pub(crate) fn model(&self) -> Option<&str> {
        match self.slot {
            ModelSlot::Typed(a) => Some(a.value),
            _ => None,
        }
    }

    /// True when libvirt would refuse this NIC's model. A missing model is
    /// fine on releases that fill in virtio; on an unknown release it counts as
    /// a violation (adding virtio is right on every release).
    pub(crate) fn violates(&self, libvirt: Option<LibvirtVersion>) -> bool {
        match (self.slot, libvirt) {
            (ModelSlot::Missing, Some(v)) if v.defaults_vhostuser_model() => false,
            _ => !self.model().is_some_and(is_virtio_model),
        }
    }
}

/// The interfaces of a document: the root itself for device XML, else `/domain/devices/interface`.
pub(crate) fn interfaces<'a, E: Element<'a>>(root: E) -> Vec<E> {
    if is_named(root, "interface") {
        return vec![root];
    }
    match child(root, "devices") {
        Some(devices) => devices
            .elements()
            .filter(|c| is_named(*c, "interface"))
            .collect(),
        None => Vec::new(),
    }
}

/// Every `<interface type='vhostuser'>`, in document order.
pub(crate) fn vhostuser_nics<'a, E: Element<'a>>(root: E) -> Vec<VhostUserNic<'a, E>> {
    let mut cursor = PosCursor::new(root.input());
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
                Some(m) => match m.attribute_at("type") {
                    Some(a) => ModelSlot::Typed(a),
                    None => ModelSlot::NoType(m),
                },
            };
            VhostUserNic {
                node,
                index,
                mac,
                source,
                slot,
                pos: cursor.pos(node.range().start),
            }
        })
        .collect()
}

/// Whether guest RAM is shared, i.e. mappable by a vhost-user backend, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemorySharing {
    pub shared: bool,
    pub reason: String,
    /// Shared only by QEMU's memfd default, which libvirt releases from
    /// [`LibvirtVersion::SHARED_MEMORY_ENFORCED`] on do not accept; `shared`
    /// already says what the release in force decided.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub memfd_default: bool,
}

/// Decides whether the guest's memory is shared the way libvirt and QEMU would set it up.
///
/// libvirt passes `share=on|off` to QEMU's memory backend from the per-NUMA-cell
/// `memAccess`, falling back to `<memoryBacking><access mode=.../>`. When neither is
/// given, it passes nothing and QEMU's default applies: shared for
/// `memory-backend-memfd` (`<source type='memfd'/>`), private for anonymous and
/// file (hugepages) backends. Memory is shared only if every cell is.
///
/// libvirt from 11.2 no longer counts memfd's default: it wants
/// `<access mode='shared'/>` (measured on 11.3). On an unknown release memfd
/// without it counts as shared, with `memfd_default` set so callers can warn.
pub(crate) fn memory_sharing<'a>(
    domain: impl Element<'a>,
    libvirt: Option<LibvirtVersion>,
) -> MemorySharing {
    let default = backing_sharing(domain, libvirt);
    let cells: Vec<_> = child(domain, "cpu")
        .and_then(|c| child(c, "numa"))
        .map(|n| n.elements().filter(|c| is_named(*c, "cell")).collect())
        .unwrap_or_default();
    if cells.is_empty() {
        return default;
    }
    let private: Vec<String> = cells
        .iter()
        .enumerate()
        .filter(|(_, c)| match c.attribute("memAccess") {
            Some(m) => m != "shared",
            None => !default.shared,
        })
        .map(|(i, c)| {
            c.attribute("id")
                .map_or_else(|| i.to_string(), String::from)
        })
        .collect();
    if !private.is_empty() {
        return MemorySharing {
            shared: false,
            reason: format!(
                "NUMA cell {} not shared ({})",
                private.join(", "),
                default.reason
            ),
            memfd_default: false,
        };
    }
    let all_explicit = cells
        .iter()
        .all(|c| c.attribute("memAccess") == Some("shared"));
    MemorySharing {
        shared: true,
        reason: if all_explicit {
            "memAccess='shared' on every NUMA cell".to_string()
        } else {
            default.reason
        },
        memfd_default: default.memfd_default && !all_explicit,
    }
}

/// What `<memoryBacking>` alone says (the default of every NUMA cell).
fn backing_sharing<'a>(domain: impl Element<'a>, libvirt: Option<LibvirtVersion>) -> MemorySharing {
    let strict = libvirt.is_some_and(LibvirtVersion::enforces_shared_memory);
    let backing = child(domain, "memoryBacking");
    let access = backing
        .and_then(|b| child(b, "access"))
        .and_then(|a| a.attribute("mode"));
    let source = backing
        .and_then(|b| child(b, "source"))
        .and_then(|s| s.attribute("type"));
    let memfd = source == Some("memfd");
    let shared = match access {
        Some("shared") => true,
        Some(_) => false,
        None => memfd && !strict,
    };
    let reason = match (access, memfd) {
        (Some("shared"), _) => "<memoryBacking><access mode='shared'/>".to_string(),
        (Some(m), _) => format!("<memoryBacking><access mode='{m}'/>"),
        (None, true) if strict => format!(
            "<memoryBacking><source type='memfd'/> without <access mode='shared'/>, which libvirt {} requires",
            libvirt.map(|v| v.to_string()).unwrap_or_default()
        ),
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
    MemorySharing {
        shared,
        reason,
        memfd_default: access.is_none() && memfd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sharing(xml: &str) -> bool {
        let doc = roxmltree::Document::parse(xml).unwrap();
        memory_sharing(doc.root_element(), None).shared
    }

    #[test]
    fn libvirt_versions_parse_and_compare() {
        let v: LibvirtVersion = "9.0.0".parse().unwrap();
        assert_eq!(v, LibvirtVersion::new(9, 0, 0));
        assert_eq!(
            "libvirtd (libvirt) 11.3.0"
                .parse::<LibvirtVersion>()
                .unwrap()
                .to_string(),
            "11.3.0"
        );
        assert_eq!(
            "7.0".parse::<LibvirtVersion>().unwrap(),
            LibvirtVersion::new(7, 0, 0)
        );
        assert!("9.x.0".parse::<LibvirtVersion>().is_err());
        assert!("9".parse::<LibvirtVersion>().is_err());
        assert!("".parse::<LibvirtVersion>().is_err());
        assert_eq!(
            LibvirtVersion::from_number(9_000_000),
            Some(LibvirtVersion::new(9, 0, 0))
        );
        assert_eq!(
            LibvirtVersion::from_number(11_003_000),
            Some(LibvirtVersion::new(11, 3, 0))
        );
        assert_eq!(
            LibvirtVersion::from_soname(
                "7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libvirt.so.0.9000.0"
            ),
            Some(LibvirtVersion::new(9, 0, 0))
        );
        assert_eq!(
            LibvirtVersion::from_soname("libvirt.so.0.11003.0"),
            Some(LibvirtVersion::new(11, 3, 0))
        );
        assert_eq!(LibvirtVersion::from_soname("libvirt-qemu.so.0"), None);
        let v7 = LibvirtVersion::new(7, 0, 0);
        let v9 = LibvirtVersion::new(9, 0, 0);
        let v11 = LibvirtVersion::new(11, 3, 0);
        assert!(v7 < v9 && v9 < v11);
        assert!(!v9.enforces_shared_memory() && v11.enforces_shared_memory());
        assert!(!v9.defaults_vhostuser_model() && v11.defaults_vhostuser_model());
    }

    #[test]
    fn memfd_without_shared_access_is_private_on_releases_that_enforce_it() {
        let xml = "<domain><memoryBacking><source type='memfd'/></memoryBacking></domain>";
        let doc = roxmltree::Document::parse(xml).unwrap();
        let on = |v: &str| memory_sharing(doc.root_element(), Some(v.parse().unwrap()));
        assert!(on("9.0.0").shared && on("9.0.0").memfd_default);
        assert!(on("11.1.0").shared);
        let m = on("11.3.0");
        assert!(!m.shared, "{m:?}");
        assert!(
            m.reason.contains("which libvirt 11.3.0 requires"),
            "{}",
            m.reason
        );
        let doc = roxmltree::Document::parse(
            "<domain><memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking></domain>",
        )
        .unwrap();
        let m = memory_sharing(doc.root_element(), Some(LibvirtVersion::new(11, 3, 0)));
        assert!(m.shared && !m.memfd_default);
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
