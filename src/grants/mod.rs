//! The grant core: every flow's admission, the one `issue`, verify (behind a cache), revoke,
//! sweep and cache coherence.
//!
//! It knows nothing of HTTP: faces hand it parsed requests and map its errors to their wire.

mod cache;
mod clients;
pub mod device;
mod error;
mod flows;
mod grace;
mod issue;
mod kept;
pub mod policy;
mod request;
mod ttl;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{hex, Audit, Event};
use crate::clock::{SharedClock, UnixTime};
use crate::domain::{
    Application, Grant, GrantFilter, Invalidation, Rule, Settings, SharedStore, StoreResult,
};
use crate::identity::Identities;
use crate::secret::Secret;
use crate::token::{self, TokenDigest};

pub use cache::{LiveGrant, Rendering, VerifyCache};
pub use clients::client_marker;
pub use device::{DeviceDecision, DevicePending, DeviceStart, DeviceStarted};
pub use error::{reject_word, GrantError, ScopeLimit};
pub use issue::CLIENT_PREFIX;
pub use policy::matching_rule;

pub use flows::certificate::Step as CertificateStep;
pub use flows::jwt::{JwtExplanation, JwtGrant};
pub use request::{
    CertificateRequest, ClientAuth, ClientCredentialsRequest, DeviceTokenRequest, GrantRequest,
    GrantType, IssuedTokens, JwtRequest, PasswordRequest, RefreshRequest, DEVICE_CODE_GRANT,
};

/// Which of a grant's two tokens a presented token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    Access,
    Refresh,
}

