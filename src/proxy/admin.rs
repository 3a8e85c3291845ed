//! The operator's view of a running proxy: a root-only admin socket that
//! answers each connection with the counters as one JSON object
//! (`vhostfix proxy --stats` reads it).

use super::admit::peer_cred;
use super::listen::Listener;
use super::shared::Shared;
use crate::config::ProxyConfig;
use crate::prometheus::{Exposition, Kind};
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The admin socket; removed when dropped.
pub(crate) struct Admin {
    _listener: Option<Arc<Listener>>,
}

/// Starts answering on `path` (nothing when empty). A socket that cannot be
/// made is logged, not fatal: the relay matters more than its counters.
pub(crate) fn start(path: &Path, shared: Arc<Shared>) -> Result<Admin> {
    if path.as_os_str().is_empty() {
        return Ok(Admin { _listener: None });
    }
    let l = match Listener::bind(path, 0o600, 0, PathBuf::new(), true) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            log::warn!("proxy: no admin socket (vhostfix proxy --stats will not work): {e:#}");
            return Ok(Admin { _listener: None });
        }
    };
    let sock = l.sock.try_clone().context("admin socket")?;
    std::thread::Builder::new()
        .name("admin".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            for c in sock.incoming().flatten() {
                let root = peer_cred(&c).is_ok_and(|p| p.uid == 0);
                if root {
                    let _ = c.set_write_timeout(Some(Duration::from_secs(1)));
                    let _ = (&c).write_all(render_json(&shared.snapshot()).as_bytes());
                }
            }
        })
        .context("starting the admin thread")?;
    Ok(Admin { _listener: Some(l) })
}

fn render_json(pairs: &[(&str, u64)]) -> String {
    let mut m = serde_json::Map::new();
    m.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    for (k, v) in pairs {
        m.insert((*k).into(), (*v).into());
    }
    let mut s = serde_json::Value::Object(m).to_string();
    s.push('\n');
    s
}

/// Where the admin socket is: `--admin-socket`, else a configured
/// `admin_socket`, else (the default `admin_socket` and a `--listen` socket
/// given) `admin-sock` beside the `--listen` socket, else the default. The
/// proxy and `--stats` ask the same way, so `--stats --listen PATH` finds a
/// proxy started with `--listen PATH`.
pub(crate) fn socket_path(flag: Option<&Path>, listen: Option<&Path>, pc: &ProxyConfig) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    let default = ProxyConfig::default().admin_socket;
    match listen.and_then(Path::parent) {
        Some(dir) if pc.admin_socket == default && !dir.as_os_str().is_empty() => {
            dir.join("admin-sock")
        }
        _ => pc.admin_socket.clone(),
    }
}

/// Reads the counters of the proxy answering on `path`.
pub(crate) fn fetch(path: &Path) -> Result<Vec<(String, serde_json::Value)>> {
    let mut c = UnixStream::connect(path).with_context(|| {
        format!(
            "{}: cannot connect (is vhostfix proxy running, and are you root?)",
            path.display()
        )
    })?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut text = String::new();
    c.read_to_string(&mut text)
        .with_context(|| format!("{}: reading", path.display()))?;
    if text.is_empty() {
        bail!(
            "{}: the proxy answered nothing (only root may read its counters)",
            path.display()
        );
    }
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let Some(o) = v.as_object() else {
        bail!("{}: not a JSON object", path.display());
    };
    Ok(o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// The counters as text: `name value` lines, JSON, or Prometheus exposition
/// (node_exporter's textfile collector reads the latter).
pub(crate) fn render(pairs: &[(String, serde_json::Value)], format: &str) -> String {
    let mut out = String::new();
    match format {
        "json" => {
            let m: serde_json::Map<String, serde_json::Value> = pairs.iter().cloned().collect();
            out = serde_json::Value::Object(m).to_string();
            out.push('\n');
        }
        "prometheus" => {
            let mut e = Exposition::default();
            for (k, v) in pairs {
                let Some(n) = v.as_u64() else { continue };
                let gauge = k.starts_with("connections_active")
                    || k.starts_with("connections_opening")
                    || k.starts_with("buffered")
                    || k == "uptime_seconds";
                let (name, kind) = if gauge {
                    (format!("vhostfix_proxy_{k}"), Kind::Gauge)
                } else {
                    (format!("vhostfix_proxy_{k}_total"), Kind::Counter)
                };
                e.family(&name, kind, "").sample(&name, &[], n);
            }
            out = e.finish();
        }
        _ => {
            for (k, v) in pairs {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                out.push_str(&format!("{k} {v}\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_socket_follows_listen_unless_named() {
        let pc = ProxyConfig::default();
        let l = Path::new("/tmp/t/proxy.sock");
        assert_eq!(
            socket_path(None, Some(l), &pc),
            Path::new("/tmp/t/admin-sock")
        );
        assert_eq!(socket_path(None, None, &pc), pc.admin_socket);
        let flag = Path::new("/x/a");
        assert_eq!(socket_path(Some(flag), Some(l), &pc), flag);
        let named = ProxyConfig {
            admin_socket: PathBuf::from("/etc-named"),
            ..ProxyConfig::default()
        };
        assert_eq!(socket_path(None, Some(l), &named), Path::new("/etc-named"));
    }

    #[test]
    fn renders_text_json_and_prometheus() {
        let pairs = vec![
            ("version".to_string(), serde_json::json!("0.1.0")),
            ("connections_active".to_string(), serde_json::json!(2)),
            ("calls_rewritten".to_string(), serde_json::json!(5)),
        ];
        assert_eq!(
            render(&pairs, "text"),
            "version 0.1.0\nconnections_active 2\ncalls_rewritten 5\n"
        );
        let j: serde_json::Value = serde_json::from_str(&render(&pairs, "json")).unwrap();
        assert_eq!(j["calls_rewritten"], 5);
        assert_eq!(
            render(&pairs, "prometheus"),
            "# TYPE vhostfix_proxy_connections_active gauge\nvhostfix_proxy_connections_active 2\n# TYPE vhostfix_proxy_calls_rewritten_total counter\nvhostfix_proxy_calls_rewritten_total 5\n"
        );
    }
}
