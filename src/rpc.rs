//! A small libvirt RPC client over a local UNIX socket: the few calls `audit`
//! and the proxy's own upstream connection need. Framing and XDR come from
//! `proxy::wire`; the conversation is the one virsh starts with (AUTH_LIST,
//! CONNECT_OPEN), per libvirt's `remote_protocol.x`:
//!
//! | proc | name | args -> reply |
//! |---|---|---|
//! | 66 | AUTH_LIST | - -> `remote_auth_type types<>` |
//! | 1 | CONNECT_OPEN | `remote_string name, u32 flags` -> - |
//! | 157 | CONNECT_GET_LIB_VERSION | - -> `unsigned hyper lib_ver` |
//! | 273 | CONNECT_LIST_ALL_DOMAINS | `int need_results, u32 flags` -> `remote_nonnull_domain domains<>, u32 ret` |
//! | 14 | DOMAIN_GET_XML_DESC | `remote_nonnull_domain dom, u32 flags` -> `remote_nonnull_string xml` |

use crate::proxy::fdpass::{write_frame, FrameReader, ReadError};
use crate::proxy::wire::{self, mtype, procs, status, Header, Xdr, PROG_REMOTE, PROTOCOL_VERSION};
use crate::rules::LibvirtVersion;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// REMOTE_PROC_CONNECT_GET_LIB_VERSION.
pub const CONNECT_GET_LIB_VERSION: i32 = 157;
/// REMOTE_PROC_CONNECT_LIST_ALL_DOMAINS.
pub const CONNECT_LIST_ALL_DOMAINS: i32 = 273;
/// VIR_CONNECT_RO: the connection only reads.
pub const CONNECT_RO: u32 = 1;
/// VIR_DOMAIN_XML_INACTIVE: the persistent definition, not the running state.
pub const XML_INACTIVE: u32 = 2;
/// Most domains one listing may return (REMOTE_DOMAIN_LIST_MAX).
const DOMAIN_LIST_MAX: u32 = 16384;

/// A libvirt error or a transport failure, as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RpcError(pub String);

/// A domain as libvirt lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub name: String,
    /// Raw 16-byte UUID.
    pub uuid: Vec<u8>,
    /// -1 when not running.
    pub id: i32,
    /// The `remote_nonnull_domain` encoding, for calls about it.
    raw: Vec<u8>,
}

impl Domain {
    #[cfg(test)]
    pub(crate) fn for_tests(name: &str, id: i32) -> Domain {
        Domain {
            name: name.into(),
            uuid: vec![0; 16],
            id,
            raw: Vec::new(),
        }
    }

    pub fn running(&self) -> bool {
        self.id >= 0
    }

    /// `0c4b5c2e-0000-4000-8000-000000000001`.
    pub fn uuid_string(&self) -> String {
        let h: String = self.uuid.iter().map(|b| format!("{b:02x}")).collect();
        if h.len() != 32 {
            return h;
        }
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
}

/// One open connection.
pub struct Client {
    sock: UnixStream,
    reader: FrameReader,
    serial: u32,
}

impl Client {
    /// Connects to `path` and opens `uri` (`None`: the daemon's default driver).
    pub fn open(
        path: &Path,
        uri: Option<&[u8]>,
        read_only: bool,
        timeout: Duration,
    ) -> Result<Client, RpcError> {
        let sock = UnixStream::connect(path)
            .map_err(|e| RpcError(format!("{}: cannot connect: {e}", path.display())))?;
        sock.set_read_timeout(Some(timeout))
            .and_then(|()| sock.set_write_timeout(Some(timeout)))
            .map_err(|e| RpcError(e.to_string()))?;
        let reader = FrameReader::new(sock.try_clone().map_err(|e| RpcError(e.to_string()))?);
        let mut c = Client {
            sock,
            reader,
            serial: 0,
        };
        c.call(procs::AUTH_LIST, &[])?;
        let mut args = Vec::new();
        wire::put_opt_string(&mut args, uri);
        wire::put_u32(&mut args, if read_only { CONNECT_RO } else { 0 });
        c.call(procs::CONNECT_OPEN, &args)
            .map_err(|e| RpcError(format!("opening the connection: {e}")))?;
        Ok(c)
    }

    /// The release of the libvirt daemon at the other end.
    pub fn lib_version(&mut self) -> Result<LibvirtVersion, RpcError> {
        let r = self.call(CONNECT_GET_LIB_VERSION, &[])?;
        let n = Xdr::new(&r)
            .hyper()
            .map_err(|e| RpcError(format!("CONNECT_GET_LIB_VERSION reply: {e}")))?;
        LibvirtVersion::from_number(n).ok_or_else(|| RpcError(format!("bad libvirt version {n}")))
    }

