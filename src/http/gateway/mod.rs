//! The gateway check (docs/gateway.md): `GET|POST /gateway/check`, the sub-request a reverse
//! proxy makes before it passes a request on (nginx `auth_request`, Caddy `forward_auth`,
//! Traefik `forwardAuth`, Envoy `ext_authz` over HTTP). It answers 200 with the token's
//! identity, client and scope in `X-Vedauth-*` headers, 401 for a missing or bad token, 403
//! for a token without the scope the original path needs; never a redirect, and never a 5xx
//! for a bad token. The token is checked through the verify cache, so a check costs what a
//! cached verify costs, and a revoked token is refused within the same bound.

pub mod routes;

use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

use super::common::{bearer, json_response};
use super::ApiState;
use crate::grants::GrantError;
pub use routes::{Need, Routes};

pub const PREFIX: &str = "/gateway/check";
/// Envoy's ext_authz appends the original path to the check's path.
pub const PREFIX_REST: &str = "/gateway/check/{*rest}";

pub fn router() -> Router<ApiState> {
    Router::new()
        .route(PREFIX, any(check))
        .route(PREFIX_REST, any(check))
}

pub const IDENTITY: HeaderName = HeaderName::from_static("x-vedauth-identity");
pub const CLIENT: HeaderName = HeaderName::from_static("x-vedauth-client");
pub const SCOPE: HeaderName = HeaderName::from_static("x-vedauth-scope");
pub const EXPIRES: HeaderName = HeaderName::from_static("x-vedauth-expires");
// What the proxies send; names made once, not parsed from text on every check.
const ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const REQUIRED_SCOPE: HeaderName = HeaderName::from_static("x-vedauth-required-scope");

fn header_str(h: &HeaderMap, name: HeaderName) -> Option<&str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The original request's method and path, as the proxy reports them.
fn original<'a>(method: &'a Method, uri: &'a Uri, h: &'a HeaderMap) -> (&'a str, &'a str) {
    let m = header_str(h, ORIGINAL_METHOD)
        .or_else(|| header_str(h, FORWARDED_METHOD))
        .unwrap_or(method.as_str());
    let p = header_str(h, ORIGINAL_URI)
        .or_else(|| header_str(h, FORWARDED_URI))
        .unwrap_or_else(|| match uri.path().strip_prefix(PREFIX) {
            Some(rest) if !rest.is_empty() => rest,
            _ => "/",
        });
    (m, p)
}

fn deny(status: StatusCode, error: &'static str, description: &str, challenge: String) -> Response {
    let mut res = json_response(
        status,
        &serde_json::json!({"error": error, "error_description": description}),
    );
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        h.insert(header::WWW_AUTHENTICATE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn unauthorized(with_error: bool) -> Response {
    // RFC 6750 §3.1: a request without a token gets the challenge without an error code.
    let challenge = if with_error {
        "Bearer realm=\"vedauth\", error=\"invalid_token\"".to_string()
    } else {
        "Bearer realm=\"vedauth\"".to_string()
    };
    deny(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        "The access token is missing, expired, revoked, malformed, or invalid for other reasons",
        challenge,
    )
}

fn forbidden(required: &str) -> Response {
    let challenge = if required.is_empty() {
        "Bearer realm=\"vedauth\", error=\"insufficient_scope\"".to_string()
    } else {
        format!("Bearer realm=\"vedauth\", error=\"insufficient_scope\", scope=\"{required}\"")
    };
    deny(
        StatusCode::FORBIDDEN,
        "insufficient_scope",
        &if required.is_empty() {
            "No gateway route covers this path".to_string()
        } else {
            format!("The token lacks the scope '{required}' this request needs")
        },
        challenge,
    )
}

/// Requirements the proxy adds for this location (`?scope=` on the check's URL, or the
/// `X-Vedauth-Required-Scope` header). They only ever add to what the path needs: a client
/// that sends the header itself can make its own check stricter, never weaker.
fn extra_needs(uri: &Uri, h: &HeaderMap) -> Result<Vec<Need>, String> {
    let mut out = Vec::new();
    // Behind Envoy (a path after the check's own) the query is the client's, not the proxy's.
    let query = if uri.path() == PREFIX {
        uri.query()
    } else {
        None
    };
    if let Some(q) = query {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            if k == "scope" {
                out.push(Need::parse(&v)?);
            }
        }
    }
    for v in h.get_all(REQUIRED_SCOPE) {
        out.push(Need::parse(v.to_str().map_err(|e| e.to_string())?)?);
    }
    Ok(out)
}

/// Takes the request whole: method, URI and header map arguments would each be a copy.
pub async fn check(State(app): State<ApiState>, req: axum::extract::Request) -> Response {
    let (method, uri, headers) = (req.method(), req.uri(), req.headers());
    let Some(token) = bearer(headers) else {
        return unauthorized(false);
    };
    let grant = match app.services.verify(token).await {
        Ok(g) => g,
        Err(GrantError::InvalidToken) => return unauthorized(true),
        // Not a verdict on the token: the store is down or the node is overloaded.
        Err(e) => {
            tracing::warn!(error = %e, "gateway check could not verify a token");
            return deny(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "The token cannot be checked now; retry shortly",
                "Bearer realm=\"vedauth\"".into(),
            );
        }
    };
    let (m, path) = original(method, uri, headers);
    let extra = match extra_needs(uri, headers) {
        Ok(e) => e,
        Err(e) => {
            return deny(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                &format!("The required scope is not valid: {e}"),
                "Bearer realm=\"vedauth\", error=\"insufficient_scope\"".into(),
            )
        }
    };
    let held = grant.held_scope();
    let need = app.gateway.need(m, path);
    if need.is_none() && extra.is_empty() && app.gateway.require_route {
        return forbidden("");
    }
    for n in need.into_iter().chain(extra.iter()) {
        if !n.met_by(held) {
            return forbidden(&n.describe());
        }
    }
    let mut res = Response::new(axum::body::Body::empty());
    let h = res.headers_mut();
    // Room for these and what the layers above add (request id, content length, HSTS):
    // growing the map was 5 % of a check's cost.
    h.reserve(10);
    for (name, value) in [
        (IDENTITY, grant.identity.as_str()),
        (CLIENT, grant.client_id.as_str()),
        (SCOPE, grant.scope.as_str()),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    h.insert(EXPIRES, HeaderValue::from(grant.access_expires_at));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
