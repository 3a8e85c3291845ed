//! A small libvirt RPC client over a local UNIX socket: the few calls `audit`
//! and the proxy's own upstream connection need. The conversation is the one
//! virsh starts with (AUTH_LIST, CONNECT_OPEN), per libvirt's `remote_protocol.x`:
//!
//! | proc | name | args -> reply |
//! |---|---|---|
//! | 66 | AUTH_LIST | - -> `remote_auth_type types<>` (SASL: see `sasl`) |
//! | 1 | CONNECT_OPEN | `remote_string name, u32 flags` -> - |
//! | 157 | CONNECT_GET_LIB_VERSION | - -> `unsigned hyper lib_ver` |
//! | 273 | CONNECT_LIST_ALL_DOMAINS | `int need_results, u32 flags` -> `remote_nonnull_domain domains<>, u32 ret` |
//! | 14 | DOMAIN_GET_XML_DESC | `remote_nonnull_domain dom, u32 flags` -> `remote_nonnull_string xml` |
//!
//! Errors keep libvirt's code ([`RpcError::Libvirt`]), so a caller branches on
//! the code, never on the text.

use super::error::{decode_error, NO_DOMAIN};
use super::frame::{build_frame, mtype, payload, status, Header, PROG_REMOTE, PROTOCOL_VERSION};
use super::procs;
use super::sasl::{self, Credentials, Exchange, SaslError};
use super::transport::{write_frame, FrameReader, ReadError};
use super::xdr::{put_i32, put_opt_string, put_u32, Xdr, XdrError};
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// VIR_CONNECT_RO: the connection only reads.
pub(crate) const CONNECT_RO: u32 = 1;
/// VIR_DOMAIN_XML_INACTIVE: the persistent definition, not the running state.
pub(crate) const XML_INACTIVE: u32 = 2;
/// REMOTE_AUTH_SASL in AUTH_LIST's answer.
const AUTH_SASL: i32 = 1;
/// REMOTE_AUTH_TYPE_LIST_MAX.
const AUTH_TYPES_MAX: u32 = 20;
/// Most domains one listing may return (REMOTE_DOMAIN_LIST_MAX).
const DOMAIN_LIST_MAX: u32 = 16384;
/// libvirt's sockets for qemu:///system: the modular daemon's, else libvirtd's.
const VIRTQEMUD_SOCK: &str = "/run/libvirt/virtqemud-sock";
const LIBVIRTD_SOCK: &str = "/run/libvirt/libvirt-sock";

/// Why a call did not succeed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RpcError {
    #[error("{}: cannot connect: {source}", path.display())]
    Connect { path: PathBuf, source: io::Error },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
    #[error("reading: {0}")]
    Read(ReadError),
    #[error("libvirt did not answer in time")]
    Timeout,
    /// A reply that does not decode, or says what cannot be.
    #[error("{what} reply: {detail}")]
    Reply { what: &'static str, detail: String },
    /// libvirt answered with an error (`remote_error`).
    #[error("{message}")]
    Libvirt {
        code: i32,
        domain: i32,
        message: String,
    },
    /// Opening the connection failed (authentication, driver).
    #[error("opening the connection: {0}")]
    Open(Box<RpcError>),
    /// libvirt asks for SASL on this socket and no credentials were given.
    #[error("libvirt asks for SASL authentication on this socket")]
    SaslRequired,
    /// The SASL exchange failed.
    #[error("SASL authentication: {0}")]
    Sasl(String),
    #[error("{0}")]
    Uri(String),
}

impl From<SaslError> for RpcError {
    fn from(e: SaslError) -> RpcError {
        RpcError::Sasl(e.to_string())
    }
}

impl RpcError {
    /// libvirt's error code, when libvirt answered with one.
    pub(crate) fn code(&self) -> Option<i32> {
        match self {
            RpcError::Libvirt { code, .. } => Some(*code),
            RpcError::Open(e) => e.code(),
            _ => None,
        }
    }

    /// True when libvirt says the domain does not exist (VIR_ERR_NO_DOMAIN).
    pub(crate) fn is_no_domain(&self) -> bool {
        self.code() == Some(NO_DOMAIN)
    }

