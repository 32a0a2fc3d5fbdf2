//! The verify cache: access-token digest to grant, kept coherent with revocations and
//! rotations made here (at once) and on other nodes (through the store's invalidation feed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use crate::domain::{Grant, Invalidation};
use crate::token::TokenDigest;

/// Saves a store read per verify. Revocation and refresh in this process remove entries at
/// once; the time-to-live bounds what another process's revocation can leave behind.
#[derive(Debug, Clone)]
pub struct VerifyCache {
    cache: Cache<TokenDigest, Arc<Grant>>,
    /// Bumped before entries are dropped. A verify that read the store while it moved may hold
    /// a grant from before the drop, and takes back what it cached.
    dropped: Arc<AtomicU64>,
}

/// A reading of the drop counter, taken before a store read that may fill the cache.
#[derive(Debug, Clone, Copy)]
pub struct Epoch(u64);

impl VerifyCache {
    /// A zero time-to-live turns the cache off: nothing is kept.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        let capacity = if ttl.is_zero() { 0 } else { capacity };
        Self {
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl.max(Duration::from_millis(1)))
                .build(),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn get(&self, digest: &TokenDigest) -> Option<Arc<Grant>> {
        self.cache.get(digest)
    }

    pub fn epoch(&self) -> Epoch {
        Epoch(self.dropped.load(Ordering::SeqCst))
    }

    /// Caches a grant read from the store since `epoch`. A revocation that landed after the
    /// read began could be undone by the insert; one that lands after the check below removes
    /// the entry itself.
    pub fn fill(&self, digest: TokenDigest, grant: Arc<Grant>, epoch: Epoch) {
        self.cache.insert(digest, grant);
        if self.dropped.load(Ordering::SeqCst) != epoch.0 {
            self.cache.invalidate(&digest);
        }
    }

    /// Drops these digests.
    pub fn forget(&self, digests: &[TokenDigest]) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
        for d in digests {
            self.cache.invalidate(d);
        }
    }

    /// Keeps the cache in step with a store's invalidation feed, until the feed ends.
    pub fn follow(
        &self,
        mut rx: tokio::sync::broadcast::Receiver<Invalidation>,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let msg = rx.recv().await;
                this.dropped.fetch_add(1, Ordering::SeqCst);
                match msg {
                    Ok(Invalidation::Token(d)) => this.cache.invalidate(&d),
                    // Missed some: anything cached may be stale, start afresh.
                    Ok(Invalidation::All)
                    | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        this.cache.invalidate_all()
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    }
}
