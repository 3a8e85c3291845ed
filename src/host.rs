//! What the core must not do: look at this host. Whether a client-mode
//! vhost-user socket exists, which libvirt release runs us or was named in the
//! environment, and bounded reads of standard input.

use crate::core::findings::SocketState;
use crate::core::rules::LibvirtVersion;
use std::io::Read;
use std::path::Path;

/// Looks at `path` on this host.
pub(crate) fn probe_socket(path: &str) -> SocketState {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(Path::new(path)) {
        Err(_) => SocketState::Missing,
        Ok(m) if m.file_type().is_socket() => SocketState::Present,
        Ok(_) => SocketState::NotASocket,
    }
}

/// Reads `r` to its end and keeps at most `limit + 1` bytes (one more than
/// allowed, so the caller can tell "too large" from "exactly the limit").
/// With `drain`, the rest is read and thrown away (a libvirt hook must read
/// its whole stdin, or libvirt gets EPIPE).
pub(crate) fn read_bounded(
    r: &mut dyn Read,
    limit: usize,
    drain: bool,
) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    r.take(cap(limit)).read_to_end(&mut kept)?;
    if drain {
        std::io::copy(r, &mut std::io::sink())?;
    }
    Ok(kept)
}

/// [`read_bounded`] for a file, in one allocation of the file's size instead
/// of doubling up to it (a large domain is read at disk speed).
pub(crate) fn read_file_bounded(f: &mut std::fs::File, limit: usize) -> std::io::Result<Vec<u8>> {
    let cap = cap(limit);
    let mut kept = Vec::new();
    if let Ok(m) = f.metadata() {
        kept.reserve_exact(usize::try_from(m.len().min(cap)).unwrap_or(0) + 1);
    }
    f.take(cap).read_to_end(&mut kept)?;
    Ok(kept)
}

/// One byte more than `limit`.
fn cap(limit: usize) -> u64 {
    u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1)
}

/// The libvirt release in force for a command-line run: `--libvirt-version`,
/// else `$VHOSTFIX_LIBVIRT_VERSION`, else `detected`.
pub(crate) fn libvirt_version(
    flag: Option<LibvirtVersion>,
    detected: impl FnOnce() -> Option<LibvirtVersion>,
) -> Result<Option<LibvirtVersion>, String> {
    if flag.is_some() {
        return Ok(flag);
    }
    match std::env::var(ENV_LIBVIRT_VERSION) {
        Ok(v) if !v.trim().is_empty() => v
            .parse()
            .map(Some)
            .map_err(|e| format!("${ENV_LIBVIRT_VERSION}: {e}")),
        _ => Ok(detected()),
    }
}

/// Environment variable naming the libvirt release (tests, CLI).
pub(crate) const ENV_LIBVIRT_VERSION: &str = "VHOSTFIX_LIBVIRT_VERSION";

/// The release of the libvirt daemon that runs us: the first of `pid` and its
/// next ancestors (a dispatcher script may sit between the daemon and the
/// hook) with libvirt.so mapped (`/proc/PID/maps`; the soname carries the
/// release).
pub(crate) fn daemon_libvirt_version(pid: u32) -> Option<LibvirtVersion> {
    let mut pid = pid;
    for _ in 0..3 {
        if pid <= 1 {
            return None;
        }
        if let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) {
            if let Some(v) = maps
                .lines()
                .filter(|l| l.contains("/libvirt.so.0."))
                .find_map(LibvirtVersion::from_soname)
            {
                return Some(v);
            }
        }
        pid = parent_of(pid)?;
    }
    None
}

/// The parent of `pid`, from `/proc/PID/stat` (the field after the command,
/// which may itself hold spaces and parentheses).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_is_read_from_proc() {
        let me = std::process::id();
        assert_eq!(parent_of(me), Some(std::os::unix::process::parent_id()));
        // A test binary maps no libvirt.so, nor does cargo.
        assert_eq!(daemon_libvirt_version(me), None);
    }

    #[test]
    fn bounded_reads_keep_one_byte_more_and_drain_the_rest() {
        let data = [7u8; 100];
        let mut r = &data[..];
        assert_eq!(read_bounded(&mut r, 10, true).unwrap().len(), 11);
        assert!(r.is_empty());
        let mut r = &data[..];
        assert_eq!(read_bounded(&mut r, 10, false).unwrap().len(), 11);
        assert_eq!(r.len(), 89);
    }

    #[test]
    fn probing_tells_sockets_from_files() {
        assert_eq!(probe_socket("/nonexistent/vhu.sock"), SocketState::Missing);
        assert_eq!(probe_socket("/"), SocketState::NotASocket);
    }
}
