//! The libvirt RPC wire format, as far as the proxy needs it: frame boundaries,
//! the 24-byte header, the few XDR types that carry XML, and the error reply.
//!
//! Layout (libvirt `virnetprotocol.x`, checked against libvirtd 9.0 on the wire):
//!
//! ```text
//! u32 length (big-endian, counts itself) | prog u32 | vers u32 | proc i32 |
//! type i32 | serial u32 | status i32 | payload (XDR)
//! ```
//!
//! Frames of type CALL_WITH_FDS / REPLY_WITH_FDS start their payload with a u32
//! fd count; the descriptors follow the frame on the socket, one per message
//! (see `fdpass`). Everything here is pure and never panics on any input.

use std::ops::Range;

/// Bytes of the length word.
pub const LEN_WORD: usize = 4;
/// Bytes of the header after the length word.
pub const HEADER_LEN: usize = 24;
/// Largest `length - 4` libvirt accepts (VIR_NET_MESSAGE_MAX, libvirt >= 3.4).
pub const MAX_FRAME_BODY: usize = 32 * 1024 * 1024;
/// Largest XDR string libvirt accepts (REMOTE_STRING_MAX).
pub const STRING_MAX: usize = 4 * 1024 * 1024;
/// Most descriptors one frame may announce (VIR_NET_MESSAGE_NUM_FDS_MAX).
pub const MAX_FDS: u32 = 32;

pub const PROG_REMOTE: u32 = 0x2000_8086;
pub const PROG_QEMU: u32 = 0x2000_8087;
pub const PROG_LXC: u32 = 0x0006_8000;
pub const PROG_KEEPALIVE: u32 = 0x6b65_6570;
pub const PROTOCOL_VERSION: u32 = 1;

/// Message types (`virNetMessageType`).
pub mod mtype {
    pub const CALL: i32 = 0;
    pub const REPLY: i32 = 1;
    pub const MESSAGE: i32 = 2;
    pub const STREAM: i32 = 3;
    pub const CALL_WITH_FDS: i32 = 4;
    pub const REPLY_WITH_FDS: i32 = 5;
    pub const STREAM_HOLE: i32 = 6;
}

/// Message status (`virNetMessageStatus`).
pub mod status {
    pub const OK: i32 = 0;
    pub const ERROR: i32 = 1;
    pub const CONTINUE: i32 = 2;
}

/// REMOTE program procedures the proxy looks at or uses itself.
pub mod procs {
    pub const CONNECT_OPEN: i32 = 1;
    pub const CONNECT_CLOSE: i32 = 2;
    pub const DOMAIN_ATTACH_DEVICE: i32 = 8;
    pub const DOMAIN_CREATE_XML: i32 = 10;
    pub const DOMAIN_DEFINE_XML: i32 = 11;
    pub const DOMAIN_GET_XML_DESC: i32 = 14;
    pub const AUTH_LIST: i32 = 66;
    pub const DOMAIN_ATTACH_DEVICE_FLAGS: i32 = 160;
    pub const DOMAIN_UPDATE_DEVICE_FLAGS: i32 = 174;
    pub const DOMAIN_SAVE_FLAGS: i32 = 232;
    pub const DOMAIN_RESTORE_FLAGS: i32 = 233;
    pub const DOMAIN_SAVE_IMAGE_DEFINE_XML: i32 = 236;
    pub const DOMAIN_CREATE_XML_WITH_FILES: i32 = 309;
    pub const DOMAIN_DEFINE_XML_FLAGS: i32 = 350;
    pub const DOMAIN_MANAGED_SAVE_DEFINE_XML: i32 = 389;
    pub const DOMAIN_MIGRATE_PREPARE2: i32 = 108;
    pub const DOMAIN_MIGRATE_PREPARE_TUNNEL: i32 = 148;
    pub const DOMAIN_MIGRATE_BEGIN3: i32 = 213;
    pub const DOMAIN_MIGRATE_PREPARE3: i32 = 214;
    pub const DOMAIN_MIGRATE_PREPARE_TUNNEL3: i32 = 215;
    pub const DOMAIN_MIGRATE_PERFORM3: i32 = 216;
    pub const DOMAIN_MIGRATE_BEGIN3_PARAMS: i32 = 302;
    pub const DOMAIN_MIGRATE_PREPARE3_PARAMS: i32 = 303;
    pub const DOMAIN_MIGRATE_PREPARE_TUNNEL3_PARAMS: i32 = 304;
    pub const DOMAIN_MIGRATE_PERFORM3_PARAMS: i32 = 305;
    pub const DOMAIN_MIGRATE_FINISH3: i32 = 217;
    pub const DOMAIN_MIGRATE_FINISH3_PARAMS: i32 = 306;
    pub const DOMAIN_SNAPSHOT_CREATE_XML: i32 = 185;
    pub const DOMAIN_SAVE_PARAMS: i32 = 440;
    pub const DOMAIN_RESTORE_PARAMS: i32 = 441;
    pub const DOMAIN_OPEN_CONSOLE: i32 = 201;
    pub const STORAGE_VOL_UPLOAD: i32 = 208;
    pub const STORAGE_VOL_DOWNLOAD: i32 = 209;
    pub const DOMAIN_SCREENSHOT: i32 = 211;
    pub const DOMAIN_OPEN_CHANNEL: i32 = 296;

