//! One client connection: two relay directions, each on its own thread, so
//! neither ever waits for the other (libvirt has no RPC flow control; events,
//! keepalives and stream data cross at any time).
//!
//! client -> upstream: calls are decided on (see `decide`), everything else is
//! relayed as read. upstream -> client: relayed as read. Both directions write
//! whole frames, fds included, so frames from the two writers to the client
//! (relayed replies and our own error replies) never interleave.

use super::decide::{self, Action};
use super::fdpass::{
    peer_cred, widen_send_buffer, write_frame, Frame, FrameReader, PeerCred, ReadError,
};
use super::lookup::Lookup;
use super::wire::{self, err, procs, Header, Xdr, PROG_REMOTE};
use super::Shared;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server keeps about a live connection, to drain and close it.
pub struct Handle {
    pub client: UnixStream,
    pub upstream: UnixStream,
    /// Calls forwarded and not answered yet.
    pub in_flight: AtomicUsize,
    pub closed: AtomicBool,
}

impl Handle {
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }
}

/// Describes a client for the log: `uid=1000 pid=4242`.
pub fn who(c: &PeerCred) -> String {
    format!("uid={} pid={}", c.uid, c.pid)
}

/// True when the peer may use the proxy: root, or a member of an allowed group
/// (primary group, or a supplementary group of the connecting process).
pub fn admitted(c: &PeerCred, allowed_gids: &[u32]) -> bool {
    if c.uid == 0 {
        return true;
    }
    if allowed_gids.is_empty() {
        return false;
    }
    if allowed_gids.contains(&c.gid) {
        return true;
    }
    supplementary_groups(c.pid)
        .iter()
        .any(|g| allowed_gids.contains(g))
}

