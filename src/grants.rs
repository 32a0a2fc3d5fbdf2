//! The domain core: issue, refresh, verify and revoke grants.
//!
//! It knows nothing of HTTP: callers hand it parsed requests and map its errors to the wire.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use std::net::IpAddr;

use crate::audit::{hex, Audit, Event};
use crate::clock::{SharedClock, UnixTime};
use crate::identity::{AuthOutcome, Identities, IdpError, Principal, RejectCause};
use crate::scope::{Scope, ScopeError};
use crate::secret::Secret;
use crate::store::{
    Application, Grant, GrantFilter, Invalidation, Lifetime, Rotation, Rule, SharedStore,
    StoreError,
};
use crate::token::{self, TokenDigest};

/// A password-grant request after body parsing; `None` = missing (absent, null or "").
#[derive(Debug, Default, Clone)]
pub struct PasswordRequest {
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub scope: Option<String>,
    pub state: Option<String>,
    /// The client's address, for the audit trail.
    pub source: Option<IpAddr>,
}

#[derive(Debug, Default, Clone)]
pub struct RefreshRequest {
    pub client_id: Option<String>,
    pub refresh_token: Option<Secret>,
    pub source: Option<IpAddr>,
}

/// What a successful authorize or refresh hands back.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub expires: UnixTime,
    pub expires_in: i64,
    pub scope: String,
    pub identity: String,
    pub refresh_until: Option<UnixTime>,
    pub state: Option<String>,
    pub grant_id: String,
    pub client_id: String,
}

/// The failures of decisions.md §4 and §6, in the domain's words.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("client_id missing")]
    MissingClientId,
    #[error("username or password missing")]
    MissingCredentials,
    #[error("refresh_token missing")]
    MissingRefreshToken,
    #[error("password authentication disabled")]
    PasswordAuthDisabled,
    #[error("refresh endpoint disabled")]
    RefreshDisabled,
    #[error("invalid scope {0:?}")]
    InvalidScope(String),
    #[error("application {0:?} not registered")]
    UnknownClient(String),
    #[error("login rejected: {0:?}")]
    BadCredentials(RejectCause),
    #[error("no rule admits the identity")]
    NotAdmitted,
    #[error("scope not authorized: exceeds the {0:?}'s maximum")]
    ScopeNotAuthorized(ScopeLimit),
    #[error("client_id does not match the grant")]
    ClientMismatch,
    #[error("refresh token invalid, grant revoked or expired")]
    InvalidGrant,
    #[error("token invalid")]
    InvalidToken,
    #[error("overloaded")]
    Overloaded,
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// What kept a requested scope from being granted: the application's scope or the maximum of the
/// rule that admitted the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeLimit {
    Application,
    Rule,
}

impl ScopeLimit {
    /// The audit trail's word for it (and the access log's).
    pub fn cause(self) -> &'static str {
        match self {
            ScopeLimit::Application => "scope_exceeds_application",
            ScopeLimit::Rule => "scope_exceeds_rule",
        }
    }
}

/// A login refusal's cause in the audit trail's words.
pub fn reject_word(cause: RejectCause) -> &'static str {
    match cause {
        RejectCause::UnknownUser => "unknown_user",
        RejectCause::WrongPassword => "wrong_password",
        RejectCause::Disabled => "disabled",
        RejectCause::Locked => "locked",
        RejectCause::EmptyPassword => "empty_password",
    }
}

impl GrantError {
    /// For refusals: the cause in the audit trail's words, for the access log. None for errors
    /// that are not a refusal of the caller (overload, an unavailable store).
    pub fn cause(&self) -> Option<&'static str> {
        use GrantError::*;
        Some(match self {
            MissingClientId | MissingCredentials | MissingRefreshToken => "malformed",
            PasswordAuthDisabled | RefreshDisabled => "flow_disabled",
            InvalidScope(_) => "invalid_scope",
            UnknownClient(_) => "unknown_client",
            BadCredentials(c) => reject_word(*c),
            NotAdmitted => "not_admitted",
            ScopeNotAuthorized(limit) => limit.cause(),
            ClientMismatch => "client_mismatch",
            InvalidGrant => "invalid_grant",
            InvalidToken => "invalid_token",
            Overloaded | Unavailable(_) => return None,
        })
    }
}

impl From<crate::audit::AuditError> for GrantError {
    fn from(e: crate::audit::AuditError) -> Self {
        GrantError::Unavailable(e.to_string())
    }
}

