//! The calls that carry domain or device XML, decoded far enough to find the
//! XML and replace it: which argument holds it, whose guest ABI is fixed, and
//! a frame rebuilt around a new string with its length recomputed (the
//! argument layouts are libvirt's `remote_protocol.x`). Pure; never panics.

use super::frame::{payload, Header, HEADER_LEN, LEN_WORD, MAX_FRAME_BODY, PROG_REMOTE};
use super::procs;
use super::xdr::{put_string, DomainRef, Xdr, XdrError, STRING_MAX};
use std::ops::Range;

/// What the XML in a call describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XmlRole {
    /// A whole domain: rewrite it.
    Domain,
    /// A device of the named domain: rewrite it, the OS comes from the domain.
    Device,
    /// A domain whose guest ABI is fixed (restore, save image): check only.
    FixedAbi,
}

/// A call that carries XML, decoded far enough to find and replace it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct XmlCall<'a> {
    pub(crate) procedure: i32,
    pub(crate) name: &'static str,
    pub(crate) role: XmlRole,
    pub(crate) domain: Option<DomainRef<'a>>,
    pub(crate) xml: &'a [u8],
    /// Byte range of the whole XDR string (length word to padding) in the frame.
    pub(crate) range: Range<usize>,
}

/// Finds the XML argument of a REMOTE call. `Ok(None)`: not a call that carries
/// domain or device XML (or the optional XML is absent): forward it as it is.
pub(crate) fn xml_call(frame: &[u8]) -> Result<Option<XmlCall<'_>>, XdrError> {
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
            name: procs::proc_name(p).unwrap_or("?"),
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
        name: procs::proc_name(p).unwrap_or("?"),
        role,
        domain,
        xml,
        range: base + start..base + x.pos(),
    }))
}

/// VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE.
pub(crate) const SNAPSHOT_CREATE_REDEFINE: u32 = 1;

/// Typed parameters that carry a domain XML in save/restore and migration calls.
const SAVE_XML_PARAMS: [&str; 1] = ["dxml"];
const MIGRATE_XML_PARAMS: [&str; 2] = ["destination_xml", "persistent_xml"];

type Found<'a> = (Option<DomainRef<'a>>, &'a [u8], Range<usize>);

/// The domain XML of save/restore-with-parameters and migration calls, whose
/// guest ABI is fixed (the proxy may only check these, never rewrite them).
/// `Ok(None)`: another procedure, or no XML in this call.
fn fixed_abi_xml<'a>(p: i32, x: &mut Xdr<'a>) -> Result<Option<Found<'a>>, XdrError> {
    use procs::*;
    match p {
        DOMAIN_SAVE_PARAMS | DOMAIN_RESTORE_PARAMS => {
            let d = if p == DOMAIN_SAVE_PARAMS {
                Some(x.domain()?)
            } else {
                None
            };
            in_params(x, d, &SAVE_XML_PARAMS)
        }
        DOMAIN_MIGRATE_BEGIN3_PARAMS => {
            let d = x.domain()?;
            in_params(x, Some(d), &MIGRATE_XML_PARAMS)
        }
        DOMAIN_MIGRATE_PREPARE3_PARAMS | DOMAIN_MIGRATE_PREPARE_TUNNEL3_PARAMS => {
            in_params(x, None, &MIGRATE_XML_PARAMS)
        }
        DOMAIN_MIGRATE_PERFORM3_PARAMS => {
            let d = x.domain()?;
            x.opt_string()?; // dconnuri
            in_params(x, Some(d), &MIGRATE_XML_PARAMS)
        }
        DOMAIN_MIGRATE_BEGIN3 | DOMAIN_MIGRATE_PERFORM3 => {
            let d = x.domain()?;
            opt_string_at(x, Some(d)) // xmlin
        }
        DOMAIN_MIGRATE_PREPARE2
        | DOMAIN_MIGRATE_PREPARE_TUNNEL
        | DOMAIN_MIGRATE_PREPARE3
        | DOMAIN_MIGRATE_PREPARE_TUNNEL3 => prepare_dom_xml(p, x),
        DOMAIN_MIGRATE_FINISH3 | DOMAIN_MIGRATE_FINISH3_PARAMS => finish_cookie(p, x),
        DOMAIN_SNAPSHOT_CREATE_XML => {
            // Only a redefinition carries a whole <domain> inside the snapshot XML.
            let d = x.domain()?;
            let found = string_at(x, Some(d))?;
            let redefine = x.u32()? & SNAPSHOT_CREATE_REDEFINE != 0;
            Ok(found.filter(|_| redefine))
        }
        _ => Ok(None),
    }
}