    /// Calls that open a stream when libvirt answers them with success
    /// (`@readstream`/`@writestream` in libvirt's remote_protocol.x): the
    /// stream's data frames, with the call's procedure and serial, may come
    /// any time later.
    pub fn opens_stream(procedure: i32) -> bool {
        matches!(
            procedure,
            DOMAIN_MIGRATE_PREPARE_TUNNEL
                | DOMAIN_OPEN_CONSOLE
                | STORAGE_VOL_UPLOAD
                | STORAGE_VOL_DOWNLOAD
                | DOMAIN_SCREENSHOT
                | DOMAIN_MIGRATE_PREPARE_TUNNEL3
                | DOMAIN_OPEN_CHANNEL
                | DOMAIN_MIGRATE_PREPARE_TUNNEL3_PARAMS
        )
    }
}

/// libvirt error codes and domains used in replies the proxy makes itself.
pub mod err {
    /// VIR_ERR_CONFIG_UNSUPPORTED.
    pub const CONFIG_UNSUPPORTED: i32 = 67;
    /// VIR_ERR_ACCESS_DENIED.
    pub const ACCESS_DENIED: i32 = 88;
    /// VIR_FROM_DOMAIN.
    pub const FROM_DOMAIN: i32 = 20;
    /// VIR_FROM_ACCESS.
    pub const FROM_ACCESS: i32 = 55;
    /// VIR_ERR_NO_CONNECT.
    pub const NO_CONNECT: i32 = 5;
    /// VIR_FROM_REMOTE.
    pub const FROM_REMOTE: i32 = 13;
    /// VIR_ERR_ERROR.
    pub const LEVEL_ERROR: i32 = 2;
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {0} is shorter than a header")]
    TooShort(u32),
    #[error("frame length {0} is over libvirt's limit of {max} bytes", max = MAX_FRAME_BODY + LEN_WORD)]
    TooLong(u32),
    #[error("frame announces {0} file descriptors (at most {MAX_FDS})")]
    TooManyFds(u32),
    #[error("frame with fds has no fd count")]
    NoFdCount,
}

/// Checks a length word; returns the whole frame's size in bytes.
pub fn frame_len(word: [u8; 4]) -> Result<usize, FrameError> {
    let n = u32::from_be_bytes(word);
    let len = n as usize;
    if len < LEN_WORD + HEADER_LEN {
        return Err(FrameError::TooShort(n));
    }
    if len - LEN_WORD > MAX_FRAME_BODY {
        return Err(FrameError::TooLong(n));
    }
    Ok(len)
}

/// The message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub prog: u32,
    pub vers: u32,
    pub procedure: i32,
    pub mtype: i32,
    pub serial: u32,
    pub status: i32,
}

impl Header {
    /// Reads the header of a whole frame (length word included). `None` when short.
    pub fn of_frame(frame: &[u8]) -> Option<Header> {
        let h = frame.get(LEN_WORD..LEN_WORD + HEADER_LEN)?;
        let w = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        Some(Header {
            prog: w(0),
            vers: w(4),
            procedure: w(8) as i32,
            mtype: w(12) as i32,
            serial: w(16),
            status: w(20) as i32,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        for v in [
            self.prog,
            self.vers,
            self.procedure as u32,
            self.mtype as u32,
            self.serial,
            self.status as u32,
        ] {
            put_u32(out, v);
        }
    }

    /// A call (CALL or CALL_WITH_FDS).
    pub fn is_call(&self) -> bool {
        self.mtype == mtype::CALL || self.mtype == mtype::CALL_WITH_FDS
    }

    /// A reply (REPLY or REPLY_WITH_FDS).
    pub fn is_reply(&self) -> bool {
        self.mtype == mtype::REPLY || self.mtype == mtype::REPLY_WITH_FDS
    }

    /// True when fds follow the frame (and the payload starts with their count).
    pub fn carries_fds(&self) -> bool {
        self.mtype == mtype::CALL_WITH_FDS || self.mtype == mtype::REPLY_WITH_FDS
    }
}

/// The payload of a whole frame (after length word and header).
pub fn payload(frame: &[u8]) -> &[u8] {
    frame.get(LEN_WORD + HEADER_LEN..).unwrap_or(&[])
}

/// How many fds follow this frame: 0 for frames without fds.
pub fn fd_count(frame: &[u8]) -> Result<u32, FrameError> {
    match Header::of_frame(frame) {
        Some(h) if h.carries_fds() => {
            let p = payload(frame);
            let n = p
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(FrameError::NoFdCount)?;
            if n > MAX_FDS {
                return Err(FrameError::TooManyFds(n));
            }
            Ok(n)
        }
        _ => Ok(0),
    }
}

/// Why XDR arguments could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XdrError {
    #[error("arguments end early at byte {0}")]
    Short(usize),
    #[error("string of {0} bytes is over libvirt's limit")]
    StringTooLong(u32),
    #[error("optional marker {0} is neither 0 nor 1")]
    BadOptional(u32),
    #[error("typed parameter type {0} is unknown")]
    BadParamType(i32),
    #[error("{0} typed parameters are over the limit")]
    TooManyParams(u32),
}

/// At most this many typed parameters in one call (libvirt's own lists are far shorter).
pub const MAX_TYPED_PARAMS: u32 = 1024;

/// A string's bytes and the range of its XDR encoding in the buffer.
pub type Located<'a> = (&'a [u8], Range<usize>);

/// A cursor over XDR data.
#[derive(Debug, Clone)]
pub struct Xdr<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

