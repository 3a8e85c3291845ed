//! What the server keeps about a live connection, to drain and close it:
//! its sockets, the calls in flight and the streams open, followed in the
//! frames that cross it either way.
//!
//! The drain (SIGTERM) must never cut a call libvirt has taken: the client
//! would get an error for something that happened. So a call from the client
//! is counted and sent under a gate the drain also takes ([`Handle::pass`]):
//! once the drain has begun, a new call is answered by the proxy instead of
//! sent, and a connection is ended only with no call counted and no stream
//! open. A reply stops counting only once it is written to the client.

use crate::proxy::admit::OpenSlot;
use crate::rpc::frame::{mtype, status, Header, PROG_KEEPALIVE, PROG_REMOTE};
use crate::rpc::procs;
use std::collections::{HashMap, HashSet};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// While draining, a connection whose last call was answered this recently
/// stays open, so that a client that is done can close it itself (virsh
/// unregisters its close callback and sends CONNECT_CLOSE right after its
/// command; if CONNECT_CLOSE fails, virsh.c reports "Failed to disconnect
/// from the hypervisor"). New calls are refused meanwhile, and refusals do
/// not extend it.
const GRACE: Duration = Duration::from_millis(250);

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
    /// Calls sent to libvirt whose reply has not reached the client yet.
    in_flight: AtomicUsize,
    /// Streams (procedure, serial) with data still to come.
    streams: Mutex<HashSet<(i32, u32)>>,
    /// Milliseconds since `born` of the last frame sent or delivered.
    last: AtomicU64,
    /// Microseconds since `born` of the last call from the client.
    last_call: AtomicU64,
    /// The last frame from libvirt was a reply (not an event or stream data).
    replied_last: AtomicBool,
    born: Instant,
    /// Held while a frame from the client is counted and sent, and while the
    /// drain decides to end the connection.
    gate: Mutex<()>,
    /// Set by the drain: new calls are answered by the proxy, not sent.
    draining: AtomicBool,
    pub(crate) closed: AtomicBool,
    /// Set when libvirt answered CONNECT_OPEN with success.
    pub(crate) opened: Arc<AtomicBool>,
    /// The not-yet-opened slot this connection holds, if any.
    pub(crate) slot: Mutex<Option<OpenSlot>>,
    /// Notes for the replies to calls forwarded unchanged that libvirt will
    /// likely refuse, by serial (see `decide::Decision::note`); at most
    /// `MAX_NOTES`, so a client cannot make the proxy hold more.
    notes: Mutex<HashMap<u32, String>>,
}

