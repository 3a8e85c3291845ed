//! SASL authentication with SCRAM-SHA-256 (RFC 5802, RFC 7677) over
//! libvirt's AUTH_SASL_* calls: what a libvirtd with `auth_unix_rw = "sasl"`
//! and `mech_list: scram-sha-256` (as oVirt's vdsm configures it) asks of a
//! client. On a UNIX socket no security layer is negotiated: after the
//! exchange the frames stay as they were.
//!
//! | proc | name | args -> reply |
//! |---|---|---|
//! | 67 | AUTH_SASL_INIT | - -> `remote_nonnull_string mechlist` |
//! | 68 | AUTH_SASL_START | `remote_nonnull_string mech, int nil, char data<>` -> `int complete, int nil, char data<>` |
//! | 69 | AUTH_SASL_STEP | `int nil, char data<>` -> `int complete, int nil, char data<>` |
//!
//! `char data<>` is an XDR array of `char`, and rpcgen encodes each element
//! as a 4-byte word (as libvirtd 11.3 reads and writes it: the exchange in
//! `tests/system/proxy-faults.sh` authenticates against it).

use super::xdr::{put_i32, put_string, put_u32, Xdr};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The mechanism, as libvirt lists it.
pub(crate) const MECH: &str = "SCRAM-SHA-256";
/// REMOTE_AUTH_SASL_DATA_MAX.
const DATA_MAX: u32 = 65536;
/// Most PBKDF2 iterations accepted from the server (libvirtd's sasldb
/// default is 4096; a bound keeps a bad peer from burning CPU).
const MAX_ITERATIONS: u32 = 1_000_000;

/// A SASL user and password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, password hidden)", self.username)
    }
}

/// Why the exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct SaslError(String);

impl SaslError {
    fn new(why: impl Into<String>) -> SaslError {
        SaslError(why.into())
    }
}

/// One exchange, driven by the client: [`Exchange::start`] with
/// AUTH_SASL_INIT's answer, AUTH_SASL_START with [`Exchange::first`],
/// AUTH_SASL_STEP with [`Exchange::respond`] to its answer, then
/// [`Exchange::finish`] with the step's answer (and, when that asks for it,
/// one more AUTH_SASL_STEP with [`empty_step`], whose answer goes to
/// [`Exchange::done`]).
pub(crate) struct Exchange {
    scram: Scram,
}

impl Exchange {
    /// Checks that libvirt offers SCRAM-SHA-256 (`init`: AUTH_SASL_INIT's
    /// answer, `remote_nonnull_string mechlist`).
    pub(crate) fn start(creds: &Credentials, init: &[u8]) -> Result<Exchange, SaslError> {
        let mechs = Xdr::new(init)
            .string()
            .map_err(|e| SaslError::new(format!("AUTH_SASL_INIT reply: {e}")))?;
        let mechs = String::from_utf8_lossy(mechs);
        if !mechs
            .split([',', ' '])
            .any(|m| m.eq_ignore_ascii_case(MECH))
        {
            return Err(SaslError::new(format!(
                "libvirt offers the SASL mechanisms {mechs}; vhostfix speaks {MECH}"
            )));
        }
        Ok(Exchange {
            scram: Scram::new(&creds.username, &creds.password, &nonce()?),
        })
    }

    /// AUTH_SASL_START's arguments: the mechanism and the client's first message.
    pub(crate) fn first(&self) -> Vec<u8> {
        let mut args = Vec::new();
        put_string(&mut args, MECH.as_bytes());
        put_sasl_data(&mut args, self.scram.client_first().as_bytes());
        args
    }

    /// AUTH_SASL_STEP's arguments for AUTH_SASL_START's answer: the proof.
    pub(crate) fn respond(&mut self, start: &[u8]) -> Result<Vec<u8>, SaslError> {
        let (_, server_first) = sasl_reply(start, "AUTH_SASL_START")?;
        let last = self.scram.client_final(&server_first)?;
        let mut args = Vec::new();
        put_sasl_data(&mut args, last.as_bytes());
        Ok(args)
    }

    /// Checks the server's proof in the step's answer. False when libvirt
    /// sent it as a challenge and waits for an empty step.
    pub(crate) fn finish(&self, step: &[u8]) -> Result<bool, SaslError> {
        let (complete, server_final) = sasl_reply(step, "AUTH_SASL_STEP")?;
        if !complete && server_final.is_empty() {
            return Err(SaslError::new("libvirt did not finish the exchange"));
        }
        self.scram.verify(&server_final)?;
        Ok(complete)
    }

    /// The answer to the empty step must say complete, with nothing more.
    pub(crate) fn done(&self, step: &[u8]) -> Result<(), SaslError> {
        match sasl_reply(step, "AUTH_SASL_STEP")? {
            (true, rest) if rest.is_empty() => Ok(()),
            _ => Err(SaslError::new("libvirt did not finish the exchange")),
        }
    }
}

/// AUTH_SASL_STEP's arguments with no data.
pub(crate) fn empty_step() -> Vec<u8> {
    let mut args = Vec::new();
    put_sasl_data(&mut args, b"");
    args
}

/// `int nil, char data<>`, each char a word.
fn put_sasl_data(out: &mut Vec<u8>, data: &[u8]) {
    put_i32(out, 0);
    put_u32(out, data.len() as u32);
    for b in data {
        put_u32(out, u32::from(*b));
    }
}