impl From<StoreError> for GrantError {
    fn from(e: StoreError) -> Self {
        GrantError::Unavailable(e.to_string())
    }
}

impl From<IdpError> for GrantError {
    fn from(e: IdpError) -> Self {
        match e {
            IdpError::Overloaded => GrantError::Overloaded,
            IdpError::Unavailable(m) => GrantError::Unavailable(m),
        }
    }
}

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
    /// Access-token digest to grant; saves a store read per verify. Revocation and refresh in
    /// this process remove entries at once; the time-to-live bounds what another process's
    /// revocation can leave behind.
    cache: Cache<TokenDigest, Arc<Grant>>,
    /// Bumped before entries are dropped from the cache. A verify that read the store while it
    /// moved may hold a grant from before the drop, and takes back what it cached.
    dropped: Arc<AtomicU64>,
}

/// The effective lifetimes for a new grant: rule, else application, else global default.
fn lifetimes(
    rule: &Rule,
    app: &Application,
    defaults: &crate::store::Settings,
) -> (i64, Lifetime, bool) {
    let access = rule
        .access_validity
        .or(app.access_validity)
        .filter(|v| *v > 0)
        .unwrap_or(defaults.default_access_token_validity);
    let grant = rule
        .grant_validity
        .or(app.grant_validity)
        .unwrap_or(Lifetime::from_db(defaults.default_grant_validity));
    let renewable = rule
        .renewable
        .or(app.renewable)
        .unwrap_or(defaults.default_grant_refreshable);
    (access, grant, renewable)
}

/// Case-insensitive for names, exact enough for universals (which are lower-case hex).
fn trustee_matches(trustee: &str, who: &Principal) -> u8 {
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    if eq(trustee, &who.prefixed_universal()) || eq(trustee, &who.prefixed_name()) {
        3
    } else if who.groups.iter().any(|g| eq(trustee, g)) {
        2
    } else if eq(trustee, "everyone") {
        1
    } else {
        0
    }
}

/// The rule that admits `who`: the most specific one (the identity itself, then a group, then
/// `everyone`).
pub fn matching_rule<'a>(rules: &'a [Rule], who: &Principal) -> Option<&'a Rule> {
    rules
        .iter()
        .map(|r| (trustee_matches(&r.trustee, who), r))
        .filter(|(score, _)| *score > 0)
        .max_by_key(|(score, _)| *score)
        .map(|(_, r)| r)
}

