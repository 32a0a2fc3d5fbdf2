//! Client authentications that succeeded, kept for as long as the verify cache keeps a grant.
//!
//! A resource server that introspects every call authenticates as a client every time: without
//! this, two store reads (the application and its secret) per call. An entry holds only a
//! success, keyed by the client id and the digest of the secret presented (never the secret);
//! a failure always takes the full path, argon2id and audit included.
//!
//! Coherence: a change to an application or its secret (administration core, CLI, another
//! node) is announced on the store's invalidation feed as the client's *marker*, a digest no
//! token can have; every process drops its entries when it sees one. The time-to-live bounds
//! what a lost announcement can leave behind, as for the verify cache.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::request::ClientAuth;
use super::ttl::{Fill, TtlCache};
use crate::token::TokenDigest;

/// The feed's word for "this client's application or secret changed".
pub fn client_marker(client_id: &str) -> TokenDigest {
    let mut h = Sha256::new();
    h.update(b"vedauth client changed\0");
    h.update(client_id.as_bytes());
    TokenDigest(h.finalize().into())
}

type Key = (String, Option<TokenDigest>);

/// A [`Key`] with the client id borrowed. Hashes as the key does (a tuple hashes its fields in
/// order, and a `String` as its `str`).
#[derive(Hash)]
struct Borrowed<'a>(&'a str, Option<TokenDigest>);

impl quick_cache::Equivalent<Key> for Borrowed<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

/// A client authentication the caller is to establish: see [`ClientCache::lookup`].
pub struct Pending<'a> {
    key: Key,
    fill: Fill<'a, Key, Arc<ClientAuth>>,
}

/// One thread's copy of a kept success, for its next lookups. A gateway that introspects
/// with one client's credentials over many connections finds the same entry on every call
/// from every core: each hit bumped the same reference count and read an entry the other core
/// had just written, the shared lookup's two costliest instructions in a profile of the
/// benchmark's introspection (docs/BENCHMARKS.md). The copy is the thread's own and holds no
/// more than the entry did: it lapses when the entry's time-to-live ends and whenever the
/// cache drops entries (its epoch).
struct Memo {
    /// Which cache (a process may hold several: tests start servers side by side).
    cache: u64,
    epoch: u64,
    key: Key,
    until: Instant,
    auth: Arc<ClientAuth>,
}

impl Memo {
    fn live(&self, cache: &ClientCache) -> bool {
        self.cache == cache.id && self.epoch == cache.epoch() && Instant::now() < self.until
    }
}

thread_local! {
    static MEMO: RefCell<Option<Memo>> = const { RefCell::new(None) };
}

static CACHES: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone)]
pub struct ClientCache {
    /// Tells this cache's memos from another's.
    id: u64,
    cache: TtlCache<Key, Arc<ClientAuth>>,
    /// The markers of the clients that have entries.
    markers: TtlCache<TokenDigest, ()>,
    /// Bumped before entries are dropped, as in the verify cache: a fill that read the store
    /// while a change landed takes back what it cached. Bumped again once they are gone (odd
    /// while a drop is under way: see `lookup`).
    dropped: Arc<AtomicU64>,
}

impl ClientCache {
    /// A zero time-to-live keeps nothing.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            id: CACHES.fetch_add(1, Ordering::Relaxed),
            cache: TtlCache::new(capacity, ttl),
            markers: TtlCache::new(capacity, ttl),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A look without taking the duty to fill (tests).
    #[cfg(test)]
    pub fn get(&self, client_id: &str, secret: Option<&str>) -> Option<Arc<ClientAuth>> {
        self.cache
            .get(&Borrowed(client_id, secret.map(TokenDigest::of)))
    }

