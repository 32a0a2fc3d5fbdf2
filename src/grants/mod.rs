//! The grant core: every flow's admission, the one `issue`, verify (behind a cache), revoke,
//! sweep and cache coherence.
//!
//! It knows nothing of HTTP: faces hand it parsed requests and map its errors to their wire.

mod cache;
mod error;
mod flows;
mod issue;
pub mod policy;
mod request;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{hex, Audit, Event};
use crate::clock::{SharedClock, UnixTime};
use crate::domain::{Grant, GrantFilter, SharedStore};
use crate::identity::Identities;
use crate::token::{self, TokenDigest};

pub use cache::VerifyCache;
pub use error::{reject_word, GrantError, ScopeLimit};
pub use flows::certificate::Step as CertificateStep;
pub use policy::matching_rule;
pub use request::{
    CertificateRequest, GrantRequest, GrantType, IssuedTokens, PasswordRequest, RefreshRequest,
};

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Revoke the whole grant when a rotated refresh token is presented again.
    pub refresh_reuse_detection: bool,
    pub verify_cache_capacity: u64,
    pub verify_cache_ttl: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            refresh_reuse_detection: false,
            verify_cache_capacity: 100_000,
            verify_cache_ttl: Duration::from_secs(30),
        }
    }
}

/// The grant engine: one per process, cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    store: SharedStore,
    identities: Arc<Identities>,
    clock: SharedClock,
    opts: EngineOptions,
    audit: Arc<Audit>,
    cache: VerifyCache,
    /// The trusted issuers last read, parsed (see `flows::certificate`).
    issuers: flows::certificate::IssuerCache,
}

impl Engine {
    pub fn new(
        store: SharedStore,
        identities: Arc<Identities>,
        clock: SharedClock,
        opts: EngineOptions,
        audit: Arc<Audit>,
    ) -> Self {
        let cache = VerifyCache::new(opts.verify_cache_capacity, opts.verify_cache_ttl);
        Self {
            store,
            identities,
            clock,
            opts,
            audit,
            cache,
            issuers: Default::default(),
        }
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }
    pub fn identities(&self) -> &Arc<Identities> {
        &self.identities
    }

    /// Tokens for any flow: the flow admits the request, `issue` decides and mints.
    pub async fn token(&self, req: GrantRequest) -> Result<IssuedTokens, GrantError> {
        let admission = match req {
            GrantRequest::Password(r) => flows::password::admit(self, r).await?,
            GrantRequest::Refresh(r) => flows::refresh::admit(self, r).await?,
            GrantRequest::Certificate(r) => flows::certificate::admit(self, r).await?,
        };
        self.issue(admission).await
    }

    /// The live grant behind an access token, or `InvalidToken`.
    pub async fn verify(&self, access_token: &str) -> Result<Arc<Grant>, GrantError> {
        if !token::looks_like_token(access_token) {
            return Err(GrantError::InvalidToken);
        }
        let digest = TokenDigest::of(access_token);
        let grant = match self.cache.get(&digest) {
            Some(g) => {
                metrics::counter!("vedauth_verify_cache_hits_total").increment(1);
                g
            }
            None => {
                metrics::counter!("vedauth_verify_cache_misses_total").increment(1);
                let epoch = self.cache.epoch();
                let g = self
                    .store
                    .grant_by_access(&digest)
                    .await?
                    .ok_or(GrantError::InvalidToken)?;
                let g = Arc::new(g);
                self.cache.fill(digest, g.clone(), epoch);
                g
            }
        };
        if !grant.access_valid(self.now()) {
            return Err(GrantError::InvalidToken);
        }
        Ok(grant)
    }

    /// Revokes the grant behind an access token. `InvalidToken` if there is none.
    pub async fn revoke(
        &self,
        access_token: &str,
        source: Option<IpAddr>,
    ) -> Result<Grant, GrantError> {
        let grant = self.verify(access_token).await?;
        // Audited first, like every change: if the trail refuses, the grant stays as it was.
        self.audit.record(&Event {
            event: "grant_revoked",
            identity: Some(&grant.identity),
            client_id: Some(&grant.client_id),
            source,
            grant: Some(&grant.id),
            access_digest: Some(hex(&grant.access_digest)),
            refresh_digest: grant.refresh_digest.as_ref().map(hex),
            ..Event::default()
        })?;
        if let Err(e) = self.revoke_grant(&grant).await {
            self.not_committed("grant_revoked", &grant.id, &e);
            return Err(e);
        }
        Ok((*grant).clone())
    }

    async fn revoke_grant(&self, grant: &Grant) -> Result<(), GrantError> {
        let mut gone = vec![grant.access_digest];
        if let Some(d) = self.store.delete_grant(&grant.id).await? {
            if d != grant.access_digest {
                gone.push(d);
            }
        }
        self.invalidate(&gone).await;
        tracing::info!(client_id = %grant.client_id, identity = %grant.identity, grant = %grant.id, "grant revoked");
        Ok(())
    }

    /// Revokes every grant that matches; returns how many.
    pub async fn revoke_matching(&self, filter: &GrantFilter) -> Result<usize, GrantError> {
        // The request is audited before anything is deleted (a trail that refuses stops it);
        // which grants it removed is known only afterwards, and recorded then.
        self.audit.record(&Event {
            event: "grants_revoke_requested",
            identity: filter.identity.as_deref(),
            client_id: filter.client_id.as_deref(),
            ..Event::default()
        })?;
        let gone = self.store.delete_grants(filter).await?;
        self.invalidate(&gone).await;
        let recorded = self.audit.record(&Event {
            event: "grants_revoked",
            identity: filter.identity.as_deref(),
            client_id: filter.client_id.as_deref(),
            detail: Some(serde_json::json!({
                "count": gone.len(),
                "access_digests": gone.iter().map(hex).collect::<Vec<_>>(),
            })),
            ..Event::default()
        });
        if let Err(e) = recorded {
            // The revocation stands (it is the safe direction); the lost record is not silent.
            tracing::error!(error = %e, count = gone.len(), "grants revoked, but the audit record of which ones was lost");
        }
        tracing::info!(client_id = ?filter.client_id, identity = ?filter.identity, count = gone.len(), "grants revoked");
        Ok(gone.len())
    }

    /// Drops grants from this process's verify cache (for announcements from other nodes).
    pub fn forget(&self, digests: &[TokenDigest]) {
        self.cache.forget(digests);
    }

    /// Drops the digests here and tells the other nodes sharing the store. A failed
    /// announcement is logged: the cache's time-to-live still bounds how long they see it.
    pub async fn invalidate(&self, digests: &[TokenDigest]) {
        if digests.is_empty() {
            return;
        }
        self.forget(digests);
        if let Err(e) = self.store.announce_invalidation(digests).await {
            tracing::warn!(error = %e, "could not announce revoked tokens to other nodes");
        }
    }

    /// Keeps this process's cache in step with announcements from other nodes, until the
    /// store's feed ends.
    pub fn follow_invalidations(&self) -> Option<tokio::task::JoinHandle<()>> {
        Some(self.cache.follow(self.store.invalidations()?))
    }

    /// Deletes expired grants in batches of `batch`, until none are left; returns the count.
    pub async fn sweep(&self, batch: u32) -> Result<u64, GrantError> {
        let now = self.now();
        let mut total = 0;
        loop {
            let n = self.store.sweep_expired(now, batch).await?;
            total += n;
            if n < batch as u64 {
                break;
            }
            // Let other work in between batches.
            tokio::task::yield_now().await;
        }
        if total > 0 {
            tracing::info!(count = total, "expired grants swept");
        }
        Ok(total)
    }
}
