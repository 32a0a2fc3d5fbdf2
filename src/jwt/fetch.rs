//! The HTTPS GETs behind the key cache: OIDC discovery and JWK Sets.
//!
//! The client is hyper's own HTTP/1.1 connection over tokio-rustls (ring), one connection per
//! fetch. Why not hyper-util's pooled client or reqwest: fetches happen once per issuer per
//! `MaxTtl` or `RefreshDelay`, so a pool saves nothing, and both would add crates (hyper-rustls,
//! hyper-util's client, and for reqwest much more) to the server build for ~60 lines of
//! connection code. Everything used here is already built for the server and its tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use url::{Host, Url};

use super::jws::{clip, KeySet};

/// Largest discovery document or JWK Set read.
pub const MAX_BODY: usize = 1024 * 1024;
/// Redirects followed per GET.
const MAX_REDIRECTS: usize = 3;

/// Which certificate authorities the key fetches trust.
#[derive(Debug, Clone)]
pub struct FetchTrust {
    /// The operating system's trust store.
    pub system_roots: bool,
    /// More CA certificates (PEM), e.g. a private CA that signs an internal issuer's certificate.
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl Default for FetchTrust {
    fn default() -> Self {
        Self {
            system_roots: true,
            extra_ca_pem: None,
        }
    }
}

impl FetchTrust {
    /// Only the given CA bundle (tests, closed networks).
    pub fn only(ca_pem: impl Into<Vec<u8>>) -> Self {
        Self {
            system_roots: false,
            extra_ca_pem: Some(ca_pem.into()),
        }
    }

    /// The system's store plus the given bundle.
    pub fn system_plus(ca_pem: impl Into<Vec<u8>>) -> Self {
        Self {
            system_roots: true,
            extra_ca_pem: Some(ca_pem.into()),
        }
    }
}

/// The fetcher could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FetchSetupError {
    #[error("extra CA bundle: {0}")]
    CaBundle(String),
    #[error("TLS client configuration: {0}")]
    Tls(String),
}

/// What a fetch failed on. Its text goes into the `keys_unreachable` reason.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Url(String),
    #[error("connecting to {0}: {1}")]
    Connect(String, String),
    #[error("TLS with {0}: {1}")]
    Tls(String, String),
    #[error("HTTP with {0}: {1}")]
    Http(String, String),
    #[error("{0} answered {1}")]
    Status(String, StatusCode),
    #[error("{0}: more than {MAX_REDIRECTS} redirects")]
    Redirects(String),
    #[error("{0}: body larger than {MAX_BODY} bytes or unreadable: {1}")]
    Body(String, String),
    #[error("no answer within {0} s")]
    Timeout(u64),
    #[error("discovery document {0}: {1}")]
    Discovery(String, String),
    #[error("JWK Set {0}: {1}")]
    Jwks(String, String),
}

/// How one fetch may go.
#[derive(Debug, Clone, Copy)]
pub struct FetchPolicy {
    pub timeout: Duration,
    pub allow_http: bool,
    pub check_issuer: bool,
}

/// A JWK Set as fetched, with the lifetime its server suggested.
#[derive(Debug)]
pub struct FetchedKeys {
    pub keys: KeySet,
    /// Cache-Control `max-age` (or 0 for `no-store`/`no-cache`), if the JWKS response had one.
    pub max_age: Option<u64>,
    /// The JWK Set's URL (after discovery).
    pub jwks_url: String,
}

struct Response {
    body: Bytes,
    max_age: Option<u64>,
}

/// The HTTPS client of the key cache.
#[derive(Clone)]
pub struct Fetcher {
    tls: tokio_rustls::TlsConnector,
    user_agent: String,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").finish_non_exhaustive()
    }
}