    /// The kept success for this client and secret, or the duty to establish it. Concurrent
    /// authentications with the same secret wait for one check instead of each hashing the
    /// secret: a gateway opening 64 connections at once costs one argon2id hash, not 64.
    pub async fn lookup(
        &self,
        client_id: &str,
        secret: Option<&str>,
    ) -> Result<Arc<ClientAuth>, Pending<'_>> {
        let digest = secret.map(TokenDigest::of);
        if let Some(hit) = self.memo(client_id, digest) {
            return Ok(hit);
        }
        // Read before and after the lookup: a hit is copied only if no drop began or ran
        // meanwhile (an odd count is a drop under way, its entries not cleared yet).
        let epoch = self.epoch();
        // A hit, the usual case, is looked up with the borrowed id: no key to allocate.
        if let Some((hit, until)) = self.cache.get_until(&Borrowed(client_id, digest)) {
            if epoch.is_multiple_of(2) && self.epoch() == epoch {
                self.remember(epoch, client_id, digest, until, &hit);
            }
            return Ok(hit);
        }
        let key = (client_id.to_string(), digest);
        match self.cache.get_or_fill(&key).await {
            Ok(auth) => Ok(auth),
            Err(fill) => Err(Pending { key, fill }),
        }
    }

    /// This thread's copy, if it is of this client and secret and still live.
    fn memo(&self, client_id: &str, digest: Option<TokenDigest>) -> Option<Arc<ClientAuth>> {
        MEMO.with_borrow(|m| {
            m.as_ref()
                .filter(|m| m.key.0 == client_id && m.key.1 == digest && m.live(self))
                .map(|m| m.auth.clone())
        })
    }

    /// Takes a copy of a hit for this thread, unless it holds a live copy of another client's
    /// (two clients taking turns would otherwise make a copy per call).
    fn remember(
        &self,
        epoch: u64,
        client_id: &str,
        digest: Option<TokenDigest>,
        until: Instant,
        hit: &Arc<ClientAuth>,
    ) {
        MEMO.with_borrow_mut(|m| {
            if m.as_ref().is_some_and(|m| m.live(self)) {
                return;
            }
            *m = Some(Memo {
                cache: self.id,
                epoch,
                key: (client_id.to_string(), digest),
                until,
                auth: Arc::new(ClientAuth::clone(hit)),
            });
        });
    }

    /// A reading of the drop counter, taken before the store reads that may fill the cache.
    pub fn epoch(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }

    /// Keeps a success established from store reads made since `epoch`, and hands it to
    /// the callers waiting on `pending`. If entries were dropped since `epoch` nothing is kept
    /// and nothing handed over: the next waiter reads the store again. A failure is never
    /// kept: dropping `pending` lets the next waiter check for itself.
    pub fn fill(&self, pending: Pending<'_>, auth: Arc<ClientAuth>, epoch: u64) {
        let Pending { key, fill } = pending;
        self.markers.insert(client_marker(&key.0), ());
        if self.epoch() != epoch {
            return;
        }
        fill.insert(auth);
        if self.dropped.load(Ordering::SeqCst) != epoch {
            self.cache.remove(&key);
        }
    }

    /// Drops everything if `digest` is the marker of a client with entries. Client changes
    /// are rare: dropping all entries is simpler than finding one client's, and costs only
    /// one reread per client.
    pub fn saw(&self, digest: &TokenDigest) {
        if self.markers.contains(digest) {
            self.forget_all();
        }
    }

    /// Counts twice, before and after clearing, so that a lookup can tell a drop under way.
    pub fn forget_all(&self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
        self.cache.clear();
        self.markers.clear();
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Application;

    fn auth(id: &str) -> Arc<ClientAuth> {
        Arc::new(ClientAuth {
            app: Arc::new(Application::bare(id)),
            confidential: true,
        })
    }

    /// Establishes an authentication as the engine does after a successful check.
    async fn establish(c: &ClientCache, id: &str, secret: Option<&str>, epoch: u64) {
        match c.lookup(id, secret).await {
            Ok(_) => panic!("{id} was already kept"),
            Err(p) => c.fill(p, auth(id), epoch),
        }
    }

    #[tokio::test]
    async fn a_marker_drops_the_entries_and_a_token_digest_does_not() {
        let c = ClientCache::new(100, Duration::from_secs(30));
        establish(&c, "app", Some("s3cret"), c.epoch()).await;
        assert!(c.lookup("app", Some("s3cret")).await.is_ok());
        assert!(c.get("app", Some("other")).is_none());
        assert!(c.get("app", None).is_none());
        c.saw(&TokenDigest::of("some access token"));
        assert!(c.get("app", Some("s3cret")).is_some());
        c.saw(&client_marker("app"));
        assert!(c.get("app", Some("s3cret")).is_none());
    }

    #[tokio::test]
    async fn a_threads_copy_lapses_with_a_drop_and_serves_only_its_cache() {
        let c = ClientCache::new(100, Duration::from_secs(30));
        establish(&c, "app", Some("s3cret"), c.epoch()).await;
        // The first hit takes this thread's copy, the second is served from it.
        let first = c.lookup("app", Some("s3cret")).await.ok();
        assert!(c.memo("app", Some(TokenDigest::of("s3cret"))).is_some());
        let second = c.lookup("app", Some("s3cret")).await.ok();
        assert!(matches!((&first, &second), (Some(a), Some(b)) if !Arc::ptr_eq(a, b)));
        assert!(c.memo("app", Some(TokenDigest::of("other"))).is_none());
        assert!(c.memo("app", None).is_none());
        // Another cache on this thread (another server in the process) does not see it.
        let d = ClientCache::new(100, Duration::from_secs(30));
        assert!(d.lookup("app", Some("s3cret")).await.is_err());
        // A change drops the copy with the entries: the next lookup must establish again.
        c.saw(&client_marker("app"));
        assert!(c.memo("app", Some(TokenDigest::of("s3cret"))).is_none());
        assert!(c.lookup("app", Some("s3cret")).await.is_err());
    }

    #[tokio::test]
    async fn a_hit_read_while_a_drop_is_under_way_is_not_copied() {
        let c = ClientCache::new(100, Duration::from_secs(30));
        establish(&c, "app", None, c.epoch()).await;
        // The drop's first count, its entries not cleared yet: the lookup still finds the
        // entry, but a copy would outlive the drop.
        c.dropped.fetch_add(1, Ordering::SeqCst);
        assert!(c.lookup("app", None).await.is_ok());
        assert!(c.memo("app", None).is_none());
        c.dropped.fetch_add(1, Ordering::SeqCst);
        assert!(c.lookup("app", None).await.is_ok());
        assert!(c.memo("app", None).is_some());
    }

    #[tokio::test]
    async fn a_live_copy_of_one_client_is_not_replaced_by_another() {
        let c = ClientCache::new(100, Duration::from_secs(30));
        establish(&c, "a", None, c.epoch()).await;
        establish(&c, "b", None, c.epoch()).await;
        assert!(c.lookup("a", None).await.is_ok());
        assert!(c.lookup("b", None).await.is_ok());
        assert!(c.memo("a", None).is_some());
        assert!(c.memo("b", None).is_none());
    }

    #[tokio::test]
    async fn a_fill_that_raced_a_change_is_not_kept_nor_handed_over() {
        let c = ClientCache::new(100, Duration::from_secs(30));
        let before = c.epoch();
        let Err(p) = c.lookup("app", None).await else {
            panic!("nothing was kept");
        };
        c.forget_all();
        // A caller waiting on the fill reads the store itself: it gets the duty, not a value.
        let (waiter, _) = tokio::join!(c.lookup("app", None), async {
            c.fill(p, auth("app"), before)
        });
        assert!(waiter.is_err());
        assert!(c.get("app", None).is_none());
    }

    #[tokio::test]
    async fn a_kept_success_is_found_by_the_borrowed_id() {
        let c = ClientCache::new(100, Duration::from_secs(30));
        establish(&c, "app", Some("s3cret"), c.epoch()).await;
        let digest = Some(TokenDigest::of("s3cret"));
        assert!(c.cache.get(&Borrowed("app", digest)).is_some());
        assert!(c.cache.get(&Borrowed("app", None)).is_none());
        assert!(c.cache.get(&Borrowed("ap", digest)).is_none());
    }

    #[tokio::test]
    async fn a_zero_ttl_keeps_nothing() {
        let c = ClientCache::new(100, Duration::ZERO);
        establish(&c, "app", None, c.epoch()).await;
        assert!(c.get("app", None).is_none());
    }
}
