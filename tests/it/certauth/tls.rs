//! A real rustls server on loopback built with `certauth::server_config`, a minimal hyper
//! handler that validates the chain the listener put in the request's extensions, and real
//! clients: reqwest (rustls) with and without a client identity, hand-built rustls client
//! configurations (TLS 1.2 and 1.3, a stolen certificate without its key), and curl (OpenSSL).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use vedauth::certauth::{
    server_config, validate, CertificateConfiguration, ChainCheck, PresentedChain, SourceField,
    TrustedIssuers,
};
use vedauth::clock::{Clock, SystemClock};
use vedauth::tls::CertStore;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::pki::{expired_window, Ca, Leaf, LeafSpec};

struct Server {
    addr: SocketAddr,
    server_ca: Ca,
    /// Handshakes the server refused, with rustls's reason.
    failures: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/whoami", self.addr.port())
    }

    /// Waits (bounded) until the server has recorded a refused handshake.
    async fn failure(&self) -> String {
        for _ in 0..100 {
            if let Some(f) = self.failures.lock().unwrap().last().cloned() {
                return f;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server recorded no failed handshake");
    }
}

/// What the listener will do: the handshake, the peer's chain into the request's extensions,
/// and a handler that runs the grant's certificate check on it.
async fn start(issuers: TrustedIssuers, check: ChainCheck) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::root("Test Server CA");
    let leaf = server_ca.server_leaf();
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    std::fs::write(&cert, format!("{}{}", leaf.pem, server_ca.pem())).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    let resolver = Arc::new(CertStore::load(&cert, &key).unwrap());
    let acceptor = TlsAcceptor::from(Arc::new(server_config(resolver, &issuers, check).unwrap()));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let failures = Arc::new(Mutex::new(Vec::new()));
    let issuers = Arc::new(issuers);
    let config = Arc::new(CertificateConfiguration {
        attempt_sid_extension_before_source_field: true,
        source_field: SourceField::Cn,
        authorized_issuer_dns: issuers.authorized_issuer_dns(),
    });
    let recorded = failures.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, failures) = (acceptor.clone(), recorded.clone());
            let (issuers, config) = (issuers.clone(), config.clone());
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(s) => s,
                    Err(e) => {
                        failures.lock().unwrap().push(e.to_string());
                        return;
                    }
                };
                let chain = PresentedChain::from_tls(tls.get_ref().1);
                let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                    if let Some(c) = chain.clone() {
                        req.extensions_mut().insert(c);
                    }
                    let (issuers, config) = (issuers.clone(), config.clone());
                    async move { Ok::<_, Infallible>(whoami(&req, &issuers, &config)) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Server {
        addr,
        server_ca,
        failures,
        dir,
        task,
    }
}

