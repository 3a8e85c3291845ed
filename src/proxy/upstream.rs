//! What a decision may ask the libvirt behind the proxy: the XML of the
//! domain a device call names, and libvirt's release. [`Upstream`] is the
//! question; [`Lookup`] answers it over the proxy's own libvirt connection,
//! tests answer it from memory.
//!
//! The lookup connection never touches a client's stream: the client's serial
//! numbers and replies stay exactly as libvirt made them. Its conversation is
//! the one virsh starts with (AUTH_LIST, CONNECT_OPEN read-only with the URI
//! the client opened), then DOMAIN_GET_XML_DESC or CONNECT_GET_LIB_VERSION
//! (see `crate::rpc::client`).

use crate::core::rules::LibvirtVersion;
use crate::rpc::client::Client;
use crate::rpc::xdr::DomainRef;
use std::path::PathBuf;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

/// The questions a decision asks libvirt.
pub(crate) trait Upstream {
    /// The current XML of the domain a call names.
    fn domain_xml(&mut self, dom: &DomainRef<'_>) -> Result<String, String>;
    /// libvirt's release; `None` when it cannot be learnt (the rules then give
    /// advice that holds on every release).
    fn lib_version(&mut self) -> Option<LibvirtVersion>;
}

/// A lazily opened read-only connection to one upstream socket.
pub(crate) struct Lookup {
    path: PathBuf,
    uri: Option<Vec<u8>>,
    conn: Option<Client>,
    version: Option<LibvirtVersion>,
}

impl Lookup {
    pub(crate) fn new(path: PathBuf) -> Self {
        Lookup {
            path,
            uri: None,
            conn: None,
            version: None,
        }
    }

    /// Remembers the URI the client opened (CONNECT_OPEN), to open the same driver.
    pub(crate) fn set_uri(&mut self, uri: Option<Vec<u8>>) {
        if uri != self.uri {
            self.uri = uri;
            self.conn = None;
        }
    }

    fn client(&mut self) -> Result<&mut Client, String> {
        if self.conn.is_none() {
            let c = Client::open(&self.path, self.uri.as_deref(), true, TIMEOUT)
                .map_err(|e| e.to_string())?;
            self.conn = Some(c);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| "not connected".to_string())
    }
}

impl Upstream for Lookup {
    fn domain_xml(&mut self, dom: &DomainRef<'_>) -> Result<String, String> {
        let r = self
            .client()?
            .domain_xml_raw(dom.raw, 0)
            .map_err(|e| e.to_string());
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    /// Asked once per connection (CONNECT_GET_LIB_VERSION).
    fn lib_version(&mut self) -> Option<LibvirtVersion> {
        if self.version.is_none() {
            let asked = self
                .client()
                .and_then(|c| c.lib_version().map_err(|e| e.to_string()))
                .and_then(|n| {
                    LibvirtVersion::from_number(n)
                        .ok_or_else(|| format!("{n} is not a libvirt version"))
                });
            match asked {
                Ok(v) => self.version = Some(v),
                Err(e) => {
                    log::debug!("libvirt release of {}: {e}", self.path.display());
                    self.conn = None;
                }
            }
        }
        self.version
    }
}
