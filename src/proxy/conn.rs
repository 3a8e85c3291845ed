//! One client connection: two relay directions, each on its own thread, so
//! neither ever waits for the other (libvirt has no RPC flow control; events,
//! keepalives and stream data cross at any time).
//!
//! The client was admitted by the accept loop (`admit`). Its thread reads
//! with deadlines (`fdpass::Guard`): the first frame and CONNECT_OPEN must
//! come in time, a started frame must finish in time, and only calls that
//! carry XML are read into memory (up to `proxy.max_call_mib`); everything
//! else large is spliced through. libvirt is connected on the client's first
//! frame, not at accept, and the second thread starts only then.
//!
//! client -> upstream: calls are decided on (see `decide`), everything else is
//! relayed as read. upstream -> client: relayed as read. Both directions write
//! whole frames, fds included, so frames from the two writers to the client
//! (relayed replies and our own error replies) never interleave.

use super::admit::{OpenSlot, Stats, Ticket};
use super::decide::{self, Action, Outcome};
use super::fdpass::{widen_send_buffer, write_frame, FrameReader, Guard, PeerCred, ReadError};
use super::lookup::Lookup;
use super::wire::{self, err, mtype, procs, status, Header, Xdr, PROG_REMOTE};
use super::Shared;
use std::collections::HashSet;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A connection with no call in flight, no open stream and no frame for
/// this long may be closed by a draining proxy.
const QUIET: Duration = Duration::from_millis(250);
/// How often a blocked client read wakes up to check its deadlines.
const TICK: Duration = Duration::from_millis(500);

/// What the server keeps about a live connection, to drain and close it.
pub struct Handle {
    pub client: UnixStream,
    pub upstream: Mutex<Option<UnixStream>>,
    /// Calls forwarded and not answered yet.
    pub in_flight: AtomicUsize,
    /// Streams (procedure, serial) with data still to come.
    streams: Mutex<HashSet<(i32, u32)>>,
    /// Milliseconds since `born` of the last frame either way.
    last: AtomicU64,
    born: Instant,
    pub closed: AtomicBool,
    /// Set when libvirt answered CONNECT_OPEN with success.
    opened: Arc<AtomicBool>,
    /// The not-yet-opened slot this connection holds, if any.
    slot: Mutex<Option<OpenSlot>>,
}

impl Handle {
    /// A connection with nothing forwarded yet; `opened` is shared with the
    /// reader that sees libvirt's answer to CONNECT_OPEN.
    fn new(client: UnixStream, opened: Arc<AtomicBool>) -> Handle {
        Handle {
            client,
            upstream: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            streams: Mutex::new(HashSet::new()),
            last: AtomicU64::new(0),
            born: Instant::now(),
            closed: AtomicBool::new(false),
            opened,
            slot: Mutex::new(None),
        }
    }

