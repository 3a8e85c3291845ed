//! What a decision may ask the libvirt behind the proxy: the XML of the
//! domain a device call names, and libvirt's release. [`Upstream`] is the
//! question; [`Lookup`] answers it over the proxy's own libvirt connection,
//! tests answer it from memory.
//!
//! The lookup connection never touches a client's stream: the client's serial
//! numbers and replies stay exactly as libvirt made them. Its conversation is
//! the one virsh starts with (AUTH_LIST, CONNECT_OPEN read-only with the URI
//! the client opened), then DOMAIN_GET_XML_DESC or CONNECT_GET_LIB_VERSION
//! (see `crate::rpc::client`). Both work on a read-only connection, so it
//! goes to libvirt's read-only socket first (see `server::with_lookups`).
//!
//! A lookup connection that cannot be opened is not tried again for
//! [`RETRY_AFTER`] by any client's lookups over the same sockets
//! ([`LookupHealth`]), and each new reason is logged once: otherwise every
//! device call on a host where it fails would cost a failed connection and
//! a warning.

use crate::core::rules::LibvirtVersion;
use crate::rpc::client::{Client, RpcError};
use crate::rpc::sasl::Credentials;
use crate::rpc::xdr::DomainRef;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);
/// How long after a failed attempt no lookup connection is tried.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(30);

/// The questions a decision asks libvirt.
pub(crate) trait Upstream {
    /// The current XML of the domain a call names.
    fn domain_xml(&mut self, dom: &DomainRef<'_>) -> Result<String, String>;
    /// libvirt's release; `None` when it cannot be learnt (the rules then give
    /// advice that holds on every release).
    fn lib_version(&mut self) -> Option<LibvirtVersion>;
}

/// Whether lookup connections open, shared by every client's [`Lookup`].
#[derive(Debug, Default)]
pub(crate) struct LookupHealth {
    failure: Mutex<Option<(Instant, String)>>,
    /// Lookup connections that could not be opened (`lookup_failures`).
    pub(crate) failures: AtomicU64,
}

impl LookupHealth {
    /// The last failure's reason while lookups wait to be tried again.
    fn paused(&self) -> Option<String> {
        let f = self.failure.lock().ok()?;
        let (at, why) = f.as_ref()?;
        let left = RETRY_AFTER.checked_sub(at.elapsed())?;
        Some(format!(
            "{why} (the proxy tries again in {} s)",
            left.as_secs() + 1
        ))
    }

    /// Records a failure; true when its reason is new (log it).
    fn failed(&self, why: &str) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let Ok(mut f) = self.failure.lock() else {
            return false;
        };
        let new = f.as_ref().is_none_or(|(_, old)| old != why);
        *f = Some((Instant::now(), why.to_string()));
        new
    }

    /// Forgets a failure; true when there was one (log the recovery).
    fn recovered(&self) -> bool {
        self.failure.lock().is_ok_and(|mut f| f.take().is_some())
    }
}

/// A lazily opened read-only connection for one client's decisions.
pub(crate) struct Lookup {
    /// The sockets to try, in order (libvirt's read-only one first).
    paths: Vec<PathBuf>,
    uri: Option<Vec<u8>>,
    conn: Option<Client>,
    version: Option<LibvirtVersion>,
    health: Arc<LookupHealth>,
    /// For a socket where libvirt asks for SASL.
    sasl: Option<Arc<Credentials>>,
}

impl Lookup {
    pub(crate) fn new(
        paths: Vec<PathBuf>,
        health: Arc<LookupHealth>,
        sasl: Option<Arc<Credentials>>,
    ) -> Self {
        Lookup {
            paths,
            uri: None,
            conn: None,
            version: None,
            health,
            sasl,
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
            if let Some(why) = self.health.paused() {
                return Err(why);
            }
            match self.open() {
                Ok(c) => {
                    if self.health.recovered() {
                        log::info!("proxy: lookups in libvirt work again");
                    }
                    self.conn = Some(c);
                }
                Err(why) => {
                    if self.health.failed(&why) {
                        log::warn!(
                            "proxy: cannot open a lookup connection to libvirt: {why}; until it opens, device calls are judged without their domain's guest OS (proxy.on_error applies) and libvirt's release is unknown; the proxy tries again every {} s",
                            RETRY_AFTER.as_secs()
                        );
                    }
                    return Err(why);
                }
            }
        }
        self.conn
            .as_mut()
            .ok_or_else(|| "not connected".to_string())
    }

