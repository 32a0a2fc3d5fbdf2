//! The administrative records every grant reads (the settings, the applications and their
//! rules), kept in memory for the verify cache's time-to-live.
//!
//! A password grant read all three from the store besides its user: three round trips to the
//! store's threads per login, which on two busy cores cost more CPU in thread wake-ups than in
//! SQLite (docs/BENCHMARKS.md, "Policy kept in memory").
//!
//! Coherence: every change to them goes through the administration core's gate, which then
//! announces the *policy marker* on the invalidation feed (a digest no token can have). Every
//! process drops everything it keeps when it sees it: this one at once, the others within the
//! feed's poll. Only successes are kept (an unknown client is read again each time), and the
//! time-to-live bounds what a lost announcement or a change made around the administration
//! core (an edited database) can leave behind.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::ttl::TtlCache;
use crate::domain::{Application, Rule, Settings, SharedStore, StoreResult};
use crate::token::TokenDigest;

/// The feed's word for "settings, an application or a rule changed".
pub fn policy_marker() -> TokenDigest {
    let mut h = Sha256::new();
    h.update(b"vedauth policy changed\0");
    TokenDigest(h.finalize().into())
}

/// The settings and when they were read.
type KeptSettings = Option<(Arc<Settings>, Instant)>;

#[derive(Debug, Clone)]
pub struct PolicyCache {
    /// One document: a lock read per grant, no map.
    settings: Arc<RwLock<KeptSettings>>,
    apps: TtlCache<String, Arc<Application>>,
    rules: TtlCache<String, Arc<[Rule]>>,
    ttl: Duration,
    /// [`policy_marker`], made once: every digest the feed delivers is compared with it.
    marker: TokenDigest,
    /// Bumped before everything is dropped: a read of the store that a change overtook takes
    /// back what it kept (as in the verify and client caches).
    dropped: Arc<AtomicU64>,
}

impl PolicyCache {
    /// A zero time-to-live keeps nothing.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            settings: Arc::default(),
            apps: TtlCache::new(capacity, ttl),
            rules: TtlCache::new(capacity, ttl),
            ttl,
            marker: policy_marker(),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    fn epoch(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }

    /// Keeps a value read from the store since `epoch` unless everything was dropped since;
    /// `undo` takes it back if a drop raced the keeping.
    fn keep(&self, epoch: u64, put: impl FnOnce(), undo: impl FnOnce()) {
        if self.epoch() != epoch {
            return;
        }
        put();
        if self.epoch() != epoch {
            undo();
        }
    }

    pub async fn settings(&self, store: &SharedStore) -> StoreResult<Arc<Settings>> {
        let kept = match self.settings.read() {
            Ok(g) => g.clone(),
            // A writer panicked mid-update: read the store instead.
            Err(_) => None,
        };
        if let Some((s, at)) = kept {
            if at.elapsed() < self.ttl {
                return Ok(s);
            }
        }
        let epoch = self.epoch();
        let s = Arc::new(store.settings().await?);
        if !self.ttl.is_zero() {
            let set = |v: KeptSettings| {
                if let Ok(mut g) = self.settings.write() {
                    *g = v;
                }
            };
            self.keep(
                epoch,
                || set(Some((s.clone(), Instant::now()))),
                || set(None),
            );
        }
        Ok(s)
    }

    /// A value of `cache` under `key`, else what `read` finds, kept if it found one.
    async fn through<V: Clone>(
        &self,
        cache: &TtlCache<String, V>,
        key: &str,
        read: impl Future<Output = StoreResult<Option<V>>>,
    ) -> StoreResult<Option<V>> {
        if let Some(v) = cache.get(key) {
            return Ok(Some(v));
        }
        // Taken before `read` is first polled, which is when it reads the store.
        let epoch = self.epoch();
        let Some(v) = read.await? else {
            return Ok(None);
        };
        self.keep(
            epoch,
            || cache.insert(key.to_string(), v.clone()),
            || cache.remove(key),
        );
        Ok(Some(v))
    }

    /// The application, None if there is none (not kept).
    pub async fn application(
        &self,
        store: &SharedStore,
        client_id: &str,
    ) -> StoreResult<Option<Arc<Application>>> {
        self.through(&self.apps, client_id, async {
            Ok(store.application(client_id).await?.map(Arc::new))
        })
        .await
    }

