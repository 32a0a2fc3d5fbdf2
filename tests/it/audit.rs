//! The audit trail against the changes it records (written first, so a trail that refuses leaves
//! nothing changed), refusals after a correct password, and what the public surfaces leave out
//! (causes in metrics, the revision on probes, client input in the status line).

use std::io::{Read, Write};
use std::path::Path;

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{Options, TestServer};

fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("audit log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("every audit line is JSON"))
        .collect()
}

/// Points the symlink `link` at `target`, replacing what it pointed at.
fn repoint(link: &Path, target: &Path) {
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).expect("symlink");
    std::fs::rename(&tmp, link).expect("rename symlink");
}

/// A server whose audit trail is a symlink the test can point at a file or at `/dev/full`
/// (a real device that refuses every write); the trail fails closed, the default.
async fn server_with_switchable_trail() -> (TestServer, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tmp");
    let link = tmp.path().join("audit.log");
    repoint(&link, &tmp.path().join("trail"));
    let mut opts = Options::default();
    assert!(opts.config.audit.fail_closed, "fail-closed is the default");
    opts.config.audit.path = link.to_string_lossy().into_owned();
    let s = TestServer::start_with(opts).await;
    s.setup_basic("alice", "alice-pw", "vcert-sdk", "certificate")
        .await;
    (s, tmp)
}

fn break_trail(s: &TestServer, tmp: &tempfile::TempDir) {
    repoint(&tmp.path().join("audit.log"), Path::new("/dev/full"));
    s.app.audit.reopen().expect("reopen");
}

fn mend_trail(s: &TestServer, tmp: &tempfile::TempDir) {
    repoint(&tmp.path().join("audit.log"), &tmp.path().join("trail"));
    s.app.audit.reopen().expect("reopen");
}

