//! The listener: accepts TCP connections, does the TLS handshake (unless plain HTTP was asked
//! for), serves HTTP/1.1 and HTTP/2 through hyper, and shuts down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::api::{self, ApiState};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Limits of the listener (the `[http]` configuration).
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// How long in-flight requests get after shutdown begins.
    pub grace: Duration,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// `Strict-Transport-Security` value for HTTPS responses.
    pub hsts: Option<http::HeaderValue>,
}

impl ServerOptions {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        let h = &cfg.http;
        Self {
            grace: Duration::from_secs(cfg.shutdown_grace_secs),
            max_connections: h.max_connections.max(1),
            header_read_timeout: Duration::from_secs(h.header_read_timeout_secs.max(1)),
            request_timeout: Duration::from_secs(h.request_timeout_secs.max(1)),
            max_header_bytes: h.max_header_bytes,
            max_headers: h.max_headers.max(8),
            hsts: (cfg.tls && h.hsts_max_age_secs > 0)
                .then(|| {
                    http::HeaderValue::from_str(&format!("max-age={}", h.hsts_max_age_secs)).ok()
                })
                .flatten(),
        }
    }
}

/// The peer's address, available to handlers as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// A running server: its address and the means to stop it.
#[derive(Debug)]
pub struct ServerHandle {
    pub local_addr: SocketAddr,
    pub tls: bool,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ServerHandle {
    pub fn base_url(&self) -> String {
        let host = match self.local_addr {
            SocketAddr::V4(a) if a.ip().is_unspecified() => format!("127.0.0.1:{}", a.port()),
            SocketAddr::V6(a) if a.ip().is_unspecified() => format!("[::1]:{}", a.port()),
            a => a.to_string(),
        };
        format!("{}://{}", if self.tls { "https" } else { "http" }, host)
    }

    /// Stops accepting, lets in-flight requests finish (up to the grace period), and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Waits for the server to end on its own (it only does after `shutdown`).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

/// Starts serving `state` on `listener`; TLS when `tls` is given.
pub fn start(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: ApiState,
    opts: ServerOptions,
) -> std::io::Result<ServerHandle> {
    start_service(listener, tls, api::service(state), opts)
}

/// Serves any service on the same connection stack as [`start`] (accept loop, TLS, hyper
/// builder, timeouts): the benchmark's bare-handler baseline uses it, so that baseline and
/// server differ only in what runs behind the stack.
pub fn start_service<S>(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    svc: S,
    opts: ServerOptions,
) -> std::io::Result<ServerHandle>
where
    S: tower::Service<
            http::Request<Body>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let local_addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let is_tls = tls.is_some();
    let task = tokio::spawn(accept_loop(listener, tls, svc, stop_rx, opts));
    Ok(ServerHandle {
        local_addr,
        tls: is_tls,
        stop,
        task,
    })
}

fn builder(opts: &ServerOptions) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(opts.max_header_bytes.max(8192))
        .max_headers(opts.max_headers)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(opts.max_header_bytes.max(8192) as u32)
        .max_concurrent_streams(64);
    b
}

/// Runs one request with the request timeout, adding HSTS on HTTPS.
async fn handle<S>(
    svc: S,
    req: http::Request<Body>,
    timeout: Duration,
    hsts: Option<http::HeaderValue>,
) -> Result<axum::response::Response, std::convert::Infallible>
where
    S: tower::Service<
            http::Request<Body>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Send,
    S::Future: Send,
{
    use axum::response::IntoResponse;
    let mut res = match tokio::time::timeout(timeout, svc.oneshot(req)).await {
        Ok(r) => r?,
        Err(_) => crate::api::ApiError::new(
            http::StatusCode::REQUEST_TIMEOUT,
            "invalid_request",
            "The request took too long",
        )
        .into_response(),
    };
    if let Some(v) = hsts {
        res.headers_mut()
            .insert(http::header::STRICT_TRANSPORT_SECURITY, v);
    }
    Ok(res)
}

async fn accept_loop<S>(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    svc: S,
    mut stop: watch::Receiver<bool>,
    opts: ServerOptions,
) where
    S: tower::Service<
            http::Request<Body>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(builder(&opts));
    let slots = Arc::new(tokio::sync::Semaphore::new(opts.max_connections));
    loop {
        // At the connection limit, stop accepting: further clients wait in the backlog.
        let permit = tokio::select! {
            _ = stop.changed() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let svc = svc.clone();
        let (timeout, hsts) = (opts.request_timeout, opts.hsts.clone());
        let hyper_svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(PeerAddr(peer));
            handle(svc.clone(), req.map(Body::new), timeout, hsts.clone())
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                Some(acc) => {
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acc.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), hyper_svc);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), hyper_svc);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
            }
        });
    }
    drop(listener);
    tracing::info!("stopped accepting; finishing in-flight requests");
    if tokio::time::timeout(opts.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing remaining connections");
    }
}

/// Runs `f` every `every` until `stop` fires; for the expiry sweep and similar chores.
pub fn spawn_periodic<F, Fut>(
    every: Duration,
    mut stop: watch::Receiver<bool>,
    mut f: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => f().await,
            }
        }
    })
}
