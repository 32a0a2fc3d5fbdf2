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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::request::ClientAuth;
use super::ttl::TtlCache;
use crate::token::TokenDigest;

/// The feed's word for "this client's application or secret changed".
pub fn client_marker(client_id: &str) -> TokenDigest {
    let mut h = Sha256::new();
    h.update(b"vedauth client changed\0");
    h.update(client_id.as_bytes());
    TokenDigest(h.finalize().into())
}

type Key = (String, Option<TokenDigest>);

#[derive(Debug, Clone)]
pub struct ClientCache {
    cache: TtlCache<Key, Arc<ClientAuth>>,
    /// The markers of the clients that have entries.
    markers: TtlCache<TokenDigest, ()>,
    /// Bumped before entries are dropped, as in the verify cache: a fill that read the store
    /// while a change landed takes back what it cached.
    dropped: Arc<AtomicU64>,
}

impl ClientCache {
    /// A zero time-to-live keeps nothing.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            cache: TtlCache::new(capacity, ttl),
            markers: TtlCache::new(capacity, ttl),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    fn key(client_id: &str, secret: Option<&str>) -> Key {
        (client_id.to_string(), secret.map(TokenDigest::of))
    }

    pub fn get(&self, client_id: &str, secret: Option<&str>) -> Option<Arc<ClientAuth>> {
        self.cache.get(&Self::key(client_id, secret))
    }

    /// A reading of the drop counter, taken before the store reads that may fill the cache.
    pub fn epoch(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }

    /// Keeps a success established from store reads made since `epoch`.
    pub fn fill(&self, client_id: &str, secret: Option<&str>, auth: Arc<ClientAuth>, epoch: u64) {
        let key = Self::key(client_id, secret);
        self.markers.insert(client_marker(client_id), ());
        self.cache.insert(key.clone(), auth);
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

    pub fn forget_all(&self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
        self.cache.clear();
        self.markers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Application, CanonicalScope};

    fn auth(id: &str) -> Arc<ClientAuth> {
        Arc::new(ClientAuth {
            app: Application {
                client_id: id.into(),
                name: String::new(),
                vendor: String::new(),
                description: String::new(),
                url: String::new(),
                scope: String::new(),
                max_scope: CanonicalScope::default(),
                access_validity: None,
                grant_validity: None,
                renewable: None,
                unused_expiration: None,
                created_at: 0,
            },
            confidential: true,
        })
    }

    #[test]
    fn a_marker_drops_the_entries_and_a_token_digest_does_not() {
        let c = ClientCache::new(100, Duration::from_secs(30));
        c.fill("app", Some("s3cret"), auth("app"), c.epoch());
        assert!(c.get("app", Some("s3cret")).is_some());
        assert!(c.get("app", Some("other")).is_none());
        assert!(c.get("app", None).is_none());
        c.saw(&TokenDigest::of("some access token"));
        assert!(c.get("app", Some("s3cret")).is_some());
        c.saw(&client_marker("app"));
        assert!(c.get("app", Some("s3cret")).is_none());
    }

    #[test]
    fn a_fill_that_raced_a_change_is_not_kept() {
        let c = ClientCache::new(100, Duration::from_secs(30));
        let before = c.epoch();
        c.forget_all();
        c.fill("app", None, auth("app"), before);
        assert!(c.get("app", None).is_none());
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let c = ClientCache::new(100, Duration::ZERO);
        c.fill("app", None, auth("app"), c.epoch());
        assert!(c.get("app", None).is_none());
    }
}
