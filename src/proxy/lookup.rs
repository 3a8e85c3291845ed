//! The proxy's own libvirt connection, used to read the XML of the domain a
//! device call names and the release of the libvirt behind the proxy. It never
//! touches a client's stream: the client's serial numbers and replies stay
//! exactly as libvirt made them.
//!
//! The conversation is the one virsh starts with (AUTH_LIST, CONNECT_OPEN
//! read-only with the URI the client opened), then DOMAIN_GET_XML_DESC or
//! CONNECT_GET_LIB_VERSION (see `crate::rpc`).

use super::wire::DomainRef;
use crate::rpc::Client;
use crate::rules::LibvirtVersion;
use std::path::PathBuf;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A lazily opened read-only connection to one upstream socket.
pub struct Lookup {
    path: PathBuf,
    uri: Option<Vec<u8>>,
    conn: Option<Client>,
    version: Option<LibvirtVersion>,
}

impl Lookup {
    pub fn new(path: PathBuf) -> Self {
        Lookup {
            path,
            uri: None,
            conn: None,
            version: None,
        }
    }

    /// Remembers the URI the client opened (CONNECT_OPEN), to open the same driver.
    pub fn set_uri(&mut self, uri: Option<Vec<u8>>) {
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

    /// The domain's current XML.
    pub fn domain_xml(&mut self, dom: &DomainRef<'_>) -> Result<String, String> {
        let r = self
            .client()?
            .domain_xml_raw(dom.raw, 0)
            .map_err(|e| e.to_string());
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    /// The upstream libvirt's release (asked once per connection;
    /// CONNECT_GET_LIB_VERSION). `None` when it cannot be learnt: the rules
    /// then give advice that holds on every release.
    pub fn lib_version(&mut self) -> Option<LibvirtVersion> {
        if self.version.is_none() {
            match self
                .client()
                .and_then(|c| c.lib_version().map_err(|e| e.to_string()))
            {
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
