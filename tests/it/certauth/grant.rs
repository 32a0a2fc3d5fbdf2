//! The certificate grant end to end: `POST /vedauth/authorize/certificate` on the real server
//! (its listener asks for the certificate, the trusted issuers and the switch come from the
//! store), each documented answer, the audit trail's causes, the listener following the
//! switch, a second mutual-TLS listener, and forwarded certificates from trusted proxies only.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use rustls_pki_types::pem::PemObject;

use serde_json::{json, Value};
use vedauth::admin::Caller;

use super::pki::{expired_window, Ca, Leaf, LeafSpec};
use crate::common::{Options, Reply, TestServer};

pub const APP: &str = "vcert-sdk";
pub const SCOPE: &str = "certificate:manage";
pub const PW: &str = "Alice-Password-1";

fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("audit log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("every audit line is JSON"))
        .collect()
}

/// Turns the certificate grant on or off, and has the listeners follow at once.
pub async fn switch(s: &TestServer, on: bool) {
    let mut st = s
        .app
        .admin
        .get_settings(&Caller::Operator)
        .await
        .expect("settings");
    st.authorize_by_certificate = on;
    s.app
        .admin
        .set_settings(&Caller::Operator, st)
        .await
        .expect("set settings");
    s.launched
        .refresh_client_auth()
        .await
        .expect("refresh listeners");
}

/// A server with a local user `alice`, the application `vcert-sdk` open to everyone, a trusted
/// client CA, and the certificate grant on.
pub async fn cert_server(opts: Options) -> (TestServer, Ca) {
    let s = TestServer::start_with(opts).await;
    s.setup_basic("alice", PW, APP, SCOPE).await;
    let ca = Ca::root("vedauth Client CA");
    let added = s
        .app
        .admin
        .add_issuers(&Caller::Operator, &ca.pem())
        .await
        .expect("add issuer");
    assert_eq!(added.len(), 1);
    switch(&s, true).await;
    (s, ca)
}

