//! Who may use the proxy, and how much of it: decided in the accept loop from
//! the peer's credentials, before any thread, buffer or upstream connection
//! exists for the client.
//!
//! - The read-write socket admits root and members of `proxy.allowed_groups`;
//!   the read-only socket admits everyone, as libvirt's own read-only socket
//!   does (its clients reach only libvirt's read-only socket).
//! - At most `max_clients` connections; `reserved_for_root` of them only root
//!   may take; at most `max_clients_per_user` for each other user.
//! - At most `max_unauthenticated` upstream connections of non-root clients
//!   that have not opened their libvirt connection yet (libvirtd stops
//!   accepting anyone, root included, past its `max_anonymous_clients`).

use super::fdpass::PeerCred;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The limits in force (from `[proxy]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_clients: usize,
    pub per_user: usize,
    pub reserved_for_root: usize,
    pub max_unauthenticated: usize,
}

/// Why a client is turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotAllowed,
    Full,
    UserFull,
}

impl Refusal {
    pub fn message(self, c: &PeerCred, socket: &str, l: &Limits) -> String {
        match self {
            Refusal::NotAllowed => format!(
                "access denied: vhostfix proxy: uid {} may not use {socket} (root and members of proxy.allowed_groups only; the read-only socket admits everyone)",
                c.uid
            ),
            Refusal::Full => format!(
                "access denied: vhostfix proxy: no free connection (proxy.max_clients = {}, {} reserved for root)",
                l.max_clients, l.reserved_for_root
            ),
            Refusal::UserFull => format!(
                "access denied: vhostfix proxy: uid {} already holds {} connections (proxy.max_clients_per_user)",
                c.uid, l.per_user
            ),
        }
    }
}

/// True when the peer may use a socket: anyone on a read-only socket; root,
/// or a member of an allowed group (primary or supplementary) otherwise.
pub fn allowed(c: &PeerCred, read_only: bool, allowed_gids: &[u32]) -> bool {
    if read_only || c.uid == 0 {
        return true;
    }
    if allowed_gids.is_empty() {
        return false;
    }
    allowed_gids.contains(&c.gid)
        || supplementary_groups(c)
            .iter()
            .any(|g| allowed_gids.contains(g))
}

/// The supplementary groups of the peer: from /proc when its pid is visible,
/// else (pid 0: another PID namespace) from the user database.
fn supplementary_groups(c: &PeerCred) -> Vec<u32> {
    if c.pid > 0 {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{}/status", c.pid)) {
            return s
                .lines()
                .find_map(|l| l.strip_prefix("Groups:"))
                .map(|g| {
                    g.split_whitespace()
                        .filter_map(|n| n.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
        }
    }
    let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(c.uid)) else {
        return Vec::new();
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return Vec::new();
    };
    nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(c.gid))
        .map(|v| v.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default()
}

/// Connections held, by user.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    non_root: usize,
    by_uid: HashMap<u32, usize>,
}

/// The connection tally; a `Ticket` holds one place in it.
#[derive(Debug, Default)]
pub struct Tally {
    counts: Mutex<Counts>,
    unauth: AtomicUsize,
}

/// One admitted connection's place; given back when dropped.
#[derive(Debug)]
pub struct Ticket {
    tally: Arc<Tally>,
    uid: u32,
}

/// One non-root upstream connection that has not opened yet.
#[derive(Debug)]
pub struct OpenSlot {
    tally: Arc<Tally>,
}

impl Tally {
    /// Takes a place for `uid`, or says why there is none.
    pub fn admit(self: &Arc<Self>, uid: u32, l: &Limits) -> Result<Ticket, Refusal> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= l.max_clients {
            return Err(Refusal::Full);
        }
        if uid != 0 {
            if c.non_root >= l.max_clients.saturating_sub(l.reserved_for_root) {
                return Err(Refusal::Full);
            }
            if c.by_uid.get(&uid).copied().unwrap_or(0) >= l.per_user {
                return Err(Refusal::UserFull);
            }
            c.non_root += 1;
        }
        c.total += 1;
        *c.by_uid.entry(uid).or_default() += 1;
        Ok(Ticket {
            tally: self.clone(),
            uid,
        })
    }

    pub fn active(&self) -> usize {
        self.counts.lock().map(|c| c.total).unwrap_or(0)
    }

    /// A slot for a non-root upstream connection that has not opened yet.
    pub fn open_slot(self: &Arc<Self>, l: &Limits) -> Option<OpenSlot> {
        self.unauth
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < l.max_unauthenticated).then_some(n + 1)
            })
            .ok()
            .map(|_| OpenSlot {
                tally: self.clone(),
            })
    }

    pub fn opening(&self) -> usize {
        self.unauth.load(Ordering::SeqCst)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut c = self.tally.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if self.uid != 0 {
            c.non_root = c.non_root.saturating_sub(1);
        }
        if let Some(n) = c.by_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                c.by_uid.remove(&self.uid);
            }
        }
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.tally.unauth.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Logs refusals without letting a flood of them flood the log: the first,
/// then at most one line per `every` that says how many were not logged.
pub struct RateLimited {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimited {
    pub fn new(every: Duration) -> Self {
        RateLimited {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(suppressed)` when a line may be logged now.
    pub fn allow(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if s.0.is_some_and(|t| now.duration_since(t) < self.every) {
            s.1 += 1;
            return None;
        }
        let suppressed = s.1;
        *s = (Some(now), 0);
        Some(suppressed)
    }
}

