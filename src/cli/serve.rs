//! `vedauth serve`, and [`launch`], which tests use to run the same server in-process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;

use super::GlobalOpts;
use crate::app::App;
use crate::bootstrap::{self, PASSWORD_FILE};
use crate::clock::SystemClock;
use crate::secret::Secret;
use crate::server::{self, ServerHandle};
use crate::telemetry::LogFormat;
use crate::tls::{self, CertStore, TlsPaths};

#[derive(Debug, Args, Clone, Default)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8443).
    #[arg(long)]
    pub listen: Option<String>,
    /// Serve plain HTTP, for running behind a TLS-terminating proxy.
    #[arg(long)]
    pub insecure_http: bool,
}

/// A running server and what a caller needs to reach it.
#[derive(Debug)]
pub struct Launched {
    pub handle: ServerHandle,
    /// The CA that signed the generated certificate, if one was generated.
    pub ca_file: Option<PathBuf>,
    pub certs: Option<Arc<CertStore>>,
    /// Set when the initial admin password file exists.
    pub password_file: Option<PathBuf>,
    pub first_start: bool,
}

impl Launched {
    pub fn curl_line(&self) -> Option<String> {
        self.password_file
            .as_ref()
            .map(|pw| bootstrap::curl_line(&self.handle.base_url(), self.ca_file.as_deref(), pw))
    }
}

