//! The running server: TLS material, the first start's administrator, the listeners, and the
//! background jobs (each with a name and a handle), shut down in order. `vedauth serve` and the
//! tests both start it here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::assembly::Assembly;
use crate::bootstrap::{self, PASSWORD_FILE};
use crate::http::common::Limiter;
use crate::http::{HttpState, MetricsAccess};
use crate::secret::Secret;
use crate::server::{self, ServerHandle};
use crate::tls::{self, CertStore, LiveTls, TlsPaths};

/// A background job of the runtime.
#[derive(Debug)]
struct Job {
    name: &'static str,
    handle: JoinHandle<()>,
}

/// A running server and what a caller needs to reach it.
#[derive(Debug)]
pub struct Runtime {
    pub handle: ServerHandle,
    /// The CA that signed the generated certificate, if one was generated.
    pub ca_file: Option<PathBuf>,
    pub certs: Option<Arc<CertStore>>,
    /// Set when the initial admin password file exists.
    pub password_file: Option<PathBuf>,
    pub first_start: bool,
    /// The second listener that asks for client certificates (`client_cert.listen`).
    pub client_cert_handle: Option<ServerHandle>,
    /// The TLS configurations that ask for client certificates while the grant is on.
    client_cert_tls: Vec<Arc<LiveTls>>,
    jobs: Vec<Job>,
    /// Tells the jobs to stop.
    stop_jobs: watch::Sender<bool>,
    assembly: Arc<Assembly>,
}

impl Runtime {
    pub fn curl_line(&self) -> Option<String> {
        self.password_file
            .as_ref()
            .map(|pw| bootstrap::curl_line(&self.handle.base_url(), self.ca_file.as_deref(), pw))
    }

    /// The names of the background jobs running now (for `status` and tests).
    pub fn job_names(&self) -> Vec<&'static str> {
        self.jobs.iter().map(|j| j.name).collect()
    }

    /// Reads the certificate switch and the trusted issuers now and sets what the listeners ask
    /// of clients accordingly (the "client certificates" job does it every
    /// `client_cert.refresh_secs`). True if a listener changed.
    pub async fn refresh_client_auth(&self) -> anyhow::Result<bool> {
        refresh_client_auth(&self.assembly, &self.client_cert_tls).await
    }

    /// Stops in order: no new connections, in-flight requests finish (up to the grace period),
    /// then the jobs stop, then the store commits what is queued and closes.
    pub async fn shutdown(self) {
        if let Some(h) = self.client_cert_handle {
            h.shutdown().await;
        }
        self.handle.shutdown().await;
        let _ = self.stop_jobs.send(true);
        for job in self.jobs {
            // The invalidation follower waits on the store's feed, not on the stop signal.
            if job.name == "invalidation follower" {
                job.handle.abort();
            }
            if let Err(e) = job.handle.await {
                if !e.is_cancelled() {
                    tracing::warn!(job = job.name, error = %e, "background job ended badly");
                }
            }
        }
        self.assembly.store.close().await;
    }
}

/// How often histogram samples are folded into their buckets. The recorder keeps each sample
/// (about 8 bytes) until then: every 5 s, the benchmark's mixed phase (about 90,000
/// requests/s) ended 4-5.5 MB higher than with 250 ms; folding costs the same per sample
/// whatever the interval.
const METRICS_UPKEEP: Duration = Duration::from_millis(250);

/// How often the allocator's free pages go back to the OS (`heap::release_free_memory`), so
/// that what a burst's closed connections held does not stay resident. On a blocking thread:
/// on an async worker, under the benchmark's load, a call took 0.3 ms (median) and up to
/// 4.3 ms, holding up that worker's requests meanwhile.
const MEMORY_RELEASE: Duration = Duration::from_secs(1);

