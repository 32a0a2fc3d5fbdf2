//! What every face shares: the client's address (always resolved), bearer extraction, body
//! parameters, JSON replies, the per-address rate limit, and the failures these pieces can have
//! ([`CommonError`]), which each face renders in its own error shape.

pub mod client;
mod params;

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use serde::Serialize;

pub use client::Limiter;
pub use params::{Params, Posted};

/// Largest request body accepted (protocol.md: requests).
pub const MAX_BODY: usize = 64 * 1024;

/// What the shared pieces refuse; each face turns it into its own error shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommonError {
    /// A body that does not parse, or a parameter of the wrong type.
    Malformed,
    /// A body over [`MAX_BODY`].
    TooLarge,
    /// The address went over its rate; it may try again after this many seconds.
    RateLimited {
        retry_after: u64,
    },
    NotFound,
    MethodNotAllowed,
}

impl CommonError {
    pub fn status(self) -> StatusCode {
        match self {
            CommonError::Malformed => StatusCode::BAD_REQUEST,
            CommonError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            CommonError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            CommonError::NotFound => StatusCode::NOT_FOUND,
            CommonError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

/// Faces take these as `Result<_, CommonError>` and render them their own way; this plain
/// OAuth-style JSON is only what an extractor answers when a handler does not.
impl IntoResponse for CommonError {
    fn into_response(self) -> Response {
        let error = match self {
            CommonError::RateLimited { .. } => "slow_down",
            _ => "invalid_request",
        };
        json_response(self.status(), &serde_json::json!({ "error": error }))
    }
}

/// A JSON reply with the content type vcert-python insists on.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    json_rendered(status, json_bytes(body))
}

/// A value as a JSON body.
pub fn json_bytes<T: Serialize + ?Sized>(body: &T) -> bytes::Bytes {
    serde_json::to_vec(body).map_or_else(|_| bytes::Bytes::from_static(b"{}"), Into::into)
}

/// A response with a JSON body rendered earlier.
pub fn json_rendered(status: StatusCode, body: bytes::Bytes) -> Response {
    let mut res = Response::new(axum::body::Body::from(body));
    *res.status_mut() = status;
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

/// The device authorization response (RFC 8628 §3.2, plus `expires` as pyVenafi reads it),
/// the same on both faces; `verification_uri` is where the person approves.
pub fn device_response(
    started: &crate::grants::DeviceStarted,
    verification_uri: String,
) -> Response {
    #[derive(Serialize)]
    struct DeviceBody<'a> {
        device_code: &'a str,
        user_code: &'a str,
        verification_uri: String,
        verification_uri_complete: String,
        expires_in: i64,
        expires: i64,
        interval: i64,
    }
    let complete = format!("{verification_uri}?user_code={}", started.user_code);
    no_store(json_response(
        StatusCode::OK,
        &DeviceBody {
            device_code: started.device_code.expose(),
            user_code: &started.user_code,
            verification_uri,
            verification_uri_complete: complete,
            expires_in: started.expires_in,
            expires: started.expires,
            interval: started.interval,
        },
    ))
}

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    // `to_str` accepts visible ASCII, space and tab: space and tab are then all the whitespace
    // there is, and the scheme ends at the first space. With `split_once` and `trim`, this was
    // 600 instructions of every verify and gateway check.
    let v = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim_ascii();
    let (scheme, token) = (v.get(..6)?, v.get(6..)?);
    (scheme.eq_ignore_ascii_case("bearer") && token.starts_with(' '))
        .then(|| token.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// What the listener knows of a request's connection, put on every request as one extension
/// (one allocation, where three extensions cost six): the peer's address, the chain of the
/// connection's own TLS handshake, who may forward a certificate in a header instead, and the
/// client's address through trusted proxies, which [`Front`] sets before any route.
#[derive(Debug, Clone)]
pub struct Connection {
    pub peer: SocketAddr,
    pub tls: Option<crate::certauth::PresentedChain>,
    pub forwarding: Option<std::sync::Arc<crate::certauth::ForwardedCertConfig>>,
    pub client: Option<IpAddr>,
}

impl Connection {
    /// A request that did not come through the listener (none in the server): nobody's
    /// address but our own.
    fn local() -> Self {
        Self {
            peer: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
            forwarding: None,
            client: None,
        }
    }
}

/// The client certificate a request presents (`None`: none), from the connection's TLS
/// handshake or, from a trusted proxy, its header (an unreadable header is an `Err`, for the
/// grant to audit). See `certauth::client_chain`.
#[derive(Debug, Clone)]
pub struct PresentedCert(
    pub Option<Result<crate::certauth::PresentedChain, crate::certauth::ForwardedError>>,
);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PresentedCert {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Some(conn) = parts.extensions.get::<Connection>() else {
            return Ok(PresentedCert(None));
        };
        let chain = crate::certauth::client_chain(
            conn.peer.ip(),
            conn.forwarding.as_deref(),
            &parts.headers,
            conn.tls.clone(),
        );
        Ok(PresentedCert(chain.transpose()))
    }
}

/// The client's address (through trusted proxies), for rate limits and the audit trail. Every
/// request has one: [`Front`] sets it before any route.
#[derive(Debug, Clone, Copy)]
pub struct Client(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Client(
            parts
                .extensions
                .get::<Connection>()
                .and_then(|c| c.client)
                .unwrap_or(IpAddr::from([127, 0, 0, 1])),
        ))
    }
}