/// Most notes one connection holds for replies still to come.
const MAX_NOTES: usize = 64;

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
            gate: Mutex::new(()),
            draining: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            opened,
            slot: Mutex::new(None),
            notes: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps `note` for the reply to call `serial` (dropped when full).
    pub(crate) fn add_note(&self, serial: u32, note: String) {
        if let Ok(mut n) = self.notes.lock() {
            if n.len() < MAX_NOTES {
                n.insert(serial, note);
            }
        }
    }

    /// The note for the reply to call `serial`, taken out.
    pub(crate) fn take_note(&self, serial: u32) -> Option<String> {
        let mut n = self.notes.lock().ok()?;
        if n.is_empty() {
            return None;
        }
        n.remove(&serial)
    }

    /// Closes both sockets now, whatever is in flight.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self.client.shutdown(Shutdown::Both);
        self.shut_upstream();
    }

    fn shut_upstream(&self) -> bool {
        match self.upstream.lock().as_deref() {
            Ok(Some(u)) => {
                let _ = u.shutdown(Shutdown::Both);
                true
            }
            _ => false,
        }
    }

    /// True once the drain has begun for this connection.
    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Sends a frame from the client on with `send`, counted, unless the
    /// drain has begun and it is a new call: then `refuse` answers it. Both
    /// run under the gate, so the drain sees a call either counted or never
    /// sent, and never ends the connection in the middle of a refusal.
    /// Calls that only end or release something (CONNECT_CLOSE, event
    /// deregistrations) are still sent: they let a client close cleanly.
    pub(crate) fn pass<T>(
        &self,
        h: &Header,
        send: impl FnOnce() -> T,
        refuse: impl FnOnce() -> T,
    ) -> T {
        let _gate = self.gate.lock();
        if h.is_call() && self.draining() && !procs::releases(h.prog, h.procedure) {
            return refuse();
        }
        self.observe(h, true);
        send()
    }

    /// One step of the drain: marks the connection draining and ends it if
    /// nothing is in flight, no stream is open and its last call was
    /// answered more than `GRACE` ago. True when it is ended (or closed).
    ///
    /// Ending shuts libvirt's side first: the libvirt -> client thread still
    /// delivers what libvirt had sent (an event, say) and then closes the
    /// client's side, so no frame reaches the client cut in half.
    pub(crate) fn drain_step(&self) -> bool {
        self.draining.store(true, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            return true;
        }
        // A frame being sent holds the gate: busy, look again next time.
        let Ok(_gate) = self.gate.try_lock() else {
            return false;
        };
        if !self.done() {
            return false;
        }
        self.closed.store(true, Ordering::SeqCst);
        if !self.shut_upstream() {
            let _ = self.client.shutdown(Shutdown::Both);
        }
        true
    }

    /// Nothing in flight, no stream open, and quiet for `GRACE`.
    fn done(&self) -> bool {
        let quiet = self.born.elapsed().as_millis() as u64
            >= self.last.load(Ordering::SeqCst) + GRACE.as_millis() as u64;
        quiet
            && self.in_flight.load(Ordering::SeqCst) == 0
            && self.streams.lock().map(|s| s.is_empty()).unwrap_or(true)
    }

    /// Follows a frame from libvirt once it has been written to the client.
    pub(crate) fn delivered(&self, h: &Header) {
        self.observe(h, false);
    }

    /// Microseconds since this connection was made (the clock of `last_call`).
    pub(crate) fn now_us(&self) -> u64 {
        self.born.elapsed().as_micros() as u64
    }

    /// When (`now_us`) the client's last call went to libvirt.
    pub(crate) fn last_call_us(&self) -> u64 {
        self.last_call.load(Ordering::Relaxed)
    }

    /// Calls sent to libvirt whose reply has not reached the client yet.
    pub(crate) fn calls_in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the last frame from libvirt was a reply to a call.
    pub(crate) fn replied_last(&self) -> bool {
        self.replied_last.load(Ordering::Relaxed)
    }

    /// Follows calls, replies and streams in frames going either way.
    fn observe(&self, h: &Header, from_client: bool) {
        if !from_client {
            self.replied_last.store(h.is_reply(), Ordering::Relaxed);
        }
        // Keepalives and events say nothing about calls or streams, and a
        // host busy with events must not keep a draining connection open.
        if h.prog == PROG_KEEPALIVE || h.mtype == mtype::MESSAGE {
            return;
        }
        let now = self.born.elapsed();
        self.last.store(now.as_millis() as u64, Ordering::SeqCst);
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

    fn handle() -> (Handle, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (Handle::new(a, Arc::new(AtomicBool::new(false))), b)
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

    fn sent(h: &Handle, f: &Header) -> bool {
        h.pass(f, || true, || false)
    }

    fn past_grace() {
        std::thread::sleep(GRACE + Duration::from_millis(50));
    }

    #[test]
    fn a_stream_is_busy_from_the_reply_to_its_last_frame() {
        let (h, _peer) = handle();
        let up = procs::STORAGE_VOL_UPLOAD;
        assert!(sent(&h, &frame(up, mtype::CALL, 7, status::OK)));
        h.delivered(&frame(up, mtype::REPLY, 7, status::OK));
        // No data frame yet, and quiet for longer than GRACE: still busy.
        past_grace();
        assert!(!h.drain_step(), "an open upload without data yet was ended");
        assert!(sent(&h, &frame(up, mtype::STREAM, 7, status::CONTINUE)));
        assert!(sent(&h, &frame(up, mtype::STREAM, 7, status::OK)));
        assert!(!h.drain_step());
        h.delivered(&frame(up, mtype::STREAM, 7, status::OK));
        past_grace();
        assert!(h.drain_step(), "libvirt's final frame ends the stream");
    }

    #[test]
    fn a_refused_stream_call_and_plain_calls_leave_nothing_open() {
        let (h, _peer) = handle();
        let down = procs::STORAGE_VOL_DOWNLOAD;
        assert!(sent(&h, &frame(down, mtype::CALL, 3, status::OK)));
        h.delivered(&frame(down, mtype::REPLY, 3, status::ERROR));
        let define = procs::DOMAIN_DEFINE_XML;
        assert!(sent(&h, &frame(define, mtype::CALL, 4, status::OK)));
        past_grace();
        assert!(!h.drain_step(), "a call waiting for its reply was cut");
        h.delivered(&frame(define, mtype::REPLY, 4, status::OK));
        assert!(!h.drain_step(), "ended before the client could close");
        past_grace();
        assert!(h.drain_step());
    }

    #[test]
    fn once_draining_new_calls_are_refused_and_do_not_keep_it_open() {
        let (h, _peer) = handle();
        let define = procs::DOMAIN_DEFINE_XML;
        assert!(sent(&h, &frame(define, mtype::CALL, 1, status::OK)));
        assert!(!h.drain_step());
        assert!(h.draining());
        // The call sent before the drain is answered; the next is not sent.
        h.delivered(&frame(define, mtype::REPLY, 1, status::OK));
        for serial in 2..6 {
            assert!(!sent(&h, &frame(define, mtype::CALL, serial, status::OK)));
        }
        // Stream data, keepalives and CONNECT_CLOSE still pass.
        let ka = Header {
            prog: crate::rpc::frame::PROG_KEEPALIVE,
            ..frame(1, mtype::MESSAGE, 0, status::OK)
        };
        assert!(sent(&h, &ka));
        assert!(sent(
            &h,
            &frame(
                procs::STORAGE_VOL_UPLOAD,
                mtype::STREAM,
                9,
                status::CONTINUE
            )
        ));
        h.delivered(&frame(
            procs::STORAGE_VOL_UPLOAD,
            mtype::STREAM,
            9,
            status::OK,
        ));
        assert!(sent(
            &h,
            &frame(procs::CONNECT_CLOSE, mtype::CALL, 6, status::OK)
        ));
        h.delivered(&frame(procs::CONNECT_CLOSE, mtype::REPLY, 6, status::OK));
        past_grace();
        assert!(h.drain_step(), "refused calls kept the connection open");
        assert!(h.closed.load(Ordering::SeqCst));
    }

    #[test]
    fn the_drain_waits_for_a_frame_being_sent() {
        let (h, _peer) = handle();
        let h = Arc::new(h);
        let (tx, rx) = std::sync::mpsc::channel();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let sender = {
            let h = h.clone();
            std::thread::spawn(move || {
                h.pass(
                    &frame(procs::DOMAIN_DEFINE_XML, mtype::CALL, 1, status::OK),
                    || {
                        tx.send(()).unwrap();
                        wait.recv().unwrap();
                    },
                    || panic!("refused before the drain"),
                )
            })
        };
        rx.recv().unwrap();
        past_grace();
        assert!(!h.drain_step(), "ended while a call was being sent");
        go.send(()).unwrap();
        sender.join().unwrap();
        assert!(!h.drain_step(), "ended with the call unanswered");
    }
}
