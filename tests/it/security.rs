//! Lockout, rate limits, no user enumeration, the audit trail, slow clients, HSTS.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{Options, Reply, TestServer};

const OAUTH: &str = "/vedauth/authorize/oauth";

fn audit_events(s: &TestServer) -> Vec<Value> {
    let text = std::fs::read_to_string(s.dir.join("audit.log")).expect("audit log");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("every audit line is JSON"))
        .collect()
}

fn count(events: &[Value], event: &str, cause: Option<&str>) -> usize {
    events
        .iter()
        .filter(|e| e["event"] == event && cause.is_none_or(|c| e["cause"] == c))
        .count()
}

async fn grant(s: &TestServer, user: &str, pw: &str) -> Reply {
    s.password_grant("vcert-sdk", user, pw, "certificate").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_wrong_passwords_check_exactly_five_then_lock() {
    let s = TestServer::start().await;
    s.setup_basic("alice", "alice-pw", "vcert-sdk", "certificate")
        .await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (client, url) = (s.client.clone(), s.url(OAUTH));
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .json(&json!({"client_id": "vcert-sdk", "username": "alice", "password": format!("wrong-{i}"), "scope": "certificate"}))
                .send()
                .await
                .expect("send");
            Reply::read(r).await
        }));
    }
    let mut bodies = std::collections::BTreeSet::new();
    for t in tasks {
        let r = t.await.expect("join");
        r.assert_error(
            401,
            "invalid_grant",
            "Username/password combination not valid",
        );
        bodies.insert(r.text);
    }
    assert_eq!(bodies.len(), 1, "every refusal is the same bytes");
    let events = audit_events(&s);
    assert_eq!(
        count(&events, "login_failed", Some("wrong_password")),
        5,
        "exactly five checked"
    );
    assert_eq!(count(&events, "login_failed", Some("locked")), 45);
    assert_eq!(count(&events, "lockout", None), 1);

    // The right password is refused while locked, with the same answer.
    grant(&s, "alice", "alice-pw").await.assert_error(
        401,
        "invalid_grant",
        "Username/password combination not valid",
    );
    let state = s
        .app
        .admin
        .clone()
        .lock_state(
            &s.app
                .store
                .user_by_name("alice")
                .await
                .expect("store")
                .expect("alice")
                .identity(),
        )
        .await
        .expect("state")
        .expect("lockout on");
    assert!(state.locked_until.is_some());
    // Until the lockout ends (clock moved, no sleeping); then accepted.
    s.clock.advance(899);
    assert_eq!(
        grant(&s, "alice", "alice-pw").await.status,
        StatusCode::UNAUTHORIZED
    );
    s.clock.advance(2);
    assert_eq!(grant(&s, "alice", "alice-pw").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_success_resets_the_count_and_unlock_ends_a_lockout() {
    let s = TestServer::start().await;
    s.setup_basic("alice", "alice-pw", "vcert-sdk", "certificate")
        .await;
    for _ in 0..4 {
        assert_eq!(
            grant(&s, "alice", "bad").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(grant(&s, "alice", "alice-pw").await.status, StatusCode::OK);
    for _ in 0..4 {
        assert_eq!(
            grant(&s, "alice", "bad").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Four and four, with a success between: not locked.
    assert_eq!(grant(&s, "alice", "alice-pw").await.status, StatusCode::OK);
    // Failures outside the window do not add up.
    for _ in 0..4 {
        grant(&s, "alice", "bad").await;
    }
    s.clock.advance(901);
    grant(&s, "alice", "bad").await;
    assert_eq!(grant(&s, "alice", "alice-pw").await.status, StatusCode::OK);
    // Lock, then unlock through the same code the command line uses.
    for _ in 0..5 {
        grant(&s, "alice", "bad").await;
    }
    assert_eq!(
        grant(&s, "alice", "alice-pw").await.status,
        StatusCode::UNAUTHORIZED
    );
    let alice = s
        .app
        .store
        .user_by_name("alice")
        .await
        .expect("store")
        .expect("alice");
    let admin = s.app.admin.clone();
    assert!(admin
        .unlock(&vedauth::admin::Caller::Operator, &alice.identity())
        .await
        .expect("unlock"));
    assert_eq!(grant(&s, "alice", "alice-pw").await.status, StatusCode::OK);
    let events = audit_events(&s);
    assert_eq!(count(&events, "unlock", None), 1);
    assert_eq!(count(&events, "lockout", None), 1);
}

#[tokio::test]
async fn every_row_seven_cause_gives_the_same_bytes() {
    let s = TestServer::start().await;
    s.setup_basic("alice", "alice-pw", "vcert-sdk", "certificate")
        .await;
    let bob = s.add_user("bob", "bob-pw").await;
    s.app
        .store
        .set_user_disabled(&bob.id, true)
        .await
        .expect("disable");
    s.add_user("carol", "carol-pw").await;
    for _ in 0..5 {
        grant(&s, "carol", "bad").await;
    }
    let unknown = grant(&s, "nobody", "pw").await;
    let wrong = grant(&s, "alice", "bad").await;
    let disabled = grant(&s, "bob", "bob-pw").await;
    let locked = grant(&s, "carol", "carol-pw").await;
    for r in [&unknown, &wrong, &disabled, &locked] {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.text, unknown.text);
        assert_eq!(
            r.headers.get("content-type"),
            unknown.headers.get("content-type")
        );
        assert_eq!(
            r.headers.get("content-length"),
            unknown.headers.get("content-length")
        );
    }
    // The audit trail knows the real causes.
    let events = audit_events(&s);
    for cause in ["unknown_user", "wrong_password", "disabled", "locked"] {
        assert!(count(&events, "login_failed", Some(cause)) >= 1, "{cause}");
    }
}

#[tokio::test]
async fn rate_limit_answers_429_before_hashing_and_only_for_that_address() {
    let mut opts = Options::default();
    opts.config.rate_limit.enabled = true;
    opts.config.rate_limit.per_second = 1;
    opts.config.rate_limit.burst = 5;
    let s = TestServer::start_with(opts).await;
    s.setup_basic("alice", "alice-pw", "vcert-sdk", "certificate")
        .await;
    let hashed = s.app.pool.completed();
    let mut limited = 0;
    let mut served = 0;
    for _ in 0..20 {
        let r = grant(&s, "alice", "alice-pw").await;
        match r.status.as_u16() {
            200 => served += 1,
            429 => {
                limited += 1;
                r.assert_error(
                    429,
                    "slow_down",
                    "Too many requests; slow down and retry later",
                );
                let after: u64 = r.headers["retry-after"]
                    .to_str()
                    .expect("ascii")
                    .parse()
                    .expect("seconds");
                assert!(after >= 1);
            }
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    assert!(
        served >= 5 && limited >= 10,
        "served {served}, limited {limited}"
    );
    // Refused requests never reached the hashing pool.
    assert_eq!(s.app.pool.completed() - hashed, served);
    // The token and revoke endpoints share the limit.
    assert_eq!(
        s.refresh("vcert-sdk", "AAAAAAAAAAAAAAAAAAAAAA==")
            .await
            .status
            .as_u16(),
        429
    );
    // Another address is still served.
    let other = reqwest::Client::builder()
        .use_rustls_tls()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .add_root_certificate(
            reqwest::Certificate::from_pem(
                &std::fs::read(s.launched.ca_file.as_ref().expect("ca")).expect("read"),
            )
            .expect("pem"),
        )
        .build()
        .expect("client");
    let r = other
        .post(s.url(OAUTH))
        .json(&json!({"client_id": "vcert-sdk", "username": "alice", "password": "alice-pw", "scope": "certificate"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    // Verify is not rate limited (it is cheap and clients poll it).
    let at = Reply::read(r).await.str("access_token");
    for _ in 0..10 {
        assert_eq!(s.verify(&at).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn audit_trail_has_every_kind_of_event_and_no_secrets() {
    let s = TestServer::start().await;
    s.setup_basic("alice", "Alice-Secret-1", "vcert-sdk", "certificate")
        .await;
    let admin_token = s.admin_token("admin").await;
    let first = grant(&s, "alice", "Alice-Secret-1").await;
    let refreshed = s.refresh("vcert-sdk", &first.str("refresh_token")).await;
    assert_eq!(refreshed.status, StatusCode::OK);
    let revoked = s
        .get_bearer(
            "/vedauth/revoke/token",
            Some(&refreshed.str("access_token")),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    for _ in 0..5 {
        grant(&s, "alice", "Wrong-Secret-2").await;
    }
    let alice = s
        .app
        .store
        .user_by_name("alice")
        .await
        .expect("store")
        .expect("alice");
    s.app
        .admin
        .clone()
        .unlock(&vedauth::admin::Caller::Operator, &alice.identity())
        .await
        .expect("unlock");
    s.oauth(
        "CreateApplication",
        &admin_token,
        &json!({"ApplicationId": "audited", "Scope": "certificate"}),
    )
    .await
    .ok();
    let events = audit_events(&s);
    for kind in [
        "grant_issued",
        "grant_refreshed",
        "grant_revoked",
        "login_failed",
        "lockout",
        "unlock",
        "admin_change",
    ] {
        assert!(count(&events, kind, None) >= 1, "{kind} missing");
    }
    let issued = events
        .iter()
        .find(|e| e["event"] == "grant_issued" && e["client_id"] == "vcert-sdk")
        .expect("issued");
    assert!(issued["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(issued["unix_time"].is_i64());
    assert_eq!(issued["identity"], alice.identity().as_str());
    assert_eq!(issued["source"], "127.0.0.1");
    assert_eq!(issued["access_digest"].as_str().map(str::len), Some(64));
    assert_eq!(issued["refresh_digest"].as_str().map(str::len), Some(64));
    let change = events
        .iter()
        .find(|e| e["event"] == "admin_change")
        .expect("admin change");
    assert_eq!(change["cause"], "create_application");
    assert!(change["identity"]
        .as_str()
        .is_some_and(|i| i.starts_with("local:{")));
    let failed = events
        .iter()
        .find(|e| e["event"] == "login_failed")
        .expect("failed");
    assert_eq!(failed["username"], "alice");
    // No token or password anywhere in the trail.
    let raw = std::fs::read_to_string(s.dir.join("audit.log")).expect("read");
    for secret in [
        first.str("access_token"),
        first.str("refresh_token"),
        refreshed.str("access_token"),
        refreshed.str("refresh_token"),
        admin_token.clone(),
        "Alice-Secret-1".into(),
        "Wrong-Secret-2".into(),
    ] {
        assert!(!raw.contains(&secret), "a secret is in the audit trail");
    }
}

#[tokio::test]
async fn audit_failing_closed_refuses_requests() {
    let mut opts = Options::default();
    opts.config.audit.path = "/dev/full".into();
    opts.config.audit.fail_closed = true;
    let s = TestServer::start_with(opts).await;
    s.setup_basic("alice", "alice-pw", "vcert-sdk", "certificate")
        .await;
    let r = grant(&s, "alice", "alice-pw").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.json["error"], "temporarily_unavailable");
    // No grant was left behind that nobody can account for.
    assert!(s
        .app
        .store
        .list_grants(&Default::default())
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn audit_failing_open_keeps_serving() {
    let mut opts = Options::default();
    opts.config.audit.path = "/dev/full".into();
    // Failing closed is the default; failing open is the operator's explicit choice.
    opts.config.audit.fail_closed = false;
    let s = TestServer::start_with(opts).await;
    s.setup_basic("alice", "alice-pw", "vcert-sdk", "certificate")
        .await;
    assert_eq!(grant(&s, "alice", "alice-pw").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_header_client_is_cut_off_while_others_are_served() {
    let mut opts = Options::default();
    opts.config.tls = false;
    opts.config.http.header_read_timeout_secs = 2;
    let s = TestServer::start_with(opts).await;
    let addr = s.launched.handle.local_addr;
    let slow = tokio::task::spawn_blocking(move || {
        let mut c = std::net::TcpStream::connect(addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let request = b"GET /vedauth/authorize/isAuthServer HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let started = Instant::now();
        // One byte every 500 ms, bounded by the request's length and 20 seconds.
        for b in request {
            if c.write_all(&[*b]).is_err() {
                return (true, started.elapsed());
            }
            let mut buf = [0u8; 256];
            match c.read(&mut buf) {
                Ok(0) => return (true, started.elapsed()),
                Ok(_) => {
                    // The server answered (a 408) and will close.
                    return (true, started.elapsed());
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return (true, started.elapsed()),
            }
            std::thread::sleep(Duration::from_millis(400));
            if started.elapsed() > Duration::from_secs(20) {
                break;
            }
        }
        (false, started.elapsed())
    });
    // Meanwhile, other clients are served.
    for _ in 0..5 {
        let r = s
            .client
            .get(s.url("/vedauth/authorize/isAuthServer"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 202);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (cut_off, _) = slow.await.expect("join");
    assert!(cut_off, "the slow client was never disconnected");
}

#[tokio::test]
async fn https_responses_carry_hsts_and_tokens_are_not_cached() {
    let s = TestServer::start().await;
    s.setup_basic("alice", "alice-pw", "vcert-sdk", "certificate")
        .await;
    let r = grant(&s, "alice", "alice-pw").await;
    assert_eq!(r.headers["strict-transport-security"], "max-age=31536000");
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["pragma"], "no-cache");
    let refreshed = s.refresh("vcert-sdk", &r.str("refresh_token")).await;
    assert_eq!(refreshed.headers["cache-control"], "no-store");
}
