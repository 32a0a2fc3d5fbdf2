//! The refresh flow's admission: the refresh token names a live, renewable grant of this
//! client. Rotation itself is `issue`'s.

use crate::audit::{hex, Event};
use crate::secret::Secret;
use crate::token::{self, TokenDigest};

use super::super::error::GrantError;
use super::super::request::{Admission, Admitted, GrantType, RefreshRequest};
use super::super::{grace, Engine};

pub(crate) async fn admit(e: &Engine, req: RefreshRequest) -> Result<Admission, GrantError> {
    let client_id = req.client_id.ok_or(GrantError::MissingClientId)?;
    let presented = req.refresh_token.ok_or(GrantError::MissingRefreshToken)?;
    // Both reads at once: each is a round trip to the store, and refresh is latency-bound.
    let old =
        token::looks_like_token(presented.expose()).then(|| TokenDigest::of(presented.expose()));
    let (settings, found) = tokio::try_join!(e.settings(), async {
        match &old {
            Some(d) => e.store.grant_by_refresh(d).await,
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
        if e.opts.refresh_grace_secs > 0 {
            if let Some(repeat) = repeat(e, &client_id, &presented, &old).await? {
                return Ok(Admission {
                    grant_type: GrantType::Refresh,
                    source: req.source,
                    state: None,
                    admitted: repeat,
                });
            }
        }
        if e.opts.refresh_reuse_detection {
            if let Some(grant_id) = e.store.grant_by_retired_refresh(&old).await? {
                e.audit.record(&Event {
                    event: "refresh_reuse_revoked",
                    client_id: Some(&client_id),
                    source: req.source,
                    grant: Some(&grant_id),
                    refresh_digest: Some(hex(&old)),
                    ..Event::default()
                })?;
                if let Some(access) = e.store.delete_grant(&grant_id).await? {
                    e.invalidate(&[access]).await;
                }
                tracing::warn!(grant = %grant_id, "rotated refresh token reused; grant revoked");
            }
        }
        return Err(GrantError::InvalidGrant);
    };
    if grant.client_id != client_id {
        return Err(GrantError::ClientMismatch);
    }
    let now = e.now();
    if grant.grant_expired(now) || !grant.renewable {
        return Err(GrantError::InvalidGrant);
    }
    // Unused expiration: a grant whose access token has stayed expired for longer than this is
    // treated as expired. Only a refresh of an already expired token pays the application read.
    if now > grant.access_expires_at {
        let app = e.application(&client_id).await?;
        let limit = match app.and_then(|a| a.unused_expiration) {
            // The application's own value wins; 0 or less turns it off for that application.
            Some(v) => (v > 0).then_some(v),
            None => (settings.unused_access_token_expiration > 0)
                .then_some(settings.unused_access_token_expiration),
        };
        if limit.is_some_and(|l| now >= grant.access_expires_at.saturating_add(l)) {
            tracing::info!(grant = %grant.id, client_id = %client_id, "refresh refused: the access token stayed unused past the unused expiration");
            return Err(GrantError::InvalidGrant);
        }
    }
    Ok(Admission {
        grant_type: GrantType::Refresh,
        source: req.source,
        state: None,
        admitted: Admitted::Rotate {
            grant: Box::new(grant),
            presented: old,
            presented_token: presented,
        },
    })
}

/// Within the grace window, a rotated refresh token gets the answer its refresh got, as long as
/// that answer is still the grant's current pair (not rotated again, not revoked) and the client
/// is the grant's.
async fn repeat(
    e: &Engine,
    client_id: &str,
    presented: &Secret,
    old: &TokenDigest,
) -> Result<Option<Admitted>, GrantError> {
    let Some(kept) = e.store.successor(old, e.now()).await? else {
        return Ok(None);
    };
    let Some(pair) = grace::open(presented, kept.grant_id.as_str(), &kept.sealed) else {
        return Ok(None);
    };
    let current = e
        .store
        .grant_by_access(&TokenDigest::of(pair.access.expose()))
        .await?;
    let still_current = current.filter(|g| {
        g.id == kept.grant_id
            && g.client_id.as_str() == client_id
            && g.refresh_digest
                .as_ref()
                .is_some_and(|d| d.ct_eq(&TokenDigest::of(pair.refresh.expose())))
    });
    Ok(still_current.map(|g| Admitted::Repeat {
        grant: Box::new(g),
        pair,
    }))
}
