//! The refresh flow's admission: the refresh token names a live, renewable grant of this
//! client. Rotation itself is `issue`'s.

use crate::audit::{hex, Event};
use crate::token::{self, TokenDigest};

use super::super::error::GrantError;
use super::super::request::{Admission, Admitted, GrantType, RefreshRequest};
use super::super::Engine;

pub(crate) async fn admit(e: &Engine, req: RefreshRequest) -> Result<Admission, GrantError> {
    let client_id = req.client_id.ok_or(GrantError::MissingClientId)?;
    let presented = req.refresh_token.ok_or(GrantError::MissingRefreshToken)?;
    // Both reads at once: each is a round trip to the store, and refresh is latency-bound.
    let old =
        token::looks_like_token(presented.expose()).then(|| TokenDigest::of(presented.expose()));
    let (settings, found) = tokio::try_join!(e.store.settings(), async {
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
    if grant.grant_expired(e.now()) || !grant.renewable {
        return Err(GrantError::InvalidGrant);
    }
    Ok(Admission {
        grant_type: GrantType::Refresh,
        source: req.source,
        state: None,
        admitted: Admitted::Rotate {
            grant: Box::new(grant),
            presented: old,
        },
    })
}
