//! `vhostfix proxy`: a libvirt API admission proxy.
//!
//! It listens where libvirt clients connect, relays every frame of each
//! connection to the real libvirt socket, and corrects domain and device XML on
//! the way in (libvirt refuses a vhost-user NIC without a virtio model while
//! parsing, before any hook runs). Wire format: `wire`; fd passing and
//! guarded reads: `fdpass`; who may connect and how much: `admit`;
//! decisions: `decide`; one connection: `conn`; sockets: `listen`; the
//! operator's view: `admin`.
//!
//! Everything a client can make the proxy hold is bounded: connections
//! (`admit`), threads (two per admitted connection that has sent a frame, one
//! before; at most `MAX_REFUSING` more for refusals), memory (only calls that
//! carry XML are read into memory, `max_call_mib` each, `max_buffered_mib`
//! for all non-root clients together) and time (`fdpass::Guard`).
//!
//! Signals: SIGTERM/SIGINT stop accepting, close each connection once it has
//! no call in flight and no open stream, for up to `proxy.drain_seconds`,
//! then close the rest; SIGHUP reloads the policy.

pub mod admin;
pub mod admit;
pub mod conn;
pub mod decide;
pub mod fdpass;
pub mod listen;
pub mod lookup;
pub mod wire;

use crate::config::{self, Config, ProxyConfig};
use crate::rules::{Guests, TargetModel};
use anyhow::{bail, Context, Result};
use listen::Listener;
use nix::sys::signal::{SigSet, Signal};
use rustix::event::{poll, PollFd, PollFlags};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Most refused clients being answered at once; more are closed at once.
const MAX_REFUSING: usize = 16;
/// How long a refused client has to send the header we answer.
const REFUSE_WAIT: Duration = Duration::from_secs(2);

/// Command-line settings; each overrides the `[proxy]` table.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub config: Option<PathBuf>,
    pub listen: Option<PathBuf>,
    pub upstream: Option<PathBuf>,
    pub listen_ro: Option<PathBuf>,
    pub upstream_ro: Option<PathBuf>,
    pub guests: Option<Guests>,
    pub target_model: Option<TargetModel>,
}

/// State all connections share.
pub struct Shared {
    settings: RwLock<Arc<Settings>>,
    conns: Mutex<HashMap<u64, Arc<conn::Handle>>>,
    next_id: AtomicU64,
    pub tally: Arc<admit::Tally>,
    pub budget: Arc<fdpass::Budget>,
    pub stats: admit::Stats,
    /// Rate limits for lines a client can provoke.
    pub refusal_log: admit::RateLimited,
    pub client_log: admit::RateLimited,
    pub upstream_log: admit::RateLimited,
    refusing: AtomicUsize,
    started: Instant,
}

/// The configuration in force (replaced as a whole on SIGHUP).
pub struct Settings {
    pub config: Config,
    pub allowed_gids: Vec<u32>,
}

/// The admission limits of a `[proxy]` table.
pub fn limits(pc: &ProxyConfig) -> admit::Limits {
    admit::Limits {
        max_clients: pc.max_clients as usize,
        per_user: pc.max_clients_per_user as usize,
        reserved_for_root: pc.reserved_for_root as usize,
        max_unauthenticated: pc.max_unauthenticated as usize,
    }
}

impl Shared {
    pub fn current(&self) -> Arc<Settings> {
        match self.settings.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn register(&self, h: Arc<conn::Handle>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut m) = self.conns.lock() {
            m.insert(id, h);
        }
        id
    }

    fn unregister(&self, id: u64) {
        if let Ok(mut m) = self.conns.lock() {
            m.remove(&id);
        }
    }

    fn handles(&self) -> Vec<Arc<conn::Handle>> {
        self.conns
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The counters and gauges, for the admin socket.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let mut v = vec![
            ("uptime_seconds", self.started.elapsed().as_secs()),
            ("connections_active", self.tally.active() as u64),
            ("connections_opening", self.tally.opening() as u64),
            ("buffered_bytes_unprivileged", self.budget.used() as u64),
        ];
        v.extend(self.stats.pairs());
        v
    }
}

