//! One client connection: two relay directions, each on its own thread, so
//! neither ever waits for the other (libvirt has no RPC flow control; events,
//! keepalives and stream data cross at any time).
//!
//! The client was admitted by the accept loop (`admit`). Its thread reads
//! with deadlines (`rpc::transport::Guard`): the first frame and CONNECT_OPEN
//! must come in time, a started frame must finish in time, and only calls
//! that carry XML are read into memory (up to `proxy.max_call_mib`);
//! everything else large is spliced through. libvirt is connected on the
//! client's first frame, not at accept, and the second thread starts only then.
//!
//! client -> libvirt ([`ClientToLibvirt`]): calls are decided on (see
//! `decide`), everything else is relayed as read. libvirt -> client
//! ([`libvirt_to_client`]): relayed as read. Both directions write whole
//! frames, fds included, so frames from the two writers to the client
//! (relayed replies and our own error replies) never interleave.

use super::admit::{PeerCred, Ticket};
use super::connection::Handle;
use super::decide::{self, FrameAction, Outcome};
use super::shared::Shared;
use super::spin::ReplyPoll;
use super::stats::Stats;
use super::upstream::Lookup;
use crate::rpc::error::{error_reply, FROM_REMOTE, NO_CONNECT};
use crate::rpc::frame::{payload, status, Header, PROG_REMOTE};
use crate::rpc::procs;
use crate::rpc::transport::{
    widen_send_buffer, write_frame, Deadline, FrameReader, Guard, ReadError,
};
use crate::rpc::xdr::Xdr;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a blocked client read wakes up to check its deadlines.
const TICK: Duration = Duration::from_millis(500);

/// Describes a client for the log: `uid=1000 pid=4242`.
pub(crate) fn who(c: &PeerCred) -> String {
    format!("uid={} pid={}", c.uid, c.pid)
}

/// Where an admitted client goes.
pub(crate) struct Route {
    pub(crate) listen: PathBuf,
    pub(crate) upstream: PathBuf,
}

