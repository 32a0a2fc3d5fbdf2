//! The client-credentials flow's admission (RFC 6749 §4.4, the OAuth 2.0 face): a confidential
//! application authenticates with its secret and asks for a scope within its own.

use crate::scope::Scope;

use super::super::error::GrantError;
use super::super::request::{Admission, Admitted, ClientCredentialsRequest, GrantType};
use super::super::Engine;

pub(crate) async fn admit(
    e: &Engine,
    req: ClientCredentialsRequest,
) -> Result<Admission, GrantError> {
    let client_id = req.client_id.ok_or(GrantError::MissingClientId)?;
    // The scope's grammar first: a malformed request costs no hash.
    let scope = match req.scope.as_deref() {
        Some(s) => Some(Scope::parse(s)?),
        None => None,
    };
    let auth = e
        .authenticate_client(&client_id, req.client_secret.as_ref(), req.source)
        .await?;
    if !auth.confidential {
        return Err(GrantError::PublicClient);
    }
    let settings = e.settings().await?;
    // No scope asked for: the application's whole scope (RFC 6749 §3.3 lets the server pick).
    let scope = match scope {
        Some(s) => s,
        None => Scope::parse(&auth.app.max_scope)?,
    };
    Ok(Admission {
        grant_type: GrantType::ClientCredentials,
        source: req.source,
        state: None,
        admitted: Admitted::Client {
            app: auth.app.clone(),
            settings,
            scope,
        },
    })
}