fn load(opts: &Options) -> Result<Settings> {
    let (mut config, source) = config::load(opts.config.as_deref())?;
    config.override_with(opts.guests, opts.target_model);
    let allowed_gids = config
        .proxy
        .allowed_groups
        .iter()
        .map(|g| listen::group_id(g).context("proxy.allowed_groups"))
        .collect::<Result<Vec<u32>>>()?;
    log::info!("proxy: configuration from {source}");
    Ok(Settings {
        config,
        allowed_gids,
    })
}

/// libvirt's default read-write socket on this host.
fn default_upstream() -> PathBuf {
    let modular = Path::new("/run/libvirt/virtqemud-sock");
    if modular.exists() {
        modular.to_path_buf()
    } else {
        PathBuf::from("/run/libvirt/libvirt-sock")
    }
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
        .unwrap_or_else(default_upstream);
    let upstream_ro = opts
        .upstream_ro
        .clone()
        .or(non_empty(&pc.upstream_ro))
        .unwrap_or_else(|| {
            let mut s = upstream.clone().into_os_string();
            s.push("-ro");
            PathBuf::from(s)
        });
    let passed = listen::from_systemd()?;
    if !passed.is_empty() {
        let mut out = Vec::new();
        for (name, sock) in passed {
            let read_only = match name.as_str() {
                "vhostfix-rw" => false,
                "vhostfix-ro" => true,
                other => bail!(
                    "systemd passed a socket named '{other}'; expected FileDescriptorName=vhostfix-rw or vhostfix-ro"
                ),
            };
            let path = sock
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(Path::to_path_buf))
                .unwrap_or_else(|| PathBuf::from(&name));
            let up = if read_only { &upstream_ro } else { &upstream };
            out.push(Listener::passed(sock, path, up.clone(), read_only));
        }
        return Ok(out);
    }
    let listen = opts.listen.clone().unwrap_or(pc.listen.clone());
    let listen_ro = opts.listen_ro.clone().or(non_empty(&pc.listen_ro));
    let gid = listen::group_id(&pc.socket_group).context("proxy.socket_group")?;
    let mut out = vec![Listener::bind(&listen, pc.mode(), gid, upstream, false)?];
    if let Some(ro) = &listen_ro {
        out.push(Listener::bind(ro, pc.mode_ro(), gid, upstream_ro, true)?);
    }
    Ok(out)
}