    pub fn close(&self) {
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
    pub fn idle(&self) -> bool {
        let quiet = self.born.elapsed().as_millis() as u64
            >= self.last.load(Ordering::SeqCst) + QUIET.as_millis() as u64;
        quiet
            && self.in_flight.load(Ordering::SeqCst) == 0
            && self.streams.lock().map(|s| s.is_empty()).unwrap_or(true)
    }

    /// Follows calls, replies and streams in frames going either way.
    fn observe(&self, h: &Header, from_client: bool) {
        self.last
            .store(self.born.elapsed().as_millis() as u64, Ordering::SeqCst);
        if h.prog == wire::PROG_KEEPALIVE {
            return;
        }
        if h.is_call() && from_client {
            self.in_flight.fetch_add(1, Ordering::SeqCst);
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
            let _ = self
                .in_flight
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        }
    }
}

/// Describes a client for the log: `uid=1000 pid=4242`.
pub fn who(c: &PeerCred) -> String {
    format!("uid={} pid={}", c.uid, c.pid)
}

/// Where an admitted client goes.
pub struct Route {
    pub listen: PathBuf,
    pub upstream: PathBuf,
}

/// Relays one admitted client until either side closes. `ticket` is its
/// place in the tally, given back when this returns.
pub fn serve(
    client: UnixStream,
    cred: PeerCred,
    route: Route,
    shared: Arc<Shared>,
    ticket: Ticket,
) {
    let _ticket = ticket;
    let who = who(&cred);
    let settings = shared.current();
    let pc = &settings.config.proxy;
    let _ = client.set_read_timeout(Some(TICK));
    let Ok(handle_sock) = client.try_clone() else {
        log::error!("{who}: cannot duplicate the client socket");
        return;
    };
    let opened = Arc::new(AtomicBool::new(false));
    let handle = Arc::new(Handle::new(handle_sock, opened.clone()));
    let id = shared.register(handle.clone());
    let guard = Guard {
        frame_timeout: Duration::from_secs(pc.frame_timeout_seconds.into()),
        max_frame: (pc.max_call_mib as usize) << 20,
        budget: (cred.uid != 0).then(|| shared.budget.clone()),
        open_by: Some(Instant::now() + Duration::from_secs(pc.auth_timeout_seconds.into())),
        opened,
    };
    let reader = FrameReader::new(client).guarded(guard);
    let mut up = Up {
        reader,
        handle: handle.clone(),
        who: who.clone(),
        cred,
        route,
        shared: shared.clone(),
        upstream: None,
        client_w: None,
        down: None,
    };
    up.run();
    handle.close();
    if let Some(t) = up.down.take() {
        let _ = t.join();
    }
    Stats::add(&shared.stats.stray_fds, up.reader.stray_fds);
    shared.unregister(id);
    log::debug!("{who}: disconnected");
}

/// The client -> upstream direction, which owns the connection.
struct Up {
    reader: FrameReader,
    handle: Arc<Handle>,
    who: String,
    cred: PeerCred,
    route: Route,
    shared: Arc<Shared>,
    upstream: Option<UnixStream>,
    client_w: Option<Arc<Mutex<UnixStream>>>,
    down: Option<std::thread::JoinHandle<()>>,
}

impl Up {
    fn run(&mut self) {
        let mut lookup = Lookup::new(self.route.upstream.clone());
        loop {
            // Large frames that need no decision pass without being read.
            if self.upstream.is_some() {
                match self.reader.next_passthrough_frame() {
                    Ok(Some((len, h))) => {
                        self.handle.observe(&h, true);
                        let Some(up) = self.upstream.as_ref() else {
                            return;
                        };
                        if let Err(e) = self.reader.splice_frame(len, up) {
                            self.ended(e);
                            return;
                        }
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.ended(e);
                        return;
                    }
                }
            }
            let f = match self.reader.read_frame() {
                Ok(f) => f,
                Err(e) => {
                    self.ended(e);
                    return;
                }
            };
            let Some(h) = Header::of_frame(f.bytes) else {
                return;
            };
            let (bytes, fds) = (f.bytes.to_vec(), f.fds);
            if self.upstream.is_none() && !self.connect(&h) {
                return;
            }
            let mut action = Action::Forward;
            if h.prog == PROG_REMOTE && h.is_call() {
                if h.procedure == procs::CONNECT_OPEN {
                    let mut x = Xdr::new(wire::payload(&bytes));
                    if let Ok(uri) = x.opt_string() {
                        lookup.set_uri(uri.map(<[u8]>::to_vec));
                    }
                }
                let lookup = &mut lookup;
                let settings = self.shared.current();
                let cell = std::cell::RefCell::new(lookup);
                let mut find = |d: &wire::DomainRef<'_>| cell.borrow_mut().domain_xml(d);
                let mut version = || cell.borrow_mut().lib_version();
                let d = decide::decide_with(
                    &bytes,
                    &settings.config,
                    &self.who,
                    &mut find,
                    &mut version,
                );
                if let Some((level, line)) = d.log {
                    log::log!(level, "{line}");
                }
                self.count(d.outcome);
                action = d.action;
            }
            let Some(upstream) = self.upstream.as_ref() else {
                return;
            };
            let sent = match action {
                Action::Forward => {
                    self.handle.observe(&h, true);
                    write_frame(upstream, &bytes, &fds)
                }
                Action::Replace(b) => {
                    self.handle.observe(&h, true);
                    write_frame(upstream, &b, &fds)
                }
                // The call's fds (if any) are closed when dropped.
                Action::Deny(reply) => self.to_client(&reply),
            };
            if sent.is_err() {
                return;
            }
        }
    }