    fn reply(what: &'static str, e: XdrError) -> RpcError {
        RpcError::Reply {
            what,
            detail: e.to_string(),
        }
    }
}

/// A domain as libvirt lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Domain {
    pub(crate) name: String,
    /// Raw 16-byte UUID.
    pub(crate) uuid: Vec<u8>,
    /// -1 when not running.
    pub(crate) id: i32,
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

    pub(crate) fn running(&self) -> bool {
        self.id >= 0
    }

    /// `0c4b5c2e-0000-4000-8000-000000000001`.
    pub(crate) fn uuid_string(&self) -> String {
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
pub(crate) struct Client {
    sock: UnixStream,
    reader: FrameReader,
    serial: u32,
}

impl Client {
    /// Connects to `path` and opens `uri` (`None`: the daemon's default
    /// driver), authenticating with `sasl` where libvirt asks for SASL.
    pub(crate) fn open(
        path: &Path,
        uri: Option<&[u8]>,
        read_only: bool,
        sasl: Option<&Credentials>,
        timeout: Duration,
    ) -> Result<Client, RpcError> {
        let sock = UnixStream::connect(path).map_err(|source| RpcError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        let setup = |source| RpcError::Io {
            what: "setting up the socket",
            source,
        };
        sock.set_read_timeout(Some(timeout))
            .and_then(|()| sock.set_write_timeout(Some(timeout)))
            .map_err(setup)?;
        let reader = FrameReader::new(sock.try_clone().map_err(setup)?);
        let mut c = Client {
            sock,
            reader,
            serial: 0,
        };
        let r = c.call(procs::AUTH_LIST, &[])?;
        // `remote_auth_type types<>`: none needed, SASL, or polkit (which
        // libvirtd waives for root; polkit itself is not spoken here).
        let types = (|| {
            let mut x = Xdr::new(&r);
            let n = x.u32()?.min(AUTH_TYPES_MAX);
            (0..n)
                .map(|_| x.i32())
                .collect::<Result<Vec<i32>, XdrError>>()
        })()
        .map_err(|e| RpcError::reply("AUTH_LIST", e))?;
        if types.first() == Some(&AUTH_SASL) {
            let creds = sasl.ok_or(RpcError::SaslRequired)?;
            c.sasl(creds).map_err(|e| {
                let e = match e {
                    e @ RpcError::Sasl(_) => e,
                    // libvirt's refusal ("authentication failed"), a broken reply.
                    e => RpcError::Sasl(e.to_string()),
                };
                RpcError::Open(Box::new(e))
            })?;
        }
        let mut args = Vec::new();
        put_opt_string(&mut args, uri);
        put_u32(&mut args, if read_only { CONNECT_RO } else { 0 });
        c.call(procs::CONNECT_OPEN, &args)
            .map_err(|e| RpcError::Open(Box::new(e)))?;
        Ok(c)
    }

    /// SASL with SCRAM-SHA-256 (see `sasl`): INIT, START, STEP (and an
    /// empty STEP if libvirt sends its proof as a challenge).
    fn sasl(&mut self, creds: &Credentials) -> Result<(), RpcError> {
        let init = self.call(procs::AUTH_SASL_INIT, &[])?;
        let mut x = Exchange::start(creds, &init)?;
        let start = self.call(procs::AUTH_SASL_START, &x.first())?;
        let step = self.call(procs::AUTH_SASL_STEP, &x.respond(&start)?)?;
        if !x.finish(&step)? {
            let last = self.call(procs::AUTH_SASL_STEP, &sasl::empty_step())?;
            x.done(&last)?;
        }
        Ok(())
    }

    /// The release of the libvirt daemon at the other end, in libvirt's
    /// numeric form (`major * 1_000_000 + minor * 1000 + micro`).
    pub(crate) fn lib_version(&mut self) -> Result<u64, RpcError> {
        let r = self.call(procs::CONNECT_GET_LIB_VERSION, &[])?;
        Xdr::new(&r)
            .hyper()
            .map_err(|e| RpcError::reply("CONNECT_GET_LIB_VERSION", e))
    }

    /// Every domain, defined or running (flags 0 = no filter).
    pub(crate) fn list_all_domains(&mut self) -> Result<Vec<Domain>, RpcError> {
        let mut args = Vec::new();
        put_i32(&mut args, 1);
        put_u32(&mut args, 0);
        let r = self.call(procs::CONNECT_LIST_ALL_DOMAINS, &args)?;
        let bad = |e| RpcError::reply("CONNECT_LIST_ALL_DOMAINS", e);
        let mut x = Xdr::new(&r);
        let n = x.u32().map_err(bad)?;
        if n > DOMAIN_LIST_MAX {
            return Err(RpcError::Reply {
                what: "CONNECT_LIST_ALL_DOMAINS",
                detail: format!("{n} domains, more than {DOMAIN_LIST_MAX}"),
            });
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
    pub(crate) fn domain_xml(&mut self, dom: &Domain, flags: u32) -> Result<String, RpcError> {
        self.domain_xml_raw(&dom.raw, flags)
    }

    /// The same for a `remote_nonnull_domain` encoding taken from a call.
    pub(crate) fn domain_xml_raw(&mut self, raw: &[u8], flags: u32) -> Result<String, RpcError> {
        let mut args = raw.to_vec();
        put_u32(&mut args, flags);
        let r = self.call(procs::DOMAIN_GET_XML_DESC, &args)?;
        let xml = Xdr::new(&r)
            .string()
            .map_err(|e| RpcError::reply("DOMAIN_GET_XML_DESC", e))?;
        String::from_utf8(xml.to_vec()).map_err(|_| RpcError::Reply {
            what: "DOMAIN_GET_XML_DESC",
            detail: "the domain XML is not UTF-8".into(),
        })
    }

    /// One call; the reply payload, or libvirt's error message.
    pub(crate) fn call(&mut self, procedure: i32, args: &[u8]) -> Result<Vec<u8>, RpcError> {
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
        write_frame(&self.sock, &build_frame(&h, args), &[]).map_err(|source| RpcError::Io {
            what: "sending",
            source,
        })?;
        loop {
            let f = self.reader.read_frame().map_err(|e| match e {
                ReadError::Io(io)
                    if matches!(
                        io.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    RpcError::Timeout
                }
                e => RpcError::Read(e),
            })?;
            let Some(r) = Header::of_frame(f.bytes) else {
                continue;
            };
            // Keepalives and events: we asked for neither.
            if r.prog != PROG_REMOTE || !r.is_reply() || r.serial != serial {
                continue;
            }
            let p = payload(f.bytes).to_vec();
            if r.status == status::OK {
                return Ok(p);
            }
            let e = decode_error(&p).map_err(|e| RpcError::reply("error", e))?;
            return Err(RpcError::Libvirt {
                code: e.code,
                domain: e.domain,
                message: e
                    .message
                    .unwrap_or_else(|| format!("libvirt error {}", e.code)),
            });
        }
    }
}

/// Where to connect for `--connect`: a socket path as is; `qemu:///system`
/// (optionally `?socket=PATH`) or nothing: virtqemud's socket when it exists,
/// else libvirtd's. Returns the socket and the URI to open.
pub(crate) fn resolve(connect: Option<&str>) -> Result<(PathBuf, Option<String>), RpcError> {
    let default = default_socket;
    let Some(c) = connect.filter(|c| !c.is_empty()) else {
        return Ok((default(), Some("qemu:///system".into())));
    };
    if c.starts_with('/') || c.starts_with('.') {
        return Ok((PathBuf::from(c), Some("qemu:///system".into())));
    }
    let (base, query) = c.split_once('?').unwrap_or((c, ""));
    if base != "qemu:///system" {
        return Err(RpcError::Uri(format!(
            "{c}: only qemu:///system (optionally ?socket=PATH) or a socket path is supported"
        )));
    }
    let socket = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("socket="))
        .map(PathBuf::from);
    Ok((socket.unwrap_or_else(default), Some(base.to_string())))
}

/// libvirt's read-write socket for qemu:///system on this host:
/// virtqemud's when it exists (modular daemons), else libvirtd's. The same
/// choice libvirt's own client makes in its default (auto) mode.
pub(crate) fn default_socket() -> PathBuf {
    let modular = Path::new(VIRTQEMUD_SOCK);
    if modular.exists() {
        modular.to_path_buf()
    } else {
        PathBuf::from(LIBVIRTD_SOCK)
    }
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