impl Fetcher {
    pub fn new(trust: &FetchTrust) -> Result<Self, FetchSetupError> {
        let mut roots = rustls::RootCertStore::empty();
        if trust.system_roots {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!("JWT key fetches: no CA certificate in the system's trust store");
            }
        }
        if let Some(pem) = &trust.extra_ca_pem {
            let mut n = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| FetchSetupError::CaBundle(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| FetchSetupError::CaBundle(e.to_string()))?;
                n += 1;
            }
            if n == 0 {
                return Err(FetchSetupError::CaBundle("no certificate in it".into()));
            }
        }
        if roots.is_empty() {
            // Not fatal: with no issuer configured nothing is fetched; with one, each fetch
            // fails and says why.
            tracing::warn!("JWT key fetches: no trusted CA certificate");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| FetchSetupError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            user_agent: format!("vedauth/{}", env!("CARGO_PKG_VERSION")),
        })
    }

    /// Fetches an issuer's keys: from `jwks_uri` when given, else through OIDC discovery on
    /// `issuer`. The whole of it (both GETs, redirects included) is bounded by the timeout.
    pub async fn fetch_keys(
        &self,
        issuer: &str,
        jwks_uri: Option<&str>,
        policy: FetchPolicy,
    ) -> Result<FetchedKeys, FetchError> {
        let secs = policy.timeout.as_secs();
        match tokio::time::timeout(
            policy.timeout,
            self.fetch_keys_unbounded(issuer, jwks_uri, policy),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout(secs)),
        }
    }

    async fn fetch_keys_unbounded(
        &self,
        issuer: &str,
        jwks_uri: Option<&str>,
        policy: FetchPolicy,
    ) -> Result<FetchedKeys, FetchError> {
        let jwks_url = match jwks_uri {
            Some(u) => u.to_string(),
            None => self.discover(issuer, policy).await?,
        };
        let r = self.get(&jwks_url, policy.allow_http).await?;
        let keys = KeySet::from_json(&r.body).map_err(|e| FetchError::Jwks(jwks_url.clone(), e))?;
        Ok(FetchedKeys {
            keys,
            max_age: r.max_age,
            jwks_url,
        })
    }

    /// OpenID Connect Discovery 1.0 §4: `{issuer}/.well-known/openid-configuration`, whose
    /// `issuer` must be the one asked about (§4.3) and whose `jwks_uri` is used.
    async fn discover(&self, issuer: &str, policy: FetchPolicy) -> Result<String, FetchError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let r = self.get(&url, policy.allow_http).await?;
        let doc: serde_json::Value = serde_json::from_slice(&r.body)
            .map_err(|e| FetchError::Discovery(url.clone(), format!("not JSON: {e}")))?;
        if policy.check_issuer {
            match doc.get("issuer").and_then(|v| v.as_str()) {
                Some(i) if i == issuer => {}
                Some(i) => {
                    return Err(FetchError::Discovery(
                        url,
                        format!("its issuer {:?} is not {issuer:?}", clip(i)),
                    ))
                }
                None => return Err(FetchError::Discovery(url, "no issuer".into())),
            }
        }
        match doc.get("jwks_uri").and_then(|v| v.as_str()) {
            Some(j) if !j.is_empty() => Ok(j.to_string()),
            _ => Err(FetchError::Discovery(url, "no jwks_uri".into())),
        }
    }

    /// A GET that follows a few redirects (never from https to http unless http is allowed)
    /// and reads at most [`MAX_BODY`] bytes of a 200 answer.
    async fn get(&self, url: &str, allow_http: bool) -> Result<Response, FetchError> {
        let mut url = Url::parse(url).map_err(|e| FetchError::Url(format!("{url:?}: {e}")))?;
        for _ in 0..=MAX_REDIRECTS {
            let (status, location, resp) = self.get_once(&url, allow_http).await?;
            if status == StatusCode::OK {
                return resp.ok_or_else(|| FetchError::Http(url.to_string(), "no body".into()));
            }
            match (status.is_redirection(), location) {
                (true, Some(loc)) => {
                    url = url.join(&loc).map_err(|e| {
                        FetchError::Url(format!("redirect from {url} to {loc:?}: {e}"))
                    })?;
                }
                _ => return Err(FetchError::Status(url.to_string(), status)),
            }
        }
        Err(FetchError::Redirects(url.to_string()))
    }

    async fn get_once(
        &self,
        url: &Url,
        allow_http: bool,
    ) -> Result<(StatusCode, Option<String>, Option<Response>), FetchError> {
        let shown = url.to_string();
        let https = match url.scheme() {
            "https" => true,
            "http" if allow_http => false,
            s => {
                return Err(FetchError::Url(format!(
                    "{shown}: scheme {s} not allowed (https only unless NoHttps)"
                )))
            }
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| FetchError::Url(format!("{shown}: no port")))?;
        let (tcp, name) = match url.host() {
            Some(Host::Domain(d)) => (
                TcpStream::connect((d, port)).await,
                ServerName::try_from(d.to_string())
                    .map_err(|e| FetchError::Url(format!("{shown}: {e}")))?,
            ),
            Some(Host::Ipv4(ip)) => (
                TcpStream::connect(SocketAddr::from((ip, port))).await,
                ServerName::IpAddress(std::net::IpAddr::V4(ip).into()),
            ),
            Some(Host::Ipv6(ip)) => (
                TcpStream::connect(SocketAddr::from((ip, port))).await,
                ServerName::IpAddress(std::net::IpAddr::V6(ip).into()),
            ),
            None => return Err(FetchError::Url(format!("{shown}: no host"))),
        };
        let tcp = tcp.map_err(|e| FetchError::Connect(shown.clone(), e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let host_header = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
        let req = Request::get(if path.is_empty() { "/" } else { path })
            .header(header::HOST, host_header)
            .header(header::ACCEPT, "application/json, application/jwk-set+json")
            .header(header::USER_AGENT, &self.user_agent)
            .body(Empty::<Bytes>::new())
            .map_err(|e| FetchError::Url(format!("{shown}: {e}")))?;
        if https {
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| FetchError::Tls(shown.clone(), e.to_string()))?;
            exchange(TokioIo::new(tls), req, &shown).await
        } else {
            exchange(TokioIo::new(tcp), req, &shown).await
        }
    }
}

