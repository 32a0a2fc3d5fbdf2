//! The password flow's admission: checks in the order of protocol.md (authorize), through the
//! identity providers behind the lockout.

use crate::audit::Event;
use crate::identity::{AuthOutcome, RejectCause};
use crate::scope::Scope;

use super::super::error::{reject_word, GrantError};
use super::super::request::{Admission, Admitted, GrantType, PasswordRequest};
use super::super::Engine;

pub(crate) async fn admit(e: &Engine, req: PasswordRequest) -> Result<Admission, GrantError> {
    let client_id = req.client_id.ok_or(GrantError::MissingClientId)?;
    let (Some(username), Some(password)) = (req.username, req.password) else {
        return Err(GrantError::MissingCredentials);
    };
    // Past the hashing queue: 503 at once, without the reads below.
    if e.identities.must_shed() {
        return Err(GrantError::Overloaded);
    }
    let settings = e.settings().await?;
    if !settings.authorize_by_password {
        return Err(GrantError::PasswordAuthDisabled);
    }
    let scope = Scope::parse(req.scope.as_deref().unwrap_or(""))?;
    let app = e
        .application(&client_id)
        .await?
        .ok_or_else(|| GrantError::UnknownClient(client_id.clone()))?;
    // Rate limits apply before this (at the edge); lockout inside `authenticate`, before any
    // password is checked.
    let attempt = e.identities.authenticate(&username, &password).await?;
    if let Some(until) = attempt.locked_until {
        metrics::counter!("vedauth_lockouts_total").increment(1);
        e.audit.record(&Event {
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
            e.audit.record(&Event {
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
        AuthOutcome::NotMine => return Err(GrantError::BadCredentials(RejectCause::UnknownUser)),
    };
    Ok(Admission {
        grant_type: GrantType::Password,
        source: req.source,
        state: req.state,
        admitted: Admitted::New {
            app,
            settings,
            principal,
            scope,
            username: Some(username),
        },
    })
}
