//! The standard OAuth 2.0 face (decisions.md §13, docs/oauth2.md): `POST /oauth2/token`
//! (RFC 6749: password, refresh_token, client_credentials; RFC 8628's device_code; RFC 7523's
//! jwt-bearer), `POST /oauth2/introspect`
//! (RFC 7662), `POST /oauth2/revoke` (RFC 7009) and `/.well-known/oauth-authorization-server`
//! (RFC 8414). The same grants as the VEDauth face, so a token from one works on the other;
//! errors in RFC 6749 §5.2's shape ([`OAuthError`]). Unlike the VEDauth face, this one reads
//! the `Authorization` header: it carries the client's Basic credentials.

mod client;
pub mod error;
mod introspect;
mod metadata;
mod token;

use axum::routing::{get, post};
use axum::Router;

pub use error::OAuthError;

use super::common::rate_limit;
use super::ApiState;
pub(super) use introspect::introspect;

/// RFC 7662 introspection, which a gateway may call on every request (served by the hot lane
/// too).
pub const INTROSPECT: &str = "/oauth2/introspect";

/// The face's routes. The token and revocation endpoints pass the per-address rate limit
/// first; introspection, which a gateway may call on every request, does not (like verify).
pub fn router(state: ApiState) -> Router<ApiState> {
    let limited = Router::new()
        .route("/oauth2/token", post(token::token))
        .route("/oauth2/revoke", post(introspect::revoke))
        .route(
            "/oauth2/device_authorization",
            post(token::device_authorization),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.limiter.clone(),
            rate_limit::<OAuthError>,
        ));
    Router::new()
        .merge(limited)
        .route(INTROSPECT, post(introspect::introspect))
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata::metadata),
        )
}

/// A canonical TPP scope (`certificate:manage,revoke;configuration`) as RFC 6749 scope tokens
/// (`certificate:manage,revoke configuration`): one token per scope name.
pub fn rfc_scope(canonical: &str) -> String {
    canonical
        .split(';')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A scope parameter of this face: RFC space-delimited tokens or TPP's `;` form, or both.
pub fn tpp_scope(rfc: &str) -> String {
    rfc.split_whitespace().collect::<Vec<_>>().join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_convert_both_ways() {
        assert_eq!(
            rfc_scope("certificate:manage,revoke;configuration"),
            "certificate:manage,revoke configuration"
        );
        assert_eq!(
            tpp_scope(" certificate:manage  configuration;ssh "),
            "certificate:manage;configuration;ssh"
        );
    }
}
