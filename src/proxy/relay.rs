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
use crate::rpc::error::{decode_error, error_reply, with_note, FROM_RPC, SYSTEM_ERROR};
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
    /// The sockets for the proxy's own lookups, in order of preference.
    pub(crate) lookup: Vec<PathBuf>,
    /// Root, or a member of `allowed_groups`: not held to
    /// `auth_timeout_seconds` (libvirtd itself has no such deadline; it is
    /// there so that strangers cannot hold connections that never open).
    pub(crate) trusted: bool,
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
        open_by: (!route.trusted)
            .then(|| Instant::now() + Duration::from_secs(pc.auth_timeout_seconds.into())),
        opened,
    };
    let mut up = ClientToLibvirt {
        reader: FrameReader::new(client).guarded(guard),
        lookup: Lookup::new(
            route.lookup.clone(),
            shared.lookup_health(&route.lookup),
            settings.lookup_sasl.clone(),
        ),
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
        let (Some(up), reader) = (self.upstream.as_ref(), &mut self.reader) else {
            return Err(ReadError::Eof);
        };
        // A call the drain refuses is read whole and answered (`relay`).
        self.handle.pass(
            &h,
            || reader.splice_frame(len, up).map(|()| true),
            || Ok(false),
        )
    }

    /// Decides on one frame read from the client and acts on it.
    fn relay(&mut self, h: &Header, bytes: &[u8], fds: &[OwnedFd]) -> std::io::Result<()> {
        let mut action = FrameAction::Forward;
        if h.is_call() && self.handle.draining() && !procs::releases(h.prog, h.procedure) {
            return self.refuse_draining(h);
        }
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
            if let Some(note) = d.note {
                // Before the call goes out, so its reply finds the note.
                self.handle.add_note(h.serial, note);
            }
            action = d.action;
        }
        let Some(upstream) = self.upstream.as_ref() else {
            return Err(std::io::ErrorKind::NotConnected.into());
        };
        let refuse = || self.refuse_draining(h);
        match action {
            FrameAction::Forward => {
                self.handle
                    .pass(h, || write_frame(upstream, bytes, fds), refuse)
            }
            FrameAction::Replace(b) => {
                self.handle
                    .pass(h, || write_frame(upstream, &b, fds), refuse)
            }
            // The call's fds (if any) are closed when dropped.
            FrameAction::Deny(reply) => self.to_client(&reply),
        }
    }

    /// Answers a call that came after SIGTERM, instead of sending it: with
    /// the error libvirt's own client reports for a connection it lost
    /// (VIR_ERR_SYSTEM_ERROR from VIR_FROM_RPC), which clients such as nova
    /// and vdsm take as "reconnect".
    fn refuse_draining(&self, h: &Header) -> std::io::Result<()> {
        let name = match h.prog {
            PROG_REMOTE => procs::proc_name(h.procedure).map(str::to_string),
            _ => None,
        }
        .unwrap_or_else(|| format!("procedure {}", h.procedure));
        let msg =
            format!("vhostfix proxy: stopping; {name} was not sent to libvirt (connect again)");
        self.to_client(&error_reply(h, SYSTEM_ERROR, FROM_RPC, &msg))
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
                self.answer_error(h, SYSTEM_ERROR, FROM_RPC, &msg);
                return false;
            }
        };
        // Stream frames (256 KiB) pass in one write each way.
        widen_send_buffer(&self.handle.client);
        widen_send_buffer(&upstream);
        if let Err(e) = self.start_down(&upstream) {
            log::error!("{}: {e}", self.who);
            self.answer_error(h, SYSTEM_ERROR, FROM_RPC, "vhostfix proxy: out of threads");
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
                self.answer_error(h, SYSTEM_ERROR, FROM_RPC, &msg);
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

/// True when `frame` is libvirt's error reply about a vhost-user interface
/// (its model, or the shared memory it needs), in the words libvirt 7.0 to
/// 11.3 use; a note is never added to another error ("Domain not found").
fn about_vhostuser(frame: &[u8]) -> bool {
    let Some(message) = decode_error(payload(frame)).ok().and_then(|e| e.message) else {
        return false;
    };
    ["vhostuser", "vhost-user", "requires shared memory"]
        .iter()
        .any(|w| message.contains(w))
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

/// Sets how `reader` waits when the configuration (`mode` last time) asks
/// for another way: it may have been reloaded (SIGHUP).
fn follow_polling(
    reader: &mut FrameReader,
    mode: &mut Option<Polling>,
    shared: &Shared,
    handle: &Arc<Handle>,
) {
    let m = polling(shared);
    if *mode == Some(m) {
        return;
    }
    *mode = Some(m);
    match m {
        Polling::Never => reader.set_poll(Duration::ZERO),
        Polling::Fixed(d) => reader.set_poll(d),
        Polling::Adaptive => reader.set_spin(Box::new(ReplyPoll::new(handle.clone()))),
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
        follow_polling(&mut reader, &mut mode, shared, &handle);
        match reader.next_passthrough_frame() {
            Ok(Some((len, h))) => {
                let sent = match client.lock() {
                    Ok(c) => reader.splice_frame(len, &c),
                    Err(_) => break,
                };
                if let Err(e) = sent {
                    stop(e);
                    break;
                }
                handle.delivered(&h);
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
        let header = Header::of_frame(f.bytes);
        if let Some(h) = header {
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
        // libvirt's refusal of a call vhostfix forwarded unchanged carries the
        // note, when it is the refusal the note explains.
        let noted = Header::of_frame(f.bytes)
            .filter(|h| h.prog == PROG_REMOTE && h.is_reply())
            .and_then(|h| handle.take_note(h.serial))
            .filter(|_| about_vhostuser(f.bytes))
            .and_then(|note| with_note(f.bytes, &note));
        let sent = match client.lock() {
            Ok(c) => write_frame(&c, noted.as_deref().unwrap_or(f.bytes), &f.fds),
            Err(_) => break,
        };
        if sent.is_err() {
            break;
        }
        // Counted as answered only now that the client has it all.
        if let Some(h) = header {
            handle.delivered(&h);
        }
    }
    // The daemon closed (CONNECT_CLOSE, restart): the client sees EOF.
    handle.close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::frame::{mtype, Header};

    fn refusal(message: &str) -> Vec<u8> {
        let call = Header {
            prog: PROG_REMOTE,
            vers: 1,
            procedure: 11,
            mtype: mtype::CALL,
            serial: 3,
            status: status::OK,
        };
        error_reply(&call, 1, 20, message)
    }

    #[test]
    fn notes_go_only_to_refusals_about_vhost_user() {
        // libvirt 9.0 and 11.3's texts.
        assert!(about_vhostuser(&refusal("internal error: Wrong or no <model> 'type' attribute specified with <interface type='vhostuser'/>. vhostuser requires the virtio-net* frontend")));
        assert!(about_vhostuser(&refusal("unsupported configuration: invalid model for interface of type 'vhostuser': 'e1000' - must be 'virtio'")));
        assert!(about_vhostuser(&refusal(
            "unsupported configuration: 'interface' requires shared memory"
        )));
        assert!(!about_vhostuser(&refusal(
            "Domain not found: no domain with matching name 'w'"
        )));
    }
}