impl<'a> Xdr<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Xdr { buf, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(XdrError::Short(self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn u32(&mut self) -> Result<u32, XdrError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i32(&mut self) -> Result<i32, XdrError> {
        Ok(self.u32()? as i32)
    }

    /// `remote_nonnull_string`: length, bytes, padding. Returns the bytes.
    pub fn string(&mut self) -> Result<&'a [u8], XdrError> {
        let n = self.u32()?;
        if n as usize > STRING_MAX {
            return Err(XdrError::StringTooLong(n));
        }
        let s = self.take(n as usize)?;
        self.take(pad4(n as usize))?;
        Ok(s)
    }

    /// `remote_string`: an optional nonnull string.
    pub fn opt_string(&mut self) -> Result<Option<&'a [u8]>, XdrError> {
        match self.u32()? {
            0 => Ok(None),
            1 => self.string().map(Some),
            n => Err(XdrError::BadOptional(n)),
        }
    }

    /// `opaque<>`: length, bytes, padding (e.g. a migration cookie).
    pub fn opaque(&mut self) -> Result<&'a [u8], XdrError> {
        self.string()
    }

    /// `unsigned hyper`: 8 bytes.
    pub fn hyper(&mut self) -> Result<u64, XdrError> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    /// `remote_typed_param params<>`: returns the first string parameter named
    /// one of `wanted`, with the byte range of its XDR string.
    pub fn typed_params_find(&mut self, wanted: &[&str]) -> Result<Option<Located<'a>>, XdrError> {
        let n = self.u32()?;
        if n > MAX_TYPED_PARAMS {
            return Err(XdrError::TooManyParams(n));
        }
        let mut found = None;
        for _ in 0..n {
            let field = self.string()?;
            match self.i32()? {
                1 | 2 | 6 => {
                    self.u32()?;
                }
                3..=5 => {
                    self.hyper()?;
                }
                7 => {
                    let start = self.pos;
                    let v = self.string()?;
                    if found.is_none() && wanted.iter().any(|w| w.as_bytes() == field) {
                        found = Some((v, start..self.pos));
                    }
                }
                t => return Err(XdrError::BadParamType(t)),
            }
        }
        Ok(found)
    }

    /// `remote_nonnull_domain`: name, 16-byte uuid, id.
    pub fn domain(&mut self) -> Result<DomainRef<'a>, XdrError> {
        let start = self.pos;
        let name = self.string()?;
        let uuid = self.take(16)?;
        let id = self.i32()?;
        Ok(DomainRef {
            name,
            uuid,
            id,
            raw: &self.buf[start..self.pos],
        })
    }
}

/// A domain as a call names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainRef<'a> {
    pub name: &'a [u8],
    pub uuid: &'a [u8],
    pub id: i32,
    /// The XDR encoding, to reuse in a call of our own.
    pub raw: &'a [u8],
}

impl DomainRef<'_> {
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(self.name).into_owned()
    }
}

pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_i32(out: &mut Vec<u8>, v: i32) {
    put_u32(out, v as u32);
}

/// Encodes a `remote_nonnull_string`.
pub fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s);
    out.extend(std::iter::repeat_n(0u8, pad4(s.len())));
}

/// Encodes a `remote_string`.
pub fn put_opt_string(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        None => put_u32(out, 0),
        Some(s) => {
            put_u32(out, 1);
            put_string(out, s);
        }
    }
}

/// Builds a whole frame from a header and a payload, length word first.
pub fn build_frame(h: &Header, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(LEN_WORD + HEADER_LEN + payload.len());
    put_u32(&mut out, (LEN_WORD + HEADER_LEN + payload.len()) as u32);
    h.encode(&mut out);
    out.extend_from_slice(payload);
    out
}

/// What the XML in a call describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmlRole {
    /// A whole domain: rewrite it.
    Domain,
    /// A device of the named domain: rewrite it, the OS comes from the domain.
    Device,
    /// A domain whose guest ABI is fixed (restore, save image): check only.
    FixedAbi,
}

/// A call that carries XML, decoded far enough to find and replace it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlCall<'a> {
    pub procedure: i32,
    pub name: &'static str,
    pub role: XmlRole,
    pub domain: Option<DomainRef<'a>>,
    pub xml: &'a [u8],
    /// Byte range of the whole XDR string (length word to padding) in the frame.
    pub range: Range<usize>,
}

