//! Replay protection: a JWT grant token is used once within its lifetime.
//!
//! The verifier gives every accepted token a [`ReplayKey`] (SHA-256 over the issuer and the
//! `jti`, or over the signature when the token has no `jti`) and the time it stops being
//! acceptable. The grant flow records the key with a [`ReplayGuard`] just before it issues, and
//! refuses when the key is already there. The server records it in the store
//! (`JwtStore::record_jwt_use`, table `jwt_uses`), so that every node sharing the store sees it;
//! [`MemoryReplayGuard`] does the same within one process, for embedding and tests.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::clock::UnixTime;

/// A used token's fingerprint: fixed size, and no token text kept.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplayKey(pub [u8; 32]);

impl ReplayKey {
    /// From the issuer and the `jti`, or, for a token without `jti`, its signature part (the
    /// same bytes cannot then be presented twice).
    pub fn new(issuer: &str, jti: Option<&str>, signature_b64: &str) -> Self {
        let mut h = Sha256::new();
        h.update(issuer.as_bytes());
        h.update([0]);
        match jti {
            Some(j) => {
                h.update(b"jti:");
                h.update(j.as_bytes());
            }
            None => {
                h.update(b"sig:");
                h.update(signature_b64.as_bytes());
            }
        }
        Self(h.finalize().into())
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplayKey({})", &self.to_hex()[..16])
    }
}

/// Why a token was refused by the replay guard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("token already used (its jti is recorded until {until})")]
    Replayed { until: UnixTime },
    #[error("replay guard full ({0} tokens recorded and still live); refusing rather than forgetting one")]
    Full(usize),
    #[error("replay store unavailable: {0}")]
    Unavailable(String),
}

impl ReplayError {
    /// The audit trail's word.
    pub fn audit_word(&self) -> &'static str {
        match self {
            ReplayError::Replayed { .. } => "replayed",
            ReplayError::Full(_) => "replay_guard_full",
            ReplayError::Unavailable(_) => "replay_store_unavailable",
        }
    }

    /// How the grant answers it: a replay is an invalid token; the others are ours (503).
    pub fn class(&self) -> super::JwtErrorClass {
        match self {
            ReplayError::Replayed { .. } => super::JwtErrorClass::NotValid,
            ReplayError::Full(_) | ReplayError::Unavailable(_) => super::JwtErrorClass::Unavailable,
        }
    }
}

/// Records used tokens. `check_and_record` must be atomic: of two concurrent calls with one
/// key, exactly one succeeds.
///
/// The shared, store-backed implementation (for clusters) is one table, `jwt_replay(key BLOB
/// PRIMARY KEY, until INTEGER)`, and one statement: insert the key, or on conflict overwrite a
/// row whose `until` is past (`ON CONFLICT (key) DO UPDATE SET until = excluded.until WHERE
/// jwt_replay.until <= now`), succeeding when a row was written; the sweep deletes rows past
/// their `until`.
#[async_trait]
pub trait ReplayGuard: Send + Sync + std::fmt::Debug {
    /// Records `key` as used until `until`. `Err(Replayed)` if it is recorded and `now` has not
    /// reached that record's `until`.
    async fn check_and_record(
        &self,
        key: ReplayKey,
        until: UnixTime,
        now: UnixTime,
    ) -> Result<(), ReplayError>;
}

/// One node's replay guard: a bounded map of live keys. Entries leave when their time passes;
/// when it is full of live entries it refuses new tokens (503) instead of evicting one, which
/// would let that token be replayed.
#[derive(Debug)]
pub struct MemoryReplayGuard {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    until: HashMap<ReplayKey, UnixTime>,
    /// Soonest expiry first.
    queue: BinaryHeap<Reverse<(UnixTime, ReplayKey)>>,
}

