//! The XDR pieces libvirt's calls are made of (RFC 4506 as libvirt's
//! `remote_protocol.x` uses it): integers, strings, optional strings, opaque
//! data, typed parameters and the domain reference. A cursor that never reads
//! past its buffer, and the encoders for calls of our own.

use std::ops::Range;

/// Largest XDR string libvirt accepts (REMOTE_STRING_MAX).
pub(crate) const STRING_MAX: usize = 4 * 1024 * 1024;

/// Why XDR arguments could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum XdrError {
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
pub(crate) const MAX_TYPED_PARAMS: u32 = 1024;

/// A string's bytes and the range of its XDR encoding in the buffer.
pub(crate) type Located<'a> = (&'a [u8], Range<usize>);

/// A cursor over XDR data.
#[derive(Debug, Clone)]
pub(crate) struct Xdr<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

impl<'a> Xdr<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Xdr { buf, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(XdrError::Short(self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, XdrError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, XdrError> {
        Ok(self.u32()? as i32)
    }

    /// `remote_nonnull_string`: length, bytes, padding. Returns the bytes.
    pub(crate) fn string(&mut self) -> Result<&'a [u8], XdrError> {
        let n = self.u32()?;
        if n as usize > STRING_MAX {
            return Err(XdrError::StringTooLong(n));
        }
        let s = self.take(n as usize)?;
        self.take(pad4(n as usize))?;
        Ok(s)
    }

    /// `remote_string`: an optional nonnull string.
    pub(crate) fn opt_string(&mut self) -> Result<Option<&'a [u8]>, XdrError> {
        match self.u32()? {
            0 => Ok(None),
            1 => self.string().map(Some),
            n => Err(XdrError::BadOptional(n)),
        }
    }

    /// `opaque<>`: length, bytes, padding (e.g. a migration cookie).
    pub(crate) fn opaque(&mut self) -> Result<&'a [u8], XdrError> {
        self.string()
    }

    /// `unsigned hyper`: 8 bytes.
    pub(crate) fn hyper(&mut self) -> Result<u64, XdrError> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    /// `remote_typed_param params<>`: returns the first string parameter named
    /// one of `wanted`, with the byte range of its XDR string.
    pub(crate) fn typed_params_find(
        &mut self,
        wanted: &[&str],
    ) -> Result<Option<Located<'a>>, XdrError> {
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
    pub(crate) fn domain(&mut self) -> Result<DomainRef<'a>, XdrError> {
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
pub(crate) struct DomainRef<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) uuid: &'a [u8],
    pub(crate) id: i32,
    /// The XDR encoding, to reuse in a call of our own.
    pub(crate) raw: &'a [u8],
}

impl DomainRef<'_> {
    pub(crate) fn name_lossy(&self) -> String {
        String::from_utf8_lossy(self.name).into_owned()
    }
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_i32(out: &mut Vec<u8>, v: i32) {
    put_u32(out, v as u32);
}

/// Encodes a `remote_nonnull_string`.
pub(crate) fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s);
    out.extend(std::iter::repeat_n(0u8, pad4(s.len())));
}

/// Encodes a `remote_string`.
pub(crate) fn put_opt_string(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        None => put_u32(out, 0),
        Some(s) => {
            put_u32(out, 1);
            put_string(out, s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_round_trip_and_padding() {
        for s in ["", "a", "ab", "abc", "abcd", "abcde"] {
            let mut v = Vec::new();
            put_string(&mut v, s.as_bytes());
            assert_eq!(v.len() % 4, 0);
            let mut x = Xdr::new(&v);
            assert_eq!(x.string().unwrap(), s.as_bytes());
            assert_eq!(x.pos(), v.len());
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
}