/// A client of `base` (trusting the server's CA) presenting `leaf`, from `local` if given.
pub fn client(s: &TestServer, leaf: Option<&Leaf>, local: Option<IpAddr>) -> reqwest::Client {
    let ca = std::fs::read(s.launched.ca_file.as_ref().expect("generated CA")).expect("CA");
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA PEM"))
        .local_address(local);
    if let Some(leaf) = leaf {
        let pem = format!("{}{}", leaf.presented_pem(), leaf.key_pem);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    b.build().expect("client")
}

pub async fn cert_grant(c: &reqwest::Client, base: &str, body: &Value) -> Reply {
    let r = c
        .post(format!("{base}/vedauth/authorize/certificate"))
        .json(body)
        .send()
        .await
        .expect("send");
    Reply::read(r).await
}

fn body() -> Value {
    json!({"client_id": APP, "scope": SCOPE})
}

/// The last `login_failed` event of the certificate grant.
fn last_refusal(s: &TestServer) -> Value {
    events(&s.dir.join("audit.log"))
        .into_iter()
        .rev()
        .find(|e| e["event"] == "login_failed")
        .expect("a login_failed event")
}

#[tokio::test]
async fn each_certificate_gets_its_documented_answer_and_the_audit_trail_the_real_cause() {
    let (s, ca) = cert_server(Options::default()).await;
    let alice_id = s
        .app
        .store
        .user_by_name("alice")
        .await
        .expect("read")
        .expect("alice")
        .identity();

    // Trusted, naming a local user by CN: the 8-key body of every grant, a token that works.
    let alice = ca.issue(LeafSpec::cn("alice"));
    let r = cert_grant(&client(&s, Some(&alice), None), &s.base, &body()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let keys: Vec<&str> = r
        .json
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "access_token",
            "refresh_token",
            "expires_in",
            "expires",
            "token_type",
            "scope",
            "identity",
            "refresh_until"
        ]
    );
    assert_eq!(r.json["identity"], alice_id.as_str());
    assert_eq!(r.json["scope"], SCOPE);
    let v = s.verify(&r.str("access_token")).await;
    assert_eq!(v.status, 200, "{}", v.text);
    assert_eq!(v.json["identity"], alice_id.as_str());
    // Refreshable like any other grant.
    let rr = s.refresh(APP, &r.str("refresh_token")).await;
    assert_eq!(rr.status, 200, "{}", rr.text);
    let accepted = events(&s.dir.join("audit.log"))
        .into_iter()
        .find(|e| e["event"] == "certificate_accepted")
        .expect("certificate_accepted");
    assert_eq!(accepted["identity"], alice_id.as_str());
    assert_eq!(accepted["username"], "CN=alice");
    assert_eq!(
        accepted["detail"]["certificate"]["trusted_issuer"],
        ca.trusted().authorized_issuer_dns()[0]
    );

    // Expired.
    let (from, to) = expired_window();
    let old = ca.issue(LeafSpec::cn("alice").valid(from, to));
    let r = cert_grant(&client(&s, Some(&old), None), &s.base, &body()).await;
    r.assert_error(401, "invalid_grant", "Client certificate is not trusted");
    assert_eq!(last_refusal(&s)["cause"], "certificate_expired");

    // From a CA nobody trusts.
    let stranger = Ca::root("Stranger CA").issue(LeafSpec::cn("alice"));
    let r = cert_grant(&client(&s, Some(&stranger), None), &s.base, &body()).await;
    r.assert_error(401, "invalid_grant", "Client certificate is not trusted");
    let e = last_refusal(&s);
    assert_eq!(e["cause"], "untrusted_issuer");
    assert!(
        e["detail"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("Stranger CA"),
        "{e}"
    );

    // Trusted, but naming nobody.
    let nobody = ca.issue(LeafSpec::cn("nobody-here"));
    let r = cert_grant(&client(&s, Some(&nobody), None), &s.base, &body()).await;
    r.assert_error(
        401,
        "invalid_grant",
        "Certificate does not map to a known identity",
    );
    let e = last_refusal(&s);
    assert_eq!(e["cause"], "no_mappable_identity");
    assert_eq!(e["detail"]["identity_cause"], "unknown_identity");
    assert_eq!(e["username"], "CN=nobody-here");

    // Trusted, but without the configured field (SourceField UPN, the certificate has none).
    let mut st = s
        .app
        .admin
        .get_settings(&Caller::Operator)
        .await
        .expect("get");
    st.certificate_configuration.source_field = vedauth::certauth::SourceField::Upn;
    s.app
        .admin
        .set_settings(&Caller::Operator, st.clone())
        .await
        .expect("set");
    let r = cert_grant(&client(&s, Some(&alice), None), &s.base, &body()).await;
    r.assert_error(
        401,
        "invalid_grant",
        "Certificate does not map to a known identity",
    );
    assert_eq!(last_refusal(&s)["cause"], "no_mappable_identity");
    st.certificate_configuration.source_field = vedauth::certauth::SourceField::Cn;
    s.app
        .admin
        .set_settings(&Caller::Operator, st)
        .await
        .expect("set");

    // A disabled user's certificate is refused like an unknown one; the trail says why.
    s.app
        .admin
        .set_user_disabled(&Caller::Operator, "alice", true)
        .await
        .expect("disable");
    let r = cert_grant(&client(&s, Some(&alice), None), &s.base, &body()).await;
    r.assert_error(
        401,
        "invalid_grant",
        "Certificate does not map to a known identity",
    );
    let e = last_refusal(&s);
    assert_eq!(e["detail"]["identity_cause"], "disabled");
    assert_eq!(e["identity"], alice_id.as_str());
    s.app
        .admin
        .set_user_disabled(&Caller::Operator, "alice", false)
        .await
        .expect("enable");

    // Locked out after failed password logins: a certificate does not get around the lock.
    let threshold = s.app.config.lockout.threshold;
    for _ in 0..threshold {
        let r = s
            .password_grant(APP, "alice", "wrong-password-0", SCOPE)
            .await;
        assert_eq!(r.status, 401, "{}", r.text);
    }
    let r = cert_grant(&client(&s, Some(&alice), None), &s.base, &body()).await;
    r.assert_error(
        401,
        "invalid_grant",
        "Certificate does not map to a known identity",
    );
    assert_eq!(last_refusal(&s)["detail"]["identity_cause"], "locked");
    s.app
        .admin
        .unlock_user(&Caller::Operator, "alice")
        .await
        .expect("unlock");
    let r = cert_grant(&client(&s, Some(&alice), None), &s.base, &body()).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // No certificate at all.
    let r = cert_grant(&client(&s, None, None), &s.base, &body()).await;
    r.assert_error(
        400,
        "invalid_request",
        "No client certificate was presented",
    );
    assert_eq!(last_refusal(&s)["cause"], "no_certificate");

    // The rules still decide: an unknown application, a scope beyond the application's.
    let r = cert_grant(
        &client(&s, Some(&alice), None),
        &s.base,
        &json!({"client_id": "nope", "scope": SCOPE}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json["error"], "invalid_client");
    let r = cert_grant(
        &client(&s, Some(&alice), None),
        &s.base,
        &json!({"client_id": APP, "scope": "admin"}),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = cert_grant(
        &client(&s, Some(&alice), None),
        &s.base,
        &json!({"scope": SCOPE}),
    )
    .await;
    r.assert_error(400, "invalid_request", "Application identifier is missing");

    // The switch off: the documented 400, whatever the certificate.
    switch(&s, false).await;
    for leaf in [Some(&alice), None] {
        let r = cert_grant(&client(&s, leaf, None), &s.base, &body()).await;
        r.assert_error(
            400,
            "unauthorized_client",
            "Certificate authentication not enabled",
        );
    }
    assert_eq!(last_refusal(&s)["cause"], "flow_disabled");

    // Windows Integrated authentication is never offered.
    let r = s
        .post_json(
            "/vedauth/authorize/integrated",
            &json!({"client_id": APP, "scope": SCOPE}),
        )
        .await;
    r.assert_error(
        400,
        "unauthorized_client",
        "Windows Integrated authentication not enabled",
    );
}

/// The certificate request in the TLS handshake follows the switch and the issuers: a client
/// holding a certificate presents it only while both are there.
#[tokio::test]
async fn the_listener_asks_for_a_certificate_only_while_the_grant_is_on_and_issuers_exist() {
    let (s, ca) = cert_server(Options::default()).await;
    let alice = ca.issue(LeafSpec::cn("alice"));
    assert!(asked(&s).await, "on, with an issuer");
    assert_eq!(
        cert_grant(&client(&s, Some(&alice), None), &s.base, &body())
            .await
            .status,
        200
    );
    // Removing the only issuer: the handshake asks for nothing, and the grant has nothing.
    let fp = ca.trusted().authorized_issuer_dns()[0].clone();
    s.app
        .admin
        .remove_issuer(&Caller::Operator, &fp)
        .await
        .expect("remove");
    s.launched.refresh_client_auth().await.expect("refresh");
    assert!(!asked(&s).await);
    let r = cert_grant(&client(&s, Some(&alice), None), &s.base, &body()).await;
    r.assert_error(
        400,
        "invalid_request",
        "No client certificate was presented",
    );
    // Back, through setconfiguration's list: a fingerprint that names no issuer is refused.
    s.app
        .admin
        .add_issuers(&Caller::Operator, &ca.pem())
        .await
        .expect("add");
    let mut st = s
        .app
        .admin
        .get_settings(&Caller::Operator)
        .await
        .expect("get");
    assert_eq!(
        st.certificate_configuration.authorized_issuer_dns,
        vec![fp.clone()]
    );
    st.certificate_configuration.authorized_issuer_dns = vec!["ab".repeat(32)];
    let e = s
        .app
        .admin
        .set_settings(&Caller::Operator, st)
        .await
        .expect_err("unknown issuer");
    assert!(e.to_string().contains("no trusted issuer"), "{e}");
    // The periodic job picks the change up by itself (bounded wait).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !asked(&s).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the listener never followed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        cert_grant(&client(&s, Some(&alice), None), &s.base, &body())
            .await
            .status,
        200
    );
}

/// Whether the server's handshake asks for a client certificate (a CertificateRequest arrives).
async fn asked(s: &TestServer) -> bool {
    #[derive(Debug, Default)]
    struct Asked(AtomicBool);
    impl ResolvesClientCert for Asked {
        fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
            self.0.store(true, Ordering::SeqCst);
            None
        }
        fn has_certs(&self) -> bool {
            true
        }
    }
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(s.launched.ca_file.as_ref().expect("CA")).expect("CA");
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(c.expect("PEM")).expect("root");
    }
    let asked = Arc::new(Asked::default());
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_cert_resolver(asked.clone());
    let c = reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .build()
        .expect("client");
    let r = c.get(s.url("/healthz")).send().await.expect("send");
    assert_eq!(r.status(), 200);
    asked.0.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_second_listener_asks_for_certificates_and_the_main_one_does_not() {
    let mut opts = Options::default();
    opts.config.client_cert.listen = "127.0.0.1:0".into();
    opts.config.client_cert.request_on_main_listener = false;
    let (s, ca) = cert_server(opts).await;
    let alice = ca.issue(LeafSpec::cn("alice"));
    let mtls = s
        .launched
        .client_cert_handle
        .as_ref()
        .expect("second listener")
        .base_url();
    assert_ne!(mtls, s.base);
    let r = cert_grant(&client(&s, Some(&alice), None), &mtls, &body()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The main listener never asks: the same client presents nothing there.
    let r = cert_grant(&client(&s, Some(&alice), None), &s.base, &body()).await;
    r.assert_error(
        400,
        "invalid_request",
        "No client certificate was presented",
    );
    // Everything else is served on both.
    let token = r_token(&s, &mtls, &alice).await;
    assert_eq!(s.verify(&token).await.status, 200);
}

async fn r_token(s: &TestServer, base: &str, leaf: &Leaf) -> String {
    let r = cert_grant(&client(s, Some(leaf), None), base, &body()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.str("access_token")
}

/// nginx behind which vedauth serves plain HTTP: the header counts from the trusted proxy
/// (127.0.0.1) and is removed from anyone else (127.0.0.2), whose request then has no
/// certificate at all.
#[tokio::test]
async fn a_forwarded_certificate_counts_from_a_trusted_proxy_only() {
    let mut opts = Options::default();
    opts.config.tls = false;
    opts.config.client_cert.forwarded_header = "nginx".into();
    opts.config.client_cert.trusted_proxies = vec!["127.0.0.1/32".into()];
    let (s, ca) = cert_server(opts).await;
    let alice = ca.issue(LeafSpec::cn("alice"));
    let escaped: String =
        percent_encoding::utf8_percent_encode(&alice.pem, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let send = |from: &str, header: &'static str| {
        let c = reqwest::Client::builder()
            .local_address(Some(from.parse::<IpAddr>().expect("ip")))
            .build()
            .expect("client");
        let (url, value) = (
            format!("{}/vedauth/authorize/certificate", s.base),
            escaped.clone(),
        );
        async move {
            Reply::read(
                c.post(url)
                    .header(header, value)
                    .json(&body())
                    .send()
                    .await
                    .expect("send"),
            )
            .await
        }
    };
    let r = send("127.0.0.1", "x-ssl-client-cert").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cert_event = events(&s.dir.join("audit.log"))
        .into_iter()
        .find(|e| e["event"] == "certificate_accepted")
        .expect("accepted");
    assert_eq!(
        cert_event["detail"]["certificate"]["source"],
        "forwarded:nginx"
    );
    // Another convention's header, even from the trusted proxy, is not read.
    let r = send("127.0.0.1", "x-forwarded-tls-client-cert").await;
    r.assert_error(
        400,
        "invalid_request",
        "No client certificate was presented",
    );
    // From a peer that is no trusted proxy, the header is gone before the grant looks.
    let r = send("127.0.0.2", "x-ssl-client-cert").await;
    r.assert_error(
        400,
        "invalid_request",
        "No client certificate was presented",
    );
    // A trusted proxy's header that does not read is "not trusted", with its cause audited.
    let c = reqwest::Client::new();
    let r = Reply::read(
        c.post(format!("{}/vedauth/authorize/certificate", s.base))
            .header("x-ssl-client-cert", "not%20a%20certificate")
            .json(&body())
            .send()
            .await
            .expect("send"),
    )
    .await;
    r.assert_error(401, "invalid_grant", "Client certificate is not trusted");
    assert_eq!(last_refusal(&s)["cause"], "bad_forwarded_certificate");
}

/// pyVenafi (PyPI) logs in with a certificate file and its key and calls Identity/Self; curl
/// does the same with --cert/--key. Both are OpenSSL clients, not rustls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyvenafi_and_curl_log_in_with_a_certificate_and_key() {
    let (s, ca) = cert_server(Options::default()).await;
    let alice_id = s
        .app
        .store
        .user_by_name("alice")
        .await
        .expect("read")
        .expect("alice")
        .identity()
        .to_string();
    let leaf = ca.issue(LeafSpec::cn("alice"));
    let stranger = Ca::root("Stranger CA").issue(LeafSpec::cn("alice"));
    for (name, l) in [("alice", &leaf), ("stranger", &stranger)] {
        std::fs::write(s.dir.join(format!("{name}.crt")), l.presented_pem()).expect("cert");
        std::fs::write(s.dir.join(format!("{name}.key")), &l.key_pem).expect("key");
    }
    let ca_file = s.launched.ca_file.clone().expect("CA");
    let host = s.base.trim_start_matches("https://").to_string();
    let dir = s.dir.clone();
    let (py, curls) = tokio::task::spawn_blocking(move || {
        let py = std::process::Command::new(crate::clients::client_python())
            .arg(crate::clients::repo().join("tests/clients/pyvenafi_certificate.py"))
            .args(["--host", &host, "--ca"])
            .arg(&ca_file)
            .arg("--cert")
            .arg(dir.join("alice.crt"))
            .arg("--key")
            .arg(dir.join("alice.key"))
            .args(["--client-id", APP, "--scope", SCOPE])
            .output()
            .expect("run the pyVenafi script");
        let curl = |who: Option<&str>| {
            let mut cmd = std::process::Command::new("curl");
            cmd.args(["-sS", "--max-time", "20", "--cacert"])
                .arg(&ca_file)
                .args([
                    "-w",
                    "\n%{http_code}",
                    "-H",
                    "content-type: application/json",
                ])
                .args([
                    "-d",
                    &format!(r#"{{"client_id":"{APP}","scope":"{SCOPE}"}}"#),
                ]);
            if let Some(who) = who {
                cmd.arg("--cert")
                    .arg(dir.join(format!("{who}.crt")))
                    .arg("--key")
                    .arg(dir.join(format!("{who}.key")));
            }
            let out = cmd
                .arg(format!("https://{host}/vedauth/authorize/certificate"))
                .output()
                .expect("curl must be installed (a real client of the certificate grant)");
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(
                out.status.success(),
                "curl: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let (body, code) = text.rsplit_once('\n').expect("status line");
            let body: Value = serde_json::from_str(body).expect("JSON");
            (code.trim().parse::<u16>().expect("code"), body)
        };
        (
            py,
            vec![curl(Some("alice")), curl(None), curl(Some("stranger"))],
        )
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&py.stdout);
    assert!(
        py.status.success(),
        "pyVenafi: {stdout}{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let got: Value = serde_json::from_str(stdout.trim()).expect("the script's JSON");
    assert_eq!(got["prefixed_universal"], alice_id.as_str());
    assert_eq!(got["prefixed_name"], "local:alice");
    assert_eq!(got["token_prefix_ok"], true);

    let (code, body) = &curls[0];
    assert_eq!(*code, 200, "{body}");
    assert_eq!(body["identity"], alice_id.as_str());
    let (code, body) = &curls[1];
    assert_eq!(*code, 400, "{body}");
    assert_eq!(
        body["error_description"],
        "No client certificate was presented"
    );
    let (code, body) = &curls[2];
    assert_eq!(*code, 401, "{body}");
    assert_eq!(
        body["error_description"],
        "Client certificate is not trusted"
    );
}

/// The same grant on a PostgreSQL store: the issuers and the switch come from there, and a
/// second node on the same database follows an issuer added through the first.
#[tokio::test]
async fn two_nodes_on_postgresql_share_the_issuers_and_the_switch() {
    let db = crate::pg::fresh_database().await;
    let (a, ca) = cert_server(Options::on_database(&db)).await;
    let b = TestServer::start_with(Options::on_database(&db)).await;
    b.launched.refresh_client_auth().await.expect("refresh");
    let alice = ca.issue(LeafSpec::cn("alice"));
    for s in [&a, &b] {
        let r = cert_grant(&client(s, Some(&alice), None), &s.base, &body()).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // A second CA, added on node A, is trusted by node B's next grant.
    let other = Ca::root("Second Client CA");
    a.app
        .admin
        .add_issuers(&Caller::Operator, &other.pem())
        .await
        .expect("add");
    b.launched.refresh_client_auth().await.expect("refresh");
    let leaf = other.issue(LeafSpec::cn("alice"));
    let r = cert_grant(&client(&b, Some(&leaf), None), &b.base, &body()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Switched off on A: B refuses too.
    switch(&a, false).await;
    let r = cert_grant(&client(&b, Some(&leaf), None), &b.base, &body()).await;
    r.assert_error(
        400,
        "unauthorized_client",
        "Certificate authentication not enabled",
    );
}
