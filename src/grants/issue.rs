//! `issue`: the one place that turns an admitted request into tokens. It alone applies the
//! policy (rules, scope subset, lifetimes, the cap), mints, persists, audits and counts, for
//! every flow.

use crate::audit::{hex, Event};
use crate::domain::{CanonicalScope, ClientId, GrantId, Identity, Lifetime};
use crate::domain::{Grant, Holder, Rotation, Successor};
use crate::identity::RejectCause;
use crate::scope::Scope;
use crate::token;

use super::error::{reject_word, GrantError, ScopeLimit};
use super::policy::{cap, lifetimes, matching_rule, scope_limit};
use super::request::{Admission, Admitted, IssuedTokens};
use super::{grace, Engine};

/// The prefix of the identity a client-credentials grant is issued to: `client:<client_id>`.
pub const CLIENT_PREFIX: &str = "client";

/// A new grant whose policy is decided: what `mint` writes.
struct Mint {
    client_id: ClientId,
    identity: Identity,
    granted_to: Identity,
    scope: CanonicalScope,
    access_validity: i64,
    grant_lifetime: Lifetime,
    renewable: bool,
    source: Option<std::net::IpAddr>,
    state: Option<String>,
    grant_type: &'static str,
    /// The local user the grant is for, as the login saw them: the store writes the grant
    /// only if they still are (none for a directory user or a client's own grant).
    holder: Option<Holder>,
}