impl Engine {
    pub fn new(
        store: SharedStore,
        identities: Arc<Identities>,
        clock: SharedClock,
        opts: EngineOptions,
        audit: Arc<Audit>,
    ) -> Self {
        // A zero time-to-live turns the cache off: nothing is kept.
        let capacity = if opts.verify_cache_ttl.is_zero() {
            0
        } else {
            opts.verify_cache_capacity
        };
        let cache = Cache::builder()
            .max_capacity(capacity)
            .time_to_live(opts.verify_cache_ttl.max(Duration::from_millis(1)))
            .build();
        Self {
            store,
            identities,
            clock,
            opts,
            audit,
            cache,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn audit(&self) -> &Arc<Audit> {
        &self.audit
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }
    pub fn store(&self) -> &SharedStore {
        &self.store
    }
    pub fn identities(&self) -> &Arc<Identities> {
        &self.identities
    }

    /// `POST /vedauth/authorize/oauth`, checks in the order of decisions.md §4.
    pub async fn authorize_password(
        &self,
        req: PasswordRequest,
    ) -> Result<IssuedTokens, GrantError> {
        let client_id = req.client_id.ok_or(GrantError::MissingClientId)?;
        let (Some(username), Some(password)) = (req.username, req.password) else {
            return Err(GrantError::MissingCredentials);
        };
        // Past the hashing queue: 503 at once, without the reads below.
        if self.identities.must_shed() {
            return Err(GrantError::Overloaded);
        }
        let settings = self.store.settings().await?;
        if !settings.authorize_by_password {
            return Err(GrantError::PasswordAuthDisabled);
        }
        let requested = Scope::parse(req.scope.as_deref().unwrap_or(""))
            .map_err(|e: ScopeError| GrantError::InvalidScope(e.item().to_string()))?;
        let app = self
            .store
            .application(&client_id)
            .await?
            .ok_or_else(|| GrantError::UnknownClient(client_id.clone()))?;
        // Rate limits apply before this (at the edge); lockout inside `authenticate`, before
        // any password is checked.
        let attempt = self.identities.authenticate(&username, &password).await?;
        if let Some(until) = attempt.locked_until {
            metrics::counter!("vedauth_lockouts_total").increment(1);
            self.audit.record(&Event {
                event: "lockout",
                identity: attempt.identity.as_deref(),
                username: Some(&username),
                client_id: Some(&client_id),
                source: req.source,
                detail: Some(serde_json::json!({ "locked_until": until })),
                ..Event::default()
            })?;
        }
        let principal = match attempt.outcome {
            AuthOutcome::Authenticated(p) => p,
            AuthOutcome::Rejected(cause) => {
                // No cause label: a scrape before and after a guess would tell an unknown name
                // from a wrong password. The cause goes to the audit trail only.
                metrics::counter!("vedauth_failed_logins_total", "client_id" => client_id.clone())
                    .increment(1);
                self.audit.record(&Event {
                    event: "login_failed",
                    cause: Some(reject_word(cause)),
                    identity: attempt.identity.as_deref(),
                    username: Some(&username),
                    client_id: Some(&client_id),
                    source: req.source,
                    ..Event::default()
                })?;
                return Err(GrantError::BadCredentials(cause));
            }
            AuthOutcome::NotMine => {
                return Err(GrantError::BadCredentials(RejectCause::UnknownUser))
            }
        };
        let identity = principal.prefixed_universal();
        // From here on the password was right: every refusal is audited with what limited it.
        let refuse = |error: GrantError, detail: serde_json::Value| {
            self.audit.record(&Event {
                event: "grant_refused",
                cause: error.cause(),
                identity: Some(&identity),
                username: Some(&username),
                client_id: Some(&client_id),
                source: req.source,
                detail: Some(detail),
                ..Event::default()
            })?;
            Err::<IssuedTokens, GrantError>(error)
        };
        let rules = self.store.rules(Some(&client_id)).await?;
        let Some(rule) = matching_rule(&rules, &principal) else {
            return refuse(GrantError::NotAdmitted, serde_json::json!({}));
        };
        let app_scope = Scope::parse(&app.max_scope).unwrap_or_default();
        let limit = if !requested.is_subset_of(&app_scope) {
            Some((ScopeLimit::Application, app.max_scope.as_str()))
        } else {
            match &rule.max_scope {
                Some(m) if !Scope::parse(m).is_ok_and(|m| requested.is_subset_of(&m)) => {
                    Some((ScopeLimit::Rule, m.as_str()))
                }
                _ => None,
            }
        };
        if let Some((limit, allowed)) = limit {
            return refuse(
                GrantError::ScopeNotAuthorized(limit),
                serde_json::json!({
                    "requested": requested.to_string(),
                    "allowed": allowed,
                    "rule_trustee": rule.trustee,
                }),
            );
        }
        let (access_validity, grant_lifetime, renewable) = lifetimes(rule, &app, &settings);
        let now = self.now();
        let expires_at = grant_lifetime.expiry_from(now);
        let access = token::generate();
        let refresh = renewable.then(token::generate);
        let access_expires_at = cap(now.saturating_add(access_validity), expires_at);
        let grant = Grant {
            id: uuid::Uuid::new_v4().to_string(),
            client_id: client_id.clone(),
            identity,
            granted_to: rule.trustee.clone(),
            scope: requested.to_string(),
            issued_at: now,
            expires_at,
            renewable,
            access_validity,
            access_digest: access.digest,
            access_issued_at: now,
            access_expires_at,
            refresh_digest: refresh.as_ref().map(|r| r.digest),
        };
        // The event is written before the grant is committed: if it cannot be written (and the
        // trail fails closed) nothing was issued, and the client can simply try again.
        self.audit.record(&Event {
            event: "grant_issued",
            identity: Some(&grant.identity),
            client_id: Some(&client_id),
            source: req.source,
            grant: Some(&grant.id),
            access_digest: Some(hex(&grant.access_digest)),
            refresh_digest: grant.refresh_digest.as_ref().map(hex),
            detail: Some(serde_json::json!({ "scope": grant.scope })),
            ..Event::default()
        })?;
        if let Err(e) = self.store.insert_grant(&grant).await {
            self.not_committed("grant_issued", &grant.id, &e);
            return Err(e.into());
        }
        metrics::counter!("vedauth_grants_issued_total", "client_id" => client_id.clone())
            .increment(1);
        tracing::info!(client_id = %client_id, identity = %grant.identity, grant = %grant.id, "grant issued");
        Ok(IssuedTokens {
            access_token: access.value,
            refresh_token: refresh.map(|r| r.value),
            expires: access_expires_at,
            expires_in: access_expires_at - now,
            scope: grant.scope,
            identity: grant.identity,
            refresh_until: if renewable { expires_at } else { None },
            state: req.state,
            grant_id: grant.id,
            client_id,
        })
    }

    /// `POST /vedauth/authorize/token`: rotates both tokens of the grant.
    pub async fn refresh(&self, req: RefreshRequest) -> Result<IssuedTokens, GrantError> {
        let client_id = req.client_id.ok_or(GrantError::MissingClientId)?;
        let presented = req.refresh_token.ok_or(GrantError::MissingRefreshToken)?;
        // Both reads at once: each is a round trip to the store, and refresh is latency-bound.
        let old = token::looks_like_token(presented.expose())
            .then(|| TokenDigest::of(presented.expose()));
        let (settings, found) = tokio::try_join!(self.store.settings(), async {
            match &old {
                Some(d) => self.store.grant_by_refresh(d).await,
                None => Ok(None),
            }
        })?;
        if !settings.refresh_endpoint_enabled {
            return Err(GrantError::RefreshDisabled);
        }
        let Some(old) = old else {
            return Err(GrantError::InvalidGrant);
        };
        let Some(grant) = found else {
            if self.opts.refresh_reuse_detection {
                if let Some(grant_id) = self.store.grant_by_retired_refresh(&old).await? {
                    if let Some(access) = self.store.delete_grant(&grant_id).await? {
                        self.invalidate(&[access]).await;
                    }
                    self.audit.record(&Event {
                        event: "refresh_reuse_revoked",
                        client_id: Some(&client_id),
                        source: req.source,
                        grant: Some(&grant_id),
                        refresh_digest: Some(hex(&old)),
                        ..Event::default()
                    })?;
                    tracing::warn!(grant = %grant_id, "rotated refresh token reused; grant revoked");
                }
            }
            return Err(GrantError::InvalidGrant);
        };
        if grant.client_id != client_id {
            return Err(GrantError::ClientMismatch);
        }
        let now = self.now();
        if grant.grant_expired(now) || !grant.renewable {
            return Err(GrantError::InvalidGrant);
        }
        let access = token::generate();
        let refresh = token::generate();
        let access_expires_at = cap(now.saturating_add(grant.access_validity), grant.expires_at);
        let rotation = Rotation {
            access_digest: access.digest,
            access_issued_at: now,
            access_expires_at,
            refresh_digest: Some(refresh.digest),
        };
        // Audited before the rotation commits: a trail that cannot be written refuses the
        // refresh with nothing changed, so the same refresh token works on a retry.
        self.audit.record(&Event {
            event: "grant_refreshed",
            identity: Some(&grant.identity),
            client_id: Some(&client_id),
            source: req.source,
            grant: Some(&grant.id),
            access_digest: Some(hex(&access.digest)),
            refresh_digest: Some(hex(&refresh.digest)),
            ..Event::default()
        })?;
        match self
            .store
            .rotate_tokens(&grant.id, &old, &rotation, now)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                // Another refresh with the same token won the compare-and-swap.
                self.not_committed(
                    "grant_refreshed",
                    &grant.id,
                    &"lost to a concurrent refresh",
                );
                return Err(GrantError::InvalidGrant);
            }
            Err(e) => {
                self.not_committed("grant_refreshed", &grant.id, &e);
                return Err(e.into());
            }
        }
        self.invalidate(&[grant.access_digest]).await;
        metrics::counter!("vedauth_grants_refreshed_total", "client_id" => client_id.clone())
            .increment(1);
        tracing::info!(client_id = %client_id, identity = %grant.identity, grant = %grant.id, "grant refreshed");
        Ok(IssuedTokens {
            access_token: access.value,
            refresh_token: Some(refresh.value),
            expires: access_expires_at,
            expires_in: access_expires_at - now,
            scope: grant.scope,
            identity: grant.identity,
            refresh_until: grant.expires_at,
            state: None,
            grant_id: grant.id,
            client_id,
        })
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
                let before = self.dropped.load(Ordering::SeqCst);
                let g = self
                    .store
                    .grant_by_access(&digest)
                    .await?
                    .ok_or(GrantError::InvalidToken)?;
                let g = Arc::new(g);
                self.cache.insert(digest, g.clone());
                // A revocation that landed after our read began could be undone by the insert
                // above; one that lands after this check removes the entry itself.
                if self.dropped.load(Ordering::SeqCst) != before {
                    self.cache.invalidate(&digest);
                }
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

    /// Records that a change already audited did not happen after all (its commit failed). Best
    /// effort: the request fails anyway, and a lost record is logged, never swallowed.
    fn not_committed(&self, event: &str, grant_id: &str, why: &dyn std::fmt::Display) {
        let why = why.to_string();
        let recorded = self.audit.record(&Event {
            event: "change_not_committed",
            cause: Some(event),
            grant: Some(grant_id),
            detail: Some(serde_json::json!({ "error": why })),
            ..Event::default()
        });
        if let Err(e) = recorded {
            tracing::error!(grant = %grant_id, %event, error = %e, "an audited change was not committed, and the correction could not be audited");
        }
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
        self.dropped.fetch_add(1, Ordering::SeqCst);
        for d in digests {
            self.cache.invalidate(d);
        }
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
        let mut rx = self.store.invalidations()?;
        let (cache, dropped) = (self.cache.clone(), self.dropped.clone());
        Some(tokio::spawn(async move {
            loop {
                let msg = rx.recv().await;
                dropped.fetch_add(1, Ordering::SeqCst);
                match msg {
                    Ok(Invalidation::Token(d)) => cache.invalidate(&d),
                    // Missed some: anything cached may be stale, start afresh.
                    Ok(Invalidation::All)
                    | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        cache.invalidate_all()
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
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
        Ok(total)
    }
}

/// An access token never outlives its grant.
fn cap(t: UnixTime, grant_expiry: Option<UnixTime>) -> UnixTime {
    match grant_expiry {
        Some(e) => t.min(e),
        None => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(trustee: &str) -> Rule {
        Rule {
            client_id: "app".into(),
            trustee: trustee.into(),
            description: String::new(),
            max_scope: None,
            access_validity: None,
            grant_validity: None,
            renewable: None,
            created_at: 0,
        }
    }

    #[test]
    fn most_specific_rule_wins() {
        let who = Principal {
            prefix: "local".into(),
            universal: "{0000}".into(),
            name: "alice".into(),
            full_name: "Alice".into(),
            groups: vec!["local:ops".into()],
        };
        let rules = vec![rule("everyone"), rule("local:ops"), rule("LOCAL:Alice")];
        assert_eq!(
            matching_rule(&rules, &who).map(|r| r.trustee.as_str()),
            Some("LOCAL:Alice")
        );
        assert_eq!(
            matching_rule(&rules[..2], &who).map(|r| r.trustee.as_str()),
            Some("local:ops")
        );
        assert_eq!(
            matching_rule(&rules[..1], &who).map(|r| r.trustee.as_str()),
            Some("everyone")
        );
        assert!(matching_rule(&[rule("local:bob")], &who).is_none());
    }

    #[test]
    fn lifetimes_come_from_rule_then_app_then_defaults() {
        let defaults = crate::store::Settings::default();
        let mut app = Application {
            client_id: "a".into(),
            name: String::new(),
            vendor: String::new(),
            description: String::new(),
            url: String::new(),
            scope: "certificate".into(),
            max_scope: "certificate".into(),
            access_validity: None,
            grant_validity: None,
            renewable: None,
            unused_expiration: None,
            created_at: 0,
        };
        let mut r = rule("everyone");
        assert_eq!(
            lifetimes(&r, &app, &defaults),
            (
                crate::store::DEFAULT_ACCESS_VALIDITY,
                Lifetime::Seconds(crate::store::DEFAULT_GRANT_VALIDITY),
                true
            )
        );
        app.access_validity = Some(60);
        app.grant_validity = Some(Lifetime::Never);
        app.renewable = Some(false);
        assert_eq!(lifetimes(&r, &app, &defaults), (60, Lifetime::Never, false));
        r.access_validity = Some(30);
        r.grant_validity = Some(Lifetime::Seconds(90));
        r.renewable = Some(true);
        assert_eq!(
            lifetimes(&r, &app, &defaults),
            (30, Lifetime::Seconds(90), true)
        );
    }

    #[test]
    fn access_expiry_is_capped_by_the_grant() {
        assert_eq!(cap(100, Some(50)), 50);
        assert_eq!(cap(100, Some(500)), 100);
        assert_eq!(cap(100, None), 100);
    }
}