/// The name of a REMOTE procedure the proxy knows, for logs.
pub fn proc_name(p: i32) -> Option<&'static str> {
    use procs::*;
    Some(match p {
        CONNECT_OPEN => "CONNECT_OPEN",
        CONNECT_CLOSE => "CONNECT_CLOSE",
        DOMAIN_ATTACH_DEVICE => "DOMAIN_ATTACH_DEVICE",
        DOMAIN_CREATE_XML => "DOMAIN_CREATE_XML",
        DOMAIN_DEFINE_XML => "DOMAIN_DEFINE_XML",
        DOMAIN_GET_XML_DESC => "DOMAIN_GET_XML_DESC",
        AUTH_LIST => "AUTH_LIST",
        DOMAIN_ATTACH_DEVICE_FLAGS => "DOMAIN_ATTACH_DEVICE_FLAGS",
        DOMAIN_UPDATE_DEVICE_FLAGS => "DOMAIN_UPDATE_DEVICE_FLAGS",
        DOMAIN_SAVE_FLAGS => "DOMAIN_SAVE_FLAGS",
        DOMAIN_RESTORE_FLAGS => "DOMAIN_RESTORE_FLAGS",
        DOMAIN_SAVE_IMAGE_DEFINE_XML => "DOMAIN_SAVE_IMAGE_DEFINE_XML",
        DOMAIN_CREATE_XML_WITH_FILES => "DOMAIN_CREATE_XML_WITH_FILES",
        DOMAIN_DEFINE_XML_FLAGS => "DOMAIN_DEFINE_XML_FLAGS",
        DOMAIN_MANAGED_SAVE_DEFINE_XML => "DOMAIN_MANAGED_SAVE_DEFINE_XML",
        DOMAIN_MIGRATE_PREPARE2 => "DOMAIN_MIGRATE_PREPARE2",
        DOMAIN_MIGRATE_PREPARE_TUNNEL => "DOMAIN_MIGRATE_PREPARE_TUNNEL",
        DOMAIN_MIGRATE_BEGIN3 => "DOMAIN_MIGRATE_BEGIN3",
        DOMAIN_MIGRATE_PREPARE3 => "DOMAIN_MIGRATE_PREPARE3",
        DOMAIN_MIGRATE_PREPARE_TUNNEL3 => "DOMAIN_MIGRATE_PREPARE_TUNNEL3",
        DOMAIN_MIGRATE_PERFORM3 => "DOMAIN_MIGRATE_PERFORM3",
        DOMAIN_MIGRATE_BEGIN3_PARAMS => "DOMAIN_MIGRATE_BEGIN3_PARAMS",
        DOMAIN_MIGRATE_PREPARE3_PARAMS => "DOMAIN_MIGRATE_PREPARE3_PARAMS",
        DOMAIN_MIGRATE_PREPARE_TUNNEL3_PARAMS => "DOMAIN_MIGRATE_PREPARE_TUNNEL3_PARAMS",
        DOMAIN_MIGRATE_PERFORM3_PARAMS => "DOMAIN_MIGRATE_PERFORM3_PARAMS",
        DOMAIN_MIGRATE_FINISH3 => "DOMAIN_MIGRATE_FINISH3",
        DOMAIN_MIGRATE_FINISH3_PARAMS => "DOMAIN_MIGRATE_FINISH3_PARAMS",
        DOMAIN_SNAPSHOT_CREATE_XML => "DOMAIN_SNAPSHOT_CREATE_XML",
        DOMAIN_SAVE_PARAMS => "DOMAIN_SAVE_PARAMS",
        DOMAIN_RESTORE_PARAMS => "DOMAIN_RESTORE_PARAMS",
        _ => return None,
    })
}

/// True for a call the proxy may have to inspect: one that can carry domain
/// or device XML, or CONNECT_OPEN (whose URI the lookups reuse).
pub fn may_carry_xml(prog: u32, procedure: i32) -> bool {
    use procs::*;
    prog == PROG_REMOTE
        && proc_name(procedure).is_some()
        && !matches!(procedure, CONNECT_CLOSE | DOMAIN_GET_XML_DESC | AUTH_LIST)
}

/// Finds the XML argument of a REMOTE call. `Ok(None)`: not a call that carries
/// domain or device XML (or the optional XML is absent): forward it as it is.
pub fn xml_call(frame: &[u8]) -> Result<Option<XmlCall<'_>>, XdrError> {
    use procs::*;
    let Some(h) = Header::of_frame(frame) else {
        return Ok(None);
    };
    if h.prog != PROG_REMOTE || !h.is_call() {
        return Ok(None);
    }
    let base = LEN_WORD + HEADER_LEN;
    let mut x = Xdr::new(payload(frame));
    if h.carries_fds() {
        x.u32()?;
    }
    let p = h.procedure;
    if let Some(found) = fixed_abi_xml(p, &mut x)? {
        let (domain, xml, range) = found;
        return Ok(Some(XmlCall {
            procedure: p,
            name: proc_name(p).unwrap_or("?"),
            role: XmlRole::FixedAbi,
            domain,
            xml,
            range: base + range.start..base + range.end,
        }));
    }
    let (role, domain) = match p {
        DOMAIN_CREATE_XML
        | DOMAIN_DEFINE_XML
        | DOMAIN_DEFINE_XML_FLAGS
        | DOMAIN_CREATE_XML_WITH_FILES => (XmlRole::Domain, None),
        DOMAIN_ATTACH_DEVICE | DOMAIN_ATTACH_DEVICE_FLAGS | DOMAIN_UPDATE_DEVICE_FLAGS => {
            (XmlRole::Device, Some(x.domain()?))
        }
        DOMAIN_SAVE_FLAGS => {
            let d = x.domain()?;
            x.string()?;
            (XmlRole::FixedAbi, Some(d))
        }
        DOMAIN_MANAGED_SAVE_DEFINE_XML => (XmlRole::FixedAbi, Some(x.domain()?)),
        DOMAIN_RESTORE_FLAGS | DOMAIN_SAVE_IMAGE_DEFINE_XML => {
            x.string()?;
            (XmlRole::FixedAbi, None)
        }
        _ => return Ok(None),
    };
    let optional = matches!(
        p,
        DOMAIN_SAVE_FLAGS | DOMAIN_RESTORE_FLAGS | DOMAIN_MANAGED_SAVE_DEFINE_XML
    );
    if optional && x.u32()? == 0 {
        return Ok(None);
    }
    let start = x.pos();
    let xml = x.string()?;
    Ok(Some(XmlCall {
        procedure: p,
        name: proc_name(p).unwrap_or("?"),
        role,
        domain,
        xml,
        range: base + start..base + x.pos(),
    }))
}

/// VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE.
pub const SNAPSHOT_CREATE_REDEFINE: u32 = 1;

/// Typed parameters that carry a domain XML in save/restore and migration calls.
const SAVE_XML_PARAMS: [&str; 1] = ["dxml"];
const MIGRATE_XML_PARAMS: [&str; 2] = ["destination_xml", "persistent_xml"];

