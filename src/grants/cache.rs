//! The verify cache: access-token digest to grant, kept coherent with revocations and
//! rotations made here (at once) and on other nodes (through the store's invalidation feed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use moka::sync::Cache;

use crate::domain::Grant;
use crate::token::TokenDigest;

/// A grant as verify hands it out, with room for one rendering of it that a face keeps for
/// its hot path (the VEDauth face's verify body). The rendering is a function of the grant
/// alone, so it is made once per cached grant and goes with it.
#[derive(Debug)]
pub struct LiveGrant {
    grant: Grant,
    rendered: OnceLock<Bytes>,
}

impl LiveGrant {
    pub fn new(grant: Grant) -> Self {
        Self {
            grant,
            rendered: OnceLock::new(),
        }
    }

    /// The rendering, made by `render` the first time.
    pub fn rendered(&self, render: impl FnOnce(&Grant) -> Bytes) -> Bytes {
        self.rendered.get_or_init(|| render(&self.grant)).clone()
    }
}

impl std::ops::Deref for LiveGrant {
    type Target = Grant;
    fn deref(&self) -> &Grant {
        &self.grant
    }
}

/// Saves a store read per verify. Revocation and refresh in this process remove entries at
/// once; the time-to-live bounds what another process's revocation can leave behind.
#[derive(Debug, Clone)]
pub struct VerifyCache {
    cache: Cache<TokenDigest, Arc<LiveGrant>>,
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

    pub fn get(&self, digest: &TokenDigest) -> Option<Arc<LiveGrant>> {
        self.cache.get(digest)
    }

    pub fn epoch(&self) -> Epoch {
        Epoch(self.dropped.load(Ordering::SeqCst))
    }

    /// Caches a grant read from the store since `epoch`. A revocation that landed after the
    /// read began could be undone by the insert; one that lands after the check below removes
    /// the entry itself.
    pub fn fill(&self, digest: TokenDigest, grant: Arc<LiveGrant>, epoch: Epoch) {
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

    /// Drops everything (announcements were missed).
    pub fn forget_all(&self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate_all();
    }
}
