//! The proxy's main loop: its sockets, the accept loop with admission, the
//! signals (SIGHUP reloads, SIGTERM/SIGINT drain and stop), and turning away
//! clients that may not come in.

use super::admin;
use super::admit::{self, peer_cred, Refusal};
use super::connection::Handle;
use super::listen::{self, Listener};
use super::notify::notify;
use super::relay::{self, Route};
use super::shared::{admission_limits, Settings, Shared};
use super::stats::Stats;
use crate::config::ProxyConfig;
use crate::core::rules::{Guests, TargetModel};
use crate::rpc::client::default_socket;
use crate::rpc::error::{error_reply, ACCESS_DENIED, FROM_ACCESS};
use crate::rpc::frame::{Header, HEADER_LEN, LEN_WORD};
use crate::rpc::transport::write_frame;
use anyhow::{bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};
use rustix::event::{poll, PollFd, PollFlags};
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most refused clients being answered at once; more are closed at once.
const MAX_REFUSING: usize = 16;
/// How long a refused client has to send the header we answer.
const REFUSE_WAIT: Duration = Duration::from_secs(2);

/// Command-line settings; each overrides the `[proxy]` table.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    pub(crate) config: Option<PathBuf>,
    pub(crate) listen: Option<PathBuf>,
    pub(crate) upstream: Option<PathBuf>,
    pub(crate) listen_ro: Option<PathBuf>,
    pub(crate) upstream_ro: Option<PathBuf>,
    pub(crate) admin_socket: Option<PathBuf>,
    pub(crate) guests: Option<Guests>,
    pub(crate) target_model: Option<TargetModel>,
}

impl Options {
    fn settings(&self) -> Result<Settings> {
        Settings::load(self.config.as_deref(), self.guests, self.target_model)
    }
}

/// What the signal thread has seen, and a pipe it writes a byte to for
/// each signal, so that the accept loop wakes at once.
struct Signals {
    stop: AtomicBool,
    reload: AtomicBool,
    wake_r: OwnedFd,
    wake_w: OwnedFd,
}

