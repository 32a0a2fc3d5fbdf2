//! `vedauth status`: asks the running server for its health and reads the store's counts.

use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use super::GlobalOpts;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The server's base URL (default: from the configuration's listen address and TLS).
    #[arg(long)]
    pub url: Option<String>,
    /// Seconds to wait for the server's answer, connecting and TLS included.
    #[arg(long, default_value = "5", value_parser = parse_timeout)]
    pub timeout: Duration,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 3600.0) {
        return Err("give between 0 and 3600 seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// GET `{base}/readyz` trusting the generated CA, all of it (connect, TLS handshake, request,
/// body) within `timeout`: a stopped process that still holds its port, or a saturated server,
/// accepts the connection and never answers.
async fn readyz(
    base: &str,
    ca: Option<std::path::PathBuf>,
    timeout: Duration,
) -> Result<(u16, Value), String> {
    let mut b = reqwest_lite::Client::new();
    if let Some(ca) = ca {
        b = b.with_ca(&ca);
    }
    match tokio::time::timeout(timeout, b.get_json(&format!("{base}/readyz"))).await {
        Ok(Some(answer)) => Ok(answer),
        Ok(None) => Err("cannot connect".into()),
        Err(_) => Err(format!("no answer within {} s", timeout.as_secs_f64())),
    }
}

pub async fn run(g: &GlobalOpts, args: StatusArgs) -> anyhow::Result<()> {
    let cfg = g.load_config()?;
    let base = args.url.clone().unwrap_or_else(|| {
        let host = cfg
            .listen
            .replace("0.0.0.0", "127.0.0.1")
            .replace("[::]", "[::1]");
        format!("{}://{host}", if cfg.tls { "https" } else { "http" })
    });
    let ca = (cfg.tls && cfg.tls_cert_file.is_none())
        .then(|| crate::tls::TlsPaths::in_dir(&g.data_dir).ca_cert)
        .filter(|p| p.exists());
    let server = readyz(&base, ca, args.timeout).await;
    let app = g.open_assembly().await?;
    let counts = app.store.counts(app.clock.now()).await;
    let providers = app.identities.health().await;
    let report = json!({
        "server": match &server {
            Ok((code, body)) => json!({"url": base, "reachable": true, "ready": *code == 200, "health": body}),
            Err(why) => json!({"url": base, "reachable": false, "error": why}),
        },
        "version": crate::version::VERSION,
        "store": app.store.describe(),
        "counts": match &counts {
            Ok(c) => json!({"users": c.users, "applications": c.applications, "live_grants": c.grants}),
            Err(e) => json!({"error": e.to_string()}),
        },
        "providers": providers.iter().map(|(n, h)| json!({"name": n, "state": match h { Some(true) => "up", Some(false) => "down", None => "n/a" }})).collect::<Vec<_>>(),
    });
    if g.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let srv = &report["server"];
        println!(
            "server:    {} ({})",
            base,
            if srv["reachable"] == false {
                format!(
                    "not reachable: {}",
                    srv["error"].as_str().unwrap_or("cannot connect")
                )
            } else if srv["ready"] == true {
                format!(
                    "ready, version {}",
                    srv["health"]["version"].as_str().unwrap_or("?")
                )
            } else {
                format!(
                    "not ready: store {}",
                    srv["health"]["store"].as_str().unwrap_or("?")
                )
            }
        );
        println!("this tool: {}", crate::version::VERSION);
        println!("store:     {}", report["store"].as_str().unwrap_or(""));
        match &counts {
            Ok(c) => println!(
                "counts:    {} users, {} applications, {} live grants",
                c.users, c.applications, c.grants
            ),
            Err(e) => println!("counts:    unavailable ({e})"),
        }
        for (n, h) in &providers {
            println!(
                "provider:  {n} ({})",
                match h {
                    Some(true) => "up",
                    Some(false) => "down",
                    None => "local",
                }
            );
        }
    }
    Ok(())
}

/// A minimal HTTPS GET over hyper and rustls, enough for a status probe.
mod reqwest_lite {
    use std::path::Path;
    use std::sync::Arc;

    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    use serde_json::Value;

    pub struct Client {
        roots: rustls::RootCertStore,
    }

    impl Client {
        pub fn new() -> Self {
            Self {
                roots: rustls::RootCertStore::empty(),
            }
        }

        pub fn with_ca(mut self, ca: &Path) -> Self {
            if let Ok(certs) = CertificateDer::pem_file_iter(ca) {
                for c in certs.flatten() {
                    let _ = self.roots.add(c);
                }
            }
            self
        }

        pub async fn get_json(&self, url: &str) -> Option<(u16, Value)> {
            let uri: http::Uri = url.parse().ok()?;
            let host = uri
                .host()?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let tls = uri.scheme_str() == Some("https");
            let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
            // The caller bounds the whole exchange, connecting included.
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .ok()?;
            let req = http::Request::get(uri.path())
                .header("host", uri.authority()?.as_str())
                .body(Empty::<Bytes>::new())
                .ok()?;
            let res = if tls {
                let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .ok()?
                .with_root_certificates(self.roots.clone())
                .with_no_client_auth();
                let name = ServerName::try_from(host.clone()).ok()?;
                let stream = tokio_rustls::TlsConnector::from(Arc::new(cfg))
                    .connect(name, tcp)
                    .await
                    .ok()?;
                send(TokioIo::new(stream), req).await?
            } else {
                send(TokioIo::new(tcp), req).await?
            };
            Some(res)
        }
    }

    async fn send<T>(io: T, req: http::Request<Empty<Bytes>>) -> Option<(u16, Value)>
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
        tokio::spawn(conn);
        let res = sender.send_request(req).await.ok()?;
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.ok()?.to_bytes();
        Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }
}