    /// The first socket that opens; else every socket's reason.
    fn open(&self) -> Result<Client, String> {
        let mut why = Vec::new();
        let mut sasl_asked = false;
        for p in &self.paths {
            let sasl = self.sasl.as_deref();
            match Client::open(p, self.uri.as_deref(), true, sasl, TIMEOUT) {
                Ok(c) => return Ok(c),
                // The error names the socket already.
                Err(e @ RpcError::Connect { .. }) => why.push(e.to_string()),
                Err(e) => {
                    sasl_asked |= matches!(e, RpcError::SaslRequired);
                    why.push(format!("{}: {e}", p.display()));
                }
            }
        }
        if sasl_asked {
            why.push(
                "give the proxy a SASL user: proxy.lookup_sasl_username and proxy.lookup_sasl_password_file".into(),
            );
        }
        Err(why.join("; "))
    }

    /// Keeps the connection when libvirt answered (no such domain, say);
    /// drops it when the connection itself failed.
    fn keep_if_answered<T>(&mut self, r: Result<T, RpcError>) -> Result<T, String> {
        r.map_err(|e| {
            if e.code().is_none() {
                self.conn = None;
            }
            e.to_string()
        })
    }
}

impl Upstream for Lookup {
    fn domain_xml(&mut self, dom: &DomainRef<'_>) -> Result<String, String> {
        let r = self.client()?.domain_xml_raw(dom.raw, 0);
        self.keep_if_answered(r)
    }

    /// Asked once per connection (CONNECT_GET_LIB_VERSION).
    fn lib_version(&mut self) -> Option<LibvirtVersion> {
        if self.version.is_none() {
            let asked = self.client().and_then(|c| {
                let r = c.lib_version();
                r.map_err(|e| e.to_string())
            });
            let asked = asked.and_then(|n| {
                LibvirtVersion::from_number(n)
                    .ok_or_else(|| format!("{n} is not a libvirt version"))
            });
            match asked {
                Ok(v) => self.version = Some(v),
                Err(e) => {
                    log::debug!("proxy: libvirt's release: {e}");
                    self.conn = None;
                }
            }
        }
        self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_pauses_lookups_and_each_reason_is_logged_once() {
        let h = LookupHealth::default();
        assert!(h.paused().is_none());
        assert!(
            h.failed("x: authentication required"),
            "a first failure is new"
        );
        let p = h.paused().expect("paused after a failure");
        assert!(
            p.starts_with("x: authentication required (the proxy tries again in "),
            "{p}"
        );
        assert!(
            !h.failed("x: authentication required"),
            "the same reason again"
        );
        assert!(h.failed("x: cannot connect"), "a different reason");
        assert_eq!(h.failures.load(Ordering::Relaxed), 3);
        assert!(h.recovered());
        assert!(!h.recovered());
        assert!(h.paused().is_none());
    }

    #[test]
    fn a_socket_that_is_missing_is_skipped_for_the_next() {
        let dir = std::env::temp_dir().join(format!("vhostfix-lookup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let health = Arc::new(LookupHealth::default());
        let mut l = Lookup::new(vec![dir.join("ro"), dir.join("rw")], health.clone(), None);
        let e = l.client().err().expect("nothing listens");
        assert!(
            e.contains("/ro: cannot connect") && e.contains("/rw: cannot connect"),
            "{e}"
        );
        // Paused now: the next attempt does not connect.
        let e2 = l.client().err().unwrap();
        assert!(e2.contains("tries again in"), "{e2}");
        assert_eq!(health.failures.load(Ordering::Relaxed), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
