//! `vedauth serve`: the runtime (`crate::runtime`) in a process, with its banner, signals and
//! ordered shutdown.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use super::GlobalOpts;
use crate::assembly::Assembly;
use crate::clock::SystemClock;
use crate::runtime::{self, Runtime};
use crate::telemetry::LogFormat;

#[derive(Debug, Args, Clone, Default)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8443).
    #[arg(long)]
    pub listen: Option<String>,
    /// Serve plain HTTP, for running behind a TLS-terminating proxy.
    #[arg(long)]
    pub insecure_http: bool,
}

/// Where the server listens, where its CA certificate and the initial admin password are, and
/// a ready `curl` line. For a person (human log format) the banner goes to stdout, apart from
/// the log; with `--log-format json` it is one log event like any other, so that everything
/// the process prints is JSON.
fn banner(format: LogFormat, launched: &Runtime, store: &str) {
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

/// Resolves at SIGTERM or SIGINT. The handlers are installed when this is called, not when it
/// is first awaited: a signal that came before them would end the process by its default
/// action, uncleanly, so they must be in place before the banner tells anyone the server runs.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
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
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
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
    let stop = shutdown_signal();
    let mut cfg = global.load_config()?;
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if args.insecure_http {
        cfg.tls = false;
    }
    cfg.validate()?;
    let listen = cfg.listen_addr()?;
    let asm = Arc::new(
        Assembly::open(cfg, &global.data_dir, Arc::new(SystemClock), None)
            .await
            .context("opening the store")?,
    );
    let running = runtime::start(asm.clone(), listen).await?;
    banner(global.log_format, &running, &asm.store.describe());
    #[cfg(unix)]
    {
        // SIGHUP re-reads the certificate and key (connections already open carry on) and
        // reopens the audit trail's file (after log rotation).
        let certs = running.certs.clone();
        let audit = asm.audit.clone();
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
    stop.await;
    tracing::info!("shutdown requested");
    // In order: no new connections, in-flight requests finish, the jobs stop, queued writes
    // commit and the WAL is folded into the database, before we exit.
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
