//! Counters an operator reads with `vhostfix proxy --stats`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters an operator reads with `vhostfix proxy --stats`.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) accepted: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) calls_inspected: AtomicU64,
    pub(crate) rewritten: AtomicU64,
    pub(crate) denied: AtomicU64,
    pub(crate) reported: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) too_large: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) stray_fds: AtomicU64,
    pub(crate) upstream_failures: AtomicU64,
}

impl Stats {
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters as (name, value) pairs, in a fixed order.
    pub(crate) fn pairs(&self) -> Vec<(&'static str, u64)> {
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
