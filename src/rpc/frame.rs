//! Framing of libvirt's RPC protocol: the length word, the 24-byte header,
//! programs, message types and status, and the fd count of *_WITH_FDS frames.
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
//! (see `transport`). Everything here is pure and never panics on any input.

use super::xdr::put_u32;

/// Bytes of the length word.
pub(crate) const LEN_WORD: usize = 4;
/// Bytes of the header after the length word.
pub(crate) const HEADER_LEN: usize = 24;
/// Largest `length - 4` libvirt accepts (VIR_NET_MESSAGE_MAX, libvirt >= 3.4).
pub(crate) const MAX_FRAME_BODY: usize = 32 * 1024 * 1024;
/// Most descriptors one frame may announce (VIR_NET_MESSAGE_NUM_FDS_MAX).
pub(crate) const MAX_FDS: u32 = 32;

pub(crate) const PROG_REMOTE: u32 = 0x2000_8086;
pub(crate) const PROG_KEEPALIVE: u32 = 0x6b65_6570;
pub(crate) const PROTOCOL_VERSION: u32 = 1;

/// Message types (`virNetMessageType`).
pub(crate) mod mtype {
    pub(crate) const CALL: i32 = 0;
    pub(crate) const REPLY: i32 = 1;
    /// Events (and keepalives): no reply is due.
    pub(crate) const MESSAGE: i32 = 2;
    pub(crate) const STREAM: i32 = 3;
    pub(crate) const CALL_WITH_FDS: i32 = 4;
    pub(crate) const REPLY_WITH_FDS: i32 = 5;
    pub(crate) const STREAM_HOLE: i32 = 6;
}

/// Message status (`virNetMessageStatus`).
pub(crate) mod status {
    pub(crate) const OK: i32 = 0;
    pub(crate) const ERROR: i32 = 1;
    pub(crate) const CONTINUE: i32 = 2;
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
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
pub(crate) fn frame_len(word: [u8; 4]) -> Result<usize, FrameError> {
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
pub(crate) struct Header {
    pub(crate) prog: u32,
    pub(crate) vers: u32,
    pub(crate) procedure: i32,
    pub(crate) mtype: i32,
    pub(crate) serial: u32,
    pub(crate) status: i32,
}

impl Header {
    /// Reads the header of a whole frame (length word included). `None` when short.
    pub(crate) fn of_frame(frame: &[u8]) -> Option<Header> {
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

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
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
    pub(crate) fn is_call(&self) -> bool {
        self.mtype == mtype::CALL || self.mtype == mtype::CALL_WITH_FDS
    }

    /// A reply (REPLY or REPLY_WITH_FDS).
    pub(crate) fn is_reply(&self) -> bool {
        self.mtype == mtype::REPLY || self.mtype == mtype::REPLY_WITH_FDS
    }

    /// True when fds follow the frame (and the payload starts with their count).
    pub(crate) fn carries_fds(&self) -> bool {
        self.mtype == mtype::CALL_WITH_FDS || self.mtype == mtype::REPLY_WITH_FDS
    }
}

/// The payload of a whole frame (after length word and header).
pub(crate) fn payload(frame: &[u8]) -> &[u8] {
    frame.get(LEN_WORD + HEADER_LEN..).unwrap_or(&[])
}

/// How many fds follow this frame: 0 for frames without fds.
pub(crate) fn fd_count(frame: &[u8]) -> Result<u32, FrameError> {
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

/// Builds a whole frame from a header and a payload, length word first.
pub(crate) fn build_frame(h: &Header, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(LEN_WORD + HEADER_LEN + payload.len());
    put_u32(&mut out, (LEN_WORD + HEADER_LEN + payload.len()) as u32);
    h.encode(&mut out);
    out.extend_from_slice(payload);
    out
}

/// A REMOTE program frame, for the tests of every module that reads frames.
#[cfg(test)]
pub(crate) fn remote_frame(
    procedure: i32,
    mtype: i32,
    serial: u32,
    status: i32,
    payload: &[u8],
) -> Vec<u8> {
    let h = Header {
        prog: PROG_REMOTE,
        vers: PROTOCOL_VERSION,
        procedure,
        mtype,
        serial,
        status,
    };
    build_frame(&h, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header {
            prog: 0x2000_8087, // the QEMU program
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
    fn fd_count_read_and_bounded() {
        let mut args = Vec::new();
        put_u32(&mut args, 2);
        let f = call(
            309, // DOMAIN_CREATE_XML_WITH_FILES
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

    fn call(procedure: i32, mt: i32, serial: u32, args: &[u8]) -> Vec<u8> {
        remote_frame(procedure, mt, serial, status::OK, args)
    }
}
