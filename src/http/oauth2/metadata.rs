//! `GET /.well-known/oauth-authorization-server` (RFC 8414): what this face serves, under the
//! configured issuer (`public_url`).

use axum::extract::State;
use axum::response::Response;
use http::{header, HeaderValue, StatusCode};
use serde_json::json;

use super::super::common::json_response;
use super::super::ApiState;
use crate::scope::CATALOGUE;

pub async fn metadata(State(app): State<ApiState>) -> Response {
    let issuer = app.issuer.trim_end_matches('/');
    let scopes: Vec<String> = CATALOGUE
        .iter()
        .flat_map(|(name, privs)| {
            std::iter::once(name.to_string())
                .chain(privs.iter().map(move |p| format!("{name}:{p}")))
        })
        .collect();
    let body = json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
        "device_authorization_endpoint": format!("{issuer}/oauth2/device_authorization"),
        "grant_types_supported": super::token::GRANT_TYPES,
        // Required by RFC 8414; no grant here uses the authorization endpoint.
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "scopes_supported": scopes,
    });
    let mut res = json_response(StatusCode::OK, &body);
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    res
}
