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

use std::collections::HashMap;
use std::io;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The credentials of the process at the other end of a UNIX socket (SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerCred {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) pid: i32,
}

/// The peer's credentials. SO_PEERCRED goes through nix, whose answer keeps
/// a pid of 0 (rustix's `Pid` cannot hold one).
///
/// `pid` is 0 when the peer lives in a PID namespace this process cannot see
/// into (a container, `unshare --pid`): uid and gid are still right.
pub(crate) fn peer_cred(sock: &UnixStream) -> io::Result<PeerCred> {
    let c = nix::sys::socket::getsockopt(sock, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(io::Error::from)?;
    Ok(PeerCred {
        uid: c.uid(),
        gid: c.gid(),
        pid: c.pid(),
    })
}

/// The limits in force (from `[proxy]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdmissionLimits {
    pub(crate) max_clients: usize,
    pub(crate) per_user: usize,
    pub(crate) reserved_for_root: usize,
    pub(crate) max_unauthenticated: usize,
}

/// Why a client is turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    NotAllowed,
    Full,
    UserFull,
}

impl Refusal {
    pub(crate) fn message(self, c: &PeerCred, socket: &str, l: &AdmissionLimits) -> String {
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
pub(crate) fn allowed(c: &PeerCred, read_only: bool, allowed_gids: &[u32]) -> bool {
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
pub(crate) struct Tally {
    counts: Mutex<Counts>,
    unauth: AtomicUsize,
}

/// One admitted connection's place; given back when dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    tally: Arc<Tally>,
    uid: u32,
}

/// One non-root upstream connection that has not opened yet.
#[derive(Debug)]
pub(crate) struct OpenSlot {
    tally: Arc<Tally>,
}

impl Tally {
    /// Takes a place for `uid`, or says why there is none.
    pub(crate) fn admit(
        self: &Arc<Self>,
        uid: u32,
        l: &AdmissionLimits,
    ) -> Result<Ticket, Refusal> {
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

    pub(crate) fn active(&self) -> usize {
        self.counts.lock().map(|c| c.total).unwrap_or(0)
    }

    /// A slot for a non-root upstream connection that has not opened yet.
    pub(crate) fn open_slot(self: &Arc<Self>, l: &AdmissionLimits) -> Option<OpenSlot> {
        self.unauth
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < l.max_unauthenticated).then_some(n + 1)
            })
            .ok()
            .map(|_| OpenSlot {
                tally: self.clone(),
            })
    }

    pub(crate) fn opening(&self) -> usize {
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
        let l = AdmissionLimits {
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
    fn peer_cred_of_self() {
        let (a, _b) = UnixStream::pair().unwrap();
        let c = peer_cred(&a).unwrap();
        assert_eq!(c.pid as u32, std::process::id());
        assert_eq!(c.uid, nix::unistd::getuid().as_raw());
    }
}
