//! The listener: accepts TCP connections, does the TLS handshake (unless plain HTTP was asked
//! for), serves HTTP/1.1 and HTTP/2 through hyper, and shuts down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use futures_util::stream::{FuturesUnordered, StreamExt};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::certauth::{strip_forwarded_headers, ForwardedCertConfig, PresentedChain};
use crate::http::common::Connection;
use crate::http::{self as web, ApiState};
use crate::tls::LiveTls;

mod limits;
mod rewrite;

use limits::{AddrSlot, Close, Deadlines, PerAddress, Track, Tracked};

/// How long a connection closed for a deadline has to say goodbye before it is dropped.
const GOODBYE: Duration = Duration::from_secs(1);

/// Limits of the listener (the `[http]` configuration).
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// How long in-flight requests get after shutdown begins.
    pub grace: Duration,
    pub max_connections: usize,
    /// Connections one client address may hold; 0 = no cap.
    pub max_connections_per_address: usize,
    /// Peers the per-address cap does not apply to (the trusted proxies).
    pub uncapped: Vec<crate::net::Cidr>,
    pub tls_handshake_timeout: Duration,
    /// Also the deadline of a connection's first request, from its start.
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    /// HTTP/2 pings; `None` = none.
    pub h2_keepalive_interval: Option<Duration>,
    pub h2_keepalive_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// `Strict-Transport-Security` value for HTTPS responses.
    pub hsts: Option<http::HeaderValue>,
    /// Who may forward a client certificate in a header, and in which; the headers of every
    /// convention are removed from everyone else's requests.
    pub forwarded_cert: Option<Arc<ForwardedCertConfig>>,
}

impl ServerOptions {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        let h = &cfg.http;
        let secs = |s: u64| Duration::from_secs(s.max(1));
        Self {
            grace: Duration::from_secs(cfg.shutdown_grace_secs),
            max_connections: h.max_connections.max(1),
            max_connections_per_address: h.max_connections_per_address,
            uncapped: cfg
                .rate_limit
                .trusted_proxies
                .iter()
                .filter_map(|p| crate::net::parse_cidr(p))
                .collect(),
            tls_handshake_timeout: secs(h.tls_handshake_timeout_secs),
            header_read_timeout: secs(h.header_read_timeout_secs),
            idle_timeout: secs(h.idle_timeout_secs),
            request_timeout: secs(h.request_timeout_secs),
            h2_keepalive_interval: (h.h2_keepalive_interval_secs > 0)
                .then(|| Duration::from_secs(h.h2_keepalive_interval_secs)),
            h2_keepalive_timeout: secs(h.h2_keepalive_timeout_secs),
            max_header_bytes: h.max_header_bytes.max(1024),
            max_headers: h.max_headers.max(8),
            hsts: (cfg.tls && h.hsts_max_age_secs > 0)
                .then(|| {
                    http::HeaderValue::from_str(&format!("max-age={}", h.hsts_max_age_secs)).ok()
                })
                .flatten(),
            forwarded_cert: cfg.client_cert.forwarding().map(Arc::new),
        }
    }

    fn deadlines(&self) -> Deadlines {
        Deadlines {
            header_read: self.header_read_timeout,
            idle: self.idle_timeout,
            // No answer of ours takes longer than the request timeout to make; the idle
            // timeout on top is the time it may take to reach a slow reader.
            stalled: self.request_timeout + self.idle_timeout,
        }
    }

    /// hyper's own limits, kept above the configured ones so that the configured ones are
    /// enforced by [`handle`] with a JSON answer. Up to 100 header fields hyper parses on the
    /// stack; beyond that it allocates per request, so it is only asked to when configured so.
    fn hard_limits(&self) -> (usize, Option<usize>) {
        let bytes = self
            .max_header_bytes
            .saturating_mul(2)
            .max(self.max_header_bytes.saturating_add(8192));
        let fields = (self.max_headers >= 100).then(|| self.max_headers.saturating_mul(2));
        (bytes, fields)
    }
}

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
    start_live(
        listener,
        tls.map(|c| Arc::new(LiveTls::new(c))),
        state,
        opts,
    )
}

/// Like [`start`], with a TLS configuration that can change while serving (client
/// certificates asked for or not).
pub fn start_live(
    listener: TcpListener,
    tls: Option<Arc<LiveTls>>,
    state: ApiState,
    opts: ServerOptions,
) -> std::io::Result<ServerHandle> {
    spawn(listener, tls, web::service(state), opts)
}

