//! A memory budget several frame readers draw on: the proxy's unprivileged
//! clients share one, so together they can make it hold only so much.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes that several readers draw from (the unprivileged clients' share).
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    max: usize,
}

impl Budget {
    pub(crate) fn new(max: usize) -> Budget {
        Budget {
            used: AtomicUsize::new(0),
            max,
        }
    }

    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub(super) fn take(&self, n: usize) -> bool {
        let before = self.used.fetch_add(n, Ordering::SeqCst);
        if before + n > self.max {
            self.used.fetch_sub(n, Ordering::SeqCst);
            return false;
        }
        true
    }

    pub(super) fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::SeqCst);
    }
}
