//! The proxy's listening sockets: created with the configured mode and group
//! before anyone can reach them under their real name, a stale socket from a
//! dead proxy replaced, a live one (or any other file) left alone, and the path
//! removed again when the listener is dropped, if it is still ours.
//!
//! Every path operation happens in a directory that only root can change: the
//! socket's directory (after resolving symlinks) and each directory above it
//! must be owned by root and not writable by group or others (or be sticky
//! and root-owned, like /tmp, for the directories above). Otherwise another
//! user could swap the temporary name for a symlink between bind and chmod,
//! or replace the finished socket. Under systemd socket activation the
//! sockets come ready-made (`from_systemd`) and no path is touched.

use anyhow::{bail, Context, Result};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// A bound socket that unlinks its path on drop.
pub(crate) struct Listener {
    pub(crate) path: PathBuf,
    pub(crate) sock: UnixListener,
    /// Clients of this socket are relayed to this upstream socket.
    pub(crate) upstream: PathBuf,
    pub(crate) read_only: bool,
    /// Where the proxy's own lookups for these clients go, in order of
    /// preference (see `upstream::Lookup`); `upstream` unless set.
    pub(crate) lookup: Vec<PathBuf>,
    /// Device and inode of the socket we created; `None`: not ours to remove.
    id: Option<(u64, u64)>,
}

/// Refuses a directory another user could change.
fn check_dir(dir: &Path, socket: &Path) -> Result<()> {
    let euid = nix::unistd::geteuid().as_raw();
    let mut cur = Some(dir);
    let mut first = true;
    while let Some(d) = cur {
        let m = std::fs::metadata(d).with_context(|| format!("{}: cannot inspect", d.display()))?;
        let mode = m.mode();
        let owner_ok = m.uid() == 0 || m.uid() == euid;
        let sticky = mode & 0o1000 != 0;
        let writable_by_others = mode & 0o022 != 0;
        if !owner_ok || (writable_by_others && (first || !sticky)) {
            bail!(
                "{}: refusing to create {} here: the directory is owned by uid {} with mode {:04o}; it must belong to root and not be writable by group or others",
                d.display(),
                socket.display(),
                m.uid(),
                mode & 0o7777
            );
        }
        first = false;
        cur = d.parent();
    }
    Ok(())
}

/// Resolves a group name (or a number) to a gid.
pub(crate) fn group_id(name: &str) -> Result<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => bail!("group '{name}' does not exist"),
        Err(e) => bail!("looking up group '{name}': {e}"),
    }
}

impl Listener {
    pub(crate) fn bind(
        path: &Path,
        mode: u32,
        gid: u32,
        upstream: PathBuf,
        read_only: bool,
    ) -> Result<Listener> {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.exists() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("{}: cannot create", parent.display()))?;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))?;
        }
        // Work in the real directory, checked, so no symlink redirects us.
        let parent = std::fs::canonicalize(parent)
            .with_context(|| format!("{}: cannot resolve", parent.display()))?;
        check_dir(&parent, path)?;
        let path = &parent.join(path.file_name().unwrap_or_default());
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path) {
                Ok(_) => bail!(
                    "{}: another process is listening on this socket",
                    path.display()
                ),
                Err(_) => log::info!("{}: replacing a stale socket", path.display()),
            },
            Ok(_) => bail!(
                "{}: exists and is not a socket; not replacing it",
                path.display()
            ),
            Err(_) => {}
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(".{name}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let sock =
            UnixListener::bind(&tmp).with_context(|| format!("{}: cannot bind", tmp.display()))?;
        let setup = || -> Result<()> {
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
            std::os::unix::fs::chown(&tmp, None, Some(gid))?;
            // Atomic: the real name only ever points at a fully set-up socket.
            std::fs::rename(&tmp, path)?;
            Ok(())
        };
        if let Err(e) = setup() {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.context(format!("{}: cannot set up the socket", path.display())));
        }
        let m = std::fs::symlink_metadata(path)?;
        Ok(Listener {
            path: path.to_path_buf(),
            sock,
            lookup: vec![upstream.clone()],
            upstream,
            read_only,
            id: Some((m.dev(), m.ino())),
        })
    }

    /// A socket systemd opened and passed (socket activation).
    pub(crate) fn passed(
        sock: UnixListener,
        path: PathBuf,
        upstream: PathBuf,
        read_only: bool,
    ) -> Listener {
        Listener {
            path,
            sock,
            lookup: vec![upstream.clone()],
            upstream,
            read_only,
            id: None,
        }
    }
}

/// Listening sockets passed by systemd (LISTEN_PID, LISTEN_FDS,
/// LISTEN_FDNAMES): each with its name (empty when systemd passed none) and
/// the path it is bound to. Empty when the process was not socket-activated.
pub(crate) fn from_systemd() -> Result<Vec<(String, UnixListener, PathBuf)>> {
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .unwrap_or_default()
        .split(':')
        .map(str::to_string)
        .collect();
    let mut fds = listenfd::ListenFd::from_env();
    let mut out = Vec::new();
    for i in 0..fds.len() {
        let name = names.get(i).cloned().unwrap_or_default();
        match fds.take_unix_listener(i) {
            Ok(Some(l)) => {
                let path = l
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(Path::to_path_buf))
                    .unwrap_or_else(|| PathBuf::from(format!("(socket {i} passed by systemd)")));
                out.push((name, l, path));
            }
            Ok(None) => {}
            Err(e) => bail!("socket {i} ({name}) passed by systemd: {e}"),
        }
    }
    std::env::remove_var("LISTEN_FDNAMES");
    Ok(out)
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if Some((m.dev(), m.ino())) == self.id {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_with_mode_replaces_stale_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("vhostfix-listen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub/sock");
        let gid = nix::unistd::getgid().as_raw();
        let l = Listener::bind(&path, 0o600, gid, "/x".into(), false).unwrap();
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        // A live socket is not taken over.
        assert!(Listener::bind(&path, 0o600, gid, "/x".into(), false).is_err());
        // A dead one is.
        std::mem::forget(l);
        let l2 = Listener::bind(&path, 0o640, gid, "/x".into(), false);
        // The forgotten listener still accepts: only the kernel knows; connect succeeds.
        assert!(l2.is_err());
        std::fs::remove_file(&path).unwrap();
        {
            let stale = UnixListener::bind(&path).unwrap();
            drop(stale);
        }
        let l3 = Listener::bind(&path, 0o640, gid, "/x".into(), false).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        drop(l3);
        assert!(!path.exists());
        // Not a socket: left alone.
        std::fs::write(&path, "x").unwrap();
        assert!(Listener::bind(&path, 0o640, gid, "/x".into(), false).is_err());
        assert!(path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