/// What the connection stack serves: the router behind the faces, or the benchmark's bare
/// handler. One name for the bounds every function of the stack needs.
pub trait Served:
    tower::Service<
        http::Request<Body>,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> Served for S where
    S: tower::Service<
            http::Request<Body>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
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
    S: Served,
{
    spawn(listener, tls.map(|c| Arc::new(LiveTls::new(c))), svc, opts)
}

fn spawn<S>(
    listener: TcpListener,
    tls: Option<Arc<LiveTls>>,
    svc: S,
    opts: ServerOptions,
) -> std::io::Result<ServerHandle>
where
    S: Served,
{
    let local_addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let is_tls = tls.is_some();
    let shared = Arc::new(Shared {
        builder: builder(&opts),
        tls,
        per_address: PerAddress::new(opts.max_connections_per_address, opts.uncapped.clone()),
        deadlines: opts.deadlines(),
        stop: stop_rx.clone(),
        opts,
    });
    let task = tokio::spawn(accept_loop(listener, shared, svc, stop_rx));
    Ok(ServerHandle {
        local_addr,
        tls: is_tls,
        stop,
        task,
    })
}

/// What every connection of a listener shares.
struct Shared {
    builder: Builder<TokioExecutor>,
    tls: Option<Arc<LiveTls>>,
    per_address: Arc<PerAddress>,
    deadlines: Deadlines,
    stop: watch::Receiver<bool>,
    opts: ServerOptions,
}

fn builder(opts: &ServerOptions) -> Builder<TokioExecutor> {
    let (hard_bytes, hard_fields) = opts.hard_limits();
    let mut b = Builder::new(TokioExecutor::new());
    // The header read timeout is the connection's own deadline (`Track`), not hyper's: hyper
    // arms a timer for each request's head and drops it when the head is in.
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(hard_bytes)
        .keep_alive(true);
    if let Some(n) = hard_fields {
        b.http1().max_headers(n);
    }
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(hard_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(64)
        .keep_alive_interval(opts.h2_keepalive_interval)
        .keep_alive_timeout(opts.h2_keepalive_timeout);
    b
}

/// Whether a request's head is over the configured limits: counted as HTTP/1.1 would carry
/// it (request line, and `name: value` plus line end per field), for either HTTP version.
fn over_header_limits<B>(req: &http::Request<B>, opts: &ServerOptions) -> Option<&'static str> {
    let headers = req.headers();
    if headers.len() > opts.max_headers {
        return Some("The request has too many header fields");
    }
    let uri = req.uri();
    // "METHOD target HTTP/1.1\r\n" and the blank line that ends the head.
    let mut size = req.method().as_str().len()
        + uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + 14;
    for (name, value) in headers {
        size += name.as_str().len() + value.len() + 4;
    }
    (size > opts.max_header_bytes).then_some("The request header fields are too large")
}

/// Runs one request with the request timeout, adding HSTS on HTTPS.
async fn handle<S>(
    svc: S,
    req: http::Request<Body>,
    opts: &ServerOptions,
) -> Result<axum::response::Response, std::convert::Infallible>
where
    S: Served,
{
    use axum::response::IntoResponse;
    let mut res = if let Some(why) = over_header_limits(&req, opts) {
        crate::http::vedauth::VedauthError::new(
            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "invalid_request",
            why,
        )
        .into_response()
    } else {
        match tokio::time::timeout(opts.request_timeout, svc.oneshot(req)).await {
            Ok(r) => r?,
            Err(_) => crate::http::vedauth::VedauthError::new(
                http::StatusCode::REQUEST_TIMEOUT,
                "invalid_request",
                "The request took too long",
            )
            .into_response(),
        }
    };
    if let Some(v) = &opts.hsts {
        res.headers_mut()
            .insert(http::header::STRICT_TRANSPORT_SECURITY, v.clone());
    }
    Ok(res)
}

async fn accept_loop<S>(
    listener: TcpListener,
    shared: Arc<Shared>,
    svc: S,
    mut stop: watch::Receiver<bool>,
) where
    S: Served,
{
    let max = shared.opts.max_connections;
    let slots = Arc::new(Semaphore::new(max));
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
        let addr_slot = match shared.per_address.enter(peer.ip()) {
            Ok(slot) => slot,
            Err(_) => {
                // Closed unanswered: one address may not take the slots of all the others.
                tracing::debug!(%peer, "connection refused: too many from this address");
                metrics::counter!("vedauth_connections_closed_total", "reason" => "per_address_limit")
                    .increment(1);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve_connection(
            shared.clone(),
            svc.clone(),
            tcp,
            peer,
            permit,
            addr_slot,
        ));
    }
    drop(listener);
    tracing::info!("stopped accepting; finishing in-flight requests");
    // Every connection holds a permit until it ends: all of them back means all ended.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(shared.opts.grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing remaining connections");
    }
}