type Found<'a> = (Option<DomainRef<'a>>, &'a [u8], Range<usize>);

/// The domain XML of save/restore-with-parameters and migration calls, whose
/// guest ABI is fixed (the proxy may only check these, never rewrite them).
/// `Ok(None)`: another procedure, or no XML in this call.
fn fixed_abi_xml<'a>(p: i32, x: &mut Xdr<'a>) -> Result<Option<Found<'a>>, XdrError> {
    use procs::*;
    // A nonnull string argument read at the cursor.
    fn at<'a>(x: &mut Xdr<'a>, d: Option<DomainRef<'a>>) -> Result<Option<Found<'a>>, XdrError> {
        let start = x.pos();
        let xml = x.string()?;
        Ok(Some((d, xml, start..x.pos())))
    }
    // An optional (remote_string) argument read at the cursor.
    fn opt_at<'a>(
        x: &mut Xdr<'a>,
        d: Option<DomainRef<'a>>,
    ) -> Result<Option<Found<'a>>, XdrError> {
        if x.u32()? == 0 {
            return Ok(None);
        }
        at(x, d)
    }
    let params = |x: &mut Xdr<'a>, d, names: &[&str]| -> Result<Option<Found<'a>>, XdrError> {
        Ok(x.typed_params_find(names)?.map(|(xml, r)| (d, xml, r)))
    };
    match p {
        DOMAIN_SAVE_PARAMS => {
            let d = x.domain()?;
            params(x, Some(d), &SAVE_XML_PARAMS)
        }
        DOMAIN_RESTORE_PARAMS => params(x, None, &SAVE_XML_PARAMS),
        DOMAIN_MIGRATE_BEGIN3_PARAMS => {
            let d = x.domain()?;
            params(x, Some(d), &MIGRATE_XML_PARAMS)
        }
        DOMAIN_MIGRATE_PREPARE3_PARAMS | DOMAIN_MIGRATE_PREPARE_TUNNEL3_PARAMS => {
            params(x, None, &MIGRATE_XML_PARAMS)
        }
        DOMAIN_MIGRATE_PERFORM3_PARAMS => {
            let d = x.domain()?;
            x.opt_string()?; // dconnuri
            params(x, Some(d), &MIGRATE_XML_PARAMS)
        }
        DOMAIN_MIGRATE_BEGIN3 | DOMAIN_MIGRATE_PERFORM3 => {
            let d = x.domain()?;
            opt_at(x, Some(d)) // xmlin
        }
        DOMAIN_MIGRATE_PREPARE2 => {
            x.opt_string()?; // uri_in
            x.hyper()?; // flags
            x.opt_string()?; // dname
            x.hyper()?; // resource
            at(x, None)
        }
        DOMAIN_MIGRATE_PREPARE_TUNNEL => {
            x.hyper()?;
            x.opt_string()?;
            x.hyper()?;
            at(x, None)
        }
        DOMAIN_MIGRATE_PREPARE3 => {
            x.opaque()?; // cookie_in
            x.opt_string()?; // uri_in
            x.hyper()?;
            x.opt_string()?;
            x.hyper()?;
            at(x, None)
        }
        DOMAIN_MIGRATE_PREPARE_TUNNEL3 => {
            x.opaque()?;
            x.hyper()?;
            x.opt_string()?;
            x.hyper()?;
            at(x, None)
        }
        DOMAIN_MIGRATE_FINISH3 | DOMAIN_MIGRATE_FINISH3_PARAMS => {
            // The source's cookie carries the persistent definition
            // (VIR_MIGRATE_PERSIST_DEST) as a <domain> inside <qemu-migration>.
            if p == DOMAIN_MIGRATE_FINISH3 {
                x.string()?; // dname
            } else {
                x.typed_params_find(&[])?;
            }
            let start = x.pos();
            let cookie = x.opaque()?;
            let range = start..x.pos();
            if p == DOMAIN_MIGRATE_FINISH3 {
                x.opt_string()?; // dconnuri
                x.opt_string()?; // uri
                x.hyper()?; // flags
            } else {
                x.u32()?; // flags
            }
            // A cancelled migration's finish only cleans up: never in the way.
            let cancelled = x.i32()? != 0;
            let text = cookie.strip_suffix(b"\0").unwrap_or(cookie);
            Ok(Some((None, text, range)).filter(|_| !cancelled))
        }
        DOMAIN_SNAPSHOT_CREATE_XML => {
            // Only a redefinition carries a whole <domain> inside the snapshot XML.
            let d = x.domain()?;
            let found = at(x, Some(d))?;
            let redefine = x.u32()? & SNAPSHOT_CREATE_REDEFINE != 0;
            Ok(found.filter(|_| redefine))
        }
        _ => Ok(None),
    }
}

/// A frame with the XDR string at `range` replaced by `xml`, length word recomputed.
/// `None` when the result would break libvirt's string or frame limit.
pub fn replace_string(frame: &[u8], range: Range<usize>, xml: &[u8]) -> Option<Vec<u8>> {
    if xml.len() > STRING_MAX || range.end > frame.len() || range.start > range.end {
        return None;
    }
    let mut out = Vec::with_capacity(frame.len() + xml.len() + 8);
    out.extend_from_slice(&frame[..range.start]);
    put_string(&mut out, xml);
    out.extend_from_slice(&frame[range.end..]);
    if out.len() - LEN_WORD > MAX_FRAME_BODY {
        return None;
    }
    let len = (out.len() as u32).to_be_bytes();
    out[..LEN_WORD].copy_from_slice(&len);
    Some(out)
}