/// The supplementary groups of a live process, from /proc (empty when gone).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    s.lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Refuses a client: answers its first call with VIR_ERR_ACCESS_DENIED, then closes.
pub fn refuse(client: UnixStream, cred: PeerCred, path: &std::path::Path) {
    log::warn!(
        "{} refused on {}: only root and members of proxy.allowed_groups may use this socket",
        who(&cred),
        path.display()
    );
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = client.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(r) = client.try_clone() else { return };
    let mut reader = FrameReader::new(r);
    if let Ok(f) = reader.read_frame() {
        if let Some(h) = Header::of_frame(f.bytes).filter(|h| h.is_call()) {
            let msg = format!(
                "access denied: vhostfix proxy: uid {} is not allowed to use {} (root and members of proxy.allowed_groups only)",
                cred.uid,
                path.display()
            );
            let reply = wire::error_reply(&h, err::ACCESS_DENIED, err::FROM_ACCESS, &msg);
            let _ = write_frame(&client, &reply, &[]);
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

/// Relays one admitted client until either side closes.
pub fn serve(client: UnixStream, cred: PeerCred, upstream_path: PathBuf, shared: Arc<Shared>) {
    let who = who(&cred);
    let upstream = match UnixStream::connect(&upstream_path) {
        Ok(u) => u,
        Err(e) => {
            log::error!(
                "{who}: cannot reach libvirt at {}: {e}; closing the client",
                upstream_path.display()
            );
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    };
    // Stream frames (256 KiB) pass in one write each way.
    widen_send_buffer(&client);
    widen_send_buffer(&upstream);
    let clones = (|| {
        Some((
            client.try_clone().ok()?,
            upstream.try_clone().ok()?,
            client.try_clone().ok()?,
            upstream.try_clone().ok()?,
        ))
    })();
    let Some((client_w, upstream_r, client_h, upstream_h)) = clones else {
        log::error!("{who}: cannot duplicate sockets");
        return;
    };
    let handle = Arc::new(Handle {
        client: client_h,
        upstream: upstream_h,
        in_flight: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
    });
    let id = shared.register(handle.clone());
    log::debug!("{who}: connected to {}", upstream_path.display());
    let client_w = Arc::new(Mutex::new(client_w));

    let down = {
        let handle = handle.clone();
        let client_w = client_w.clone();
        let who = who.clone();
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("upstream->client".into())
            .stack_size(256 * 1024)
            .spawn(move || relay_down(upstream_r, &client_w, &handle, &who, &shared))
    };
    if down.is_err() {
        log::error!("{who}: cannot start a relay thread");
        handle.close();
        shared.unregister(id);
        return;
    }
    relay_up(
        client,
        &upstream,
        &client_w,
        &handle,
        &who,
        upstream_path,
        &shared,
    );
    handle.close();
    if let Ok(t) = down {
        let _ = t.join();
    }
    shared.unregister(id);
    log::debug!("{who}: disconnected");
}

/// The next frame, or `None` at EOF or on a bad frame (logged as
/// `{who}: {before}{error}{after}` unless the connection is already closing).
fn next_frame<'r>(
    reader: &'r mut FrameReader,
    handle: &Handle,
    who: &str,
    before: &str,
    after: &str,
) -> Option<Frame<'r>> {
    reader
        .read_frame()
        .map_err(|e| ended(e, handle, who, before, after))
        .ok()
}

/// Stream data needs no decision: when the next frame is a large stream data
/// frame, `send` splices it on (see `FrameReader::next_stream_frame`).
/// `Some(true)`: spliced; `Some(false)`: read it with `next_frame`; `None`:
/// the connection is over (EOF, or an error logged as for `next_frame`).
fn splice_next(
    reader: &mut FrameReader,
    send: impl FnOnce(&mut FrameReader, usize) -> Result<(), ReadError>,
    handle: &Handle,
    who: &str,
    before: &str,
    after: &str,
) -> Option<bool> {
    let step = match reader.next_stream_frame() {
        Ok(Some(len)) => send(reader, len).map(|()| true),
        Ok(None) => Ok(false),
        Err(e) => Err(e),
    };
    step.map_err(|e| ended(e, handle, who, before, after)).ok()
}

/// Logs why a relay direction stops, unless at EOF or already closing.
fn ended(e: ReadError, handle: &Handle, who: &str, before: &str, after: &str) {
    if !matches!(e, ReadError::Eof) && !handle.closed.load(Ordering::SeqCst) {
        log::warn!("{who}: {before}{e}{after}");
    }
}

/// How long the upstream->client thread polls before it sleeps:
/// `proxy.busy_poll_us`. During a run of calls the next reply usually comes
/// while the thread still polls, which saves a wakeup per call; an idle
/// connection costs one poll period after its last frame. The client->upstream
/// direction never polls: two polling threads per connection starve libvirtd
/// and the client of CPU on a small host (measured, BENCHMARKS-proxy.md).
fn poll_period(shared: &Shared) -> Duration {
    Duration::from_micros(shared.current().config.proxy.busy_poll_us.into())
}

fn relay_down(
    upstream: UnixStream,
    client: &Mutex<UnixStream>,
    handle: &Handle,
    who: &str,
    shared: &Shared,
) {
    let mut reader = FrameReader::new(upstream);
    let (before, after) = ("from libvirt: ", "; closing the connection");
    let to_client = |r: &mut FrameReader, len| match client.lock() {
        Ok(c) => r.splice_frame(len, &c),
        Err(_) => Err(ReadError::Io(std::io::Error::other(
            "client writer poisoned",
        ))),
    };
    loop {
        reader.set_poll(poll_period(shared));
        match splice_next(&mut reader, to_client, handle, who, before, after) {
            Some(true) => continue,
            Some(false) => {}
            None => break,
        }
        let Some(f) = next_frame(&mut reader, handle, who, before, after) else {
            break;
        };
        if let Some(h) = Header::of_frame(f.bytes) {
            if h.is_reply() && h.prog != wire::PROG_KEEPALIVE {
                let _ = handle
                    .in_flight
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            }
        }
        let sent = match client.lock() {
            Ok(c) => write_frame(&c, f.bytes, &f.fds),
            Err(_) => break,
        };
        if sent.is_err() {
            break;
        }
    }
    // The daemon closed (CONNECT_CLOSE, restart): the client sees EOF.
    handle.close();
}

fn relay_up(
    client: UnixStream,
    upstream: &UnixStream,
    client_w: &Mutex<UnixStream>,
    handle: &Handle,
    who: &str,
    upstream_path: PathBuf,
    shared: &Shared,
) {
    let mut reader = FrameReader::new(client);
    let mut lookup = Lookup::new(upstream_path);
    let to_upstream = |r: &mut FrameReader, len| r.splice_frame(len, upstream);
    loop {
        match splice_next(&mut reader, to_upstream, handle, who, "dropped: ", "") {
            Some(true) => continue,
            Some(false) => {}
            None => break,
        }
        let Some(f) = next_frame(&mut reader, handle, who, "dropped: ", "") else {
            break;
        };
        let Some(h) = Header::of_frame(f.bytes) else {
            break;
        };
        let mut action = Action::Forward;
        if h.prog == PROG_REMOTE && h.is_call() {
            if h.procedure == procs::CONNECT_OPEN {
                let mut x = Xdr::new(wire::payload(f.bytes));
                if let Ok(uri) = x.opt_string() {
                    lookup.set_uri(uri.map(<[u8]>::to_vec));
                }
            }
            let settings = shared.current();
            let mut find = |d: &wire::DomainRef<'_>| lookup.domain_xml(d);
            let d = decide::decide(f.bytes, &settings.config, who, &mut find);
            if let Some((level, line)) = d.log {
                log::log!(level, "{line}");
            }
            action = d.action;
        }
        let sent = match action {
            Action::Forward => {
                count_call(&h, handle);
                write_frame(upstream, f.bytes, &f.fds)
            }
            Action::Replace(bytes) => {
                count_call(&h, handle);
                write_frame(upstream, &bytes, &f.fds)
            }
            // The call's fds (if any) are closed when `f` is dropped.
            Action::Deny(reply) => match client_w.lock() {
                Ok(c) => write_frame(&c, &reply, &[]),
                Err(_) => break,
            },
        };
        if sent.is_err() {
            break;
        }
    }
}

fn count_call(h: &Header, handle: &Handle) {
    if h.is_call() && h.prog != wire::PROG_KEEPALIVE {
        handle.in_flight.fetch_add(1, Ordering::SeqCst);
    }
}

/// Accepts one socket's client: credentials first, then relay or refusal.
pub fn accept(client: UnixStream, listen_path: PathBuf, upstream: PathBuf, shared: Arc<Shared>) {
    let cred = match peer_cred(&client) {
        Ok(c) => c,
        Err(e) => {
            log::warn!(
                "{}: cannot read peer credentials: {e}; closing",
                listen_path.display()
            );
            return;
        }
    };
    if !admitted(&cred, &shared.allowed_gids()) {
        refuse(client, cred, &listen_path);
        return;
    }
    serve(client, cred, upstream, shared);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_rules() {
        let root = PeerCred {
            uid: 0,
            gid: 0,
            pid: 1,
        };
        let user = PeerCred {
            uid: 1000,
            gid: 1000,
            pid: i32::MAX,
        };
        assert!(admitted(&root, &[]));
        assert!(!admitted(&user, &[]));
        assert!(admitted(&user, &[1000]));
        assert!(!admitted(&user, &[999]));
    }
}