/// A nonnull string argument read at the cursor.
fn string_at<'a>(x: &mut Xdr<'a>, d: Option<DomainRef<'a>>) -> Result<Option<Found<'a>>, XdrError> {
    let start = x.pos();
    let xml = x.string()?;
    Ok(Some((d, xml, start..x.pos())))
}

/// An optional (`remote_string`) argument read at the cursor.
fn opt_string_at<'a>(
    x: &mut Xdr<'a>,
    d: Option<DomainRef<'a>>,
) -> Result<Option<Found<'a>>, XdrError> {
    if x.u32()? == 0 {
        return Ok(None);
    }
    string_at(x, d)
}

/// The first string typed parameter named one of `names`.
fn in_params<'a>(
    x: &mut Xdr<'a>,
    d: Option<DomainRef<'a>>,
    names: &[&str],
) -> Result<Option<Found<'a>>, XdrError> {
    Ok(x.typed_params_find(names)?.map(|(xml, r)| (d, xml, r)))
}

/// The `dom_xml` of a migration's prepare (v2, v3, tunnelled or not): the
/// last argument, after the cookie, URI, flags, name and bandwidth the
/// variant has.
fn prepare_dom_xml<'a>(p: i32, x: &mut Xdr<'a>) -> Result<Option<Found<'a>>, XdrError> {
    use procs::*;
    if matches!(p, DOMAIN_MIGRATE_PREPARE3 | DOMAIN_MIGRATE_PREPARE_TUNNEL3) {
        x.opaque()?; // cookie_in
    }
    if matches!(p, DOMAIN_MIGRATE_PREPARE2 | DOMAIN_MIGRATE_PREPARE3) {
        x.opt_string()?; // uri_in
    }
    x.hyper()?; // flags
    x.opt_string()?; // dname
    x.hyper()?; // resource
    string_at(x, None)
}

/// An incoming migration's finish: the source's cookie carries the
/// persistent definition (VIR_MIGRATE_PERSIST_DEST) as a `<domain>` inside
/// `<qemu-migration>`. A cancelled migration's finish only cleans up: never
/// in the way.
fn finish_cookie<'a>(p: i32, x: &mut Xdr<'a>) -> Result<Option<Found<'a>>, XdrError> {
    let v3 = p == procs::DOMAIN_MIGRATE_FINISH3;
    if v3 {
        x.string()?; // dname
    } else {
        x.typed_params_find(&[])?;
    }
    let start = x.pos();
    let cookie = x.opaque()?;
    let range = start..x.pos();
    if v3 {
        x.opt_string()?; // dconnuri
        x.opt_string()?; // uri
        x.hyper()?; // flags
    } else {
        x.u32()?; // flags
    }
    let cancelled = x.i32()? != 0;
    let text = cookie.strip_suffix(b"\0").unwrap_or(cookie);
    Ok(Some((None, text, range)).filter(|_| !cancelled))
}

/// A frame with the XDR string at `range` replaced by `xml`, length word recomputed.
/// `None` when the result would break libvirt's string or frame limit.
pub(crate) fn replace_string(frame: &[u8], range: Range<usize>, xml: &[u8]) -> Option<Vec<u8>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::frame::{frame_len, mtype, remote_frame, status};
    use crate::rpc::xdr::{put_i32, put_opt_string, put_u32};

    fn call(procedure: i32, mt: i32, serial: u32, args: &[u8]) -> Vec<u8> {
        remote_frame(procedure, mt, serial, status::OK, args)
    }

    fn dom(name: &str) -> Vec<u8> {
        let mut v = Vec::new();
        put_string(&mut v, name.as_bytes());
        v.extend_from_slice(&[7u8; 16]);
        put_i32(&mut v, -1);
        v
    }

    /// Each procedure's arguments: built, found, rewritten, and re-read.
    // Long: one case per procedure in one table, then one loop over it.
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
}