impl TokenUse {
    /// RFC 7662's `token_type_hint` words (also oathkeeper's `token_use`).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenUse::Access => "access_token",
            TokenUse::Refresh => "refresh_token",
        }
    }
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Revoke the whole grant when a rotated refresh token is presented again.
    pub refresh_reuse_detection: bool,
    /// Seconds a rotated refresh token still gets its answer again (0 = off).
    pub refresh_grace_secs: u64,
    /// Entries, not bytes: an entry holds 0.5–1.7 KB (docs/configuration.md). The default,
    /// 5,000, is the distinct tokens verified within one TTL of a large deployment.
    pub verify_cache_capacity: u64,
    pub verify_cache_ttl: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            refresh_reuse_detection: false,
            refresh_grace_secs: 0,
            verify_cache_capacity: 5_000,
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
    /// Client authentications that succeeded (see `clients`): a resource server introspecting
    /// every call would otherwise pay two store reads and an argon2id verification per call.
    clients: clients::ClientCache,
    /// Identities' prefixed names as introspection shows them: a name changed elsewhere shows
    /// for at most the verify cache's time-to-live.
    names: ttl::TtlCache<String, Arc<str>>,
    /// The settings, applications and rules (see `kept`): a login read all three from the
    /// store.
    policy: kept::PolicyCache,
    /// Wrong user codes per person (the device flow's approval page).
    device_guesses: Arc<device::GuessLimit>,
    /// The JWT grant's verifier and key cache; None: `authorize/jwt` cannot be served.
    jwt: Option<Arc<JwtGrant>>,
    /// The trusted issuers last read, parsed (see `flows::certificate`).
    issuers: flows::certificate::IssuerCache,
    /// The verify cache's hit and miss counters, looked up once: the macro looks its key up
    /// in the registry on every call. Taken here, so the metrics recorder is installed first
    /// (`serve` does).
    hits: metrics::Counter,
    misses: metrics::Counter,
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
        let clients = clients::ClientCache::new(10_000, opts.verify_cache_ttl);
        let names = ttl::TtlCache::new(opts.verify_cache_capacity, opts.verify_cache_ttl);
        let policy = kept::PolicyCache::new(10_000, opts.verify_cache_ttl);
        Self {
            store,
            identities,
            clock,
            opts,
            audit,
            cache,
            clients,
            names,
            policy,
            device_guesses: Arc::default(),
            jwt: None,
            issuers: Default::default(),
            hits: metrics::counter!("vedauth_verify_cache_hits_total"),
            misses: metrics::counter!("vedauth_verify_cache_misses_total"),
        }
    }

    /// The engine with the JWT grant's verifier (the composition root builds it: it needs
    /// the key fetches' trust).
    pub fn with_jwt(mut self, jwt: Arc<JwtGrant>) -> Self {
        self.jwt = Some(jwt);
        self
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
            GrantRequest::ClientCredentials(r) => flows::client_credentials::admit(self, r).await?,
            GrantRequest::Device(r) => flows::device::admit(self, r).await?,
            GrantRequest::Jwt(r) => flows::jwt::admit(self, r).await?,
            GrantRequest::Certificate(r) => flows::certificate::admit(self, r).await?,
        };
        self.issue(admission).await
    }

    /// The live grant behind an access token, or `InvalidToken`.
    pub async fn verify(&self, access_token: &str) -> Result<Arc<LiveGrant>, GrantError> {
        if !token::looks_like_token(access_token) {
            return Err(GrantError::InvalidToken);
        }
        let digest = TokenDigest::of(access_token);
        let grant = match self.cache.get(&digest) {
            Some(g) => {
                self.hits.increment(1);
                g
            }
            None => {
                self.misses.increment(1);
                let epoch = self.cache.epoch();
                let g = self
                    .store
                    .grant_by_access(&digest)
                    .await?
                    .ok_or(GrantError::InvalidToken)?;
                let g = Arc::new(LiveGrant::new(g));
                self.cache.fill(digest, g.clone(), epoch);
                g
            }
        };
        if !grant.access_valid(self.now()) {
            return Err(GrantError::InvalidToken);
        }
        Ok(grant)
    }

    /// Authenticates a client (RFC 6749 §2.3.1): an application with a secret must present it;
    /// one without (a public client) must present none. Secrets are checked on the hashing
    /// pool; an unknown client or a secret where none is expected costs the same work. Every
    /// failure is audited with its real cause and answered alike.
    pub async fn authenticate_client(
        &self,
        client_id: &str,
        secret: Option<&Secret>,
        source: Option<IpAddr>,
    ) -> Result<Arc<ClientAuth>, GrantError> {
        let presented = secret.filter(|s| !s.is_empty());
        let key_secret = presented.map(|s| s.expose());
        let pending = match self.clients.lookup(client_id, key_secret).await {
            // Shared, not copied: introspection authenticates its caller on every call.
            Ok(hit) => return Ok(hit),
            Err(pending) => pending,
        };
        let epoch = self.clients.epoch();
        let (app, stored) = tokio::try_join!(
            self.store.application(client_id),
            self.store.client_secret(client_id)
        )?;
        let hash = stored.as_ref().map(|s| s.secret_hash.as_str());
        let (ok, cause) = match (&app, hash, presented) {
            (Some(_), None, None) => (true, ""),
            (Some(_), Some(h), Some(s)) => (
                self.identities.check_secret(Some(h), s).await?,
                "wrong_secret",
            ),
            (Some(_), Some(_), None) => (false, "missing_secret"),
            (app, _, Some(s)) => {
                self.identities.check_secret(None, s).await?;
                let cause = if app.is_some() {
                    "unexpected_secret"
                } else {
                    "unknown_client"
                };
                (false, cause)
            }
            (None, _, None) => (false, "unknown_client"),
        };
        match app {
            Some(app) if ok => {
                let auth = Arc::new(ClientAuth {
                    app: Arc::new(app),
                    confidential: stored.is_some(),
                });
                self.clients.fill(pending, auth.clone(), epoch);
                Ok(auth)
            }
            _ => {
                metrics::counter!("vedauth_client_auth_failures_total").increment(1);
                self.audit.record(&Event {
                    event: "client_auth_failed",
                    cause: Some(cause),
                    client_id: Some(client_id),
                    source,
                    ..Event::default()
                })?;
                Err(GrantError::ClientAuthFailed)
            }
        }
    }

    /// The prefixed name of the identity behind a grant, for display (introspection's
    /// `username`); None if its provider does not know it or does not answer now.
    pub async fn display_name(&self, identity: &str) -> Option<Arc<str>> {
        if let Some(n) = self.names.get(identity) {
            return Some(n);
        }
        let name: Arc<str> = self
            .identities
            .resolve(identity)
            .await
            .ok()??
            .prefixed_name()
            .into();
        self.names.insert(identity.to_string(), name.clone());
        Some(name)
    }

    /// Tells this process and the others sharing the store that a client's application or
    /// secret changed: their cached authentications of it stop counting.
    pub async fn client_changed(&self, client_id: &str) {
        self.invalidate(&[client_marker(client_id)]).await;
    }

    /// Tells this process and the others sharing the store that settings, an application or a
    /// rule changed: what they keep of them is read again.
    pub async fn policy_changed(&self) {
        self.invalidate(&[kept::policy_marker()]).await;
    }

    /// The settings, as kept (see `kept`).
    pub(crate) async fn settings(&self) -> StoreResult<Arc<Settings>> {
        self.policy.settings(&self.store).await
    }

    /// An application, as kept; None if there is none.
    pub(crate) async fn application(
        &self,
        client_id: &str,
    ) -> StoreResult<Option<Arc<Application>>> {
        self.policy.application(&self.store, client_id).await
    }

    /// An application's rules, as kept.
    pub(crate) async fn rules(&self, client_id: &str) -> StoreResult<Arc<[Rule]>> {
        self.policy.rules(&self.store, client_id).await
    }

    /// The live grant behind a token of either kind (RFC 7662, RFC 7009), the hinted kind
    /// first; None if it is neither a live access token nor a live refresh token.
    pub async fn find_token(
        &self,
        token: &str,
        refresh_first: bool,
    ) -> Result<Option<(Arc<LiveGrant>, TokenUse)>, GrantError> {
        if !token::looks_like_token(token) {
            return Ok(None);
        }
        for kind in if refresh_first {
            [TokenUse::Refresh, TokenUse::Access]
        } else {
            [TokenUse::Access, TokenUse::Refresh]
        } {
            let found = match kind {
                TokenUse::Access => match self.verify(token).await {
                    Ok(g) => Some(g),
                    Err(GrantError::InvalidToken) => None,
                    Err(e) => return Err(e),
                },
                TokenUse::Refresh => self
                    .store
                    .grant_by_refresh(&TokenDigest::of(token))
                    .await?
                    .filter(|g| !g.grant_expired(self.now()))
                    .map(|g| Arc::new(LiveGrant::new(g))),
            };
            if let Some(g) = found {
                return Ok(Some((g, kind)));
            }
        }
        Ok(None)
    }

    /// Revokes the grant behind a token of either kind, if it is `client_id`'s (RFC 7009 §2.1:
    /// a token of another client is left alone). Whether a grant was revoked.
    pub async fn revoke_token(
        &self,
        token: &str,
        refresh_first: bool,
        client_id: &str,
        source: Option<IpAddr>,
    ) -> Result<bool, GrantError> {
        let Some((grant, _)) = self.find_token(token, refresh_first).await? else {
            return Ok(false);
        };
        if grant.client_id.as_str() != client_id {
            return Ok(false);
        }
        self.revoke_found(&grant, source).await?;
        Ok(true)
    }

    /// Revokes the grant behind an access token. `InvalidToken` if there is none.
    pub async fn revoke(
        &self,
        access_token: &str,
        source: Option<IpAddr>,
    ) -> Result<Grant, GrantError> {
        let grant = self.verify(access_token).await?;
        self.revoke_found(&grant, source).await?;
        Ok((*grant).clone())
    }

    /// Revokes one grant, audited first.
    async fn revoke_found(&self, grant: &Grant, source: Option<IpAddr>) -> Result<(), GrantError> {
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
        if let Err(e) = self.revoke_grant(grant).await {
            self.not_committed("grant_revoked", &grant.id, &e);
            return Err(e);
        }
        Ok(())
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

    /// Drops what the digests name from this process's caches: grants, and what a marker
    /// stands for (for announcements from other nodes).
    pub fn forget(&self, digests: &[TokenDigest]) {
        forget_in(&self.cache, &self.clients, &self.policy, digests);
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
        use tokio::sync::broadcast::error::RecvError;
        let mut rx = self.store.invalidations()?;
        // The caches only, not the engine: the task must not keep the store (whose drop ends
        // the feed, and with it the task) alive.
        let (verify, clients, policy) = (
            self.cache.clone(),
            self.clients.clone(),
            self.policy.clone(),
        );
        Some(tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(Invalidation::Token(d)) => forget_in(&verify, &clients, &policy, &[d]),
                    // Missed some: anything cached may be stale, start afresh.
                    Ok(Invalidation::All) | Err(RecvError::Lagged(_)) => {
                        verify.forget_all();
                        clients.forget_all();
                        policy.forget_all();
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        }))
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
        let devices = self.sweep_devices().await?;
        if devices > 0 {
            tracing::info!(count = devices, "expired device requests swept");
        }
        // Used JWTs past the time they could be accepted anyway.
        let mut jwts = 0;
        loop {
            let n = self.store.sweep_jwt_uses(now, batch).await?;
            jwts += n;
            if n < batch as u64 {
                break;
            }
            tokio::task::yield_now().await;
        }
        if jwts > 0 {
            tracing::debug!(count = jwts, "used JWT records swept");
        }
        Ok(total)
    }
}

/// What an announced digest reaches: a token's grant in the verify cache, a client's
/// remembered authentications when it is that client's marker, the kept settings,
/// applications and rules when it is the policy marker.
fn forget_in(
    verify: &VerifyCache,
    clients: &clients::ClientCache,
    policy: &kept::PolicyCache,
    digests: &[TokenDigest],
) {
    verify.forget(digests);
    for d in digests {
        clients.saw(d);
        policy.saw(d);
    }
}