    /// The rules of one application.
    pub async fn rules(&self, store: &SharedStore, client_id: &str) -> StoreResult<Arc<[Rule]>> {
        let rules = self.through(&self.rules, client_id, async {
            Ok(Some(store.rules(Some(client_id)).await?.into()))
        });
        Ok(rules.await?.unwrap_or_default())
    }

    /// Drops everything if `digest` is the policy marker.
    pub fn saw(&self, digest: &TokenDigest) {
        if *digest == self.marker {
            self.forget_all();
        }
    }

    pub fn forget_all(&self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut g) = self.settings.write() {
            *g = None;
        }
        self.apps.clear();
        self.rules.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    async fn store() -> (tempfile::TempDir, SharedStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("db"), 2).await.unwrap();
        (dir, Arc::new(s))
    }

    async fn validity(kept: &PolicyCache, store: &SharedStore) -> i64 {
        kept.settings(store)
            .await
            .unwrap()
            .default_access_token_validity
    }

    fn settings(validity: i64) -> Settings {
        Settings {
            default_access_token_validity: validity,
            ..Settings::default()
        }
    }

    #[tokio::test]
    async fn kept_until_the_marker_then_read_again() {
        let (_d, store) = store().await;
        let kept = PolicyCache::new(100, Duration::from_secs(60));
        store.put_settings(&settings(111)).await.unwrap();
        assert_eq!(validity(&kept, &store).await, 111);
        // Changed behind the cache's back: the kept copy still answers...
        store.put_settings(&settings(222)).await.unwrap();
        assert_eq!(validity(&kept, &store).await, 111);
        // ...until the marker is seen; another digest changes nothing.
        kept.saw(&TokenDigest::of("AAAAAAAAAAAAAAAAAAAAAA=="));
        assert_eq!(validity(&kept, &store).await, 111);
        kept.saw(&policy_marker());
        assert_eq!(validity(&kept, &store).await, 222);
    }

    #[tokio::test]
    async fn nothing_is_kept_without_a_time_to_live_and_a_drop_undoes_a_racing_fill() {
        let (_d, store) = store().await;
        let off = PolicyCache::new(100, Duration::ZERO);
        store.put_settings(&settings(111)).await.unwrap();
        assert_eq!(validity(&off, &store).await, 111);
        store.put_settings(&settings(222)).await.unwrap();
        assert_eq!(validity(&off, &store).await, 222);

        let kept = PolicyCache::new(100, Duration::from_secs(60));
        let epoch = kept.epoch();
        kept.forget_all();
        // A fill that read before the drop keeps nothing.
        kept.keep(
            epoch,
            || {
                kept.apps
                    .insert("a".into(), Arc::new(Application::bare("a")))
            },
            || {},
        );
        assert!(kept.apps.get("a").is_none());
        // A drop between keeping and the check takes the value back.
        let epoch = kept.epoch();
        kept.keep(
            epoch,
            || {
                kept.apps
                    .insert("a".into(), Arc::new(Application::bare("a")));
                kept.dropped.fetch_add(1, Ordering::SeqCst);
            },
            || kept.apps.remove("a"),
        );
        assert!(kept.apps.get("a").is_none());
    }

    /// The time-to-live bounds a change no announcement reached.
    #[tokio::test]
    async fn a_kept_copy_is_read_again_after_its_time_to_live() {
        let (_d, store) = store().await;
        let ttl = Duration::from_millis(50);
        let kept = PolicyCache::new(100, ttl);
        store.put_settings(&settings(111)).await.unwrap();
        store
            .create_application(&Application::bare("a"))
            .await
            .unwrap();
        assert_eq!(validity(&kept, &store).await, 111);
        assert!(kept.application(&store, "a").await.unwrap().is_some());
        store.put_settings(&settings(222)).await.unwrap();
        store.delete_application("a").await.unwrap();
        // (That the copy answers until then is the marker test's, with a time-to-live no
        // stall of the machine can outlast.)
        tokio::time::sleep(ttl + Duration::from_millis(10)).await;
        assert_eq!(validity(&kept, &store).await, 222);
        assert!(kept.application(&store, "a").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn unknown_applications_are_read_each_time() {
        let (_d, store) = store().await;
        let kept = PolicyCache::new(100, Duration::from_secs(60));
        assert!(kept.application(&store, "late").await.unwrap().is_none());
        store
            .create_application(&Application::bare("late"))
            .await
            .unwrap();
        assert!(kept.application(&store, "late").await.unwrap().is_some());
        assert!(kept.rules(&store, "late").await.unwrap().is_empty());
    }
}