/// Runs the proxy until SIGTERM or SIGINT.
pub(crate) fn run(opts: &Options) -> Result<()> {
    // Block the signals in every thread; one thread waits for them.
    let mut sigs = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        sigs.add(s);
    }
    sigs.thread_block().context("blocking signals")?;
    raise_fd_limit();

    let settings = opts.settings()?;
    let pc = settings.config.proxy.clone();
    let listeners = listeners(opts, &pc)?;
    for l in &listeners {
        log_listener(l);
    }
    let shared = Arc::new(Shared::new(settings));
    let admin_path = admin::socket_path(opts.admin_socket.as_deref(), opts.listen.as_deref(), &pc);
    let _admin = admin::start(&admin_path, shared.clone())?;
    let signals = watch_signals(sigs)?;
    for l in &listeners {
        l.sock.set_nonblocking(true)?;
    }
    notify("READY=1\nSTATUS=relaying libvirt clients");
    while !signals.stop.load(Ordering::SeqCst) {
        if signals.reload.swap(false, Ordering::SeqCst) {
            reload(opts, &shared);
        }
        wait_for_clients(&listeners, &signals.wake_r)?;
        for l in &listeners {
            // A client accepted after SIGTERM would be closed at once by the
            // drain; left in the backlog of a systemd-owned socket, it is
            // served by the next instance (restart).
            if signals.stop.load(Ordering::SeqCst) {
                break;
            }
            if !accept_all(l, &shared, &signals.stop) {
                // Out of descriptors: wait for connections to end.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    notify("STOPPING=1");
    drain(listeners, &shared);
    Ok(())
}

fn log_listener(l: &Listener) {
    log::info!(
        "proxy: listening on {} ({}) -> {}",
        l.path.display(),
        if l.read_only {
            "read-only"
        } else {
            "read-write"
        },
        l.upstream.display()
    );
    if !l.upstream.exists() {
        log::warn!(
            "proxy: {} does not exist yet: clients get an error until libvirt listens there",
            l.upstream.display()
        );
    }
}

/// Starts the thread that waits for SIGTERM, SIGINT and SIGHUP.
fn watch_signals(sigs: SigSet) -> Result<Arc<Signals>> {
    use rustix::pipe::{pipe_with, PipeFlags};
    let (wake_r, wake_w) =
        pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).context("creating the wake pipe")?;
    let signals = Arc::new(Signals {
        stop: AtomicBool::new(false),
        reload: AtomicBool::new(false),
        wake_r,
        wake_w,
    });
    let seen = signals.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .stack_size(64 * 1024)
        .spawn(move || loop {
            let stop = match sigs.wait() {
                Ok(Signal::SIGHUP) => {
                    seen.reload.store(true, Ordering::SeqCst);
                    false
                }
                Ok(_) => {
                    seen.stop.store(true, Ordering::SeqCst);
                    true
                }
                Err(_) => continue,
            };
            let _ = rustix::io::write(&seen.wake_w, &[1]);
            if stop {
                return;
            }
        })
        .context("starting the signal thread")?;
    Ok(signals)
}

/// SIGHUP: the configuration read again; a bad one leaves the old in force.
fn reload(opts: &Options, shared: &Shared) {
    match opts.settings() {
        Ok(s) => {
            shared.replace(s);
            log::info!("proxy: configuration reloaded (socket settings apply at the next start)");
        }
        Err(e) => log::error!("proxy: reload failed, keeping the previous configuration: {e:#}"),
    }
}

/// Waits for a client on any socket or a signal (the wake pipe), and at most
/// 200 ms (the loop also retries accept after running out of descriptors).
fn wait_for_clients(listeners: &[Listener], wake: &OwnedFd) -> Result<()> {
    let mut fds: Vec<PollFd<'_>> = listeners
        .iter()
        .map(|l| PollFd::new(&l.sock, PollFlags::IN))
        .collect();
    fds.push(PollFd::new(wake, PollFlags::IN));
    let timeout = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 200_000_000,
    };
    match poll(&mut fds, Some(&timeout)) {
        Ok(_) | Err(rustix::io::Errno::INTR) => {}
        Err(e) => return Err(std::io::Error::from(e)).context("poll"),
    }
    // Empty the pipe; the flags say what came.
    let mut buf = [0u8; 16];
    while matches!(rustix::io::read(wake, &mut buf), Ok(n) if n > 0) {}
    Ok(())
}

fn non_empty(p: &Path) -> Option<PathBuf> {
    (!p.as_os_str().is_empty()).then(|| p.to_path_buf())
}

/// Raises the soft limit on open files to the hard limit: each connection
/// holds several descriptors (client, upstream, their copies, pipes).
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
}

/// The sockets to serve: passed by systemd, or created here.
fn listeners(opts: &Options, pc: &ProxyConfig) -> Result<Vec<Listener>> {
    let upstream = opts
        .upstream
        .clone()
        .or(non_empty(&pc.upstream))
        .unwrap_or_else(default_socket);
    let upstream_ro = opts
        .upstream_ro
        .clone()
        .or(non_empty(&pc.upstream_ro))
        .unwrap_or_else(|| {
            let mut s = upstream.clone().into_os_string();
            s.push("-ro");
            PathBuf::from(s)
        });
    let listen = opts.listen.clone().unwrap_or(pc.listen.clone());
    let listen_ro = opts.listen_ro.clone().or(non_empty(&pc.listen_ro));
    let passed = listen::from_systemd()?;
    if !passed.is_empty() {
        let roles = passed_roles(&passed, &listen, listen_ro.as_deref())?;
        let mut out = Vec::new();
        for ((_, sock, path), read_only) in passed.into_iter().zip(roles) {
            let up = if read_only { &upstream_ro } else { &upstream };
            out.push(Listener::passed(sock, path, up.clone(), read_only));
        }
        return Ok(with_lookups(out, &upstream_ro));
    }
    let gid = listen::group_id(&pc.socket_group).context("proxy.socket_group")?;
    let mut out = vec![Listener::bind(&listen, pc.mode(), gid, upstream, false)?];
    if let Some(ro) = &listen_ro {
        out.push(Listener::bind(
            ro,
            pc.mode_ro(),
            gid,
            upstream_ro.clone(),
            true,
        )?);
    }
    Ok(with_lookups(out, &upstream_ro))
}

