//! The bounded, time-limited cache under the verify cache, the client-authentication cache and
//! the names cache: `quick_cache` (sharded locks, S3-FIFO eviction) with each value's insert
//! instant beside it. moka did this before; its lookup (read buffers, housekeeping run by the
//! caller) was 4.0 % of the server's CPU in a profile of cached verify and introspection, this
//! one's 2.3 % (docs/BENCHMARKS.md, "quick_cache instead of moka").

use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Inner<K, V> = quick_cache::sync::Cache<K, (V, Instant)>;

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
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        let cache = (capacity > 0 && !ttl.is_zero()).then(|| Arc::new(Inner::new(capacity)));
        Self { cache, ttl }
    }

    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + quick_cache::Equivalent<K> + ?Sized,
    {
        let cache = self.cache.as_ref()?;
        let (value, at) = cache.get(key)?;
        if at.elapsed() < self.ttl {
            return Some(value);
        }
        // Expired. A fresh entry inserted since the read would go too: one more miss.
        cache.remove(key);
        None
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
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(brief.get(&1), None);
        assert!(!brief.contains(&1));
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