    /// Every domain, defined or running (flags 0 = no filter).
    pub fn list_all_domains(&mut self) -> Result<Vec<Domain>, RpcError> {
        let mut args = Vec::new();
        wire::put_i32(&mut args, 1);
        wire::put_u32(&mut args, 0);
        let r = self.call(CONNECT_LIST_ALL_DOMAINS, &args)?;
        let bad = |e: wire::XdrError| RpcError(format!("CONNECT_LIST_ALL_DOMAINS reply: {e}"));
        let mut x = Xdr::new(&r);
        let n = x.u32().map_err(bad)?;
        if n > DOMAIN_LIST_MAX {
            return Err(RpcError(format!(
                "libvirt listed {n} domains, more than {DOMAIN_LIST_MAX}"
            )));
        }
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let d = x.domain().map_err(bad)?;
            out.push(Domain {
                name: d.name_lossy(),
                uuid: d.uuid.to_vec(),
                id: d.id,
                raw: d.raw.to_vec(),
            });
        }
        Ok(out)
    }

    /// A domain's XML; `flags` as virDomainGetXMLDesc's (e.g. [`XML_INACTIVE`]).
    pub fn domain_xml(&mut self, dom: &Domain, flags: u32) -> Result<String, RpcError> {
        self.domain_xml_raw(&dom.raw, flags)
    }

    /// The same for a `remote_nonnull_domain` encoding taken from a call.
    pub fn domain_xml_raw(&mut self, raw: &[u8], flags: u32) -> Result<String, RpcError> {
        let mut args = raw.to_vec();
        wire::put_u32(&mut args, flags);
        let r = self.call(procs::DOMAIN_GET_XML_DESC, &args)?;
        let xml = Xdr::new(&r)
            .string()
            .map_err(|e| RpcError(format!("DOMAIN_GET_XML_DESC reply: {e}")))?;
        String::from_utf8(xml.to_vec()).map_err(|_| RpcError("domain XML is not UTF-8".into()))
    }

    /// One call; the reply payload, or libvirt's error message.
    pub fn call(&mut self, procedure: i32, args: &[u8]) -> Result<Vec<u8>, RpcError> {
        let serial = self.serial;
        self.serial = self.serial.wrapping_add(1);
        let h = Header {
            prog: PROG_REMOTE,
            vers: PROTOCOL_VERSION,
            procedure,
            mtype: mtype::CALL,
            serial,
            status: status::OK,
        };
        write_frame(&self.sock, &wire::build_frame(&h, args), &[])
            .map_err(|e| RpcError(format!("sending: {e}")))?;
        loop {
            let f = self.reader.read_frame().map_err(|e| match e {
                ReadError::Io(io)
                    if matches!(
                        io.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    RpcError("libvirt did not answer in time".into())
                }
                e => RpcError(format!("reading: {e}")),
            })?;
            let Some(r) = Header::of_frame(f.bytes) else {
                continue;
            };
            // Keepalives and events: we asked for neither.
            if r.prog != PROG_REMOTE || !r.is_reply() || r.serial != serial {
                continue;
            }
            let p = wire::payload(f.bytes).to_vec();
            if r.status == status::OK {
                return Ok(p);
            }
            let e = wire::decode_error(&p).map_err(|e| RpcError(format!("error reply: {e}")))?;
            return Err(RpcError(
                e.message
                    .unwrap_or_else(|| format!("libvirt error {}", e.code)),
            ));
        }
    }
}

/// Where to connect for `--connect`: a socket path as is; `qemu:///system`
/// (optionally `?socket=PATH`) or nothing: virtqemud's socket when it exists,
/// else libvirtd's. Returns the socket and the URI to open.
pub fn resolve(connect: Option<&str>) -> Result<(PathBuf, Option<String>), RpcError> {
    let default = || {
        let modular = Path::new("/run/libvirt/virtqemud-sock");
        if modular.exists() {
            modular.to_path_buf()
        } else {
            PathBuf::from("/run/libvirt/libvirt-sock")
        }
    };
    let Some(c) = connect.filter(|c| !c.is_empty()) else {
        return Ok((default(), Some("qemu:///system".into())));
    };
    if c.starts_with('/') || c.starts_with('.') {
        return Ok((PathBuf::from(c), Some("qemu:///system".into())));
    }
    let (base, query) = c.split_once('?').unwrap_or((c, ""));
    if base != "qemu:///system" {
        return Err(RpcError(format!(
            "{c}: only qemu:///system (optionally ?socket=PATH) or a socket path is supported"
        )));
    }
    let socket = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("socket="))
        .map(PathBuf::from);
    Ok((socket.unwrap_or_else(default), Some(base.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_targets() {
        assert_eq!(
            resolve(Some("/run/vhostfix/libvirt-sock")).unwrap().0,
            PathBuf::from("/run/vhostfix/libvirt-sock")
        );
        assert_eq!(
            resolve(Some("qemu:///system?socket=/tmp/s")).unwrap(),
            (PathBuf::from("/tmp/s"), Some("qemu:///system".into()))
        );
        assert!(resolve(Some("qemu+ssh://h/system")).is_err());
        assert_eq!(resolve(None).unwrap().1.as_deref(), Some("qemu:///system"));
    }

    #[test]
    fn uuid_is_formatted_like_libvirt() {
        let d = Domain {
            name: "x".into(),
            uuid: (0u8..16).collect(),
            id: -1,
            raw: Vec::new(),
        };
        assert_eq!(d.uuid_string(), "00010203-0405-0607-0809-0a0b0c0d0e0f");
        assert!(!d.running());
    }
}
