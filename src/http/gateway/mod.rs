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
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

use super::common::{bearer, json_response};
use super::ApiState;
use crate::domain::Grant;
use crate::grants::{GrantError, Rendering};
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

/// What the proxy says of the original request, from one pass over the request's headers: a
/// lookup by name hashes the name, and a check would make five of them for headers that are
/// mostly absent. The first value of each header counts, as `HeaderMap::get` would have it.
#[derive(Default)]
struct FromProxy<'a> {
    original_method: Option<&'a str>,
    forwarded_method: Option<&'a str>,
    original_uri: Option<&'a str>,
    forwarded_uri: Option<&'a str>,
    /// Every `X-Vedauth-Required-Scope` value.
    required: Vec<&'a HeaderValue>,
}

impl<'a> FromProxy<'a> {
    fn read(h: &'a HeaderMap) -> Self {
        let mut p = Self::default();
        for (name, value) in h {
            // All five are `x-` names; the standard headers are most of a request's.
            if !name.as_str().starts_with("x-") {
                continue;
            }
            let slot = if *name == ORIGINAL_METHOD {
                &mut p.original_method
            } else if *name == FORWARDED_METHOD {
                &mut p.forwarded_method
            } else if *name == ORIGINAL_URI {
                &mut p.original_uri
            } else if *name == FORWARDED_URI {
                &mut p.forwarded_uri
            } else if *name == REQUIRED_SCOPE {
                p.required.push(value);
                continue;
            } else {
                continue;
            };
            // Unreadable or blank counts as not given (`original` skips it), as before.
            if slot.is_none() {
                *slot = Some(value.to_str().map(str::trim).unwrap_or_default());
            }
        }
        p
    }

    /// The original request's method and path, as the proxy reports them.
    fn original(&self, method: &'a Method, uri: &'a Uri) -> (&'a str, &'a str) {
        let given = |v: Option<&'a str>| v.filter(|s| !s.is_empty());
        let m = given(self.original_method)
            .or_else(|| given(self.forwarded_method))
            .unwrap_or(method.as_str());
        let p = given(self.original_uri)
            .or_else(|| given(self.forwarded_uri))
            .unwrap_or_else(|| match uri.path().strip_prefix(PREFIX) {
                Some(rest) if !rest.is_empty() => rest,
                _ => "/",
            });
        (m, p)
    }
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
fn extra_needs(uri: &Uri, required: &[&HeaderValue]) -> Result<Vec<Need>, String> {
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
    for v in required {
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
    let proxy = FromProxy::read(headers);
    let (m, path) = proxy.original(method, uri);
    let extra = match extra_needs(uri, &proxy.required) {
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
    // The answer's headers, made once per cached grant used more than once and cloned from
    // then on: inserting them (hashing each name, checking each value) was 2,000 instructions
    // of every check, a clone of the map is a few hundred.
    if let Some(h) = grant.rendered(Rendering::GatewayHeaders, |g| Some(answer_headers(g))) {
        *res.headers_mut() = h;
    }
    res
}

/// Identity, client, scope and expiry in `X-Vedauth-*` headers, each value a slice of one
/// buffer; `Cache-Control: no-store`.
fn answer_headers(g: &Grant) -> HeaderMap {
    let values = render_values(g);
    let (i, c, s) = (g.identity.len(), g.client_id.len(), g.scope.len());
    // Room for what the layers above add (request id, HSTS) serves only the answer made here:
    // the clones a check answers with later are exactly full and grow at the request id
    // (docs/BENCHMARKS.md, "Shared reference counts", for the alternative measured).
    let mut h = HeaderMap::with_capacity(10);
    for (name, from, to) in [
        (IDENTITY, 0, i),
        (CLIENT, i, i + c),
        (SCOPE, i + c, i + c + s),
        (EXPIRES, i + c + s, values.len()),
    ] {
        // A value a header cannot carry (a control character) is left out.
        if let Some(Ok(v)) = (from <= to && to <= values.len())
            .then(|| HeaderValue::from_maybe_shared(values.slice(from..to)))
        {
            h.insert(name, v);
        }
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h
}

/// Identity, client, scope and expiry (decimal), one after the other.
fn render_values(g: &Grant) -> Bytes {
    let expires = g.access_expires_at.to_string();
    let mut b =
        Vec::with_capacity(g.identity.len() + g.client_id.len() + g.scope.len() + expires.len());
    for part in [
        g.identity.as_str(),
        g.client_id.as_str(),
        g.scope.as_str(),
        &expires,
    ] {
        b.extend_from_slice(part.as_bytes());
    }
    Bytes::from(b)
}