fn whoami(
    req: &Request<Incoming>,
    issuers: &TrustedIssuers,
    config: &CertificateConfiguration,
) -> Response<Full<Bytes>> {
    let chain = req.extensions().get::<PresentedChain>();
    let seen = chain.map_or(0, |c| c.certs().len());
    let (status, body) = match validate(chain, issuers, config, SystemClock.now()) {
        Ok(v) => (
            200,
            json!({"chain": seen, "field": v.identity.field(), "identity": v.identity.value()}),
        ),
        Err(e) => {
            let r = e.refusal();
            (
                r.status(),
                json!({"chain": seen, "error": r.error(), "error_description": r.description(),
                       "cause": e.cause()}),
            )
        }
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn reqwest_client(server: &Server, identity: Option<&Leaf>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(
            reqwest::Certificate::from_pem(server.server_ca.pem().as_bytes()).unwrap(),
        );
    if let Some(leaf) = identity {
        let pem = format!("{}{}", leaf.presented_pem(), leaf.key_pem);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

async fn get(client: &reqwest::Client, server: &Server) -> (u16, Value) {
    let res = client.get(server.url()).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// A client certificate resolver that presents a fixed chain with a fixed signing key (which
/// need not belong to it) and records the CA names the server hinted.
#[derive(Debug)]
struct Presenting {
    key: Arc<CertifiedKey>,
    hints: Mutex<Vec<Vec<u8>>>,
}

impl ResolvesClientCert for Presenting {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        _schemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        *self.hints.lock().unwrap() = root_hint_subjects.iter().map(|h| h.to_vec()).collect();
        Some(self.key.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

fn presenting(
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    key_of: &Leaf,
) -> Arc<Presenting> {
    let signer = rustls::crypto::ring::sign::any_supported_type(&key_of.key()).unwrap();
    Arc::new(Presenting {
        key: Arc::new(CertifiedKey::new(chain, signer)),
        hints: Mutex::new(Vec::new()),
    })
}

fn rustls_client(
    server: &Server,
    version: &'static rustls::SupportedProtocolVersion,
    resolver: Arc<Presenting>,
) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server.server_ca.der()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .unwrap()
    .with_root_certificates(roots)
    .with_client_cert_resolver(resolver);
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .build()
        .unwrap()
}

#[tokio::test]
async fn reqwest_without_and_with_client_certificates() {
    let ca = Ca::root("Client CA");
    let other = Ca::root("Other CA");
    let server = start(ca.trusted(), ChainCheck::AtGrant).await;

    // No certificate: the handshake succeeds, the handler sees none, the grant says 400.
    let (status, body) = get(&reqwest_client(&server, None), &server).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["chain"], 0);
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(
        body["error_description"],
        "No client certificate was presented"
    );

    // A trusted certificate: the handler sees its chain and the identity comes out.
    let alice = ca.issue(LeafSpec::cn("alice"));
    let (status, body) = get(&reqwest_client(&server, Some(&alice)), &server).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"chain": 1, "field": "CN", "identity": "alice"})
    );

    // The SID extension wins when present ("SID first" is on in this server).
    let sid = "S-1-5-21-1004336348-1177238915-682003330-512";
    let bob = ca.issue(LeafSpec::cn("bob").with_sid(sid));
    let (status, body) = get(&reqwest_client(&server, Some(&bob)), &server).await;
    assert_eq!(
        (status, &body["field"], &body["identity"]),
        (200, &json!("SID"), &json!(sid))
    );

    // An untrusted CA's certificate: the handshake succeeds, the grant answers 401 in JSON.
    let mallory = other.issue(LeafSpec::cn("mallory"));
    let (status, body) = get(&reqwest_client(&server, Some(&mallory)), &server).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["chain"], 1);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(
        body["error_description"],
        "Client certificate is not trusted"
    );
    assert_eq!(body["cause"], "untrusted_issuer");

    // Expired, and without a mappable identity.
    let (from, to) = expired_window();
    let old = ca.issue(LeafSpec::cn("old").valid(from, to));
    let (status, body) = get(&reqwest_client(&server, Some(&old)), &server).await;
    assert_eq!(
        (status, &body["cause"]),
        (401, &json!("certificate_expired")),
        "{body}"
    );
    let nameless = ca.issue(LeafSpec::new().with_org("Acme"));
    let (status, body) = get(&reqwest_client(&server, Some(&nameless)), &server).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["error_description"],
        "Certificate does not map to a known identity"
    );

    assert!(
        server.failures.lock().unwrap().is_empty(),
        "no handshake failed"
    );
}

#[tokio::test]
async fn an_intermediate_sent_by_the_client_reaches_the_handler() {
    let root = Ca::root("Root CA");
    let issuing = root.intermediate("Issuing CA");
    let server = start(root.trusted(), ChainCheck::AtGrant).await;
    let carol = issuing
        .issue(LeafSpec::cn("carol"))
        .with_intermediate(&issuing);
    let (status, body) = get(&reqwest_client(&server, Some(&carol)), &server).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"chain": 2, "field": "CN", "identity": "carol"})
    );
}

#[tokio::test]
async fn tls12_and_tls13_both_prove_possession_and_hint_the_trusted_cas() {
    let ca = Ca::root("Client CA");
    let server = start(ca.trusted(), ChainCheck::AtGrant).await;
    let dave = ca.issue(LeafSpec::cn("dave"));
    let ca_subject = X509Certificate::from_der(ca.der().as_ref())
        .unwrap()
        .1
        .subject()
        .as_raw()
        .to_vec();
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let resolver = presenting(dave.chain(), &dave);
        let client = rustls_client(&server, version, resolver.clone());
        let (status, body) = get(&client, &server).await;
        assert_eq!(status, 200, "{version:?}: {body}");
        assert_eq!(body["identity"], "dave");
        // The CertificateRequest named exactly the trusted issuer.
        assert_eq!(
            *resolver.hints.lock().unwrap(),
            vec![ca_subject.clone()],
            "{version:?}"
        );
    }
}