/// Every request's middleware, as one layer: the client's address put on the request for
/// every route, then the request's span, metrics and access-log line. A tower layer of its
/// own rather than `from_fn`, which costs each request a clone of the boxed route and two more
/// boxes on the verify path.
#[derive(Debug, Clone)]
pub struct FrontLayer(pub Limiter);

impl<S> tower::Layer<S> for FrontLayer {
    type Service = Front<S>;
    fn layer(&self, inner: S) -> Front<S> {
        Front {
            inner,
            limiter: self.0.clone(),
            endpoint: None,
        }
    }
}

impl FrontLayer {
    /// The same middleware around a route served without the router (src/http/hot.rs), which
    /// therefore names its endpoint itself (the router's matched path is not there).
    pub fn named<S>(&self, endpoint: &'static str, inner: S) -> Front<S> {
        Front {
            inner,
            limiter: self.0.clone(),
            endpoint: Some(endpoint),
        }
    }
}

/// What [`Front`] answers with.
pub type FrontFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Response, std::convert::Infallible>> + Send>,
>;

#[derive(Debug, Clone)]
pub struct Front<S> {
    inner: S,
    limiter: Limiter,
    endpoint: Option<&'static str>,
}

impl<S> tower::Service<Request<Body>> for Front<S>
where
    S: tower::Service<Request<Body>, Response = Response, Error = std::convert::Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = FrontFuture;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let peer = req
            .extensions()
            .get::<Connection>()
            .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.peer.ip());
        let ip = self.limiter.client(peer, req.headers());
        match req.extensions_mut().get_mut::<Connection>() {
            Some(c) => c.client = Some(ip),
            None => {
                req.extensions_mut().insert(Connection {
                    client: Some(ip),
                    ..Connection::local()
                });
            }
        }
        let observation = crate::telemetry::Observation::start(&req, self.endpoint);
        let handling = self.inner.call(req);
        Box::pin(async move {
            let res = observation
                .run(async move {
                    match handling.await {
                        Ok(res) => res,
                        Err(never) => match never {},
                    }
                })
                .await;
            Ok(res)
        })
    }
}

/// The per-address rate limit of a face's token endpoints: refused before any other work (and
/// so before any password hashing), in the face's error shape `E`.
pub async fn rate_limit<E: From<CommonError> + IntoResponse>(
    axum::extract::State(limiter): axum::extract::State<Limiter>,
    Client(ip): Client,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    if let Err(wait) = limiter.check(ip) {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        tracing::info!(client = %ip, "rate limited");
        return E::from(CommonError::RateLimited {
            retry_after: secs.max(1),
        })
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // The scheme ends at the first space; a tab is no separator but is trimmed around.
        for (value, token) in [
            ("\t Bearer \tt0k \t", Some("t0k")),
            ("Bearer\tx", None),
            ("Bearerx y", None),
            ("Bear x", None),
            ("bEaReR a b", Some("a b")),
            ("Bearer  two", Some("two")),
        ] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(bearer(&h), token, "{value:?}");
        }
        // Bytes `to_str` refuses (obs-text): no token, as before.
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes("Bearer ab\u{e9}".as_bytes()).unwrap(),
        );
        assert_eq!(bearer(&h), None);
    }
}
