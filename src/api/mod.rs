//! The HTTP edge: routing, request parsing and response rendering. It translates between the
//! wire and [`crate::grants::Engine`]; it never touches the store directly.

pub mod admin;
pub mod client;
pub mod error;
pub mod ops;
mod params;
mod vedauth;
pub mod vedsdk;

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use serde::Serialize;

pub use error::ApiError;
pub use params::Params;

use crate::app::App;

/// Largest request body accepted (decisions.md §2).
pub const MAX_BODY: usize = 64 * 1024;

pub type ApiState = Arc<App>;

/// A JSON reply with the content type vcert-python insists on.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut res = (status, bytes).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    res
}

/// Token responses must not be cached by anything in between.
pub fn no_store(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Paths match case-insensitively and tolerate a trailing slash: routes are declared in lower
/// case without one, and every request path is folded to that form before routing.
pub fn normalize_path<B>(mut req: Request<B>) -> Request<B> {
    let path = req.uri().path();
    // The common case, a path already in that form, costs no allocation.
    if !path.bytes().any(|b| b.is_ascii_uppercase()) && (path.len() <= 1 || !path.ends_with('/')) {
        return req;
    }
    let mut folded = path.to_ascii_lowercase();
    while folded.len() > 1 && folded.ends_with('/') {
        folded.pop();
    }
    if folded != path {
        let mut parts = req.uri().clone().into_parts();
        let pq = match req.uri().query() {
            Some(q) => format!("{folded}?{q}"),
            None => folded,
        };
        if let Ok(p) = pq.parse() {
            parts.path_and_query = Some(p);
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// The client's address (through trusted proxies), for rate limits and the audit trail.
#[derive(Debug, Clone, Copy)]
pub struct Client(pub std::net::IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Client>()
            .copied()
            .unwrap_or(Client(std::net::IpAddr::from([127, 0, 0, 1]))))
    }
}

/// Per-address rate limit of the token endpoints: 429 `slow_down` before any other work (and
/// so before any password hashing). Also records the client address for the handlers.
async fn rate_limit(
    axum::extract::State(app): axum::extract::State<ApiState>,
    mut req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<crate::server::PeerAddr>()
        .map(|p| p.0.ip())
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let ip = app.limiter.client(peer, req.headers());
    req.extensions_mut().insert(Client(ip));
    if let Err(wait) = app.limiter.check(ip) {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        tracing::info!(client = %ip, "rate limited");
        return ApiError {
            retry_after: Some(secs.max(1)),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
                "Too many requests; slow down and retry later",
            )
        }
        .into_response();
    }
    next.run(req).await
}

pub fn router(state: ApiState) -> Router {
    let limited = Router::new()
        .route("/vedauth/authorize/oauth", post(vedauth::authorize_oauth))
        .route("/vedauth/authorize/token", post(vedauth::authorize_token))
        .route(
            "/vedauth/revoke/token",
            // HEAD must have no side effect: it is refused, not routed to GET's revocation.
            get(vedauth::revoke)
                .delete(vedauth::revoke)
                .head(|| async { ApiError::method_not_allowed() }),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit,
        ));
    Router::new()
        .merge(limited)
        .route("/vedauth/authorize/verify", get(vedauth::verify))
        .route(
            "/vedauth/authorize/isauthserver",
            get(vedauth::is_auth_server),
        )
        .route("/vedsdk", get(vedsdk::ping))
        .route("/vedsdk/systemstatus/version", get(vedsdk::version))
        .route("/vedsdk/identity/self", get(vedsdk::identity_self))
        .route("/vedsdk/authorize", post(vedsdk::legacy_authorize))
        .route("/vedsdk/oauth/{op}", post(admin::dispatch))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(axum::middleware::from_fn(crate::telemetry::observe))
        .with_state(state)
}

/// The router behind path normalization, as one service for the connection loop.
pub fn service(
    state: ApiState,
) -> impl tower::Service<
    Request<Body>,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    use tower::ServiceExt;
    router(state).map_request(normalize_path::<Body>)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fold_to_lower_case_without_trailing_slash() {
        let r = normalize_path(
            Request::builder()
                .uri("/VEDAUTH/Authorize/OAuth/?x=A")
                .body(())
                .unwrap_or_default(),
        );
        assert_eq!(r.uri().path(), "/vedauth/authorize/oauth");
        assert_eq!(r.uri().query(), Some("x=A"));
        let r = normalize_path(
            Request::builder()
                .uri("/vedsdk/")
                .body(())
                .unwrap_or_default(),
        );
        assert_eq!(r.uri().path(), "/vedsdk");
        let r = normalize_path(Request::builder().uri("/").body(()).unwrap_or_default());
        assert_eq!(r.uri().path(), "/");
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc=="),
        );
        assert_eq!(bearer(&h), Some("abc=="));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer   x "),
        );
        assert_eq!(bearer(&h), Some("x"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic x"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }
}
