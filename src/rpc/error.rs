//! libvirt's error reply (`remote_error` in `remote_protocol.x`): the codes
//! and domains vhostfix answers with, the encoder for a reply of its own, and
//! the decoder for libvirt's.

use super::frame::{build_frame, mtype, payload, status, Header, LEN_WORD, MAX_FRAME_BODY};
use super::xdr::{put_i32, put_opt_string, put_u32, Xdr, XdrError, STRING_MAX};

/// VIR_ERR_CONFIG_UNSUPPORTED.
pub(crate) const CONFIG_UNSUPPORTED: i32 = 67;
/// VIR_ERR_ACCESS_DENIED.
pub(crate) const ACCESS_DENIED: i32 = 88;
/// VIR_FROM_DOMAIN.
pub(crate) const FROM_DOMAIN: i32 = 20;
/// VIR_FROM_ACCESS.
pub(crate) const FROM_ACCESS: i32 = 55;
/// VIR_ERR_NO_DOMAIN: "Domain not found".
pub(crate) const NO_DOMAIN: i32 = 42;
/// VIR_ERR_SYSTEM_ERROR: with VIR_FROM_RPC, what libvirt's own client
/// reports for a socket it cannot reach or a connection it lost ("Failed to
/// connect socket to ...", "End of file while reading data"); clients
/// (virsh, nova, vdsm) take SYSTEM_ERROR from RPC or REMOTE as "reconnect".
pub(crate) const SYSTEM_ERROR: i32 = 38;
/// VIR_FROM_RPC.
pub(crate) const FROM_RPC: i32 = 7;
/// VIR_ERR_ERROR.
pub(crate) const LEVEL_ERROR: i32 = 2;

/// A `remote_error` reply to `call` (REPLY, status ERROR, same prog/vers/proc/serial).
pub(crate) fn error_reply(call: &Header, code: i32, domain: i32, message: &str) -> Vec<u8> {
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
    put_i32(&mut p, LEVEL_ERROR);
    put_u32(&mut p, 0); // dom: absent
    put_opt_string(&mut p, None); // str1
    put_opt_string(&mut p, None); // str2
    put_opt_string(&mut p, None); // str3
    put_i32(&mut p, 0); // int1
    put_i32(&mut p, 0); // int2
    put_u32(&mut p, 0); // net: absent
    build_frame(&h, &p)
}

/// The error reply `frame` with `note` after libvirt's message
/// (`MESSAGE; NOTE`), its code, domain and everything after the message
/// unchanged, and the length recomputed. `None` when `frame` is not an error
/// reply whose message decodes, or the result would exceed libvirt's limits.
pub(crate) fn with_note(frame: &[u8], note: &str) -> Option<Vec<u8>> {
    let h = Header::of_frame(frame).filter(|h| h.is_reply() && h.status == status::ERROR)?;
    let p = payload(frame);
    let mut x = Xdr::new(p);
    x.i32().ok()?; // code
    x.i32().ok()?; // domain
    let at = x.pos();
    let message = x.opt_string().ok()?;
    let rest = &p[x.pos()..];
    let text = match message {
        Some(m) => format!("{}; {note}", String::from_utf8_lossy(m)),
        None => note.to_string(),
    };
    if text.len() > STRING_MAX {
        return None;
    }
    let mut out = Vec::with_capacity(p.len() + note.len() + 8);
    out.extend_from_slice(&p[..at]);
    put_opt_string(&mut out, Some(text.as_bytes()));
    out.extend_from_slice(rest);
    let f = build_frame(&h, &out);
    (f.len() - LEN_WORD <= MAX_FRAME_BODY).then_some(f)
}

/// The decoded `remote_error` of an error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteError {
    pub(crate) code: i32,
    pub(crate) domain: i32,
    pub(crate) message: Option<String>,
}

/// Reads the start of a `remote_error` payload.
pub(crate) fn decode_error(payload: &[u8]) -> Result<RemoteError, XdrError> {
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
    use crate::rpc::frame::{frame_len, payload, PROG_REMOTE};

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
            CONFIG_UNSUPPORTED,
            FROM_DOMAIN,
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

    #[test]
    fn a_note_follows_libvirts_message_and_nothing_else_changes() {
        let h = Header {
            prog: PROG_REMOTE,
            vers: 1,
            procedure: 11,
            mtype: mtype::CALL,
            serial: 7,
            status: status::OK,
        };
        let f = error_reply(&h, 1, 20, "internal error: Wrong or no <model>");
        let n = with_note(&f, "vhostfix: left alone").unwrap();
        assert_eq!(frame_len(n[..4].try_into().unwrap()), Ok(n.len()));
        assert_eq!(Header::of_frame(&n), Header::of_frame(&f));
        let e = decode_error(payload(&n)).unwrap();
        assert_eq!((e.code, e.domain), (1, 20));
        assert_eq!(
            e.message.as_deref(),
            Some("internal error: Wrong or no <model>; vhostfix: left alone")
        );
        // The fields after the message (level, dom, str1..3, int1..2, net).
        let old = payload(&f);
        let new = payload(&n);
        assert_eq!(&new[new.len() - 32..], &old[old.len() - 32..]);
        // Not an error reply: nothing to add to.
        let ok = build_frame(
            &Header {
                mtype: mtype::REPLY,
                ..h
            },
            &[],
        );
        assert_eq!(with_note(&ok, "x"), None);
        assert_eq!(with_note(&f[..20], "x"), None);
    }
}