#[tokio::test]
async fn a_certificate_without_its_key_fails_the_handshake() {
    // The chain check is deferred, the proof of possession is not: rustls still verifies the
    // CertificateVerify signature against the presented leaf.
    let ca = Ca::root("Client CA");
    let server = start(ca.trusted(), ChainCheck::AtGrant).await;
    let victim = ca.issue(LeafSpec::cn("admin"));
    let thief = ca.issue(LeafSpec::cn("thief"));
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        server.failures.lock().unwrap().clear();
        let client = rustls_client(&server, version, presenting(victim.chain(), &thief));
        let res = client.get(server.url()).send().await;
        assert!(res.is_err(), "{version:?}: a request got through: {res:?}");
        let why = server.failure().await;
        assert!(why.contains("BadSignature"), "{version:?}: {why}");
    }
    // A certificate that is not one at all is refused at the handshake too.
    server.failures.lock().unwrap().clear();
    let junk = vec![rustls_pki_types::CertificateDer::from(vec![
        0x30, 0x03, 0x02, 0x01, 0x00,
    ])];
    let client = rustls_client(&server, &rustls::version::TLS13, presenting(junk, &thief));
    assert!(client.get(server.url()).send().await.is_err());
    assert!(server.failure().await.contains("BadEncoding"));
}

#[tokio::test]
async fn chain_check_at_the_handshake_refuses_untrusted_certificates_there() {
    let ca = Ca::root("Client CA");
    let other = Ca::root("Other CA");
    let server = start(ca.trusted(), ChainCheck::AtHandshake).await;
    let (status, _) = get(&reqwest_client(&server, None), &server).await;
    assert_eq!(status, 400);
    let erin = ca.issue(LeafSpec::cn("erin"));
    let (status, body) = get(&reqwest_client(&server, Some(&erin)), &server).await;
    assert_eq!((status, &body["identity"]), (200, &json!("erin")));
    assert!(server.failures.lock().unwrap().is_empty());

    let mallory = other.issue(LeafSpec::cn("mallory"));
    let res = reqwest_client(&server, Some(&mallory))
        .get(server.url())
        .send()
        .await;
    assert!(res.is_err(), "{res:?}");
    assert!(server.failure().await.contains("UnknownIssuer"));
}

#[test]
fn no_trusted_issuers_means_no_certificate_request() {
    let store = {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::root("Server CA");
        let leaf = ca.server_leaf();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&c, &leaf.pem).unwrap();
        std::fs::write(&k, &leaf.key_pem).unwrap();
        Arc::new(CertStore::load(&c, &k).unwrap())
    };
    let e = server_config(store, &TrustedIssuers::empty(), ChainCheck::AtGrant).unwrap_err();
    assert!(e.to_string().contains("no trusted issuers"), "{e}");
}

/// curl (OpenSSL) against the server; `max_tls12` caps the protocol version.
fn curl(server: &Server, leaf: Option<(&Leaf, &str)>, max_tls12: bool) -> (u16, Value) {
    let dir: &Path = server.dir.path();
    let ca: PathBuf = dir.join("server-ca.pem");
    std::fs::write(&ca, server.server_ca.pem()).unwrap();
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "--cacert"])
        .arg(&ca)
        .args(["-w", "\n%{http_code}"]);
    if max_tls12 {
        cmd.args(["--tls-max", "1.2"]);
    }
    if let Some((leaf, name)) = leaf {
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, leaf.presented_pem()).unwrap();
        std::fs::write(&key, &leaf.key_pem).unwrap();
        cmd.arg("--cert").arg(&cert).arg("--key").arg(&key);
    }
    let out = cmd.arg(server.url()).output().unwrap_or_else(|e| {
        panic!("curl must be installed for this test (a real client of the certificate grant): {e}")
    });
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "curl failed: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.trim().parse().unwrap(),
        serde_json::from_str(body).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_and_without_cert_and_key() {
    let ca = Ca::root("Client CA");
    let other = Ca::root("Other CA");
    let server = Arc::new(start(ca.trusted(), ChainCheck::AtGrant).await);
    let alice = Arc::new(ca.issue(LeafSpec::cn("alice").with_upn("alice@corp.example")));
    let mallory = Arc::new(other.issue(LeafSpec::cn("mallory")));
    let s = server.clone();
    let results = tokio::task::spawn_blocking(move || {
        vec![
            curl(&s, None, false),
            curl(&s, Some((&alice, "alice")), false),
            curl(&s, Some((&alice, "alice")), true),
            curl(&s, Some((&mallory, "mallory")), false),
        ]
    })
    .await
    .unwrap();
    let (status, body) = &results[0];
    assert_eq!(*status, 400, "{body}");
    assert_eq!(body["chain"], 0);
    assert_eq!(
        body["error_description"],
        "No client certificate was presented"
    );
    for (status, body) in &results[1..3] {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(
            *body,
            json!({"chain": 1, "field": "CN", "identity": "alice"})
        );
    }
    let (status, body) = &results[3];
    assert_eq!(*status, 401, "{body}");
    assert_eq!(body["chain"], 1);
    assert_eq!(
        body["error_description"],
        "Client certificate is not trusted"
    );
    assert_eq!(body["cause"], "untrusted_issuer");
    assert!(server.failures.lock().unwrap().is_empty());
}