/// Counters an operator reads with `vhostfix proxy --stats`.
#[derive(Debug, Default)]
pub struct Stats {
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub calls_inspected: AtomicU64,
    pub rewritten: AtomicU64,
    pub denied: AtomicU64,
    pub reported: AtomicU64,
    pub errors: AtomicU64,
    pub too_large: AtomicU64,
    pub timeouts: AtomicU64,
    pub stray_fds: AtomicU64,
    pub upstream_failures: AtomicU64,
}

impl Stats {
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters as (name, value) pairs, in a fixed order.
    pub fn pairs(&self) -> Vec<(&'static str, u64)> {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("connections_accepted", g(&self.accepted)),
            ("connections_refused", g(&self.refused)),
            ("calls_inspected", g(&self.calls_inspected)),
            ("calls_rewritten", g(&self.rewritten)),
            ("calls_denied", g(&self.denied)),
            ("calls_reported", g(&self.reported)),
            ("errors", g(&self.errors)),
            ("frames_too_large", g(&self.too_large)),
            ("timeouts", g(&self.timeouts)),
            ("stray_fds_dropped", g(&self.stray_fds)),
            ("upstream_failures", g(&self.upstream_failures)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(uid: u32, gid: u32, pid: i32) -> PeerCred {
        PeerCred { uid, gid, pid }
    }

    #[test]
    fn read_only_socket_admits_everyone_read_write_only_root_and_groups() {
        let user = cred(1000, 1000, i32::MAX);
        assert!(allowed(&cred(0, 0, 1), false, &[]));
        assert!(!allowed(&user, false, &[]));
        assert!(allowed(&user, false, &[1000]));
        assert!(!allowed(&user, false, &[999]));
        assert!(allowed(&user, true, &[]));
        // pid 0 (another PID namespace): root is root.
        assert!(allowed(&cred(0, 0, 0), false, &[]));
    }

    #[test]
    fn tally_caps_users_and_keeps_places_for_root() {
        let l = Limits {
            max_clients: 4,
            per_user: 2,
            reserved_for_root: 1,
            max_unauthenticated: 1,
        };
        let t = Arc::new(Tally::default());
        let a1 = t.admit(1000, &l).unwrap();
        let _a2 = t.admit(1000, &l).unwrap();
        assert_eq!(t.admit(1000, &l).unwrap_err(), Refusal::UserFull);
        let _b = t.admit(1001, &l).unwrap();
        // 3 non-root of 4, one reserved for root.
        assert_eq!(t.admit(1002, &l).unwrap_err(), Refusal::Full);
        let r = t.admit(0, &l).unwrap();
        assert_eq!(t.admit(0, &l).unwrap_err(), Refusal::Full);
        drop(a1);
        drop(r);
        assert_eq!(t.active(), 2);
        assert!(t.admit(1000, &l).is_ok());
        let s = t.open_slot(&l).unwrap();
        assert!(t.open_slot(&l).is_none());
        drop(s);
        assert!(t.open_slot(&l).is_some());
    }

    #[test]
    fn rate_limit_counts_what_it_holds_back() {
        let r = RateLimited::new(Duration::from_millis(50));
        assert_eq!(r.allow(), Some(0));
        assert_eq!(r.allow(), None);
        assert_eq!(r.allow(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(r.allow(), Some(2));
    }
}
