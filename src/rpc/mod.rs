//! libvirt's RPC protocol over a local UNIX socket, as far as vhostfix needs
//! it; shared by the proxy and `audit`. It imports nothing of the rest of the
//! crate (tests/architecture.rs keeps it so).
//!
//! - [`frame`]: the length word, the header, programs, types and status;
//! - [`xdr`]: the XDR pieces calls are made of;
//! - [`procs`]: the procedure numbers and names vhostfix knows;
//! - [`calls`]: the calls that carry XML, and a frame rebuilt with new XML;
//! - [`error`]: libvirt's error reply, encoded and decoded;
//! - [`transport`]: whole frames and their fds read and written with
//!   deadlines, a memory budget and splicing;
//! - [`client`]: a small client with typed errors (libvirt's codes kept);
//! - [`sasl`]: SCRAM-SHA-256 over libvirt's AUTH_SASL_* calls.

pub(crate) mod calls;
pub(crate) mod client;
pub(crate) mod error;
pub(crate) mod frame;
pub(crate) mod procs;
pub(crate) mod sasl;
pub(crate) mod transport;
pub(crate) mod xdr;