impl MemoryReplayGuard {
    /// Default capacity: 100,000 live tokens (~10 MB).
    pub const DEFAULT_CAPACITY: usize = 100_000;

    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .until
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The synchronous form of [`ReplayGuard::check_and_record`].
    pub fn record(
        &self,
        key: ReplayKey,
        until: UnixTime,
        now: UnixTime,
    ) -> Result<(), ReplayError> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *g;
        while let Some(Reverse((t, k))) = inner.queue.peek().copied() {
            if t > now {
                break;
            }
            inner.queue.pop();
            if inner.until.get(&k) == Some(&t) {
                inner.until.remove(&k);
            }
        }
        if let Some(&u) = inner.until.get(&key) {
            if u > now {
                return Err(ReplayError::Replayed { until: u });
            }
        }
        if until <= now {
            // Already past its time: nothing to remember (the verifier refuses such tokens).
            return Ok(());
        }
        if inner.until.len() >= self.capacity {
            return Err(ReplayError::Full(self.capacity));
        }
        inner.until.insert(key, until);
        inner.queue.push(Reverse((until, key)));
        Ok(())
    }
}

impl Default for MemoryReplayGuard {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

#[async_trait]
impl ReplayGuard for MemoryReplayGuard {
    async fn check_and_record(
        &self,
        key: ReplayKey,
        until: UnixTime,
        now: UnixTime,
    ) -> Result<(), ReplayError> {
        self.record(key, until, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(jti: &str) -> ReplayKey {
        ReplayKey::new("https://issuer", Some(jti), "sig")
    }

    #[test]
    fn keys_separate_issuers_and_jti_from_signatures() {
        assert_ne!(k("a"), k("b"));
        assert_ne!(
            ReplayKey::new("https://one", Some("a"), "s"),
            ReplayKey::new("https://two", Some("a"), "s")
        );
        assert_eq!(
            ReplayKey::new("i", Some("a"), "s1"),
            ReplayKey::new("i", Some("a"), "s2")
        );
        assert_ne!(
            ReplayKey::new("i", None, "a"),
            ReplayKey::new("i", Some("a"), "a")
        );
        assert_eq!(k("a").to_hex().len(), 64);
    }

    #[test]
    fn a_key_is_refused_until_its_time_passes() {
        let g = MemoryReplayGuard::new(10);
        assert_eq!(g.record(k("a"), 200, 100), Ok(()));
        assert_eq!(
            g.record(k("a"), 200, 150),
            Err(ReplayError::Replayed { until: 200 })
        );
        assert_eq!(g.record(k("b"), 300, 150), Ok(()));
        // At 200 "a" is forgotten, "b" is not.
        assert_eq!(g.record(k("a"), 400, 200), Ok(()));
        assert!(g.record(k("b"), 400, 200).is_err());
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn full_of_live_entries_it_refuses_and_recovers_when_they_pass() {
        let g = MemoryReplayGuard::new(2);
        g.record(k("a"), 200, 100).unwrap();
        g.record(k("b"), 300, 100).unwrap();
        assert_eq!(g.record(k("c"), 300, 100), Err(ReplayError::Full(2)));
        // Nothing was evicted: "a" is still refused.
        assert!(g.record(k("a"), 200, 150).is_err());
        assert_eq!(g.record(k("c"), 300, 200), Ok(()));
        assert_eq!(ReplayError::Full(2).audit_word(), "replay_guard_full");
        assert_eq!(
            ReplayError::Full(2).class(),
            super::super::JwtErrorClass::Unavailable
        );
    }

    #[tokio::test]
    async fn the_trait_records_once_under_concurrency() {
        use std::sync::Arc;
        let g = Arc::new(MemoryReplayGuard::new(100));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let g = g.clone();
            tasks.push(tokio::spawn(async move {
                g.check_and_record(k("same"), 500, 100).await.is_ok()
            }));
        }
        let mut ok = 0;
        for t in tasks {
            if t.await.unwrap() {
                ok += 1;
            }
        }
        assert_eq!(ok, 1);
    }
}