/// Relays one admitted client until either side closes. `ticket` is its
/// place in the tally, given back when this returns.
pub(crate) fn serve(
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
    let mut up = ClientToLibvirt {
        reader: FrameReader::new(client).guarded(guard),
        lookup: Lookup::new(route.upstream.clone()),
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

/// The client -> libvirt direction, which owns the connection.
struct ClientToLibvirt {
    reader: FrameReader,
    /// The proxy's own libvirt connection for this client's decisions.
    lookup: Lookup,
    handle: Arc<Handle>,
    who: String,
    cred: PeerCred,
    route: Route,
    shared: Arc<Shared>,
    upstream: Option<UnixStream>,
    client_w: Option<Arc<Mutex<UnixStream>>>,
    down: Option<std::thread::JoinHandle<()>>,
}

impl ClientToLibvirt {
    fn run(&mut self) {
        loop {
            // Large frames that need no decision pass without being read.
            if self.upstream.is_some() {
                match self.splice_next() {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => return self.ended(e),
                }
            }
            let (bytes, fds, h) = match self.reader.read_frame() {
                Ok(f) => match Header::of_frame(f.bytes) {
                    Some(h) => (f.bytes.to_vec(), f.fds, h),
                    None => return,
                },
                Err(e) => return self.ended(e),
            };
            if self.upstream.is_none() && !self.connect(&h) {
                return;
            }
            if self.relay(&h, &bytes, &fds).is_err() {
                return;
            }
        }
    }

    /// Splices the next frame straight to libvirt when it needs no decision.
    /// True when it did.
    fn splice_next(&mut self) -> Result<bool, ReadError> {
        let Some((len, h)) = self.reader.next_passthrough_frame()? else {
            return Ok(false);
        };
        self.handle.observe(&h, true);
        match self.upstream.as_ref() {
            Some(up) => self.reader.splice_frame(len, up).map(|()| true),
            None => Err(ReadError::Eof),
        }
    }

    /// Decides on one frame read from the client and acts on it.
    fn relay(&mut self, h: &Header, bytes: &[u8], fds: &[OwnedFd]) -> std::io::Result<()> {
        let mut action = FrameAction::Forward;
        if h.prog == PROG_REMOTE && h.is_call() {
            if h.procedure == procs::CONNECT_OPEN {
                if let Ok(uri) = Xdr::new(payload(bytes)).opt_string() {
                    self.lookup.set_uri(uri.map(<[u8]>::to_vec));
                }
            }
            let settings = self.shared.current();
            let d = decide::decide(bytes, &settings.config, &self.who, &mut self.lookup);
            if let Some((level, line)) = d.log {
                log::log!(level, "{line}");
            }
            self.count(d.outcome);
            action = d.action;
        }
        let Some(upstream) = self.upstream.as_ref() else {
            return Err(std::io::ErrorKind::NotConnected.into());
        };
        match action {
            FrameAction::Forward => {
                self.handle.observe(h, true);
                write_frame(upstream, bytes, fds)
            }
            FrameAction::Replace(b) => {
                self.handle.observe(h, true);
                write_frame(upstream, &b, fds)
            }
            // The call's fds (if any) are closed when dropped.
            FrameAction::Deny(reply) => self.to_client(&reply),
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
            let reply = error_reply(h, code, domain, msg);
            let _ = self
                .handle
                .client
                .set_write_timeout(Some(Duration::from_secs(2)));
            let _ = self.to_client(&reply);
        }
    }

    /// Connects to libvirt for the first frame `h`, and starts the
    /// libvirt -> client thread. False (the client told why) when it cannot.
    fn connect(&mut self, h: &Header) -> bool {
        if !self.take_open_slot(h) {
            return false;
        }
        let path = &self.route.upstream;
        let upstream = match UnixStream::connect(path) {
            Ok(u) => u,
            Err(e) => {
                Stats::bump(&self.shared.stats.upstream_failures);
                if self.shared.upstream_log.allow().is_some() {
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
                self.answer_error(h, NO_CONNECT, FROM_REMOTE, &msg);
                return false;
            }
        };
        // Stream frames (256 KiB) pass in one write each way.
        widen_send_buffer(&self.handle.client);
        widen_send_buffer(&upstream);
        if let Err(e) = self.start_down(&upstream) {
            log::error!("{}: {e}", self.who);
            self.answer_error(h, NO_CONNECT, FROM_REMOTE, "vhostfix proxy: out of threads");
            return false;
        }
        log::debug!(
            "{}: connected to {}",
            self.who,
            self.route.upstream.display()
        );
        self.upstream = Some(upstream);
        true
    }

    /// A non-root client takes one of the slots for connections that have
    /// not opened yet (`proxy.max_unauthenticated`). False (the client told
    /// why) when none is free.
    fn take_open_slot(&self, h: &Header) -> bool {
        if self.cred.uid == 0 {
            return true;
        }
        let settings = self.shared.current();
        let limits = super::shared::admission_limits(&settings.config.proxy);
        match self.shared.tally.open_slot(&limits) {
            Some(s) => {
                if let Ok(mut slot) = self.handle.slot.lock() {
                    *slot = Some(s);
                }
                true
            }
            None => {
                Stats::bump(&self.shared.stats.refused);
                let msg = format!(
                    "vhostfix proxy: too many connections are opening at once (proxy.max_unauthenticated = {}); try again",
                    limits.max_unauthenticated
                );
                self.answer_error(h, NO_CONNECT, FROM_REMOTE, &msg);
                false
            }
        }
    }

    /// Starts the libvirt -> client thread for `upstream`.
    fn start_down(&mut self, upstream: &UnixStream) -> Result<(), String> {
        let clones = (|| {
            Some((
                self.handle.client.try_clone().ok()?,
                upstream.try_clone().ok()?,
                upstream.try_clone().ok()?,
            ))
        })();
        let (client_w, upstream_r, upstream_h) =
            clones.ok_or_else(|| "cannot duplicate sockets".to_string())?;
        let _ = client_w.set_write_timeout(None);
        if let Ok(mut u) = self.handle.upstream.lock() {
            *u = Some(upstream_h);
        }
        let client_w = Arc::new(Mutex::new(client_w));
        let (handle, writer) = (self.handle.clone(), client_w.clone());
        let (who, shared) = (self.who.clone(), self.shared.clone());
        let t = std::thread::Builder::new()
            .name("libvirt->client".into())
            .stack_size(256 * 1024)
            .spawn(move || libvirt_to_client(upstream_r, &writer, handle, &who, &shared))
            .map_err(|e| format!("cannot start a relay thread: {e}"))?;
        self.down = Some(t);
        self.client_w = Some(client_w);
        Ok(())
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
                "{} on {}: {}; closing the connection",
                self.who,
                self.route.listen.display(),
                explain(&e)
            );
        }
    }
}

/// A read error in the words of the proxy's configuration: which setting
/// the client ran into.
fn explain(e: &ReadError) -> String {
    match e {
        ReadError::Timeout(Deadline::Frame) => {
            "a frame took longer than proxy.frame_timeout_seconds".into()
        }
        ReadError::Timeout(Deadline::Open) => {
            "no successful CONNECT_OPEN within proxy.auth_timeout_seconds".into()
        }
        ReadError::TooLarge(n) => {
            format!("a call of {n} bytes is longer than proxy.max_call_mib allows")
        }
        ReadError::Budget => {
            "the memory budget for unprivileged clients (proxy.max_buffered_mib) is spent".into()
        }
        e => e.to_string(),
    }
}

/// How the libvirt -> client thread waits for libvirt's next frame. The
/// client -> libvirt direction never polls: two polling threads per
/// connection starve libvirtd and the client of CPU on a small host
/// (measured, BENCHMARKS-proxy.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Polling {
    Never,
    /// `proxy.busy_poll_us`: polls that long after each frame. During a run
    /// of calls the next reply usually comes while the thread still polls,
    /// which saves a wakeup per call; an idle connection costs one poll
    /// period after its last frame.
    Fixed(Duration),
    /// `proxy.adaptive_poll`: see `spin`.
    Adaptive,
}

fn polling(shared: &Shared) -> Polling {
    let pc = &shared.current().config.proxy;
    match (pc.busy_poll_us, pc.adaptive_poll) {
        (0, true) => Polling::Adaptive,
        (0, false) => Polling::Never,
        (us, _) => Polling::Fixed(Duration::from_micros(us.into())),
    }
}

/// The libvirt -> client direction: every frame relayed as read; libvirt's
/// success answer to CONNECT_OPEN marks the connection opened.
fn libvirt_to_client(
    upstream: UnixStream,
    client: &Mutex<UnixStream>,
    handle: Arc<Handle>,
    who: &str,
    shared: &Shared,
) {
    let mut reader = FrameReader::new(upstream);
    let stop = |e: ReadError| {
        if !matches!(e, ReadError::Eof) && !handle.closed.load(Ordering::SeqCst) {
            log::warn!("{who}: from libvirt: {e}; closing the connection");
        }
    };
    let mut mode = None;
    loop {
        // The configuration may have been reloaded (SIGHUP).
        let m = polling(shared);
        if mode != Some(m) {
            mode = Some(m);
            match m {
                Polling::Never => reader.set_poll(Duration::ZERO),
                Polling::Fixed(d) => reader.set_poll(d),
                Polling::Adaptive => reader.set_spin(Box::new(ReplyPoll::new(handle.clone()))),
            }
        }
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
