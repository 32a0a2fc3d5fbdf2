//! The device flow's poll (RFC 8628 §3.4–3.5 on `authorize/token`): the device code names a
//! request of this client that a person approved; it is spent by the poll that gets the tokens.

use crate::scope::Scope;
use crate::token::TokenDigest;

use super::super::device::SLOW_DOWN_PENALTY;
use super::super::error::GrantError;
use super::super::request::{Admission, Admitted, DeviceTokenRequest, GrantType};
use super::super::Engine;
use crate::domain::DeviceState;

pub(crate) async fn admit(e: &Engine, req: DeviceTokenRequest) -> Result<Admission, GrantError> {
    let client_id = req.client_id.ok_or(GrantError::MissingClientId)?;
    let code = req.device_code.ok_or(GrantError::MissingDeviceCode)?;
    let digest = TokenDigest::of(code.expose());
    let (settings, found) = tokio::try_join!(e.settings(), e.store.device_by_digest(&digest))?;
    if !settings.authorize_device {
        return Err(GrantError::DeviceAuthDisabled);
    }
    let Some(d) = found else {
        return Err(GrantError::DeviceCodeInvalid);
    };
    if d.client_id != client_id || d.state == DeviceState::Used {
        return Err(GrantError::DeviceCodeInvalid);
    }
    let now = e.now();
    if d.expired(now) {
        return Err(GrantError::DeviceCodeExpired);
    }
    if d.state == DeviceState::Denied {
        return Err(GrantError::DeviceAccessDenied);
    }
    if !e.store.poll_device(&digest, now, SLOW_DOWN_PENALTY).await? {
        return Err(GrantError::SlowDown);
    }
    let identity = match d.state {
        DeviceState::Approved(identity) => identity,
        _ => return Err(GrantError::AuthorizationPending),
    };
    // Spent here, before `issue`: of two polls at once, one gets the tokens.
    if !e.store.consume_device(&digest).await? {
        return Err(GrantError::DeviceCodeInvalid);
    }
    // The approver as their provider knows them now: removed, disabled or locked out since
    // the approval, they get nothing.
    if !e.still_allowed(&identity).await? {
        return Err(GrantError::DeviceAccessDenied);
    }
    let principal = e
        .identities
        .resolve(&identity)
        .await?
        .ok_or(GrantError::DeviceAccessDenied)?;
    let app = e
        .application(&client_id)
        .await?
        .ok_or_else(|| GrantError::UnknownClient(client_id.clone()))?;
    let scope = Scope::parse(&d.scope)?;
    Ok(Admission {
        grant_type: GrantType::Device,
        source: req.source,
        state: None,
        admitted: Admitted::New {
            app,
            settings,
            principal,
            scope,
            username: None,
        },
    })
}