    fn count(&self, o: Outcome) {
        let s = &self.shared.stats;
        match o {
            Outcome::NotInspected => return,
            Outcome::Rewritten => Stats::bump(&s.rewritten),
            Outcome::Denied => Stats::bump(&s.denied),
            Outcome::Reported => Stats::bump(&s.reported),
            Outcome::Error => Stats::bump(&s.errors),
            Outcome::Forwarded => {}
        }
        Stats::bump(&s.calls_inspected);
    }

    /// Writes a frame of the proxy's own to the client.
    fn to_client(&self, frame: &[u8]) -> std::io::Result<()> {
        match &self.client_w {
            Some(w) => match w.lock() {
                Ok(c) => write_frame(&c, frame, &[]),
                Err(_) => Err(std::io::Error::other("client writer poisoned")),
            },
            None => write_frame(&self.handle.client, frame, &[]),
        }
    }

    /// Answers `h` with an error, if it is a call.
    fn answer_error(&self, h: &Header, code: i32, domain: i32, msg: &str) {
        if h.is_call() {
            let reply = wire::error_reply(h, code, domain, msg);
            let _ = self
                .handle
                .client
                .set_write_timeout(Some(Duration::from_secs(2)));
            let _ = self.to_client(&reply);
        }
    }

    /// Connects to libvirt for the first frame `h`, and starts the
    /// upstream -> client thread. False (the client told why) when it cannot.
    fn connect(&mut self, h: &Header) -> bool {
        let settings = self.shared.current();
        let limits = super::limits(&settings.config.proxy);
        if self.cred.uid != 0 {
            match self.shared.tally.open_slot(&limits) {
                Some(s) => {
                    if let Ok(mut slot) = self.handle.slot.lock() {
                        *slot = Some(s);
                    }
                }
                None => {
                    Stats::bump(&self.shared.stats.refused);
                    let msg = format!(
                        "vhostfix proxy: too many connections are opening at once (proxy.max_unauthenticated = {}); try again",
                        limits.max_unauthenticated
                    );
                    self.answer_error(h, err::NO_CONNECT, err::FROM_REMOTE, &msg);
                    return false;
                }
            }
        }
        let path = &self.route.upstream;
        let upstream = match UnixStream::connect(path) {
            Ok(u) => u,
            Err(e) => {
                Stats::bump(&self.shared.stats.upstream_failures);
                if let Some(()) = self.shared.upstream_log.allow().map(|_| ()) {
                    log::error!(
                        "{}: cannot reach libvirt at {}: {e}",
                        self.who,
                        path.display()
                    );
                }
                let msg = format!(
                    "vhostfix proxy: cannot reach libvirt at {}: {e} (is libvirtd or virtqemud running?)",
                    path.display()
                );
                self.answer_error(h, err::NO_CONNECT, err::FROM_REMOTE, &msg);
                return false;
            }
        };
        // Stream frames (256 KiB) pass in one write each way.
        widen_send_buffer(&self.handle.client);
        widen_send_buffer(&upstream);
        let clones = (|| {
            Some((
                self.handle.client.try_clone().ok()?,
                upstream.try_clone().ok()?,
                upstream.try_clone().ok()?,
            ))
        })();
        let Some((client_w, upstream_r, upstream_h)) = clones else {
            log::error!("{}: cannot duplicate sockets", self.who);
            return false;
        };
        let _ = client_w.set_write_timeout(None);
        if let Ok(mut u) = self.handle.upstream.lock() {
            *u = Some(upstream_h);
        }
        let client_w = Arc::new(Mutex::new(client_w));
        let down = {
            let handle = self.handle.clone();
            let client_w = client_w.clone();
            let who = self.who.clone();
            let shared = self.shared.clone();
            std::thread::Builder::new()
                .name("upstream->client".into())
                .stack_size(256 * 1024)
                .spawn(move || relay_down(upstream_r, &client_w, &handle, &who, &shared))
        };
        match down {
            Ok(t) => self.down = Some(t),
            Err(e) => {
                log::error!("{}: cannot start a relay thread: {e}", self.who);
                self.answer_error(
                    h,
                    err::NO_CONNECT,
                    err::FROM_REMOTE,
                    "vhostfix proxy: out of threads",
                );
                return false;
            }
        }
        log::debug!("{}: connected to {}", self.who, path.display());
        self.upstream = Some(upstream);
        self.client_w = Some(client_w);
        true
    }