/// One connection: the TLS handshake (bounded), then HTTP until the client leaves, a deadline
/// passes or the server stops.
async fn serve_connection<S>(
    shared: Arc<Shared>,
    svc: S,
    tcp: TcpStream,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
    _addr_slot: Option<AddrSlot>,
) where
    S: Served,
{
    match &shared.tls {
        Some(live) => {
            // The configuration current now: whether a client certificate is asked for.
            let handshake = TlsAcceptor::from(live.current()).accept(tcp);
            match tokio::time::timeout(shared.opts.tls_handshake_timeout, handshake).await {
                Ok(Ok(tls)) => {
                    // Recorded by rustls only after the client proved it holds the key.
                    let chain = PresentedChain::from_tls(tls.get_ref().1);
                    serve_http(&shared, svc, tls, peer, chain).await
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    metrics::counter!("vedauth_connections_closed_total", "reason" => "handshake_timeout")
                        .increment(1);
                }
            }
        }
        None => serve_http(&shared, svc, tcp, peer, None).await,
    }
}

async fn serve_http<S, I>(
    shared: &Arc<Shared>,
    svc: S,
    io: I,
    peer: SocketAddr,
    chain: Option<PresentedChain>,
) where
    S: Served,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let track = Track::new();
    let conn = Connection {
        peer,
        tls: chain,
        forwarding: shared.opts.forwarded_cert.clone(),
        client: None,
    };
    let hyper_svc = {
        let (shared, track) = (shared.clone(), track.clone());
        hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            // Before anything reads the request: a forwarded certificate header counts only
            // from a trusted proxy, in its own convention.
            strip_forwarded_headers(peer.ip(), conn.forwarding.as_deref(), req.headers_mut());
            req.extensions_mut().insert(conn.clone());
            let guard = track.enter(req.version() == http::Version::HTTP_2);
            let (svc, shared) = (svc.clone(), shared.clone());
            async move {
                let res = handle(svc, req.map(Body::new), &shared.opts).await?;
                Ok::<_, std::convert::Infallible>(res.map(|body| Tracked {
                    body,
                    _guard: guard,
                }))
            }
        })
    };
    let io = TokioIo::new(rewrite::ErrorRewrite::new(io, shared.opts.hsts.clone()));
    let conn = shared.builder.serve_connection_with_upgrades(io, hyper_svc);
    tokio::pin!(conn);
    let mut stop = shared.stop.clone();
    // The server's stop and the connection's deadlines, polled only once one of them has been
    // woken: `select!` polls every branch each time the task wakes, which for a connection is
    // at every request, and polling these two cost more than a cached answer's lookup.
    let mut closing = FuturesUnordered::new();
    closing.push(async {
        tokio::select! {
            _ = stop.wait_for(|stopping| *stopping) => Close::Shutdown,
            why = track.due(shared.deadlines) => why,
        }
    });
    let why = tokio::select! {
        ended = conn.as_mut() => {
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            return;
        }
        Some(why) = closing.next() => why,
    };
    drop(closing);
    // At shutdown in-flight requests get the grace period. A connection closed for a deadline
    // has nothing in flight (or nothing that moves): a moment for the goodbye (HTTP/2 GOAWAY,
    // which hyper follows with a ping the client may never answer), then it is dropped.
    let grace = if why == Close::Shutdown {
        shared.opts.grace
    } else {
        tracing::debug!(%peer, reason = why.label(), "closing the connection");
        metrics::counter!("vedauth_connections_closed_total", "reason" => why.label()).increment(1);
        GOODBYE
    };
    conn.as_mut().graceful_shutdown();
    let mut ended = tokio::time::timeout(grace, conn.as_mut()).await;
    if ended.is_err() && matches!(why, Close::FirstRequest | Close::Idle) && track.open() > 0 {
        // A request that came in just as the deadline passed gets its request timeout.
        ended = tokio::time::timeout(shared.opts.request_timeout, conn.as_mut()).await;
    }
    match ended {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
        Err(_) => tracing::debug!(%peer, "connection dropped after its grace period"),
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