/// The proxy's lookups (guest OS, libvirt release) read only, so they go to
/// libvirt's read-only socket first: on a host where the read-write socket
/// asks for SASL (`auth_unix_rw = "sasl"`, as oVirt configures it) root
/// still reads there without authenticating. The read-write socket is the
/// fallback (a read-only socket that is missing or asks for more).
fn with_lookups(mut listeners: Vec<Listener>, upstream_ro: &Path) -> Vec<Listener> {
    for l in &mut listeners {
        if !l.read_only {
            l.lookup = vec![upstream_ro.to_path_buf(), l.upstream.clone()];
        }
    }
    listeners
}

/// Which of the sockets systemd passed is read-only. A name
/// (`FileDescriptorName=vhostfix-rw` or `vhostfix-ro`, systemd 227 and later)
/// decides; a socket without one (systemd 219, `systemd-socket-activate`
/// without `--fdname`, a unit without FileDescriptorName) is told by its
/// path: the configured `listen_ro` or `listen`, else a name ending in `-ro`
/// (libvirt's and vhostfix's read-only sockets all do). Two sockets that end
/// up with the same role cannot be told apart: an error says how to fix it.
fn passed_roles(
    passed: &[(String, std::os::unix::net::UnixListener, PathBuf)],
    listen: &Path,
    listen_ro: Option<&Path>,
) -> Result<Vec<bool>> {
    let mut roles = Vec::new();
    for (name, _, path) in passed {
        let read_only = match name.as_str() {
            "vhostfix-rw" => false,
            "vhostfix-ro" => true,
            _ if listen_ro.is_some_and(|ro| ro == path) => true,
            _ if path == listen => false,
            _ => path.to_string_lossy().ends_with("-ro"),
        };
        if !name.starts_with("vhostfix-") {
            log::info!(
                "proxy: systemd passed {} without a vhostfix name ({}); serving it {} by its path",
                path.display(),
                if name.is_empty() {
                    "none"
                } else {
                    name.as_str()
                },
                if read_only { "read-only" } else { "read-write" }
            );
        }
        roles.push(read_only);
    }
    for ro in [false, true] {
        let same: Vec<String> = passed
            .iter()
            .zip(&roles)
            .filter(|(_, r)| **r == ro)
            .map(|((name, _, path), _)| format!("{} (name '{name}')", path.display()))
            .collect();
        if same.len() > 1 {
            bail!(
                "systemd passed {} sockets that vhostfix would all serve {}: {}; name them FileDescriptorName=vhostfix-rw and vhostfix-ro, or set proxy.listen and proxy.listen_ro to their paths",
                same.len(),
                if ro { "read-only" } else { "read-write" },
                same.join(", ")
            );
        }
    }
    Ok(roles)
}

/// Accepts every pending client of one socket. False when accept failed for
/// lack of descriptors.
fn accept_all(l: &Listener, shared: &Arc<Shared>, stop: &AtomicBool) -> bool {
    while !stop.load(Ordering::SeqCst) {
        match l.sock.accept() {
            Ok((client, _)) => {
                let _ = client.set_nonblocking(false);
                admit_one(client, l, shared);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                if shared.client_log.allow().is_some() {
                    log::warn!("proxy: accept on {}: {e}", l.path.display());
                }
                return false;
            }
        }
    }
    true
}