/// Aborts the connection task when the request is done or abandoned (timeout).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn exchange<T>(
    io: T,
    req: Request<Empty<Bytes>>,
    shown: &str,
) -> Result<(StatusCode, Option<String>, Option<Response>), FetchError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let http_err = |e: hyper::Error| FetchError::Http(shown.to_string(), e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(http_err)?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let resp = sender.send_request(req).await.map_err(http_err)?;
    let status = resp.status();
    if status != StatusCode::OK {
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        return Ok((status, location, None));
    }
    let max_age = cache_max_age(resp.headers());
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| FetchError::Body(shown.to_string(), e.to_string()))?
        .to_bytes();
    Ok((status, None, Some(Response { body, max_age })))
}

/// The lifetime a response's Cache-Control allows: `max-age`, or 0 for `no-store`/`no-cache`.
pub(crate) fn cache_max_age(headers: &http::HeaderMap) -> Option<u64> {
    let mut found = None;
    for v in headers.get_all(header::CACHE_CONTROL) {
        let Ok(v) = v.to_str() else { continue };
        for directive in v.split(',') {
            let d = directive.trim();
            let lower = d.to_ascii_lowercase();
            if lower == "no-store" || lower == "no-cache" {
                return Some(0);
            }
            if let Some(n) = lower.strip_prefix("max-age=") {
                if let Ok(n) = n.trim_matches('"').parse::<u64>() {
                    found = Some(n);
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control() {
        let mut h = http::HeaderMap::new();
        assert_eq!(cache_max_age(&h), None);
        h.insert(
            header::CACHE_CONTROL,
            "public, max-age=19302, must-revalidate".parse().unwrap(),
        );
        assert_eq!(cache_max_age(&h), Some(19302));
        h.insert(header::CACHE_CONTROL, "no-store".parse().unwrap());
        assert_eq!(cache_max_age(&h), Some(0));
        h.insert(header::CACHE_CONTROL, "max-age=abc".parse().unwrap());
        assert_eq!(cache_max_age(&h), None);
    }

    #[test]
    fn a_bad_extra_bundle_is_refused() {
        assert!(matches!(
            Fetcher::new(&FetchTrust::only(b"not pem".to_vec())),
            Err(FetchSetupError::CaBundle(_))
        ));
    }
}
