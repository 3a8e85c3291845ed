//! The proxy's own libvirt connection, used to read the XML of the domain a
//! device call names. It never touches a client's stream: the client's serial
//! numbers and replies stay exactly as libvirt made them.
//!
//! The conversation is the one virsh starts with (AUTH_LIST, CONNECT_OPEN
//! read-only with the URI the client opened), then DOMAIN_GET_XML_DESC.

use super::fdpass::{write_frame, FrameReader, ReadError};
use super::wire::{
    self, mtype, procs, status, DomainRef, Header, Xdr, PROG_REMOTE, PROTOCOL_VERSION,
};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// VIR_CONNECT_RO.
const CONNECT_RO: u32 = 1;
const TIMEOUT: Duration = Duration::from_secs(10);

struct Conn {
    sock: UnixStream,
    reader: FrameReader,
    serial: u32,
}

/// A lazily opened read-only connection to one upstream socket.
pub struct Lookup {
    path: PathBuf,
    uri: Option<Vec<u8>>,
    conn: Option<Conn>,
}

impl Lookup {
    pub fn new(path: PathBuf) -> Self {
        Lookup {
            path,
            uri: None,
            conn: None,
        }
    }

    /// Remembers the URI the client opened (CONNECT_OPEN), to open the same driver.
    pub fn set_uri(&mut self, uri: Option<Vec<u8>>) {
        if uri != self.uri {
            self.uri = uri;
            self.conn = None;
        }
    }

    /// The domain's current XML.
    pub fn domain_xml(&mut self, dom: &DomainRef<'_>) -> Result<String, String> {
        if self.conn.is_none() {
            self.conn = Some(self.open()?);
        }
        let mut args = dom.raw.to_vec();
        wire::put_u32(&mut args, 0);
        let reply = self.call(procs::DOMAIN_GET_XML_DESC, &args);
        if reply.is_err() {
            self.conn = None;
        }
        let reply = reply?;
        let mut x = Xdr::new(&reply);
        let xml = x.string().map_err(|e| format!("reply: {e}"))?;
        String::from_utf8(xml.to_vec()).map_err(|_| "reply is not UTF-8".to_string())
    }

    fn open(&mut self) -> Result<Conn, String> {
        let sock =
            UnixStream::connect(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        sock.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        sock.set_write_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        let reader = FrameReader::new(sock.try_clone().map_err(|e| e.to_string())?);
        self.conn = Some(Conn {
            sock,
            reader,
            serial: 0,
        });
        self.call(procs::AUTH_LIST, &[])?;
        let mut args = Vec::new();
        wire::put_opt_string(&mut args, self.uri.as_deref());
        wire::put_u32(&mut args, CONNECT_RO);
        self.call(procs::CONNECT_OPEN, &args)?;
        self.conn
            .take()
            .ok_or_else(|| "connection lost".to_string())
    }

    /// One call; returns the reply payload, or libvirt's error message.
    fn call(&mut self, procedure: i32, args: &[u8]) -> Result<Vec<u8>, String> {
        let c = self.conn.as_mut().ok_or("not connected")?;
        let serial = c.serial;
        c.serial = c.serial.wrapping_add(1);
        let h = Header {
            prog: PROG_REMOTE,
            vers: PROTOCOL_VERSION,
            procedure,
            mtype: mtype::CALL,
            serial,
            status: status::OK,
        };
        write_frame(&c.sock, &wire::build_frame(&h, args), &[])
            .map_err(|e| format!("sending: {e}"))?;
        loop {
            let f = c.reader.read_frame().map_err(|e| match e {
                ReadError::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    "libvirt did not answer in time".to_string()
                }
                e => format!("reading: {e}"),
            })?;
            let Some(r) = Header::of_frame(f.bytes) else {
                continue;
            };
            // Skip keepalives and events; we never asked for either.
            if r.prog != PROG_REMOTE || !r.is_reply() || r.serial != serial {
                continue;
            }
            let p = wire::payload(f.bytes).to_vec();
            if r.status == status::OK {
                return Ok(p);
            }
            let e = wire::decode_error(&p).map_err(|e| format!("error reply: {e}"))?;
            return Err(e
                .message
                .unwrap_or_else(|| format!("libvirt error {}", e.code)));
        }
    }
}
