//! The HTTP faces. Each face parses its wire, calls the use cases (the grant core, the
//! administration core) and renders their answers and errors in its own shape; none reaches the
//! store or the audit trail. `common` holds what the faces share; `ops` the operations
//! endpoints (health, readiness, metrics).

pub mod common;
pub mod console;
pub mod gateway;
mod hot;
pub mod oauth2;
pub mod ops;
pub mod vedauth;

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http::Request;

use crate::services::Services;
use common::Limiter;
use vedauth::VedauthError;

/// What every handler has: the use cases, and the HTTP layer's own state.
#[derive(Debug)]
pub struct HttpState {
    pub services: Services,
    /// Per-address rate limits and the client-address rule (trusted proxies).
    pub limiter: Limiter,
    pub metrics: MetricsAccess,
    /// The OAuth 2.0 issuer (`public_url`, or this listener's own URL).
    pub issuer: Box<str>,
    /// The gateway check's routing.
    pub gateway: gateway::Routes,
    /// Whether the listener speaks TLS (the scheme of the URLs the server hands out).
    pub tls: bool,
}

/// Where `/metrics` is served and to whom.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsAccess {
    /// On the main listener (not turned off, not moved to an address of its own).
    pub served_here: bool,
    /// Without a token.
    pub public: bool,
}

/// Shared behind one `Arc`, its fields held by value: each request clones the state (axum
/// hands every handler its own copy), and with one reference count instead of one per field
/// that is one atomic operation on a cache line every core touches, not five.
pub type ApiState = Arc<HttpState>;

/// Every face's routes and the operations endpoints, behind the request middleware (request
/// id, span, metrics, access log) and the client-address resolution.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .merge(vedauth::router(state.clone()))
        .merge(oauth2::router(state.clone()))
        .merge(gateway::router())
        .merge(console::router(state.clone()))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        // Paths no face knows are answered in VEDauth's shape, the server's first face.
        .fallback(|| async { VedauthError::not_found() })
        .method_not_allowed_fallback(|| async { VedauthError::method_not_allowed() })
        .layer(common::FrontLayer(state.limiter.clone()))
        .with_state(state)
}

/// The router, with the hot lane in front of it, behind the VEDauth face's path folding, as
/// one service for the connection loop.
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
    let lane = hot::lane(&state, router(state.clone()));
    tower::ServiceExt::map_request(lane, vedauth::fold_path::<Body>)
}