/// Sets up TLS, creates the administrator on a first start, binds and starts serving, and
/// starts the background jobs (expiry sweep, gauges, limiter pruning, metrics upkeep, memory
/// release, the invalidation follower, the separate metrics listener).
pub async fn start(asm: Arc<Assembly>, listen: SocketAddr) -> anyhow::Result<Runtime> {
    let cfg = &asm.config;
    let (tls_config, ca_file, certs) = if cfg.tls {
        let (cert, key, ca) = match (&cfg.tls_cert_file, &cfg.tls_key_file) {
            (Some(c), Some(k)) => (c.clone(), k.clone(), None),
            _ => {
                let paths = TlsPaths::in_dir(&asm.data_dir);
                if tls::ensure_generated(&paths, asm.clock.now())? {
                    tracing::info!(ca = %paths.ca_cert.display(), "generated a local CA and server certificate");
                }
                (paths.cert, paths.key, Some(paths.ca_cert))
            }
        };
        let certs = Arc::new(CertStore::load(&cert, &key)?);
        let sc = tls::server_config(certs.clone())?;
        (Some(Arc::new(LiveTls::new(Arc::new(sc)))), ca, Some(certs))
    } else {
        tracing::warn!(
            "serving plain HTTP (--insecure-http): only run this behind a TLS-terminating proxy"
        );
        (None, None, None)
    };
    let preset = std::env::var("VEDAUTH_ADMIN_PASSWORD")
        .ok()
        .filter(|s| !s.is_empty())
        .map(Secret::new);
    let created = bootstrap::ensure_admin(
        asm.store.as_ref(),
        &asm.pool,
        &asm.data_dir,
        asm.clock.now(),
        preset,
    )
    .await?;
    let limiter = Limiter::new(&cfg.rate_limit);
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let issuer = if cfg.public_url.is_empty() {
        let scheme = if tls_config.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", listener.local_addr()?)
    } else {
        cfg.public_url.trim_end_matches('/').to_string()
    };
    let gateway = crate::http::gateway::Routes::new(&cfg.gateway).map_err(anyhow::Error::msg)?;
    let state = Arc::new(HttpState {
        services: asm.services(),
        limiter: limiter.clone(),
        metrics: MetricsAccess {
            served_here: cfg.metrics.enabled && cfg.metrics.listen.is_empty(),
            public: cfg.metrics.public,
        },
        issuer: issuer.into(),
        gateway,
        tls: cfg.tls,
    });
    let opts = server::ServerOptions::from_config(cfg);
    let mut client_cert_tls = Vec::new();
    if let Some(main) = &tls_config {
        if cfg.client_cert.request_on_main_listener {
            client_cert_tls.push(main.clone());
        }
    }
    // The second listener: its own TLS configuration over the same server certificate, so that
    // asking for client certificates there leaves the main listener as it is.
    let client_cert_handle = match (&certs, cfg.client_cert.listen.as_str()) {
        (Some(certs), addr) if !addr.is_empty() => {
            let addr: SocketAddr = addr.parse().context("client_cert.listen")?;
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the client-certificate address {addr}"))?;
            let live = Arc::new(LiveTls::new(Arc::new(tls::server_config(certs.clone())?)));
            client_cert_tls.push(live.clone());
            Some(server::start_live(
                l,
                Some(live),
                state.clone(),
                opts.clone(),
            )?)
        }
        _ => None,
    };
    refresh_client_auth(&asm, &client_cert_tls)
        .await
        .context("reading the certificate settings")?;
    let handle = server::start_live(listener, tls_config, state, opts)?;
    let (stop_jobs, stop) = watch::channel(false);
    let mut jobs = Vec::new();
    if let Some(h) = asm.engine.follow_invalidations() {
        jobs.push(Job {
            name: "invalidation follower",
            handle: h,
        });
    }
    let mut periodic = |name: &'static str, every: Duration, f: PeriodicFn| {
        jobs.push(Job {
            name,
            handle: server::spawn_periodic(every, stop.clone(), f),
        });
    };
    periodic(
        "rate-limit pruning",
        Duration::from_secs(60),
        Box::new(move || {
            let limiter = limiter.clone();
            Box::pin(async move { limiter.prune() })
        }),
    );
    periodic(
        "metrics upkeep",
        METRICS_UPKEEP,
        Box::new(|| Box::pin(async { crate::telemetry::run_upkeep() })),
    );
    periodic(
        "memory release",
        MEMORY_RELEASE,
        Box::new(|| {
            Box::pin(async {
                // A failed join only means the runtime is shutting down.
                let _ = tokio::task::spawn_blocking(crate::heap::release_free_memory).await;
            })
        }),
    );
    // Gauges that come from the store, not from events.
    let gauges = asm.clone();
    periodic(
        "gauges",
        Duration::from_secs(15),
        Box::new(move || {
            let asm = gauges.clone();
            Box::pin(async move {
                if let Ok(c) = asm.store.counts(asm.clock.now()).await {
                    metrics::gauge!("vedauth_live_grants").set(c.grants as f64);
                    metrics::gauge!("vedauth_users").set(c.users as f64);
                    metrics::gauge!("vedauth_applications").set(c.applications as f64);
                }
                asm.identities.health().await;
            })
        }),
    );
    if !client_cert_tls.is_empty() {
        let (asm, lives) = (asm.clone(), client_cert_tls.clone());
        periodic(
            "client certificates",
            Duration::from_secs(cfg.client_cert.refresh_secs.max(1)),
            Box::new(move || {
                let (asm, lives) = (asm.clone(), lives.clone());
                Box::pin(async move {
                    if let Err(e) = refresh_client_auth(&asm, &lives).await {
                        tracing::warn!(error = %e, "could not refresh the client-certificate settings");
                    }
                })
            }),
        );
    }
    let engine = asm.engine.clone();
    let batch = cfg.tokens.sweep_batch;
    periodic(
        "expiry sweep",
        Duration::from_secs(cfg.tokens.sweep_interval_secs.max(1)),
        Box::new(move || {
            let engine = engine.clone();
            Box::pin(async move {
                if let Err(e) = engine.sweep(batch).await {
                    tracing::warn!(error = %e, "expiry sweep failed");
                }
            })
        }),
    );
    // JWT issuers' keys fetched ahead of tokens; the pass itself decides (AutoRefresh) whether
    // it is due, so that a change of the setting applies without a restart.
    let engine = asm.engine.clone();
    periodic(
        "JWT key refresh",
        Duration::from_secs(15),
        Box::new(move || {
            let engine = engine.clone();
            Box::pin(async move {
                if let Err(e) = engine.refresh_jwt_keys().await {
                    tracing::warn!(error = %e, "JWT key refresh failed");
                }
            })
        }),
    );
    if cfg.metrics.enabled && !cfg.metrics.listen.is_empty() {
        let addr: SocketAddr = cfg.metrics.listen.parse()?;
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics address {addr}"))?;
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(|| async { crate::http::ops::render() }),
        );
        let mut stop = stop.clone();
        jobs.push(Job {
            name: "metrics listener",
            handle: tokio::spawn(async move {
                let _ = axum::serve(l, router)
                    .with_graceful_shutdown(async move {
                        let _ = stop.changed().await;
                    })
                    .await;
            }),
        });
    }
    let pw = asm.data_dir.join(PASSWORD_FILE);
    Ok(Runtime {
        handle,
        ca_file,
        certs,
        password_file: pw.exists().then_some(pw),
        first_start: created.is_some(),
        client_cert_handle,
        client_cert_tls,
        jobs,
        stop_jobs,
        assembly: asm,
    })
}

