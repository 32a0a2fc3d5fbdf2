//! Real clients from PyPI against a running vedauth: the vcert package's own token connection,
//! and two generic OAuth 2.0 libraries (authlib, requests-oauthlib) on the OAuth 2.0 face, authlib's
//! RFC 7523 jwt-bearer assertions among them; pyVenafi's certificate login.

use std::path::PathBuf;
use std::process::Command;

use crate::common::TestServer;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python of the clients' virtual environment: `VEDAUTH_CLIENT_PYTHON` (set by
/// `scripts/test`), else made (or reused) by `scripts/client-venv`.
pub fn client_python() -> String {
    if let Ok(p) = std::env::var("VEDAUTH_CLIENT_PYTHON") {
        if !p.is_empty() {
            return p;
        }
    }
    let out = Command::new(repo().join("scripts/client-venv"))
        .output()
        .expect("run scripts/client-venv");
    assert!(
        out.status.success(),
        "scripts/client-venv failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("python path")
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vcert_python_token_lifecycle() {
    let s = TestServer::start().await;
    // vcert's defaults: application vcert-sdk, scope certificate:manage,revoke.
    s.setup_basic(
        "alice",
        "Alice-S3cret",
        "vcert-sdk",
        "certificate:manage,revoke",
    )
    .await;
    let pw = s.dir.join("alice.pw");
    std::fs::write(&pw, "Alice-S3cret\n").expect("write password file");
    let ca = s.launched.ca_file.clone().expect("generated CA");
    let base = s.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(client_python())
            .arg(repo().join("tests/clients/vcert_lifecycle.py"))
            .args(["--url", &base, "--ca"])
            .arg(&ca)
            .args(["--user", "alice", "--password-file"])
            .arg(&pw)
            .output()
            .expect("run the vcert script")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "vcert lifecycle failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("0 failed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_oauth2_clients_from_pypi() {
    // A JWT issuer for authlib's RFC 7523 assertions: its keys on a loopback HTTPS server.
    let ca = crate::jwt::test_ca("generic clients' JWT issuer CA");
    let keys = crate::jwt::KeyServer::start(&ca).await;
    keys.set_keys(&[&crate::jwt::rsa_key("r1")]);
    let s = crate::jwt_grant::server(&ca, crate::common::Options::default()).await;
    s.setup_basic(
        "alice",
        "Alice-S3cret",
        "generic-client",
        "certificate:manage,revoke;configuration",
    )
    .await;
    let secret = s
        .app
        .admin
        .set_client_secret(&vedauth::admin::Caller::Operator, "generic-client")
        .await
        .expect("client secret")
        .secret;
    // The jwt-bearer grant: a public application, the switch on, a mapping whose purpose is
    // the token endpoint's URL (authlib's default audience) and that maps the subject to alice.
    s.add_app("jwt-client", "certificate:manage").await;
    s.allow("jwt-client", "everyone", None).await;
    let admin = s.admin_token("admin").await;
    crate::jwt_grant::switch(&s, &admin, true, 60).await;
    let issuer = keys.url("/ci");
    let mut m = crate::jwt_grant::mapping("ci", &issuer, Some(keys.url("/jwks")));
    m["PurposeMatch"] = serde_json::json!(s.url("/oauth2/token"));
    s.oauth("CreateJwtMapping", &admin, &m).await.ok();
    let jwt_key = repo().join("tests/it/fixtures/jwt-test-rsa.pem");

    let pw = s.dir.join("alice.pw");
    std::fs::write(&pw, "Alice-S3cret\n").expect("write password file");
    let sec = s.dir.join("client.secret");
    std::fs::write(&sec, secret.expose()).expect("write secret file");
    let ca = s.launched.ca_file.clone().expect("generated CA");
    let base = s.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(client_python())
            .arg(repo().join("tests/clients/oauth2_clients.py"))
            .args(["--url", &base, "--ca"])
            .arg(&ca)
            .args(["--client-id", "generic-client", "--secret-file"])
            .arg(&sec)
            .args(["--user", "alice", "--password-file"])
            .arg(&pw)
            .arg("--jwt-key")
            .arg(&jwt_key)
            .args(["--jwt-kid", "r1", "--jwt-issuer", &issuer])
            .args(["--jwt-subject", "system:serviceaccount:ci:alice"])
            .args(["--jwt-client-id", "jwt-client"])
            .output()
            .expect("run the OAuth 2.0 client script")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "OAuth 2.0 clients failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains(", 0 failed"), "{stdout}");
    assert!(stdout.contains("oauth2_clients: 13 passed"), "{stdout}");
    assert!(
        stdout.contains("ok   authlib: jwt-bearer grant (RFC 7523), AssertionSession"),
        "{stdout}"
    );
}