impl Engine {
    pub(crate) async fn issue(&self, adm: Admission) -> Result<IssuedTokens, GrantError> {
        let grant_type = adm.grant_type.as_str();
        match adm.admitted {
            Admitted::New {
                app,
                settings,
                principal,
                scope,
                username,
            } => {
                let client_id = app.client_id.clone();
                let identity = principal.prefixed_universal();
                // The credential was good: every refusal from here on is audited with what
                // limited it.
                let refuse = |error: GrantError, detail: serde_json::Value| {
                    self.audit.record(&Event {
                        event: "grant_refused",
                        cause: error.cause(),
                        identity: Some(&identity),
                        username: username.as_deref(),
                        client_id: Some(&client_id),
                        source: adm.source,
                        detail: Some(detail),
                        ..Event::default()
                    })?;
                    Err::<IssuedTokens, GrantError>(error)
                };
                let rules = self.rules(&client_id).await?;
                let Some(rule) = matching_rule(&rules, &principal) else {
                    return refuse(GrantError::NotAdmitted, serde_json::json!({}));
                };
                if let Some((limit, allowed)) = scope_limit(&scope, &app, rule) {
                    return refuse(
                        GrantError::ScopeNotAuthorized(limit),
                        serde_json::json!({
                            "requested": scope.to_string(),
                            "allowed": allowed,
                            "rule_trustee": rule.trustee,
                        }),
                    );
                }
                let (access_validity, grant_lifetime, renewable) = lifetimes(rule, &app, &settings);
                self.mint(Mint {
                    client_id,
                    identity,
                    granted_to: rule.trustee.clone(),
                    scope: CanonicalScope::of(&scope),
                    access_validity,
                    grant_lifetime,
                    renewable,
                    source: adm.source,
                    state: adm.state,
                    grant_type,
                    holder: self.identities.holder(&principal),
                })
                .await
            }
            Admitted::Client {
                app,
                settings,
                scope,
            } => {
                let client_id = app.client_id.clone();
                let identity = Identity::of(CLIENT_PREFIX, &client_id);
                let app_scope = Scope::parse(&app.max_scope).unwrap_or_default();
                if !scope.is_subset_of(&app_scope) {
                    let error = GrantError::ScopeNotAuthorized(ScopeLimit::Application);
                    self.audit.record(&Event {
                        event: "grant_refused",
                        cause: error.cause(),
                        identity: Some(&identity),
                        client_id: Some(&client_id),
                        source: adm.source,
                        detail: Some(serde_json::json!({
                            "requested": scope.to_string(),
                            "allowed": app.max_scope,
                        })),
                        ..Event::default()
                    })?;
                    return Err(error);
                }
                let access_validity = app
                    .access_validity
                    .filter(|v| *v > 0)
                    .unwrap_or(settings.default_access_token_validity);
                let grant_lifetime = app
                    .grant_validity
                    .unwrap_or(Lifetime::from_db(settings.default_grant_validity));
                self.mint(Mint {
                    client_id,
                    granted_to: identity.clone(),
                    identity,
                    scope: CanonicalScope::of(&scope),
                    access_validity,
                    grant_lifetime,
                    // RFC 6749 §4.4.3: the client can simply ask again; no refresh token.
                    renewable: false,
                    source: adm.source,
                    state: None,
                    grant_type,
                    holder: None,
                })
                .await
            }
            Admitted::Repeat { grant, pair } => {
                let now = self.now();
                self.audit.record(&Event {
                    event: "grant_refresh_repeated",
                    identity: Some(&grant.identity),
                    client_id: Some(&grant.client_id),
                    source: adm.source,
                    grant: Some(&grant.id),
                    access_digest: Some(hex(&grant.access_digest)),
                    refresh_digest: grant.refresh_digest.as_ref().map(hex),
                    ..Event::default()
                })?;
                metrics::counter!("vedauth_refresh_repeats_total").increment(1);
                tracing::info!(client_id = %grant.client_id, grant = %grant.id, "refresh repeated within the grace window");
                let grant = *grant;
                Ok(IssuedTokens {
                    access_token: pair.access,
                    refresh_token: Some(pair.refresh),
                    expires: grant.access_expires_at,
                    expires_in: grant.access_expires_at - now,
                    scope: grant.scope,
                    identity: grant.identity,
                    refresh_until: grant.expires_at,
                    state: adm.state,
                    grant_id: grant.id,
                    client_id: grant.client_id,
                })
            }
            Admitted::Rotate {
                grant,
                presented,
                presented_token,
            } => {
                let now = self.now();
                let access = token::generate();
                let refresh = token::generate();
                let access_expires_at =
                    cap(now.saturating_add(grant.access_validity), grant.expires_at);
                let rotation = Rotation {
                    access_digest: access.digest,
                    access_issued_at: now,
                    access_expires_at,
                    refresh_digest: Some(refresh.digest),
                };
                // Audited before the rotation commits: a trail that cannot be written refuses
                // the refresh with nothing changed, so the same refresh token works on a retry.
                self.audit.record(&Event {
                    event: "grant_refreshed",
                    identity: Some(&grant.identity),
                    client_id: Some(&grant.client_id),
                    source: adm.source,
                    grant: Some(&grant.id),
                    access_digest: Some(hex(&access.digest)),
                    refresh_digest: Some(hex(&refresh.digest)),
                    ..Event::default()
                })?;
                match self
                    .store
                    .rotate_tokens(&grant.id, &presented, &rotation, now)
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
                if self.opts.refresh_grace_secs > 0 {
                    self.keep_for_grace(
                        &grant.id,
                        &presented,
                        &presented_token,
                        &access,
                        &refresh,
                        now,
                    )
                    .await;
                }
                metrics::counter!("vedauth_grants_refreshed_total", "client_id" => grant.client_id.to_string())
                    .increment(1);
                tracing::info!(client_id = %grant.client_id, identity = %grant.identity, grant = %grant.id, "grant refreshed");
                let grant = *grant;
                Ok(IssuedTokens {
                    access_token: access.value,
                    refresh_token: Some(refresh.value),
                    expires: access_expires_at,
                    expires_in: access_expires_at - now,
                    scope: grant.scope,
                    identity: grant.identity,
                    refresh_until: grant.expires_at,
                    state: adm.state,
                    grant_id: grant.id,
                    client_id: grant.client_id,
                })
            }
        }
    }