/// A `remote_error` reply to `call` (REPLY, status ERROR, same prog/vers/proc/serial).
pub fn error_reply(call: &Header, code: i32, domain: i32, message: &str) -> Vec<u8> {
    let h = Header {
        mtype: mtype::REPLY,
        status: status::ERROR,
        ..*call
    };
    // Keep the message inside libvirt's string limit.
    let mut msg = message;
    if msg.len() > 64 * 1024 {
        let mut cut = 64 * 1024;
        while !msg.is_char_boundary(cut) {
            cut -= 1;
        }
        msg = &msg[..cut];
    }
    let mut p = Vec::with_capacity(64 + msg.len());
    put_i32(&mut p, code);
    put_i32(&mut p, domain);
    put_opt_string(&mut p, Some(msg.as_bytes()));
    put_i32(&mut p, err::LEVEL_ERROR);
    put_u32(&mut p, 0); // dom: absent
    put_opt_string(&mut p, None); // str1
    put_opt_string(&mut p, None); // str2
    put_opt_string(&mut p, None); // str3
    put_i32(&mut p, 0); // int1
    put_i32(&mut p, 0); // int2
    put_u32(&mut p, 0); // net: absent
    build_frame(&h, &p)
}

/// The decoded `remote_error` of an error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    pub code: i32,
    pub domain: i32,
    pub message: Option<String>,
}

