//! What the server keeps about a live connection, to drain and close it:
//! its sockets, the calls in flight and the streams open, followed in the
//! frames that cross it either way.

use crate::proxy::admit::OpenSlot;
use crate::rpc::frame::{mtype, status, Header, PROG_KEEPALIVE, PROG_REMOTE};
use crate::rpc::procs;
use std::collections::HashSet;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A connection with no call in flight, no open stream and no frame for
/// this long may be closed by a draining proxy.
const QUIET: Duration = Duration::from_millis(250);

/// Connections of this process with a call in flight (see `busy_connections`).
static BUSY: AtomicUsize = AtomicUsize::new(0);

/// How many connections have a call waiting for its reply right now: more
/// than one, and the host's CPUs have other work than polling for replies.
pub(crate) fn busy_connections() -> usize {
    BUSY.load(Ordering::Relaxed)
}

/// What the server keeps about a live connection, to drain and close it.
pub(crate) struct Handle {
    pub(crate) client: UnixStream,
    pub(crate) upstream: Mutex<Option<UnixStream>>,
    /// Calls forwarded and not answered yet.
    pub(crate) in_flight: AtomicUsize,
    /// Streams (procedure, serial) with data still to come.
    streams: Mutex<HashSet<(i32, u32)>>,
    /// Milliseconds since `born` of the last frame either way.
    last: AtomicU64,
    /// Microseconds since `born` of the last call from the client.
    last_call: AtomicU64,
    /// The last frame from libvirt was a reply (not an event or stream data).
    replied_last: AtomicBool,
    born: Instant,
    pub(crate) closed: AtomicBool,
    /// Set when libvirt answered CONNECT_OPEN with success.
    pub(crate) opened: Arc<AtomicBool>,
    /// The not-yet-opened slot this connection holds, if any.
    pub(crate) slot: Mutex<Option<OpenSlot>>,
}

impl Handle {
    /// A connection with nothing forwarded yet; `opened` is shared with the
    /// reader that sees libvirt's answer to CONNECT_OPEN.
    pub(crate) fn new(client: UnixStream, opened: Arc<AtomicBool>) -> Handle {
        Handle {
            client,
            upstream: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            streams: Mutex::new(HashSet::new()),
            last: AtomicU64::new(0),
            last_call: AtomicU64::new(0),
            replied_last: AtomicBool::new(false),
            born: Instant::now(),
            closed: AtomicBool::new(false),
            opened,
            slot: Mutex::new(None),
        }
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self.client.shutdown(Shutdown::Both);
        if let Ok(u) = self.upstream.lock() {
            if let Some(u) = u.as_ref() {
                let _ = u.shutdown(Shutdown::Both);
            }
        }
    }

    /// True when closing now cuts nothing: no call waits for its reply, no
    /// stream is open, and the connection has been quiet for a moment.
    pub(crate) fn idle(&self) -> bool {
        let quiet = self.born.elapsed().as_millis() as u64
            >= self.last.load(Ordering::SeqCst) + QUIET.as_millis() as u64;
        quiet
            && self.in_flight.load(Ordering::SeqCst) == 0
            && self.streams.lock().map(|s| s.is_empty()).unwrap_or(true)
    }

    /// Microseconds since this connection was made (the clock of `last_call`).
    pub(crate) fn now_us(&self) -> u64 {
        self.born.elapsed().as_micros() as u64
    }

    /// When (`now_us`) the client's last call went to libvirt.
    pub(crate) fn last_call_us(&self) -> u64 {
        self.last_call.load(Ordering::Relaxed)
    }

    /// Whether the last frame from libvirt was a reply to a call.
    pub(crate) fn replied_last(&self) -> bool {
        self.replied_last.load(Ordering::Relaxed)
    }