/// Runs the proxy until SIGTERM or SIGINT.
pub fn run(opts: &Options) -> Result<()> {
    // Block the signals in every thread; one thread waits for them.
    let mut sigs = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        sigs.add(s);
    }
    sigs.thread_block().context("blocking signals")?;
    raise_fd_limit();

    let settings = load(opts)?;
    let pc = settings.config.proxy.clone();
    let listeners = listeners(opts, &pc)?;
    for l in &listeners {
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
    let shared = Arc::new(Shared {
        settings: RwLock::new(Arc::new(settings)),
        conns: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        tally: Arc::new(admit::Tally::default()),
        budget: Arc::new(fdpass::Budget::new((pc.max_buffered_mib as usize) << 20)),
        stats: admit::Stats::default(),
        refusal_log: admit::RateLimited::new(Duration::from_secs(10)),
        client_log: admit::RateLimited::new(Duration::from_secs(1)),
        upstream_log: admit::RateLimited::new(Duration::from_secs(10)),
        refusing: AtomicUsize::new(0),
        started: Instant::now(),
    });
    let _admin = admin::start(&pc.admin_socket, shared.clone())?;
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    {
        let (stop, reload) = (stop.clone(), reload.clone());
        std::thread::Builder::new()
            .name("signals".into())
            .stack_size(64 * 1024)
            .spawn(move || loop {
                match sigs.wait() {
                    Ok(Signal::SIGHUP) => reload.store(true, Ordering::SeqCst),
                    Ok(_) => {
                        stop.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(_) => {}
                }
            })
            .context("starting the signal thread")?;
    }

    for l in &listeners {
        l.sock.set_nonblocking(true)?;
    }
    admin::notify("READY=1\nSTATUS=relaying libvirt clients");
    while !stop.load(Ordering::SeqCst) {
        if reload.swap(false, Ordering::SeqCst) {
            match load(opts) {
                Ok(s) => {
                    if let Ok(mut cur) = shared.settings.write() {
                        *cur = Arc::new(s);
                    }
                    log::info!(
                        "proxy: configuration reloaded (socket settings apply at the next start)"
                    );
                }
                Err(e) => {
                    log::error!("proxy: reload failed, keeping the previous configuration: {e:#}")
                }
            }
        }
        let mut fds: Vec<PollFd<'_>> = listeners
            .iter()
            .map(|l| PollFd::new(&l.sock, PollFlags::IN))
            .collect();
        let timeout = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 200_000_000,
        };
        match poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(std::io::Error::from(e)).context("poll"),
        }
        for l in &listeners {
            // A client accepted after SIGTERM would be closed at once by the
            // drain; left in the backlog of a systemd-owned socket, it is
            // served by the next instance (restart).
            if stop.load(Ordering::SeqCst) {
                break;
            }
            if !accept_all(l, &shared, &stop) {
                // Out of descriptors: wait for connections to end.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    admin::notify("STOPPING=1");
    drain(listeners, &shared);
    Ok(())
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
fn admit_one(client: std::os::unix::net::UnixStream, l: &Listener, shared: &Arc<Shared>) {
    let cred = match fdpass::peer_cred(&client) {
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
    let lim = limits(&settings.config.proxy);
    let verdict = if admit::allowed(&cred, l.read_only, &settings.allowed_gids) {
        shared.tally.admit(cred.uid, &lim)
    } else {
        Err(admit::Refusal::NotAllowed)
    };
    let ticket = match verdict {
        Ok(t) => t,
        Err(why) => {
            admit::Stats::bump(&shared.stats.refused);
            let msg = why.message(&cred, &l.path.display().to_string(), &lim);
            if let Some(n) = shared.refusal_log.allow() {
                let more = if n > 0 {
                    format!(" ({n} more refusals not logged)")
                } else {
                    String::new()
                };
                log::warn!(
                    "{} refused on {}: {msg}{more}",
                    conn::who(&cred),
                    l.path.display()
                );
            }
            refuse(client, msg, shared);
            return;
        }
    };
    admit::Stats::bump(&shared.stats.accepted);
    let route = conn::Route {
        listen: l.path.clone(),
        upstream: l.upstream.clone(),
    };
    let sh = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("client->upstream".into())
        .stack_size(512 * 1024)
        .spawn(move || conn::serve(client, cred, route, sh, ticket));
    if let Err(e) = spawned {
        if shared.client_log.allow().is_some() {
            log::error!("proxy: cannot start a client thread: {e}");
        }
    }
}

/// Answers a refused client on a thread of its own when fewer than
/// `MAX_REFUSING` do so already; otherwise just closes it.
fn refuse(client: std::os::unix::net::UnixStream, msg: String, shared: &Arc<Shared>) {
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
            conn::refuse(client, &msg, REFUSE_WAIT);
            sh.refusing.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        shared.refusing.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Stops accepting, closes each connection once it is idle (no call in
/// flight, no open stream) for up to `drain_seconds`, then closes the rest.
fn drain(listeners: Vec<Listener>, shared: &Shared) {
    drop(listeners);
    let drain = Duration::from_secs(u64::from(shared.current().config.proxy.drain_seconds));
    // However the unit's TimeoutStopSec was set, systemd waits for the drain.
    admin::notify(&format!(
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
            if h.idle() {
                h.close();
            }
        }
        if open.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
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
        h.close();
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while !shared.handles().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    log::info!("proxy: stopped");
}