#[tokio::test]
async fn a_refresh_the_trail_refuses_changes_nothing_and_can_be_retried() {
    let (s, tmp) = server_with_switchable_trail().await;
    let (access, refresh) = s
        .tokens("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;
    break_trail(&s, &tmp);
    let r = s.refresh("vcert-sdk", &refresh).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    // Nothing rotated: the old access token still works.
    assert_eq!(s.verify(&access).await.status, StatusCode::OK);
    mend_trail(&s, &tmp);
    // The retry with the same refresh token succeeds (it used to get 400: the rotation had
    // been committed before the audit write failed).
    let again = s.refresh("vcert-sdk", &refresh).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(
        s.verify(&again.str("access_token")).await.status,
        StatusCode::OK
    );
    let trail = events(&tmp.path().join("trail"));
    assert_eq!(
        trail
            .iter()
            .filter(|e| e["event"] == "grant_refreshed")
            .count(),
        1,
        "{trail:?}"
    );
}

#[tokio::test]
async fn a_revocation_or_grant_the_trail_refuses_changes_nothing() {
    let (s, tmp) = server_with_switchable_trail().await;
    let (access, _) = s
        .tokens("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;
    break_trail(&s, &tmp);
    let r = s
        .client
        .get(s.url("/vedauth/revoke/token"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(s.verify(&access).await.status, StatusCode::OK);
    let g = s
        .password_grant("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;
    assert_eq!(g.status, StatusCode::SERVICE_UNAVAILABLE, "{}", g.text);
    let grants = s
        .app
        .store
        .list_grants(&Default::default())
        .await
        .expect("list");
    assert_eq!(grants.len(), 1, "only the first grant exists");
    mend_trail(&s, &tmp);
    let r = s
        .client
        .get(s.url("/vedauth/revoke/token"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(s.verify(&access).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn refusals_after_a_correct_password_are_audited_with_what_limited_them() {
    let s = TestServer::start().await;
    s.add_user("alice", "alice-pw").await;
    s.add_user("bob", "bob-pw").await;
    s.add_app("vcert-sdk", "certificate:manage").await;
    s.allow("vcert-sdk", "local:bob", Some("certificate")).await;
    // Alice is admitted by no rule.
    let r = s
        .password_grant("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;
    r.assert_error(
        401,
        "invalid_grant",
        "Failed to issue grant: user is not allowed to use this application",
    );
    // Bob asks beyond the application's scope, then beyond his rule's maximum.
    let r = s
        .password_grant("vcert-sdk", "bob", "bob-pw", "configuration")
        .await;
    r.assert_error(
        403,
        "invalid_scope",
        "Failed to issue grant: User is not authorized for the requested scope",
    );
    let r = s
        .password_grant("vcert-sdk", "bob", "bob-pw", "certificate:manage")
        .await;
    r.assert_error(
        403,
        "invalid_scope",
        "Failed to issue grant: User is not authorized for the requested scope",
    );
    let refused: Vec<Value> = events(&s.dir.join("audit.log"))
        .into_iter()
        .filter(|e| e["event"] == "grant_refused")
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert_eq!(refused[0]["cause"], "not_admitted");
    assert_eq!(refused[0]["username"], "alice");
    assert!(refused[0]["identity"]
        .as_str()
        .is_some_and(|i| i.starts_with("local:{")));
    assert_eq!(refused[1]["cause"], "scope_exceeds_application");
    assert_eq!(refused[1]["detail"]["requested"], "configuration");
    assert_eq!(refused[1]["detail"]["allowed"], "certificate:manage");
    assert_eq!(refused[2]["cause"], "scope_exceeds_rule");
    assert_eq!(refused[2]["detail"]["requested"], "certificate:manage");
    assert_eq!(refused[2]["detail"]["allowed"], "certificate");
    assert_eq!(refused[2]["detail"]["rule_trustee"], "local:bob");
}

#[tokio::test]
async fn head_on_revoke_has_no_side_effect() {
    let s = TestServer::start().await;
    s.setup_basic("alice", "alice-pw", "vcert-sdk", "certificate")
        .await;
    let (access, _) = s
        .tokens("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;
    let r = s
        .client
        .head(s.url("/vedauth/revoke/token"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(s.verify(&access).await.status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_need_an_admin_token_and_probes_name_no_revision() {
    let s = TestServer::start().await;
    s.setup_basic("alice", "alice-pw", "vcert-sdk", "certificate")
        .await;
    assert_eq!(
        s.get_bearer("/metrics", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let (user_token, _) = s
        .tokens("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;
    assert_eq!(
        s.get_bearer("/metrics", Some(&user_token)).await.status,
        StatusCode::FORBIDDEN
    );
    let admin = s.admin_token("admin").await;
    let m = s.get_bearer("/metrics", Some(&admin)).await;
    assert_eq!(m.status, StatusCode::OK);
    for probe in ["/healthz", "/readyz"] {
        let r = s.get_bearer(probe, None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json["version"], env!("CARGO_PKG_VERSION"), "{}", r.text);
        assert!(!r.text.contains("git"), "{}", r.text);
    }
}

#[tokio::test]
async fn public_metrics_are_an_explicit_choice() {
    let mut opts = Options::default();
    opts.config.metrics.public = true;
    let s = TestServer::start_with(opts).await;
    assert_eq!(s.get_bearer("/metrics", None).await.status, StatusCode::OK);
}

/// The raw status line of a plain-HTTP/1.1 request.
fn status_line(addr: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    c.write_all(request).expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let end = buf
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(buf.len());
    buf.truncate(end);
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_input_stays_out_of_the_status_line() {
    let mut opts = Options::default();
    opts.config.tls = false;
    let s = TestServer::start_with(opts).await;
    s.setup_basic("alice", "alice-pw", "vcert-sdk", "certificate")
        .await;
    let addr = s.launched.handle.local_addr;
    let line = tokio::task::spawn_blocking(move || {
        let body = "client_id=vcert-sdk&username=alice&password=alice-pw&scope=%C3%A9vil-INJECTED";
        let req = format!(
            "POST /vedauth/authorize/oauth HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        status_line(addr, req.as_bytes())
    })
    .await
    .expect("join");
    let line = String::from_utf8_lossy(&line).into_owned();
    assert!(line.starts_with("HTTP/1.1 400"), "{line}");
    assert!(!line.contains("INJECTED"), "{line}");
    assert!(line.is_ascii(), "{line}");
    // Fixed texts of ours still go in the status line, as TPP's do.
    let addr = s.launched.handle.local_addr;
    let line = tokio::task::spawn_blocking(move || {
        let body = "client_id=vcert-sdk&username=alice&password=nope&scope=certificate";
        let req = format!(
            "POST /vedauth/authorize/oauth HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        status_line(addr, req.as_bytes())
    })
    .await
    .expect("join");
    assert_eq!(
        String::from_utf8_lossy(&line),
        "HTTP/1.1 401 Username/password combination not valid"
    );
}

/// The grant's event is written before its commit; when the commit then fails (here a real
/// SQLite database capped in size, so the insert fails as on a full disk) the trail gets a
/// `change_not_committed` record for that grant, and the client an error, not a token.
#[tokio::test]
async fn a_grant_whose_commit_fails_after_its_event_is_corrected_in_the_trail() {
    use std::sync::Arc;
    use vedauth::audit::{Audit, AuditConfig};
    use vedauth::clock::ManualClock;
    use vedauth::grants::{Engine, EngineOptions, GrantError, GrantRequest, PasswordRequest};
    use vedauth::identity::local::LocalProvider;
    use vedauth::identity::{Identities, IdentityProvider};
    use vedauth::password::{HashParams, HashPool};
    use vedauth::secret::Secret;
    use vedauth::store::sqlite::{SqliteOptions, SqliteStore};
    use vedauth::store::{Grant, SharedStore, User};
    use vedauth::token::TokenDigest;

    let tmp = tempfile::tempdir().expect("tmp");
    let mut o = SqliteOptions::new(2);
    o.max_page_count = Some(64);
    let store: SharedStore = Arc::new(
        SqliteStore::open_with(&tmp.path().join("capped.db"), &o)
            .await
            .expect("open"),
    );
    let pool = HashPool::start(HashParams::insecure_for_tests(), 1, 0).expect("pool");
    store
        .create_user(&User {
            id: uuid::Uuid::new_v4().to_string(),
            name: "ann".into(),
            full_name: None,
            email: None,
            password_hash: pool
                .hash(Secret::new("ann-password-1"))
                .await
                .expect("hash"),
            disabled: false,
            created_at: 0,
        })
        .await
        .expect("user");
    crate::common::app_for_everyone(&store, "app", "certificate").await;
    let clock = Arc::new(ManualClock::starting_now());
    let audit =
        Arc::new(Audit::open(&AuditConfig::default(), tmp.path(), clock.clone()).expect("audit"));
    let local: Arc<dyn IdentityProvider> =
        Arc::new(LocalProvider::new(store.clone(), pool.clone()));
    let ids = Arc::new(Identities::new(vec![local], pool, None));
    let engine = Engine::new(store.clone(), ids, clock, EngineOptions::default(), audit);
    let ask = || {
        GrantRequest::Password(PasswordRequest {
            client_id: Some("app".into()),
            username: Some("ann".into()),
            password: Some(Secret::new("ann-password-1")),
            scope: Some("certificate".into()),
            ..Default::default()
        })
    };
    engine
        .token(ask())
        .await
        .expect("a grant while there is room");

    // Fill the database to its cap (bounded: 64 pages hold far fewer than 20,000 grants).
    let mut n = 0usize;
    loop {
        assert!(n < 20_000, "the cap never hit");
        let g = Grant {
            id: format!("fill{n}").into(),
            client_id: "app".into(),
            identity: "local:{filler}".into(),
            granted_to: "everyone".into(),
            scope: crate::common::canon("certificate"),
            issued_at: 0,
            expires_at: None,
            renewable: true,
            access_validity: 100,
            access_digest: TokenDigest::of(&format!("fa{n}")),
            access_issued_at: 0,
            access_expires_at: 100,
            refresh_digest: Some(TokenDigest::of(&format!("fr{n}"))),
        };
        if store.insert_grant(&g).await.is_err() {
            break;
        }
        n += 1;
    }
    let refused = engine
        .token(ask())
        .await
        .expect_err("no room for the grant");
    assert!(matches!(refused, GrantError::Unavailable(_)), "{refused:?}");

    let trail = events(&tmp.path().join("audit.log"));
    let issued: Vec<&Value> = trail
        .iter()
        .filter(|e| e["event"] == "grant_issued")
        .collect();
    assert_eq!(issued.len(), 2, "{trail:?}");
    let corrections: Vec<&Value> = trail
        .iter()
        .filter(|e| e["event"] == "change_not_committed")
        .collect();
    assert_eq!(corrections.len(), 1, "{trail:?}");
    assert_eq!(corrections[0]["cause"], "grant_issued");
    assert_eq!(corrections[0]["grant"], issued[1]["grant"]);
    assert_ne!(corrections[0]["grant"], issued[0]["grant"]);
    // The grant that was refused is not in the store.
    let id = issued[1]["grant"].as_str().expect("grant id");
    assert!(store
        .list_grants(&Default::default())
        .await
        .expect("list")
        .iter()
        .all(|g| g.id.as_str() != id));
}
