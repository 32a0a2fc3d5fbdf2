//! The few `/vedsdk` calls token clients make around authentication, and the shared bearer
//! check every `/vedsdk` endpoint uses.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::Serialize;

use super::super::common::{bearer, json_response};
use super::super::ApiState;
use super::error::reason_phrase;
use super::VedauthError;
use crate::grants::LiveGrant;

/// What a `/vedsdk` endpoint needs of the caller's token.
#[derive(Debug, Clone, Copy)]
pub enum Requirement {
    /// Any valid token.
    Any,
    /// A scope name, optionally with a privilege (`certificate`, `certificate:manage`).
    Scope(&'static str, Option<&'static str>),
}

/// The shared check: 401 `invalid_token` for a bad token, 403 `insufficient_scope` for one
/// without the needed scope.
pub async fn authorize(
    app: &ApiState,
    headers: &HeaderMap,
    need: Requirement,
) -> Result<Arc<LiveGrant>, VedauthError> {
    let token = bearer(headers).ok_or_else(VedauthError::invalid_token)?;
    let grant = app.services.verify(token).await?;
    if let Requirement::Scope(name, privilege) = need {
        if !grant.held_scope().allows(name, privilege) {
            let required = match privilege {
                Some(p) => format!("{name}:{p}"),
                None => name.to_string(),
            };
            return Err(VedauthError::insufficient_scope(&required));
        }
    }
    Ok(grant)
}

pub async fn ping() -> Response {
    json_response(StatusCode::OK, &serde_json::json!({}))
}

pub async fn version(
    State(app): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, VedauthError> {
    authorize(&app, &headers, Requirement::Any).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "Version": app.services.tpp_version() }),
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct IdentityEntry {
    full_name: String,
    name: String,
    prefix: String,
    prefixed_name: String,
    prefixed_universal: String,
    #[serde(rename = "Type")]
    kind: u32,
    universal: String,
}

pub async fn identity_self(
    State(app): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, VedauthError> {
    let grant = authorize(&app, &headers, Requirement::Any).await?;
    let principal = app
        .services
        .principal(&grant.identity)
        .await
        .map_err(|e| VedauthError::from(crate::grants::GrantError::from(e)))?
        // The grant outlived its user (removed since): the token no longer names anyone.
        .ok_or_else(VedauthError::invalid_token)?;
    let full_name = if principal.prefix == "local" {
        format!("\\VED\\Identity\\{}", principal.name)
    } else {
        principal.full_name.clone()
    };
    let entry = IdentityEntry {
        full_name,
        name: principal.name.clone(),
        prefix: principal.prefix.clone(),
        prefixed_name: principal.prefixed_name(),
        prefixed_universal: principal.prefixed_universal().into_string(),
        // TPP identity type 1 = user.
        kind: 1,
        universal: principal.universal.clone(),
    };
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "Identities": [entry] }),
    ))
}

pub async fn legacy_authorize() -> Response {
    const TEXT: &str = "API keys are deprecated. Instead, you should be using an API integration and a vedauth/Authorize endpoint.";
    let mut res = json_response(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({ "error": "unauthorized_client", "error_description": TEXT }),
    );
    if let Some(p) = reason_phrase(&format!("{TEXT} See the getting a token help topic.")) {
        res.extensions_mut().insert(p);
    }
    res
}