/// Sets up TLS, creates the admin on first start, binds and starts serving, and starts the
/// expiry sweep.
pub async fn launch(app: Arc<App>, listen: SocketAddr) -> anyhow::Result<Launched> {
    let cfg = &app.config;
    let (tls_config, ca_file, certs) = if cfg.tls {
        let (cert, key, ca) = match (&cfg.tls_cert_file, &cfg.tls_key_file) {
            (Some(c), Some(k)) => (c.clone(), k.clone(), None),
            _ => {
                let paths = TlsPaths::in_dir(&app.data_dir);
                if tls::ensure_generated(&paths, app.clock.now())? {
                    tracing::info!(ca = %paths.ca_cert.display(), "generated a local CA and server certificate");
                }
                (paths.cert, paths.key, Some(paths.ca_cert))
            }
        };
        let certs = Arc::new(CertStore::load(&cert, &key)?);
        let sc = tls::server_config(certs.clone())?;
        (Some(Arc::new(sc)), ca, Some(certs))
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
        app.store.as_ref(),
        &app.pool,
        &app.data_dir,
        app.clock.now(),
        preset,
    )
    .await?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let handle = server::start(
        listener,
        tls_config,
        app.clone(),
        server::ServerOptions::from_config(cfg),
    )?;
    app.engine.follow_invalidations();
    let limiter = app.limiter.clone();
    server::spawn_periodic(
        Duration::from_secs(60),
        handle.stopper().subscribe(),
        move || {
            let limiter = limiter.clone();
            async move { limiter.prune() }
        },
    );
    server::spawn_periodic(
        Duration::from_secs(5),
        handle.stopper().subscribe(),
        || async { crate::telemetry::run_upkeep() },
    );
    // Gauges that come from the store, not from events.
    let gauges = app.clone();
    server::spawn_periodic(
        Duration::from_secs(15),
        handle.stopper().subscribe(),
        move || {
            let app = gauges.clone();
            async move {
                if let Ok(c) = app.store.counts(app.clock.now()).await {
                    metrics::gauge!("vedauth_live_grants").set(c.grants as f64);
                    metrics::gauge!("vedauth_users").set(c.users as f64);
                    metrics::gauge!("vedauth_applications").set(c.applications as f64);
                }
                app.engine.identities().health().await;
            }
        },
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
        let mut stop = handle.stopper().subscribe();
        tokio::spawn(async move {
            let _ = axum::serve(l, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await;
        });
    }
    let engine = app.engine.clone();
    let batch = cfg.tokens.sweep_batch;
    server::spawn_periodic(
        Duration::from_secs(cfg.tokens.sweep_interval_secs.max(1)),
        handle.stopper().subscribe(),
        move || {
            let engine = engine.clone();
            async move {
                if let Err(e) = engine.sweep(batch).await {
                    tracing::warn!(error = %e, "expiry sweep failed");
                }
            }
        },
    );
    let pw = app.data_dir.join(PASSWORD_FILE);
    Ok(Launched {
        handle,
        ca_file,
        certs,
        password_file: pw.exists().then_some(pw),
        first_start: created.is_some(),
    })
}

/// Where the server listens, where its CA certificate and the initial admin password are, and
/// a ready `curl` line. For a person (human log format) the banner goes to stdout, apart from
/// the log; with `--log-format json` it is one log event like any other, so that everything
/// the process prints is JSON.
fn banner(format: LogFormat, launched: &Launched, store: &str) {
    let url = launched.handle.base_url();
    let ca = launched.ca_file.as_ref().map(|p| p.display().to_string());
    let password_file = launched
        .password_file
        .as_ref()
        .map(|p| p.display().to_string());
    let curl = launched.curl_line();
    if format == LogFormat::Json {
        tracing::info!(
            addr = %launched.handle.local_addr,
            url = %url,
            store,
            version = crate::version::VERSION,
            ca_file = ca.as_deref(),
            admin_password_file = password_file.as_deref(),
            first_start = launched.first_start,
            get_token = curl.as_deref(),
            "vedauth is listening"
        );
        return;
    }
    tracing::info!(
        addr = %launched.handle.local_addr,
        store,
        version = crate::version::VERSION,
        "vedauth listening"
    );
    println!("vedauth is listening on {url}");
    if let Some(ca) = &ca {
        println!("CA certificate (pass it to clients as their CA bundle): {ca}");
    }
    if let Some(pw) = &password_file {
        if launched.first_start {
            println!("First start: created the user 'admin' and the application 'vedauth-admin'.");
        }
        println!(
            "The admin password is in {pw}; change it with `vedauth user passwd admin`, then delete the file."
        );
    }
    if let Some(line) = &curl {
        println!("Get a token:\n  {line}");
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(mut t), Ok(mut i)) => {
                tokio::select! {
                    _ = t.recv() => {},
                    _ = i.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn run(global: &GlobalOpts, args: ServeArgs) -> anyhow::Result<()> {
    crate::telemetry::init_tracing(global.log_format);
    crate::telemetry::metrics_handle();
    let mut result = serve(global, args).await;
    if global.log_format == LogFormat::Json {
        // A collector reading JSON lines gets the failure as one of them, not as plain text.
        if let Err(e) = &result {
            tracing::error!(error = %format!("{e:#}"), "vedauth stopped on an error");
            result = Err(super::Reported.into());
        }
    }
    // Log lines are written by a thread of their own: let it finish before the process ends.
    crate::telemetry::flush_logs();
    result
}

async fn serve(global: &GlobalOpts, args: ServeArgs) -> anyhow::Result<()> {
    let mut cfg = global.load_config()?;
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if args.insecure_http {
        cfg.tls = false;
    }
    cfg.validate()?;
    let listen = cfg.listen_addr()?;
    let app = Arc::new(
        App::open(cfg, &global.data_dir, Arc::new(SystemClock), None)
            .await
            .context("opening the store")?,
    );
    let launched = launch(app.clone(), listen).await?;
    banner(global.log_format, &launched, &app.store.describe());
    #[cfg(unix)]
    {
        // SIGHUP re-reads the certificate and key (connections already open carry on) and
        // reopens the audit trail's file (after log rotation).
        let certs = launched.certs.clone();
        let audit = app.audit.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                if let Some(certs) = &certs {
                    match certs.reload() {
                        Ok(()) => tracing::info!("TLS certificate reloaded"),
                        Err(e) => {
                            tracing::error!(error = %e, "TLS certificate reload failed; keeping the old one")
                        }
                    }
                }
                match audit.reopen() {
                    Ok(()) => tracing::info!("audit trail reopened"),
                    Err(e) => {
                        tracing::error!(error = %e, "audit trail could not be reopened; keeping the old file")
                    }
                }
            }
        });
    }
    shutdown_signal().await;
    tracing::info!("shutdown requested");
    launched.handle.shutdown().await;
    // Queued writes commit and the WAL is folded into the database before we exit.
    app.store.close().await;
    tracing::info!("stopped");
    Ok(())
}