/// Reads the start of a `remote_error` payload.
pub fn decode_error(payload: &[u8]) -> Result<RemoteError, XdrError> {
    let mut x = Xdr::new(payload);
    let code = x.i32()?;
    let domain = x.i32()?;
    let message = x
        .opt_string()?
        .map(|m| String::from_utf8_lossy(m).into_owned());
    Ok(RemoteError {
        code,
        domain,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(procedure: i32, mt: i32, serial: u32, args: &[u8]) -> Vec<u8> {
        let h = Header {
            prog: PROG_REMOTE,
            vers: 1,
            procedure,
            mtype: mt,
            serial,
            status: status::OK,
        };
        build_frame(&h, args)
    }

    fn dom(name: &str) -> Vec<u8> {
        let mut v = Vec::new();
        put_string(&mut v, name.as_bytes());
        v.extend_from_slice(&[7u8; 16]);
        put_i32(&mut v, -1);
        v
    }

    #[test]
    fn header_round_trip() {
        let h = Header {
            prog: PROG_QEMU,
            vers: 1,
            procedure: -3,
            mtype: mtype::STREAM,
            serial: 0xdead_beef,
            status: status::CONTINUE,
        };
        let f = build_frame(&h, b"abc");
        assert_eq!(f.len(), 4 + 24 + 3);
        assert_eq!(frame_len(f[..4].try_into().unwrap()), Ok(31));
        assert_eq!(Header::of_frame(&f), Some(h));
        assert_eq!(payload(&f), b"abc");
    }

    #[test]
    fn length_limits() {
        assert_eq!(
            frame_len(27u32.to_be_bytes()),
            Err(FrameError::TooShort(27))
        );
        assert_eq!(frame_len(28u32.to_be_bytes()), Ok(28));
        let max = (MAX_FRAME_BODY + 4) as u32;
        assert_eq!(frame_len(max.to_be_bytes()), Ok(max as usize));
        assert_eq!(
            frame_len((max + 1).to_be_bytes()),
            Err(FrameError::TooLong(max + 1))
        );
        assert!(frame_len((40u32 << 20).to_be_bytes()).is_err());
        assert!(frame_len(u32::MAX.to_be_bytes()).is_err());
    }

    #[test]
    fn string_round_trip_and_padding() {
        for s in ["", "a", "ab", "abc", "abcd", "abcde"] {
            let mut v = Vec::new();
            put_string(&mut v, s.as_bytes());
            assert_eq!(v.len() % 4, 0);
            let mut x = Xdr::new(&v);
            assert_eq!(x.string().unwrap(), s.as_bytes());
            assert!(x.rest().is_empty());
        }
        let mut v = Vec::new();
        put_opt_string(&mut v, None);
        put_opt_string(&mut v, Some(b"xy"));
        let mut x = Xdr::new(&v);
        assert_eq!(x.opt_string().unwrap(), None);
        assert_eq!(x.opt_string().unwrap(), Some(&b"xy"[..]));
    }

    #[test]
    fn bad_xdr_is_an_error_not_a_panic() {
        let mut x = Xdr::new(&[0, 0, 0, 9, b'a']);
        assert_eq!(x.string(), Err(XdrError::Short(4)));
        let mut x = Xdr::new(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(x.string(), Err(XdrError::StringTooLong(_))));
        let mut x = Xdr::new(&[0, 0, 0, 2]);
        assert_eq!(x.opt_string(), Err(XdrError::BadOptional(2)));
    }

    #[test]
    fn fd_count_read_and_bounded() {
        let mut args = Vec::new();
        put_u32(&mut args, 2);
        let f = call(
            procs::DOMAIN_CREATE_XML_WITH_FILES,
            mtype::CALL_WITH_FDS,
            3,
            &args,
        );
        assert_eq!(fd_count(&f), Ok(2));
        let f = call(1, mtype::CALL, 3, &args);
        assert_eq!(fd_count(&f), Ok(0));
        let f = call(309, mtype::CALL_WITH_FDS, 3, &33u32.to_be_bytes());
        assert_eq!(fd_count(&f), Err(FrameError::TooManyFds(33)));
        let f = call(309, mtype::REPLY_WITH_FDS, 3, &[]);
        assert_eq!(fd_count(&f), Err(FrameError::NoFdCount));
    }

    /// Each procedure's arguments: built, found, rewritten, and re-read.
    #[test]
    fn rewrite_each_procedure() {
        let xml = "<domain>e1000</domain>";
        let new = "<domain>virtio-long</domain>!";
        type Case<'a> = (i32, i32, Vec<u8>, XmlRole, Option<&'a str>);
        let mut cases: Vec<Case<'_>> = Vec::new();
        {
            let mut a = Vec::new();
            put_string(&mut a, xml.as_bytes());
            cases.push((
                procs::DOMAIN_DEFINE_XML,
                mtype::CALL,
                a,
                XmlRole::Domain,
                None,
            ));
        }
        for p in [procs::DOMAIN_CREATE_XML, procs::DOMAIN_DEFINE_XML_FLAGS] {
            let mut a = Vec::new();
            put_string(&mut a, xml.as_bytes());
            put_u32(&mut a, 5);
            cases.push((p, mtype::CALL, a, XmlRole::Domain, None));
        }
        {
            let mut a = Vec::new();
            put_u32(&mut a, 1);
            put_string(&mut a, xml.as_bytes());
            put_u32(&mut a, 0);
            cases.push((
                procs::DOMAIN_CREATE_XML_WITH_FILES,
                mtype::CALL_WITH_FDS,
                a,
                XmlRole::Domain,
                None,
            ));
        }
        {
            let mut a = dom("w");
            put_string(&mut a, xml.as_bytes());
            cases.push((
                procs::DOMAIN_ATTACH_DEVICE,
                mtype::CALL,
                a,
                XmlRole::Device,
                Some("w"),
            ));
        }
        for p in [
            procs::DOMAIN_ATTACH_DEVICE_FLAGS,
            procs::DOMAIN_UPDATE_DEVICE_FLAGS,
        ] {
            let mut a = dom("win10");
            put_string(&mut a, xml.as_bytes());
            put_u32(&mut a, 2);
            cases.push((p, mtype::CALL, a, XmlRole::Device, Some("win10")));
        }
        {
            let mut a = dom("s");
            put_string(&mut a, b"/tmp/s.img");
            put_opt_string(&mut a, Some(xml.as_bytes()));
            put_u32(&mut a, 0);
            cases.push((
                procs::DOMAIN_SAVE_FLAGS,
                mtype::CALL,
                a,
                XmlRole::FixedAbi,
                Some("s"),
            ));
        }
        for p in [
            procs::DOMAIN_RESTORE_FLAGS,
            procs::DOMAIN_SAVE_IMAGE_DEFINE_XML,
        ] {
            let mut a = Vec::new();
            put_string(&mut a, b"/tmp/s.img");
            if p == procs::DOMAIN_RESTORE_FLAGS {
                put_u32(&mut a, 1);
            }
            put_string(&mut a, xml.as_bytes());
            put_u32(&mut a, 0);
            cases.push((p, mtype::CALL, a, XmlRole::FixedAbi, None));
        }
        {
            let mut a = dom("m");
            put_opt_string(&mut a, Some(xml.as_bytes()));
            put_u32(&mut a, 0);
            cases.push((
                procs::DOMAIN_MANAGED_SAVE_DEFINE_XML,
                mtype::CALL,
                a,
                XmlRole::FixedAbi,
                Some("m"),
            ));
        }
        for (p, mt, args, role, dname) in cases {
            let f = call(p, mt, 9, &args);
            let c = xml_call(&f)
                .unwrap()
                .unwrap_or_else(|| panic!("proc {p} not found"));
            assert_eq!(c.procedure, p);
            assert_eq!(c.role, role, "proc {p}");
            assert_eq!(c.xml, xml.as_bytes());
            assert_eq!(c.domain.map(|d| d.name_lossy()).as_deref(), dname);
            let out = replace_string(&f, c.range.clone(), new.as_bytes()).unwrap();
            assert_eq!(frame_len(out[..4].try_into().unwrap()), Ok(out.len()));
            assert_eq!(out.len() % 4, 0);
            assert_eq!(Header::of_frame(&out), Header::of_frame(&f));
            let c2 = xml_call(&out).unwrap().unwrap();
            assert_eq!(c2.xml, new.as_bytes());
            // Everything after the string (flags) is unchanged.
            assert_eq!(&out[c2.range.end..], &f[c.range.end..], "proc {p}");
            assert_eq!(&out[..c2.range.start][4..], &f[..c.range.start][4..]);
        }
    }

    fn param_str(out: &mut Vec<u8>, field: &str, v: &str) {
        put_string(out, field.as_bytes());
        put_i32(out, 7);
        put_string(out, v.as_bytes());
    }

    #[test]
    fn fixed_abi_xml_in_typed_params_and_migration_calls() {
        let xml = "<domain><name>m</name></domain>";
        // DOMAIN_RESTORE_PARAMS: params [file, an int, a hyper, dxml], flags.
        let mut a = Vec::new();
        put_u32(&mut a, 4);
        param_str(&mut a, "file", "/x.save");
        put_string(&mut a, b"bandwidth");
        put_i32(&mut a, 2);
        put_u32(&mut a, 9);
        put_string(&mut a, b"size");
        put_i32(&mut a, 4);
        a.extend_from_slice(&7u64.to_be_bytes());
        param_str(&mut a, "dxml", xml);
        put_u32(&mut a, 0);
        let f = call(procs::DOMAIN_RESTORE_PARAMS, mtype::CALL, 3, &a);
        let c = xml_call(&f).unwrap().unwrap();
        assert_eq!(
            (c.role, c.xml, c.name),
            (XmlRole::FixedAbi, xml.as_bytes(), "DOMAIN_RESTORE_PARAMS")
        );
        assert_eq!(
            Xdr::new(&f[c.range.clone()]).string().unwrap(),
            xml.as_bytes()
        );

        // DOMAIN_SAVE_PARAMS without dxml: nothing to check.
        let mut a = dom("m");
        put_u32(&mut a, 1);
        param_str(&mut a, "file", "/x.save");
        put_u32(&mut a, 0);
        assert!(
            xml_call(&call(procs::DOMAIN_SAVE_PARAMS, mtype::CALL, 4, &a))
                .unwrap()
                .is_none()
        );

        // DOMAIN_MIGRATE_PREPARE3: cookie, uri_in, flags, dname, resource, dom_xml.
        let mut a = Vec::new();
        put_string(&mut a, b"cookie!");
        put_opt_string(&mut a, Some(b"tcp://h"));
        a.extend_from_slice(&1u64.to_be_bytes());
        put_opt_string(&mut a, None);
        a.extend_from_slice(&0u64.to_be_bytes());
        put_string(&mut a, xml.as_bytes());
        let f = call(procs::DOMAIN_MIGRATE_PREPARE3, mtype::CALL, 5, &a);
        let c = xml_call(&f).unwrap().unwrap();
        assert_eq!((c.role, c.xml), (XmlRole::FixedAbi, xml.as_bytes()));

        // DOMAIN_MIGRATE_PERFORM3_PARAMS: dom, dconnuri, params, cookie, flags.
        let mut a = dom("m");
        put_opt_string(&mut a, None);
        put_u32(&mut a, 1);
        param_str(&mut a, "persistent_xml", xml);
        put_string(&mut a, b"");
        put_u32(&mut a, 0);
        let f = call(procs::DOMAIN_MIGRATE_PERFORM3_PARAMS, mtype::CALL, 6, &a);
        let c = xml_call(&f).unwrap().unwrap();
        assert_eq!(c.domain.unwrap().name, b"m");
        assert_eq!(c.xml, xml.as_bytes());

        // Unknown parameter types and absurd counts are errors, not panics.
        let mut a = Vec::new();
        put_u32(&mut a, 1);
        put_string(&mut a, b"dxml");
        put_i32(&mut a, 99);
        assert_eq!(
            xml_call(&call(procs::DOMAIN_RESTORE_PARAMS, mtype::CALL, 7, &a)),
            Err(XdrError::BadParamType(99))
        );
        let mut a = Vec::new();
        put_u32(&mut a, 1 << 30);
        assert_eq!(
            xml_call(&call(procs::DOMAIN_RESTORE_PARAMS, mtype::CALL, 8, &a)),
            Err(XdrError::TooManyParams(1 << 30))
        );
    }

    #[test]
    fn absent_optional_xml_and_other_calls_are_ignored() {
        let mut a = Vec::new();
        put_string(&mut a, b"/tmp/x");
        put_u32(&mut a, 0);
        put_u32(&mut a, 0);
        assert_eq!(
            xml_call(&call(procs::DOMAIN_RESTORE_FLAGS, mtype::CALL, 1, &a)),
            Ok(None)
        );
        assert_eq!(xml_call(&call(3, mtype::CALL, 1, &a)), Ok(None));
        // A reply with the same procedure number is not a call.
        assert_eq!(xml_call(&call(11, mtype::REPLY, 1, &a)), Ok(None));
        // A truncated argument is an error (the proxy forwards such frames unchanged).
        assert!(xml_call(&call(11, mtype::CALL, 1, &[0, 0, 0, 8, 1])).is_err());
    }

    #[test]
    fn replacement_respects_string_limit() {
        let mut a = Vec::new();
        put_string(&mut a, b"x");
        let f = call(11, mtype::CALL, 1, &a);
        let c = xml_call(&f).unwrap().unwrap();
        assert!(replace_string(&f, c.range.clone(), &vec![b'a'; STRING_MAX]).is_some());
        assert!(replace_string(&f, c.range, &vec![b'a'; STRING_MAX + 1]).is_none());
    }

    #[test]
    fn error_reply_encoding() {
        let h = Header {
            prog: PROG_REMOTE,
            vers: 1,
            procedure: 11,
            mtype: mtype::CALL_WITH_FDS,
            serial: 42,
            status: status::OK,
        };
        let f = error_reply(
            &h,
            err::CONFIG_UNSUPPORTED,
            err::FROM_DOMAIN,
            "unsupported configuration: no",
        );
        let r = Header::of_frame(&f).unwrap();
        assert_eq!(
            (r.prog, r.vers, r.procedure, r.serial),
            (PROG_REMOTE, 1, 11, 42)
        );
        assert_eq!((r.mtype, r.status), (mtype::REPLY, status::ERROR));
        assert_eq!(frame_len(f[..4].try_into().unwrap()), Ok(f.len()));
        let e = decode_error(payload(&f)).unwrap();
        assert_eq!(e.code, 67);
        assert_eq!(e.domain, 20);
        assert_eq!(e.message.as_deref(), Some("unsupported configuration: no"));
        // Exact tail: level, dom absent, str1..3 absent, int1, int2, net absent.
        let msg_len = "unsupported configuration: no".len();
        let tail = &payload(&f)[8 + 4 + 4 + msg_len + (4 - msg_len % 4) % 4..];
        let words: Vec<u32> = tail
            .chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(words, vec![2, 0, 0, 0, 0, 0, 0, 0]);
    }
}