    /// Keeps this refresh's answer sealed for the grace window. Best effort: without it a retry
    /// gets `invalid_grant`, as it would with the window off.
    async fn keep_for_grace(
        &self,
        grant_id: &GrantId,
        presented: &crate::token::TokenDigest,
        presented_token: &crate::secret::Secret,
        access: &token::IssuedToken,
        refresh: &token::IssuedToken,
        now: crate::clock::UnixTime,
    ) {
        let pair = grace::Pair {
            access: access.value.clone(),
            refresh: refresh.value.clone(),
        };
        let Some(sealed) = grace::seal(presented_token, grant_id.as_str(), &pair) else {
            tracing::warn!(grant = %grant_id, "refresh answer not kept for the grace window: sealing failed");
            return;
        };
        let kept = Successor {
            digest: *presented,
            grant_id: grant_id.clone(),
            sealed,
            until: grace::until(now, self.opts.refresh_grace_secs),
        };
        if let Err(e) = self.store.put_successor(&kept).await {
            tracing::warn!(grant = %grant_id, error = %e, "refresh answer not kept for the grace window");
        }
    }

    /// Mints, persists, audits and counts a new grant whose policy was decided.
    async fn mint(&self, m: Mint) -> Result<IssuedTokens, GrantError> {
        let Mint {
            client_id,
            identity,
            granted_to,
            scope,
            access_validity,
            grant_lifetime,
            renewable,
            source,
            state,
            grant_type,
            holder,
        } = m;
        let now = self.now();
        let expires_at = grant_lifetime.expiry_from(now);
        let access = token::generate();
        let refresh = renewable.then(token::generate);
        let access_expires_at = cap(now.saturating_add(access_validity), expires_at);
        let grant = Grant {
            id: GrantId::new_random(),
            client_id: client_id.clone(),
            identity,
            granted_to,
            scope,
            issued_at: now,
            expires_at,
            renewable,
            access_validity,
            access_digest: access.digest,
            access_issued_at: now,
            access_expires_at,
            refresh_digest: refresh.as_ref().map(|r| r.digest),
        };
        // The event is written before the grant is committed: if it cannot be written (and
        // the trail fails closed) nothing was issued, and the client can simply try again.
        self.audit.record(&Event {
            event: "grant_issued",
            identity: Some(&grant.identity),
            client_id: Some(&client_id),
            source,
            grant: Some(&grant.id),
            access_digest: Some(hex(&grant.access_digest)),
            refresh_digest: grant.refresh_digest.as_ref().map(hex),
            detail: Some(serde_json::json!({ "scope": grant.scope, "grant_type": grant_type })),
            ..Event::default()
        })?;
        // A local user is written with the grant as the login saw them: a change that revoked
        // their grants (disabled, removed, a new password) while this login was between
        // reading the user and storing the grant leaves the grant unwritten, and the login is
        // refused as it would be now.
        match self.store.insert_grant_for(&grant, holder.as_ref()).await {
            Err(e) => {
                self.not_committed("grant_issued", &grant.id, &e);
                return Err(e.into());
            }
            Ok(Some(change)) => {
                let cause = RejectCause::from(change);
                let why = format!("the user changed meanwhile: {}", reject_word(cause));
                self.not_committed("grant_issued", &grant.id, &why);
                return Err(GrantError::BadCredentials(cause));
            }
            Ok(None) => {}
        }
        metrics::counter!("vedauth_grants_issued_total", "client_id" => client_id.to_string(), "grant_type" => grant_type)
            .increment(1);
        tracing::info!(client_id = %client_id, identity = %grant.identity, grant = %grant.id, grant_type, "grant issued");
        Ok(IssuedTokens {
            access_token: access.value,
            refresh_token: refresh.map(|r| r.value),
            expires: access_expires_at,
            expires_in: access_expires_at - now,
            scope: grant.scope,
            identity: grant.identity,
            refresh_until: if renewable { expires_at } else { None },
            state,
            grant_id: grant.id,
            client_id,
        })
    }

    /// Records that a change already audited did not happen after all (its commit failed). Best
    /// effort: the request fails anyway, and a lost record is logged, never swallowed.
    pub(crate) fn not_committed(&self, event: &str, grant_id: &str, why: &dyn std::fmt::Display) {
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
}