    /// Logs why the client direction stops, unless at EOF or already closing.
    fn ended(&self, e: ReadError) {
        let s = &self.shared.stats;
        match &e {
            ReadError::Eof => return,
            ReadError::Timeout(_) => Stats::bump(&s.timeouts),
            ReadError::TooLarge(_) | ReadError::Budget => Stats::bump(&s.too_large),
            _ => {}
        }
        if !self.handle.closed.load(Ordering::SeqCst) && self.shared.client_log.allow().is_some() {
            log::warn!(
                "{} on {}: {e}; closing the connection",
                self.who,
                self.route.listen.display()
            );
        }
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
    let stop = |e: ReadError| {
        if !matches!(e, ReadError::Eof) && !handle.closed.load(Ordering::SeqCst) {
            log::warn!("{who}: from libvirt: {e}; closing the connection");
        }
    };
    loop {
        reader.set_poll(poll_period(shared));
        match reader.next_passthrough_frame() {
            Ok(Some((len, h))) => {
                handle.observe(&h, false);
                let sent = match client.lock() {
                    Ok(c) => reader.splice_frame(len, &c),
                    Err(_) => break,
                };
                if let Err(e) = sent {
                    stop(e);
                    break;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                stop(e);
                break;
            }
        }
        let f = match reader.read_frame() {
            Ok(f) => f,
            Err(e) => {
                stop(e);
                break;
            }
        };
        if let Some(h) = Header::of_frame(f.bytes) {
            handle.observe(&h, false);
            if h.prog == PROG_REMOTE
                && h.procedure == procs::CONNECT_OPEN
                && h.is_reply()
                && h.status == status::OK
            {
                handle.opened.store(true, Ordering::SeqCst);
                if let Ok(mut slot) = handle.slot.lock() {
                    slot.take();
                }
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

/// Turns a refused client away: reads at most its first frame's header
/// (within `wait`), answers it with `message` if it was a call, and closes.
/// The caller bounds how many of these run at once.
pub fn refuse(client: UnixStream, message: &str, wait: Duration) {
    use std::io::Read;
    let _ = client.set_read_timeout(Some(wait));
    let _ = client.set_write_timeout(Some(wait));
    let until = Instant::now() + wait;
    let mut head = [0u8; wire::LEN_WORD + wire::HEADER_LEN];
    let mut got = 0;
    let mut r = &client;
    while got < head.len() && Instant::now() < until {
        match r.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    if got == head.len() {
        if let Some(h) = Header::of_frame(&head).filter(|h| h.is_call()) {
            let reply = wire::error_reply(&h, err::ACCESS_DENIED, err::FROM_ACCESS, message);
            let _ = write_frame(&client, &reply, &[]);
        }
    }
    let _ = client.shutdown(Shutdown::Both);
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
