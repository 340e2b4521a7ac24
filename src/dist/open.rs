//! Open files and the blocks they keep from eviction: each `open` of a file gets a handle
//! number and, when the cache has a quota, an eviction guard ([`InUse`]); every block read
//! through that handle joins the guard, and the handle's `release` drops it. So a build that
//! holds a file open keeps reading it from the cache even while other reads push the cache
//! past its quota. The mutex guards only map operations.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::store::hold::InUse;

/// Makes one eviction guard (`CacheStore::hold`).
pub type HoldMaker = Arc<dyn Fn() -> InUse + Send + Sync>;

/// The open handles of a view and their guards.
#[derive(Default)]
pub struct OpenFiles {
    make: Option<HoldMaker>,
    next: AtomicU64,
    held: Mutex<HashMap<u64, Arc<InUse>>>,
}

impl OpenFiles {
    /// Handles whose reads are kept from eviction by guards from `make`.
    pub fn holding(make: HoldMaker) -> OpenFiles {
        OpenFiles {
            make: Some(make),
            ..OpenFiles::default()
        }
    }

    /// A new handle (never 0: 0 means "no handle"), with its guard if holds are on.
    pub fn open(&self) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(make) = &self.make {
            self.lock().insert(fh, Arc::new(make()));
        }
        fh
    }

    /// The guard of handle `fh`, if it has one.
    pub fn guard(&self, fh: u64) -> Option<Arc<InUse>> {
        self.lock().get(&fh).cloned()
    }

    /// The handle was released: its blocks may be evicted again (drop this inside the
    /// runtime: releasing may start an eviction on a blocking thread).
    pub fn release(&self, fh: u64) {
        let guard = self.lock().remove(&fh);
        drop(guard);
    }

    /// The next handle number to give and the handles open now (for a hot restart).
    pub fn snapshot(&self) -> (u64, Vec<u64>) {
        let open = self.lock().keys().copied().collect();
        (self.next.load(Ordering::Relaxed), open)
    }

    /// Takes over the handles of a [`OpenFiles::snapshot`]: numbering continues after
    /// `next`, and each open handle gets a fresh guard (its blocks join it as they are read).
    pub fn restore(&self, next: u64, open: &[u64]) {
        self.next.fetch_max(next, Ordering::Relaxed);
        if let Some(make) = &self.make {
            let mut held = self.lock();
            for fh in open {
                held.insert(*fh, Arc::new(make()));
            }
        }
    }

    /// Handles holding blocks now.
    pub fn holding_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<InUse>>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}