/// Admits a client (a relay thread) or turns it away, before it can make the
/// proxy hold anything of note.
fn admit_one(client: UnixStream, l: &Listener, shared: &Arc<Shared>) {
    let cred = match peer_cred(&client) {
        Ok(c) => c,
        Err(e) => {
            log::warn!(
                "{}: cannot read peer credentials: {e}; closing",
                l.path.display()
            );
            return;
        }
    };
    let settings = shared.current();
    let lim = admission_limits(&settings.config.proxy);
    let verdict = if admit::allowed(&cred, l.read_only, &settings.allowed_gids) {
        shared.tally.admit(cred.uid, &lim)
    } else {
        Err(Refusal::NotAllowed)
    };
    let ticket = match verdict {
        Ok(t) => t,
        Err(why) => {
            Stats::bump(&shared.stats.refused);
            let msg = why.message(&cred, &l.path.display().to_string(), &lim);
            if let Some(n) = shared.refusal_log.allow() {
                let more = if n > 0 {
                    format!(" ({n} more refusals not logged)")
                } else {
                    String::new()
                };
                log::warn!(
                    "{} refused on {}: {msg}{more}",
                    relay::who(&cred),
                    l.path.display()
                );
            }
            refuse(client, msg, shared);
            return;
        }
    };
    Stats::bump(&shared.stats.accepted);
    let route = Route {
        listen: l.path.clone(),
        upstream: l.upstream.clone(),
        lookup: l.lookup.clone(),
        // Whom the read-write socket admits; only others must open their
        // libvirt connection within auth_timeout_seconds.
        trusted: admit::allowed(&cred, false, &settings.allowed_gids),
    };
    let sh = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("client->libvirt".into())
        .stack_size(512 * 1024)
        .spawn(move || relay::serve(client, cred, route, sh, ticket));
    if let Err(e) = spawned {
        if shared.client_log.allow().is_some() {
            log::error!("proxy: cannot start a client thread: {e}");
        }
    }
}

/// Answers a refused client on a thread of its own when fewer than
/// `MAX_REFUSING` do so already; otherwise just closes it.
fn refuse(client: UnixStream, msg: String, shared: &Arc<Shared>) {
    let taken = shared
        .refusing
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < MAX_REFUSING).then_some(n + 1)
        })
        .is_ok();
    if !taken {
        return;
    }
    let sh = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("refuse".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            answer_refused(client, &msg, REFUSE_WAIT);
            sh.refusing.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        shared.refusing.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Turns a refused client away: reads at most its first frame's header
/// (within `wait`), answers it with `message` if it was a call, and closes.
/// The caller bounds how many of these run at once.
fn answer_refused(client: UnixStream, message: &str, wait: Duration) {
    use std::io::Read;
    let _ = client.set_read_timeout(Some(wait));
    let _ = client.set_write_timeout(Some(wait));
    let until = Instant::now() + wait;
    let mut head = [0u8; LEN_WORD + HEADER_LEN];
    let mut got = 0;
    let mut r = &client;
    while got < head.len() && Instant::now() < until {
        match r.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    if got == head.len() {
        if let Some(h) = Header::of_frame(&head).filter(Header::is_call) {
            let reply = error_reply(&h, ACCESS_DENIED, FROM_ACCESS, message);
            let _ = write_frame(&client, &reply, &[]);
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

/// Stops accepting and drains: from now on each connection's new calls are
/// answered by the proxy instead of sent, and each connection is ended once
/// its calls in flight are answered and its streams are done, for up to
/// `drain_seconds`; then the rest are closed.
fn drain(listeners: Vec<Listener>, shared: &Shared) {
    drop(listeners);
    let drain = Duration::from_secs(u64::from(shared.current().config.proxy.drain_seconds));
    // However the unit's TimeoutStopSec was set, systemd waits for the drain.
    notify(&format!(
        "EXTEND_TIMEOUT_USEC={}",
        (drain + Duration::from_secs(5)).as_micros()
    ));
    let n = shared.handles().len();
    log::info!(
        "proxy: stopping; {n} connection(s) open, waiting up to {}s for calls and streams in flight",
        drain.as_secs()
    );
    let deadline = Instant::now() + drain;
    loop {
        let open = shared.handles();
        for h in &open {
            h.drain_step();
        }
        if open.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let left = shared.handles();
    if !left.is_empty() {
        log::warn!(
            "proxy: closing {} connection(s) still busy after {}s",
            left.len(),
            drain.as_secs()
        );
    }
    for h in left {
        Handle::close(&h);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while !shared.handles().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    log::info!("proxy: stopped");
}