/// `int complete, int nil, char data<>` -> (complete, data).
fn sasl_reply(r: &[u8], what: &str) -> Result<(bool, String), SaslError> {
    let bad = |e| SaslError::new(format!("{what} reply: {e}"));
    let mut x = Xdr::new(r);
    let complete = x.i32().map_err(bad)? != 0;
    let _nil = x.i32().map_err(bad)?;
    let n = x.u32().map_err(bad)?;
    if n > DATA_MAX {
        return Err(SaslError::new(format!("{what} reply: {n} bytes of data")));
    }
    let mut data = Vec::with_capacity(n as usize);
    for _ in 0..n {
        data.push(x.u32().map_err(bad)? as u8);
    }
    Ok((complete, String::from_utf8_lossy(&data).into_owned()))
}

/// 18 random bytes, base64: the client's nonce.
fn nonce() -> Result<String, SaslError> {
    let mut b = [0u8; 18];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty())
        .map_err(|e| SaslError::new(format!("getting random bytes: {e}")))?;
    Ok(base64(&b))
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length.
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA-256 for one 32-byte block (RFC 8018; SCRAM's Hi()).
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &first);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        out.iter_mut().zip(u).for_each(|(o, b)| *o ^= b);
    }
    out
}

/// One client's side of a SCRAM-SHA-256 exchange, without channel binding.
struct Scram {
    first_bare: String,
    nonce: String,
    password: String,
    server_signature: Option<[u8; 32]>,
}

impl Scram {
    fn new(user: &str, password: &str, nonce: &str) -> Scram {
        // RFC 5802: '=' and ',' in a name are escaped.
        let name = user.replace('=', "=3D").replace(',', "=2C");
        Scram {
            first_bare: format!("n={name},r={nonce}"),
            nonce: nonce.to_string(),
            password: password.to_string(),
            server_signature: None,
        }
    }

    /// `n,,` (no channel binding, no authorization identity) and the bare part.
    fn client_first(&self) -> String {
        format!("n,,{}", self.first_bare)
    }

    /// The proof for the server's first message `r=..,s=..,i=..`.
    fn client_final(&mut self, server_first: &str) -> Result<String, SaslError> {
        let bad = |why: &str| SaslError::new(format!("libvirt's SCRAM challenge {why}"));
        let field = |k: &str| {
            server_first
                .split(',')
                .find_map(|f| f.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
        };
        let nonce = field("r").ok_or_else(|| bad("has no nonce"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(bad("does not extend the client's nonce"));
        }
        let salt = field("s")
            .and_then(unbase64)
            .ok_or_else(|| bad("has no salt"))?;
        let iterations: u32 = field("i")
            .and_then(|i| i.parse().ok())
            .filter(|i| (1..=MAX_ITERATIONS).contains(i))
            .ok_or_else(|| bad("has no iteration count within 1..1000000"))?;
        let salted = hi(self.password.as_bytes(), &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        // c=biws: base64 of the GS2 header "n,,".
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{},{server_first},{without_proof}", self.first_bare);
        let signature = hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac(&salted, b"Server Key");
        self.server_signature = Some(hmac(&server_key, auth.as_bytes()));
        Ok(format!("{without_proof},p={}", base64(&proof)))
    }

    /// Checks the server's `v=` (it knows the password too) or its `e=`.
    fn verify(&self, server_final: &str) -> Result<(), SaslError> {
        if let Some(e) = server_final.strip_prefix("e=") {
            return Err(SaslError::new(format!(
                "libvirt refused the credentials: {e}"
            )));
        }
        let v = server_final.strip_prefix("v=").and_then(unbase64);
        match (v, self.server_signature) {
            (Some(v), Some(s)) if v == s => Ok(()),
            _ => Err(SaslError::new(
                "libvirt's SCRAM answer does not prove it knows the password",
            )),
        }
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 with padding; `None` when it is not.
fn unbase64(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (q, quad) in s.chunks(4).enumerate() {
        let last = q == s.len() / 4 - 1;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            let v = B64.iter().position(|&a| a == c)? as u32;
            n = n << 6 | v;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for (raw, enc) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"n,,", "biws"),
        ] {
            assert_eq!(base64(raw), enc);
            assert_eq!(unbase64(enc).as_deref(), Some(raw));
        }
        assert_eq!(unbase64("Zg="), None);
        assert_eq!(unbase64("Z==="), None);
        assert_eq!(unbase64("Zg==Zg=="), None);
        assert_eq!(unbase64("Z!=="), None);
    }

    /// The example exchange of RFC 7677, section 3.
    #[test]
    fn scram_sha_256_matches_rfc_7677() {
        let mut s = Scram::new("user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(s.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        assert_eq!(
            s.client_final(server_first).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert!(s
            .verify("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .is_ok());
        assert!(s.verify("v=AAAA").is_err());
        assert!(s.verify("e=invalid-proof").is_err());
    }

    #[test]
    fn a_bad_challenge_is_refused() {
        let mut s = Scram::new("u", "p", "abc");
        for bad in [
            "r=xyz1,s=QUJD,i=4096",
            "r=abc,s=QUJD,i=4096",
            "r=abcd,s=!!,i=4096",
            "r=abcd,s=QUJD,i=0",
            "r=abcd,s=QUJD,i=99999999",
            "s=QUJD,i=4096",
        ] {
            assert!(s.client_final(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Scram::new("a=b,c", "p", "n").client_first(),
            "n,,n=a=3Db=2Cc,r=n"
        );
    }

    #[test]
    fn sasl_data_is_a_word_per_byte() {
        let mut out = Vec::new();
        put_sasl_data(&mut out, b"ab");
        assert_eq!(out, [0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, b'a', 0, 0, 0, b'b']);
        let mut reply = vec![0, 0, 0, 1];
        reply.extend_from_slice(&out);
        assert_eq!(sasl_reply(&reply, "x").unwrap(), (true, "ab".to_string()));
    }
}
