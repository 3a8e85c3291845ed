//! `vhostfix proxy`: a libvirt API admission proxy.
//!
//! It listens where libvirt clients connect, relays every frame of each
//! connection to the real libvirt socket, and corrects domain and device XML on
//! the way in (libvirt refuses a vhost-user NIC without a virtio model while
//! parsing, before any hook runs). Where each job lives:
//!
//! - [`server`]: the sockets, the accept loop, signals, reload and drain;
//! - [`listen`]: creating the sockets safely, or taking systemd's;
//! - [`admit`]: who may connect and how many (peer credentials, the tally);
//! - [`relay`]: one connection's two directions; [`spin`]: when its reply
//!   direction polls instead of sleeping;
//! - [`connection`]: what the server keeps about a live connection;
//! - [`decide`]: inspect -> judge -> act on one call;
//! - [`upstream`]: what a decision asks libvirt (domain XML, release);
//! - [`shared`]: the state every connection shares; [`stats`]: its counters;
//! - [`admin`]: the root-only counters socket; [`notify`]: systemd's notes.
//!
//! The wire protocol itself is `crate::rpc`.
//!
//! Everything a client can make the proxy hold is bounded: connections
//! (`admit`), threads (two per admitted connection that has sent a frame, one
//! before; at most `MAX_REFUSING` more for refusals), memory (only calls that
//! carry XML are read into memory, `max_call_mib` each, `max_buffered_mib`
//! for all non-root clients together) and time (`rpc::transport::Guard`).
//!
//! Signals: SIGTERM/SIGINT stop accepting, close each connection once it has
//! no call in flight and no open stream, for up to `proxy.drain_seconds`,
//! then close the rest; SIGHUP reloads the policy.

pub(crate) mod admin;
mod admit;
mod connection;
pub(crate) mod decide;
mod listen;
mod notify;
mod relay;
mod server;
mod shared;
mod spin;
mod stats;
pub(crate) mod upstream;

pub(crate) use server::{run, Options};