    /// Follows calls, replies and streams in frames going either way.
    pub(crate) fn observe(&self, h: &Header, from_client: bool) {
        let now = self.born.elapsed();
        self.last.store(now.as_millis() as u64, Ordering::SeqCst);
        if !from_client {
            self.replied_last.store(h.is_reply(), Ordering::Relaxed);
        }
        if h.prog == PROG_KEEPALIVE {
            return;
        }
        if h.is_call() && from_client {
            self.last_call
                .store(now.as_micros() as u64, Ordering::Relaxed);
            if self.in_flight.fetch_add(1, Ordering::SeqCst) == 0 {
                BUSY.fetch_add(1, Ordering::Relaxed);
            }
        }
        let key = (h.procedure, h.serial);
        if let Ok(mut streams) = self.streams.lock() {
            if h.mtype == mtype::STREAM || h.mtype == mtype::STREAM_HOLE {
                if h.status == status::CONTINUE {
                    streams.insert(key);
                } else if !from_client || h.status == status::ERROR {
                    // libvirt's final frame (or the client's abort) ends it.
                    streams.remove(&key);
                }
            } else if h.is_reply() && !from_client {
                if h.status == status::ERROR {
                    streams.remove(&key);
                } else if h.status == status::OK
                    && h.prog == PROG_REMOTE
                    && procs::opens_stream(h.procedure)
                {
                    // The stream is open from this reply on, before its first
                    // data frame: virsh vol-upload sends none until it has
                    // read 256 KiB or the end of a slow source.
                    streams.insert(key);
                }
            }
        }
        // After the stream is recorded, so a drain never sees the call
        // answered and the stream not yet open.
        if h.is_reply() && !from_client {
            let before = self
                .in_flight
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if before == Ok(1) {
                BUSY.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for Handle {
    /// A connection that ends with calls unanswered is no longer busy.
    fn drop(&mut self) {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            BUSY.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> Handle {
        let (a, _b) = UnixStream::pair().unwrap();
        Handle::new(a, Arc::new(AtomicBool::new(false)))
    }

    fn frame(procedure: i32, mtype: i32, serial: u32, status: i32) -> Header {
        Header {
            prog: PROG_REMOTE,
            vers: 1,
            procedure,
            mtype,
            serial,
            status,
        }
    }

    #[test]
    fn a_stream_is_busy_from_the_reply_to_its_last_frame() {
        let h = handle();
        let up = procs::STORAGE_VOL_UPLOAD;
        h.observe(&frame(up, mtype::CALL, 7, status::OK), true);
        h.observe(&frame(up, mtype::REPLY, 7, status::OK), false);
        // No data frame yet, and quiet for longer than QUIET: still busy.
        std::thread::sleep(QUIET + Duration::from_millis(50));
        assert!(!h.idle(), "an open upload without data yet counts as idle");
        h.observe(&frame(up, mtype::STREAM, 7, status::CONTINUE), true);
        h.observe(&frame(up, mtype::STREAM, 7, status::OK), true);
        assert!(!h.idle());
        h.observe(&frame(up, mtype::STREAM, 7, status::OK), false);
        std::thread::sleep(QUIET + Duration::from_millis(50));
        assert!(h.idle(), "libvirt's final frame ends the stream");
    }

    #[test]
    fn a_refused_stream_call_and_plain_calls_leave_nothing_open() {
        let h = handle();
        let down = procs::STORAGE_VOL_DOWNLOAD;
        h.observe(&frame(down, mtype::CALL, 3, status::OK), true);
        h.observe(&frame(down, mtype::REPLY, 3, status::ERROR), false);
        h.observe(
            &frame(procs::DOMAIN_DEFINE_XML, mtype::CALL, 4, status::OK),
            true,
        );
        assert!(!h.idle(), "a call waiting for its reply is busy");
        h.observe(
            &frame(procs::DOMAIN_DEFINE_XML, mtype::REPLY, 4, status::OK),
            false,
        );
        std::thread::sleep(QUIET + Duration::from_millis(50));
        assert!(h.idle());
    }
}
