//! The bounded, time-limited cache under the verify cache, the client-authentication cache and
//! the names cache: `quick_cache` (sharded locks, S3-FIFO eviction) with each value's insert
//! instant beside it. moka did this before; its lookup (read buffers, housekeeping run by the
//! caller) was 4.0 % of the server's CPU in a profile of cached verify and introspection, this
//! one's 2.3 % (docs/BENCHMARKS.md, "quick_cache instead of moka").

use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// foldhash, seeded per process: the crate's default without its `ahash` feature is SipHash,
/// which cost a cached verify more than the rest of the lookup (docs/BENCHMARKS.md, "The hot
/// lane").
type Hasher = foldhash::fast::RandomState;
type Inner<K, V> = quick_cache::sync::Cache<
    K,
    (V, Instant),
    quick_cache::UnitWeighter,
    Hasher,
    quick_cache::sync::DefaultLifecycle<K, (V, Instant)>,
>;
type Guard<'a, K, V> = quick_cache::sync::PlaceholderGuard<
    'a,
    K,
    (V, Instant),
    quick_cache::UnitWeighter,
    Hasher,
    quick_cache::sync::DefaultLifecycle<K, (V, Instant)>,
>;

/// The right to compute a value that [`TtlCache::get_or_fill`] did not find. While it is held,
/// the others asking for the same key wait; [`Fill::insert`] hands them the value, and
/// dropping it without inserting lets the next of them compute it.
pub struct Fill<'a, K, V>(Option<Guard<'a, K, V>>);

impl<K: Eq + Hash + Clone, V: Clone> Fill<'_, K, V> {
    pub fn insert(self, value: V) {
        if let Some(g) = self.0 {
            // Err only if the entry was dropped meanwhile (cleared): nothing to keep then.
            let _ = g.insert((value, Instant::now()));
        }
    }
}

pub struct TtlCache<K, V> {
    /// None when nothing is to be kept (no capacity or no time to live).
    cache: Option<Arc<Inner<K, V>>>,
    ttl: Duration,
}

impl<K, V> Clone for TtlCache<K, V> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            ttl: self.ttl,
        }
    }
}