/// Sets what `lives` ask of clients: an optional certificate from the trusted issuers while
/// `AuthorizeByCertificate` is on and issuers are configured, nothing otherwise.
async fn refresh_client_auth(asm: &Assembly, lives: &[Arc<LiveTls>]) -> anyhow::Result<bool> {
    if lives.is_empty() {
        return Ok(false);
    }
    // The issuers are read only while the switch is on: off (the default), one small read.
    let settings = asm.store.settings().await?;
    let rows = if settings.authorize_by_certificate {
        asm.store.list_issuers().await?
    } else {
        Vec::new()
    };
    let issuers = if !rows.is_empty() {
        let bundle: String = rows.iter().map(|r| r.pem.as_str()).collect();
        Some(crate::certauth::TrustedIssuers::from_pem(
            bundle.as_bytes(),
        )?)
    } else {
        None
    };
    let mut changed = false;
    for live in lives {
        changed |= live.request_client_certs(issuers.as_ref())?;
    }
    if changed {
        tracing::info!(
            requested = issuers.is_some(),
            issuers = issuers.as_ref().map_or(0, |i| i.len()),
            "client certificates {}",
            if issuers.is_some() {
                "requested"
            } else {
                "no longer requested"
            }
        );
    }
    Ok(changed)
}

type PeriodicFn = Box<
    dyn FnMut() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + 'static,
>;
