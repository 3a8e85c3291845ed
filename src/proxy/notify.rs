//! Readiness and state notes for systemd (`Type=notify`, sd_notify's
//! protocol: datagrams of `KEY=VALUE` lines to $NOTIFY_SOCKET).

use std::os::unix::net::UnixDatagram;

/// Tells systemd about the service's state, when started with Type=notify
/// (NOTIFY_SOCKET set); a no-op otherwise.
pub(crate) fn notify(state: &str) {
    let Ok(path) = std::env::var("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let sent = if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        log::debug!("proxy: notifying systemd: {e}");
    }
}
