//! What every connection of the proxy shares: the configuration in force
//! (replaced whole on SIGHUP), the live connections, the tally of who holds
//! how many, the memory budget, the counters and the log rate limits.

use super::admit::{AdmissionLimits, Tally};
use super::connection::Handle;
use super::listen;
use super::stats::Stats;
use super::upstream::LookupHealth;
use crate::config::{self, Config, ProxyConfig};
use crate::core::rules::{Guests, TargetModel};
use crate::logging::RateLimited;
use crate::rpc::sasl::Credentials;
use crate::rpc::transport::Budget;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The configuration in force (replaced as a whole on SIGHUP).
pub(crate) struct Settings {
    pub(crate) config: Config,
    pub(crate) allowed_gids: Vec<u32>,
    /// SASL credentials for the proxy's lookups, if configured.
    pub(crate) lookup_sasl: Option<Arc<Credentials>>,
}

impl Settings {
    /// Loads the configuration with the command line's overrides.
    pub(crate) fn load(
        path: Option<&Path>,
        guests: Option<Guests>,
        target_model: Option<TargetModel>,
    ) -> Result<Settings> {
        let (mut config, source) = config::load(path)?;
        config.override_with(guests, target_model);
        let allowed_gids = config
            .proxy
            .allowed_groups
            .iter()
            .map(|g| listen::group_id(g).context("proxy.allowed_groups"))
            .collect::<Result<Vec<u32>>>()?;
        let lookup_sasl = lookup_credentials(&config.proxy)?.map(Arc::new);
        log::info!("proxy: configuration from {source}");
        Ok(Settings {
            config,
            allowed_gids,
            lookup_sasl,
        })
    }
}

/// `lookup_sasl_username` with the first line of `lookup_sasl_password_file`.
fn lookup_credentials(pc: &ProxyConfig) -> Result<Option<Credentials>> {
    if pc.lookup_sasl_username.is_empty() {
        return Ok(None);
    }
    let f = &pc.lookup_sasl_password_file;
    let text = std::fs::read_to_string(f).with_context(|| {
        format!(
            "proxy.lookup_sasl_password_file: {}: cannot read",
            f.display()
        )
    })?;
    let password = text.lines().next().unwrap_or_default().to_string();
    if password.is_empty() {
        anyhow::bail!(
            "proxy.lookup_sasl_password_file: {}: the first line (the password) is empty",
            f.display()
        );
    }
    Ok(Some(Credentials {
        username: pc.lookup_sasl_username.clone(),
        password,
    }))
}

/// The admission limits of a `[proxy]` table.
pub(crate) fn admission_limits(pc: &ProxyConfig) -> AdmissionLimits {
    AdmissionLimits {
        max_clients: pc.max_clients as usize,
        per_user: pc.max_clients_per_user as usize,
        reserved_for_root: pc.reserved_for_root as usize,
        max_unauthenticated: pc.max_unauthenticated as usize,
    }
}

/// State all connections share.
pub(crate) struct Shared {
    settings: RwLock<Arc<Settings>>,
    conns: Mutex<HashMap<u64, Arc<Handle>>>,
    next_id: AtomicU64,
    pub(crate) tally: Arc<Tally>,
    pub(crate) budget: Arc<Budget>,
    pub(crate) stats: Stats,
    /// Whether the proxy's own lookup connections open, per list of
    /// sockets they try (the read-write and the read-only socket's clients
    /// look up over different lists).
    lookups: Mutex<HashMap<Vec<PathBuf>, Arc<LookupHealth>>>,
    /// Rate limits for lines a client can provoke.
    pub(crate) refusal_log: RateLimited,
    pub(crate) client_log: RateLimited,
    pub(crate) upstream_log: RateLimited,
    /// Refused clients being answered now.
    pub(crate) refusing: AtomicUsize,
    started: Instant,
}

impl Shared {
    pub(crate) fn new(settings: Settings) -> Shared {
        let budget = Budget::new((settings.config.proxy.max_buffered_mib as usize) << 20);
        Shared {
            settings: RwLock::new(Arc::new(settings)),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            tally: Arc::new(Tally::default()),
            budget: Arc::new(budget),
            stats: Stats::default(),
            lookups: Mutex::new(HashMap::new()),
            refusal_log: RateLimited::new(Duration::from_secs(10)),
            client_log: RateLimited::new(Duration::from_secs(1)),
            upstream_log: RateLimited::new(Duration::from_secs(10)),
            refusing: AtomicUsize::new(0),
            started: Instant::now(),
        }
    }

    pub(crate) fn current(&self) -> Arc<Settings> {
        match self.settings.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Puts a reloaded configuration in force.
    pub(crate) fn replace(&self, s: Settings) {
        if let Ok(mut cur) = self.settings.write() {
            *cur = Arc::new(s);
        }
    }

    pub(crate) fn register(&self, h: Arc<Handle>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut m) = self.conns.lock() {
            m.insert(id, h);
        }
        id
    }

    pub(crate) fn unregister(&self, id: u64) {
        if let Ok(mut m) = self.conns.lock() {
            m.remove(&id);
        }
    }

    /// The health of lookups over `paths`, shared by every connection that
    /// looks up over them.
    pub(crate) fn lookup_health(&self, paths: &[PathBuf]) -> Arc<LookupHealth> {
        match self.lookups.lock() {
            Ok(mut m) => m.entry(paths.to_vec()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    pub(crate) fn handles(&self) -> Vec<Arc<Handle>> {
        self.conns
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The counters and gauges, for the admin socket.
    pub(crate) fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let mut v = vec![
            ("uptime_seconds", self.started.elapsed().as_secs()),
            ("connections_active", self.tally.active() as u64),
            ("connections_opening", self.tally.opening() as u64),
            ("buffered_bytes_unprivileged", self.budget.used() as u64),
        ];
        v.extend(self.stats.pairs());
        let lookup_failures = self.lookups.lock().map_or(0, |m| {
            m.values().map(|h| h.failures.load(Ordering::Relaxed)).sum()
        });
        v.push(("lookup_failures", lookup_failures));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_over_different_sockets_fail_apart() {
        let shared = Shared::new(Settings {
            config: Config::default(),
            allowed_gids: Vec::new(),
            lookup_sasl: None,
        });
        let rw = [PathBuf::from("/run/ro"), PathBuf::from("/run/rw")];
        let ro = [PathBuf::from("/run/ro")];
        let a = shared.lookup_health(&rw);
        assert!(Arc::ptr_eq(&a, &shared.lookup_health(&rw)));
        assert!(!Arc::ptr_eq(&a, &shared.lookup_health(&ro)));
        a.failures.fetch_add(2, Ordering::Relaxed);
        shared
            .lookup_health(&ro)
            .failures
            .fetch_add(1, Ordering::Relaxed);
        let n = shared
            .snapshot()
            .into_iter()
            .find(|(k, _)| *k == "lookup_failures");
        assert_eq!(n, Some(("lookup_failures", 3)));
    }
}
