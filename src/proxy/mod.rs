//! `vhostfix proxy`: a libvirt API admission proxy.
//!
//! It listens where libvirt clients connect, relays every frame of each
//! connection to the real libvirt socket, and corrects domain and device XML on
//! the way in (libvirt refuses a vhost-user NIC without a virtio model while
//! parsing, before any hook runs). Wire format: `wire`; fd passing: `fdpass`;
//! decisions: `decide`; one connection: `conn`; sockets: `listen`.
//!
//! Signals: SIGTERM/SIGINT stop accepting, wait up to `proxy.drain_seconds`
//! for calls in flight, then close every connection; SIGHUP reloads the policy.

pub mod conn;
pub mod decide;
pub mod fdpass;
pub mod listen;
pub mod lookup;
pub mod wire;

use crate::config::{self, Config};
use crate::rules::{Guests, TargetModel};
use anyhow::{Context, Result};
use listen::Listener;
use nix::sys::signal::{SigSet, Signal};
use rustix::event::{poll, PollFd, PollFlags};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

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
}

/// The configuration in force (replaced as a whole on SIGHUP).
pub struct Settings {
    pub config: Config,
    pub allowed_gids: Vec<u32>,
}

impl Shared {
    pub fn current(&self) -> Arc<Settings> {
        match self.settings.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn allowed_gids(&self) -> Vec<u32> {
        self.current().allowed_gids.clone()
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

/// Runs the proxy until SIGTERM or SIGINT.
pub fn run(opts: &Options) -> Result<()> {
    // Block the signals in every thread; one thread waits for them.
    let mut sigs = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        sigs.add(s);
    }
    sigs.thread_block().context("blocking signals")?;

    let settings = load(opts)?;
    let pc = settings.config.proxy.clone();
    let listen = opts.listen.clone().unwrap_or(pc.listen.clone());
    let upstream = opts
        .upstream
        .clone()
        .or(non_empty(&pc.upstream))
        .unwrap_or_else(default_upstream);
    let listen_ro = opts.listen_ro.clone().or(non_empty(&pc.listen_ro));
    let upstream_ro = opts
        .upstream_ro
        .clone()
        .or(non_empty(&pc.upstream_ro))
        .unwrap_or_else(|| {
            let mut s = upstream.clone().into_os_string();
            s.push("-ro");
            PathBuf::from(s)
        });
    let gid = listen::group_id(&pc.socket_group).context("proxy.socket_group")?;
    let mut listeners = vec![Listener::bind(
        &listen,
        pc.mode(),
        gid,
        upstream.clone(),
        false,
    )?];
    if let Some(ro) = &listen_ro {
        listeners.push(Listener::bind(
            ro,
            pc.mode_ro(),
            gid,
            upstream_ro.clone(),
            true,
        )?);
    }
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
    }
    let shared = Arc::new(Shared {
        settings: RwLock::new(Arc::new(settings)),
        conns: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    {
        let (stop, reload) = (stop.clone(), reload.clone());
        std::thread::Builder::new()
            .name("signals".into())
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
            loop {
                match l.sock.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let (path, up, sh) = (l.path.clone(), l.upstream.clone(), shared.clone());
                        let spawned = std::thread::Builder::new()
                            .name("client->upstream".into())
                            .stack_size(1024 * 1024)
                            .spawn(move || conn::accept(client, path, up, sh));
                        if let Err(e) = spawned {
                            log::error!("proxy: cannot start a client thread: {e}");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        log::warn!("proxy: accept on {}: {e}", l.path.display());
                        break;
                    }
                }
            }
        }
    }

    // Drain: no new clients, let calls in flight finish, then close.
    drop(listeners);
    let drain = Duration::from_secs(u64::from(shared.current().config.proxy.drain_seconds));
    let n = shared.handles().len();
    log::info!(
        "proxy: stopping; {n} connection(s) open, waiting up to {}s for calls in flight",
        drain.as_secs()
    );
    let deadline = Instant::now() + drain;
    while Instant::now() < deadline {
        let busy = shared
            .handles()
            .iter()
            .any(|h| h.in_flight.load(Ordering::SeqCst) > 0);
        if !busy {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for h in shared.handles() {
        h.close();
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while !shared.handles().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    log::info!("proxy: stopped");
    Ok(())
}