impl<K, V> std::fmt::Debug for TtlCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtlCache")
            .field("enabled", &self.cache.is_some())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// Up to about `capacity` entries, each for `ttl`; zero for either keeps nothing.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        let items = usize::try_from(capacity).unwrap_or(usize::MAX);
        let cache = (capacity > 0 && !ttl.is_zero()).then(|| {
            Arc::new(Inner::with(
                items,
                capacity,
                quick_cache::UnitWeighter,
                Hasher::default(),
                Default::default(),
            ))
        });
        Self { cache, ttl }
    }

    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + quick_cache::Equivalent<K> + ?Sized,
    {
        self.get_until(key).map(|(value, _)| value)
    }

    /// The live value and the instant it expires.
    pub fn get_until<Q>(&self, key: &Q) -> Option<(V, Instant)>
    where
        Q: Hash + quick_cache::Equivalent<K> + ?Sized,
    {
        let cache = self.cache.as_ref()?;
        let (value, at) = cache.get(key)?;
        if at.elapsed() < self.ttl {
            return Some((value, at + self.ttl));
        }
        // Expired. A fresh entry inserted since the read would go too: one more miss.
        cache.remove(key);
        None
    }

    /// The live value, or the right to compute it: concurrent misses on one key make one
    /// computation, not one each (client authentication is an argon2id hash per miss).
    pub async fn get_or_fill<Q>(&self, key: &Q) -> Result<V, Fill<'_, K, V>>
    where
        Q: Hash + quick_cache::Equivalent<K> + ToOwned<Owned = K> + ?Sized,
    {
        let Some(cache) = &self.cache else {
            return Err(Fill(None));
        };
        // An expired value is dropped and the key looked up again; a second expired value
        // (a racing insert cannot be that old) is not waited out, the caller computes.
        for _ in 0..2 {
            match cache.get_value_or_guard_async(key).await {
                Ok((value, at)) if at.elapsed() < self.ttl => return Ok(value),
                Ok(_) => cache.remove(key),
                Err(guard) => return Err(Fill(Some(guard))),
            };
        }
        Err(Fill(None))
    }

    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        Q: Hash + quick_cache::Equivalent<K> + ?Sized,
    {
        self.get(key).is_some()
    }

    pub fn insert(&self, key: K, value: V) {
        if let Some(cache) = &self.cache {
            cache.insert(key, (value, Instant::now()));
        }
    }

    pub fn remove<Q>(&self, key: &Q)
    where
        Q: Hash + quick_cache::Equivalent<K> + ?Sized,
    {
        if let Some(cache) = &self.cache {
            cache.remove(key);
        }
    }

    /// Removes the key; whether a live entry was there.
    pub fn take<Q>(&self, key: &Q) -> bool
    where
        Q: Hash + quick_cache::Equivalent<K> + ?Sized,
    {
        let Some(cache) = &self.cache else {
            return false;
        };
        cache
            .remove(key)
            .is_some_and(|(_, (_, at))| at.elapsed() < self.ttl)
    }

    pub fn clear(&self) {
        if let Some(cache) = &self.cache {
            cache.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_live_for_the_time_to_live_and_no_longer() {
        let lasting = TtlCache::new(10, Duration::from_secs(3600));
        lasting.insert(1u32, "one");
        assert_eq!(lasting.get(&1), Some("one"));
        let brief = TtlCache::new(10, Duration::from_millis(1));
        brief.insert(1u32, "one");
        brief.insert(2u32, "two");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(brief.get(&1), None);
        assert!(!brief.contains(&1));
        // Taking an expired entry finds nothing live.
        assert!(!brief.take(&2));
    }

    #[test]
    fn take_removes_and_says_whether_a_live_entry_was_there() {
        let c = TtlCache::new(10, Duration::from_secs(3600));
        c.insert(1u32, ());
        assert!(c.take(&1));
        assert!(!c.take(&1) && !c.contains(&1));
        assert!(!c.take(&2));
        assert!(!TtlCache::<u32, ()>::new(0, Duration::from_secs(1)).take(&1));
    }

    #[tokio::test]
    async fn concurrent_misses_on_one_key_compute_once() {
        let c = TtlCache::new(10, Duration::from_secs(30));
        let Err(first) = c.get_or_fill(&1u32).await else {
            panic!("an empty cache has no value");
        };
        // A second caller waits for the first one's value instead of computing its own.
        let (waiter, _) = tokio::join!(c.get_or_fill(&1u32), async { first.insert("one") });
        assert_eq!(waiter.ok(), Some("one"));
        // A fill dropped without a value passes the computation on to the next caller.
        let Err(second) = c.get_or_fill(&2u32).await else {
            panic!("nothing was kept for 2");
        };
        let (next, _) = tokio::join!(c.get_or_fill(&2u32), async { drop(second) });
        assert!(next.is_err());
    }

    #[tokio::test]
    async fn a_disabled_cache_always_asks_for_a_computation() {
        let c = TtlCache::new(0, Duration::from_secs(30));
        let Err(fill) = c.get_or_fill(&1u32).await else {
            panic!("a disabled cache holds nothing");
        };
        fill.insert(1u32);
        assert!(c.get_or_fill(&1u32).await.is_err());
    }

    #[test]
    fn zero_capacity_or_time_to_live_keeps_nothing() {
        for c in [
            TtlCache::new(0, Duration::from_secs(30)),
            TtlCache::new(10, Duration::ZERO),
        ] {
            c.insert(1u32, 1u32);
            assert_eq!(c.get(&1), None);
        }
    }

    #[test]
    fn remove_and_clear_drop_entries_and_the_bound_holds() {
        let c = TtlCache::new(100, Duration::from_secs(30));
        for i in 0..1000u32 {
            c.insert(i, i);
        }
        let kept = (0..1000u32).filter(|i| c.contains(i)).count();
        assert!(kept > 0 && kept <= 200, "kept {kept} of a 100-entry cache");
        let last = (0..1000u32).rev().find(|i| c.contains(i));
        if let Some(k) = last {
            c.remove(&k);
            assert!(!c.contains(&k));
        }
        c.clear();
        assert_eq!((0..1000u32).filter(|i| c.contains(i)).count(), 0);
    }
}
