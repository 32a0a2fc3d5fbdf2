//! Several vedauth nodes on one PostgreSQL database: stateless peers that share grants, tell
//! each other of revocations, survive the loss of a peer and of the database, and a store that
//! moves between SQLite and PostgreSQL with its tokens.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use vedauth::config::DatabaseConfig;
use vedauth::store::postgres::PostgresStore;
use vedauth::store::sqlite::SqliteStore;
use vedauth::store::{Aggregate, Dump, Settings, SharedStore};

use crate::binary::Served;
use crate::common::{accepted_within, refused_within, ClockExt, Options, Reply, TestServer};
use crate::pg;

const PW: &str = "Alice-Pw-0001";
const APP: &str = "vcert-sdk";
const SCOPE: &str = "certificate:manage";
const BIN: &str = env!("CARGO_BIN_EXE_vedauth");

async fn two_nodes(opts: impl Fn() -> Options) -> (TestServer, TestServer) {
    let a = TestServer::start_with(opts()).await;
    let b = TestServer::start_with(opts()).await;
    (a, b)
}

/// Polls `node` until it refuses `token` (401), for at most a second from now.
async fn refused_within_a_second(node: &TestServer, token: &str, what: &str) {
    refused_within(Duration::from_secs(1), what, || async {
        node.verify(token).await.status
    })
    .await;
}

#[tokio::test]
async fn a_token_from_one_node_verifies_and_refreshes_on_the_other() {
    let db = pg::fresh_database().await;
    let (a, b) = two_nodes(|| Options::on_database(&db)).await;
    a.setup_basic("alice", PW, APP, SCOPE).await;
    let (access, refresh) = a.tokens(APP, "alice", PW, SCOPE).await;

    let v = b.verify(&access).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text);
    assert_eq!(v.json["scope"], SCOPE);
    let r = b.refresh(APP, &refresh).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let new_access = r.str("access_token");
    for node in [&a, &b] {
        assert_eq!(node.verify(&new_access).await.status, StatusCode::OK);
        assert_eq!(
            node.verify(&access).await.status,
            StatusCode::UNAUTHORIZED,
            "the rotated access token"
        );
    }
    a.refresh(APP, &refresh).await.assert_error(
        400,
        "invalid_grant",
        "Grant has been revoked, has expired, or the refresh token is invalid",
    );
    let again = a.refresh(APP, &r.str("refresh_token")).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);

    // Global settings live in the store, and each node keeps them in memory (B has them from
    // the refresh above): a change made through the administration on one node applies on the
    // other within the feed's bound.
    pg::wait_for_listeners(&db, 2).await;
    let off = Settings {
        authorize_by_password: false,
        ..Settings::default()
    };
    a.app
        .admin
        .set_settings(&vedauth::admin::Caller::Operator, off)
        .await
        .expect("settings");
    let start = Instant::now();
    loop {
        let r = b.password_grant(APP, "alice", PW, SCOPE).await;
        if r.status == StatusCode::BAD_REQUEST {
            r.assert_error(
                400,
                "unauthorized_client",
                "Username/Password authentication not enabled",
            );
            break;
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "password grants still on at B after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_revoke_on_one_node_is_refused_on_the_other_within_a_second() {
    let db = pg::fresh_database().await;
    let (a, b) = two_nodes(|| Options::on_database(&db)).await;
    // Both nodes listen; from here on, only an announcement can clear B's cache early (its
    // time-to-live is 30 s).
    pg::wait_for_listeners(&db, 2).await;
    a.setup_basic("alice", PW, APP, SCOPE).await;

    let (access, _) = a.tokens(APP, "alice", PW, SCOPE).await;
    b.verify_twice(&access).await;
    assert_eq!(a.verify(&access).await.status, StatusCode::OK);
    let r = a.get_bearer("/vedauth/revoke/token", Some(&access)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    refused_within_a_second(&b, &access, "revoke").await;

    // A refresh on A retires the old access token on B just as fast.
    let (access, refresh) = a.tokens(APP, "alice", PW, SCOPE).await;
    b.verify_twice(&access).await;
    let r = a.refresh(APP, &refresh).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    refused_within_a_second(&b, &access, "refresh").await;
    assert_eq!(
        b.verify(&r.str("access_token")).await.status,
        StatusCode::OK
    );
}

/// Each node remembers client authentications that succeeded; a secret rotated on one node
/// is announced on the feed, and the other stops taking the old secret within a second.
#[tokio::test]
async fn a_client_secret_rotated_on_one_node_is_refused_on_the_other_within_a_second() {
    let db = pg::fresh_database().await;
    let (a, b) = two_nodes(|| Options::on_database(&db)).await;
    pg::wait_for_listeners(&db, 2).await;
    a.setup_basic("alice", PW, APP, SCOPE).await;
    let rotate = || async {
        a.app
            .admin
            .set_client_secret(&vedauth::admin::Caller::Operator, APP)
            .await
            .expect("secret")
            .secret
            .expose()
            .to_string()
    };
    let old = rotate().await;
    let (access, _) = a.tokens(APP, "alice", PW, SCOPE).await;
    let introspect = |secret: String| crate::oauth2::introspect_as(&b, APP, secret, access.clone());
    let r = introspect(old.clone()).await;
    assert_eq!(r.json["active"], true, "now remembered on B: {}", r.text);
    let new = rotate().await;
    refused_within(
        Duration::from_secs(1),
        "the rotated secret on B",
        || async {
            let r = introspect(old.clone()).await;
            if r.status != StatusCode::UNAUTHORIZED {
                assert_eq!(r.json["active"], true, "{}", r.text);
            }
            r.status
        },
    )
    .await;
    assert_eq!(introspect(new).await.json["active"], true);
}

/// A user disabled, enabled or given a new password on one node: the other node's next login
/// follows (each login reads its user from the store; this bounds any copy a node might keep
/// to a second).
#[tokio::test]
async fn a_user_changed_on_one_node_is_seen_by_the_others_logins_within_a_second() {
    use vedauth::admin::Caller;
    use vedauth::secret::Secret;
    let db = pg::fresh_database().await;
    let (a, b) = two_nodes(|| Options::on_database(&db)).await;
    pg::wait_for_listeners(&db, 2).await;
    a.setup_basic("alice", PW, APP, SCOPE).await;
    let b = &b;
    let login_on_b =
        |pw: &'static str| async move { b.password_grant(APP, "alice", pw, SCOPE).await.status };
    assert_eq!(login_on_b(PW).await, StatusCode::OK);
    let admin = &a.app.admin;
    admin
        .set_user_disabled(&Caller::Operator, "alice", true)
        .await
        .expect("disable");
    refused_within(Duration::from_secs(1), "the disabled user on B", || {
        login_on_b(PW)
    })
    .await;
    admin
        .set_user_disabled(&Caller::Operator, "alice", false)
        .await
        .expect("enable");
    accepted_within(Duration::from_secs(1), "the enabled user on B", || {
        login_on_b(PW)
    })
    .await;
    let new_pw = "Alice-New-Password-2";
    admin
        .set_password(&Caller::Operator, "alice", Secret::new(new_pw))
        .await
        .expect("password");
    refused_within(Duration::from_secs(1), "the old password on B", || {
        login_on_b(PW)
    })
    .await;
    assert_eq!(login_on_b(new_pw).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_of_one_token_on_two_nodes_succeed_exactly_once() {
    let db = pg::fresh_database().await;
    let (a, b) = two_nodes(|| Options::on_database(&db)).await;
    a.setup_basic("alice", PW, APP, SCOPE).await;
    let (_, refresh) = a.tokens(APP, "alice", PW, SCOPE).await;

    const N: usize = 32;
    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let node = if i % 2 == 0 { &a } else { &b };
        let (client, url) = (node.client.clone(), node.url("/vedauth/authorize/token"));
        let (barrier, refresh) = (barrier.clone(), refresh.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            let r = client
                .post(url)
                .json(&json!({"client_id": APP, "refresh_token": refresh}))
                .send()
                .await
                .expect("send");
            Reply::read(r).await
        });
    }
    let replies: Vec<Reply> = tasks.join_all().await;
    let ok: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .collect();
    assert_eq!(ok.len(), 1, "successes: {ok:?}");
    for r in replies.iter().filter(|r| r.status != StatusCode::OK) {
        r.assert_error(
            400,
            "invalid_grant",
            "Grant has been revoked, has expired, or the refresh token is invalid",
        );
    }
    let winner = ok[0].str("access_token");
    assert_eq!(a.verify(&winner).await.status, StatusCode::OK);
    assert_eq!(b.verify(&winner).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_node_under_load_loses_no_answered_grant() {
    let db = pg::fresh_database().await;
    let b = TestServer::start_with(Options::on_database(&db)).await;
    b.setup_basic("alice", PW, APP, SCOPE).await;

    // Node A: a separate `vedauth serve` process on the same database, with the test's cheap
    // hash parameters (the users' hashes carry them; other parameters would rehash on login).
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("a");
    let cfg = crate::crash::cheap_config(&dir);
    let mut a = Served::start(&dir, &["--database-url", &db, "--config", &cfg]);

    // Bounded load on A until it is killed (see crash.rs); B serves alongside, before and after.
    let deadline = Instant::now() + Duration::from_secs(30);
    let b_load = {
        let (client, url) = (b.client.clone(), b.url("/vedauth/authorize/oauth"));
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..40 {
                if Instant::now() > deadline {
                    break;
                }
                let r = client
                    .post(&url)
                    .json(&json!({"client_id": APP, "username": "alice", "password": PW, "scope": SCOPE}))
                    .send()
                    .await
                    .expect("B answers");
                statuses.push(r.status());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            statuses
        })
    };
    let answered = crate::crash::load_then_kill(&mut a, deadline).await;
    let b_statuses = b_load.await.expect("B load");
    assert!(
        b_statuses.iter().all(|s| *s == StatusCode::OK),
        "{b_statuses:?}"
    );

    // The access tokens A answered 200 (the latest of each grant).
    let live: Vec<String> = answered.into_iter().map(|p| p.access).collect();
    // At least 20 grants were answered before the kill; at most one refresh per worker (4)
    // was cut off with its answer.
    assert!(live.len() >= 16, "{} tokens", live.len());
    for token in &live {
        let v = b.verify(token).await;
        assert_eq!(v.status, StatusCode::OK, "a token A answered: {}", v.text);
    }
    // And B still issues.
    let (access, _) = b.tokens(APP, "alice", PW, SCOPE).await;
    assert_eq!(b.verify(&access).await.status, StatusCode::OK);
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopping_gives_503_and_service_comes_back_without_a_restart() {
    // A cluster of its own: this test stops it.
    let cluster = tokio::task::spawn_blocking(pg::Cluster::start)
        .await
        .expect("cluster");
    let db = pg::fresh_database_on(&cluster.url).await;
    let opts = || {
        let mut o = Options::on_database(&db);
        o.config.database = DatabaseConfig {
            acquire_timeout_secs: 1,
            operation_timeout_secs: 3,
            ..DatabaseConfig::default()
        };
        // Long enough that nothing in this test expires from the cache by itself.
        o.config.tokens.verify_cache_ttl_secs = 600;
        o
    };
    let (a, b) = two_nodes(opts).await;
    pg::wait_for_listeners(&db, 2).await;
    a.setup_basic("alice", PW, APP, SCOPE).await;
    let (access, refresh) = a.tokens(APP, "alice", PW, SCOPE).await;
    b.verify_twice(&access).await;

    cluster.stop().await;
    let unavailable = |r: &Reply| {
        r.assert_error(
            503,
            "temporarily_unavailable",
            "The service is temporarily unavailable; retry shortly",
        );
        assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);
    };
    // Whatever needs the store: 503, within a bounded time (the pool's 1 s acquire timeout,
    // with a wide margin).
    let bound = Duration::from_secs(10);
    let t = Instant::now();
    unavailable(&a.password_grant(APP, "alice", PW, SCOPE).await);
    assert!(t.elapsed() < bound, "authorize took {:?}", t.elapsed());
    let t = Instant::now();
    unavailable(&b.refresh(APP, &refresh).await);
    assert!(t.elapsed() < bound, "refresh took {:?}", t.elapsed());
    let t = Instant::now();
    unavailable(&a.verify("AAAAAAAAAAAAAAAAAAAAAA==").await);
    assert!(t.elapsed() < bound, "verify took {:?}", t.elapsed());
    // A token B has seen is still answered from its cache.
    assert_eq!(b.verify(&access).await.status, StatusCode::OK);

    cluster.start_again().await;
    // Full service again, from the same processes.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = a.password_grant(APP, "alice", PW, SCOPE).await;
        if r.status == StatusCode::OK {
            break;
        }
        unavailable(&r);
        assert!(Instant::now() < deadline, "A did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = b.refresh(APP, &refresh).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let access = r.str("access_token");
    assert_eq!(a.verify(&access).await.status, StatusCode::OK);
    // The invalidation feeds reconnected too.
    pg::wait_for_listeners(&db, 2).await;
    b.verify_twice(&access).await;
    let r = a.get_bearer("/vedauth/revoke/token", Some(&access)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    refused_within_a_second(&b, &access, "revoke after the outage").await;
}

/// Runs the binary; returns (success, stdout, stderr).
fn vedauth(args: &[&str], data_dir: &std::path::Path) -> (bool, String, String) {
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run vedauth");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Every aggregate of a store (what `store copy` walks), in a comparable form.
async fn everything(s: &SharedStore) -> Vec<Dump> {
    let mut out = Vec::new();
    for a in Aggregate::ALL {
        out.push(s.export(a).await.expect("export"));
    }
    out
}

#[tokio::test]
async fn store_copy_moves_everything_between_sqlite_and_postgres_and_tokens_keep_working() {
    // A SQLite node with some of everything.
    let src = TestServer::start().await;
    src.setup_basic("alice", PW, APP, SCOPE).await;
    src.add_user("Bob", "Bob-Pw-000002").await;
    let mut app2 = src.add_app("other-app", "certificate;ssh:approve").await;
    app2.grant_validity = Some(vedauth::store::Lifetime::Never);
    app2.renewable = Some(false);
    src.app
        .store
        .update_application(&app2)
        .await
        .expect("update");
    src.allow("other-app", "local:Bob", Some("certificate"))
        .await;
    let mut settings = Settings {
        default_access_token_validity: 3600,
        ..Settings::default()
    };
    settings.other.insert("SessionPoolSize".into(), json!(12));
    src.app
        .store
        .put_settings(&settings)
        .await
        .expect("settings");
    // A confidential application: its client secret (a hash) is copied too.
    let client_secret = src
        .app
        .admin
        .set_client_secret(&vedauth::admin::Caller::Operator, APP)
        .await
        .expect("client secret")
        .secret;
    // A trusted certificate issuer, added as an operator would.
    let ca = crate::certauth::pki::Ca::root("Copy Test CA");
    src.app
        .admin
        .add_issuers(&vedauth::admin::Caller::Operator, &ca.pem())
        .await
        .expect("issuer");
    let (kept, _) = src.tokens(APP, "alice", PW, SCOPE).await;
    let (rotated, refresh) = src.tokens(APP, "alice", PW, SCOPE).await;
    let r = src.refresh(APP, &refresh).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (fresh, fresh_refresh) = (r.str("access_token"), r.str("refresh_token"));
    let r = src
        .password_grant("other-app", "bob", "Bob-Pw-000002", "certificate")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["refresh_token"], Value::Null, "not renewable");
    let bobs = r.str("access_token");
    // A failed login leaves a lockout record with a count.
    let r = src
        .password_grant("other-app", "bob", "wrong-password", "certificate")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);

    // A JWT mapping and a used JWT (its replay record must travel with it).
    src.app
        .store
        .create_jwt_mapping(&vedauth::store::JwtMapping {
            name: "k8s".into(),
            issuer_uri: "https://k8s.example".into(),
            jwks_uri: Some("https://k8s.example/jwks".into()),
            purpose_field: "aud".into(),
            purpose_match: "vedauth".into(),
            id_field: "sub".into(),
            id_match: "system:serviceaccount:ci:(.+)".into(),
            grantee_prefixed_universal: None,
        })
        .await
        .expect("mapping");
    src.app
        .store
        .record_jwt_use(
            &vedauth::store::JwtUse {
                digest: vedauth::token::TokenDigest::of("a used JWT"),
                used_until: src.clock.now_secs() + 3600,
            },
            src.clock.now_secs(),
        )
        .await
        .expect("use");

    let tmp = tempfile::tempdir().expect("tmp");
    let work = tmp.path();
    let sqlite_url = format!("sqlite:{}", src.dir.join("vedauth.db").display());
    let db = pg::fresh_database().await;

    // SQLite to PostgreSQL.
    let (ok, out, err) = vedauth(
        &[
            "store",
            "copy",
            "--from",
            &sqlite_url,
            "--to",
            &db,
            "--json",
        ],
        work,
    );
    assert!(ok, "{err}");
    let counts: Value = serde_json::from_str(&out).expect("json");
    // admin, alice, Bob; vedauth-admin, vcert-sdk, other-app; their rules; the admin's Admin
    // role; the lockout records of alice and Bob (who logged in); three grants, one of them
    // refreshed (so one retired refresh token); the JWT mapping and the used JWT.
    assert_eq!(
        counts,
        json!({"users": 3, "applications": 3, "rules": 3, "client_secrets": 1, "roles": 1,
               "lockout": 2, "settings": 1, "grants": 3, "retired_refresh": 1, "jwt_mappings": 1,
               "jwt_uses": 1, "trusted_issuers": 1,
               "skipped": {"users": 0, "applications": 0, "rules": 0, "client_secrets": 0,
                           "roles": 0, "lockout": 0, "grants": 0, "retired_refresh": 0,
                           "jwt_mappings": 0, "jwt_uses": 0, "trusted_issuers": 0}})
    );
    // A destination with data is refused, unless told otherwise.
    let (ok, _, err) = vedauth(&["store", "copy", "--from", &sqlite_url, "--to", &db], work);
    assert!(!ok);
    assert!(err.contains("already holds data"), "{err}");
    let password = database_password(&db);
    assert!(
        password.is_empty() || !err.contains(&password),
        "the password leaked: {err}"
    );
    let (ok, out, err) = vedauth(
        &[
            "store",
            "copy",
            "--from",
            &sqlite_url,
            "--to",
            &db,
            "--allow-non-empty",
            "--json",
        ],
        work,
    );
    assert!(ok, "{err}");
    let counts: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(counts["users"], 0);
    assert_eq!(
        counts["skipped"],
        json!({"users": 3, "applications": 3, "rules": 3, "client_secrets": 1, "roles": 1,
               "lockout": 2, "grants": 3, "retired_refresh": 1, "jwt_mappings": 1, "jwt_uses": 1,
               "trusted_issuers": 1})
    );

    // And back, to a new SQLite file.
    let back_url = format!("sqlite:{}", work.join("back.db").display());
    let (ok, out, err) = vedauth(&["store", "copy", "--from", &db, "--to", &back_url], work);
    assert!(ok, "{err}");
    assert!(
        out.contains("copied 3 users, 3 applications, 3 rules, 3 grants"),
        "{out}"
    );

    // Every record is the same in all three.
    let cfg = DatabaseConfig::default();
    let original: SharedStore = Arc::new(
        SqliteStore::open_url(&sqlite_url)
            .await
            .expect("open source"),
    );
    let on_pg: SharedStore = Arc::new(PostgresStore::open(&db, &cfg).await.expect("open pg"));
    let back: SharedStore = Arc::new(SqliteStore::open_url(&back_url).await.expect("open back"));
    let expected = everything(&original).await;
    // Every aggregate holds something, so that the comparison below compares something.
    assert_eq!(expected.len(), Aggregate::ALL.len());
    for dump in &expected {
        assert!(!dump.is_empty(), "nothing to compare in {dump:?}");
    }
    assert!(
        expected.iter().any(|d| matches!(d, Dump::Lockout(v)
            if v.iter().any(|e| e.record.failures == 1))),
        "Bob's failed login: {expected:?}"
    );
    assert_eq!(everything(&on_pg).await, expected);
    assert_eq!(everything(&back).await, expected);

    // Tokens issued before the copy work on nodes started on the copies.
    let admin_password =
        std::fs::read_to_string(src.dir.join("initial-admin-password")).expect("admin password");
    for url in [&db, &back_url] {
        let node = TestServer::start_with(Options::on_database(url)).await;
        for token in [&kept, &fresh, &bobs] {
            let v = node.verify(token).await;
            assert_eq!(v.status, StatusCode::OK, "{url}: {}", v.text);
        }
        assert_eq!(
            node.verify(&rotated).await.status,
            StatusCode::UNAUTHORIZED,
            "rotated before the copy"
        );
        assert_eq!(
            node.refresh(APP, &fresh_refresh).await.status,
            StatusCode::OK
        );
        // The copied client secret authenticates the application there.
        let r = node
            .client
            .post(node.url("/oauth2/token"))
            .basic_auth(APP, Some(client_secret.expose()))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK, "{url}");
        // The bootstrap administrator kept its role: the administration API answers it.
        let admin = node
            .tokens("vedauth-admin", "admin", &admin_password, "admin")
            .await
            .0;
        let apps = node.oauth("GetApplications", &admin, &json!({})).await.ok();
        assert_eq!(
            apps.json["Applications"].as_array().map(Vec::len),
            Some(3),
            "{url}: {}",
            apps.text
        );
    }
    let distinct: HashSet<&String> = [&kept, &fresh, &bobs].into_iter().collect();
    assert_eq!(distinct.len(), 3);
}

fn database_password(url: &str) -> String {
    reqwest::Url::parse(url)
        .expect("url")
        .password()
        .unwrap_or("")
        .to_string()
}

async fn next(
    rx: &mut tokio::sync::broadcast::Receiver<vedauth::store::Invalidation>,
) -> vedauth::store::Invalidation {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an invalidation within 10 s")
        .expect("the feed is open")
}

#[tokio::test]
async fn the_invalidation_feed_delivers_announcements_and_flags_a_reconnect() {
    use vedauth::store::{Invalidation, InvalidationFeed};
    use vedauth::token::TokenDigest;

    let db = pg::fresh_database().await;
    let cfg = DatabaseConfig::default();
    let a = PostgresStore::open(&db, &cfg).await.expect("open a");
    let b = PostgresStore::open(&db, &cfg).await.expect("open b");
    let mut feed = b.invalidations().expect("a feed");
    // Listening starts with "drop everything": nothing said before can be known.
    assert_eq!(next(&mut feed).await, Invalidation::All);

    // More digests than one notification's payload can hold arrive, all of them, in order.
    let digests: Vec<TokenDigest> = (0..300)
        .map(|i| TokenDigest::of(&format!("t{i}")))
        .collect();
    a.announce_invalidation(&digests).await.expect("announce");
    for d in &digests {
        assert_eq!(next(&mut feed).await, Invalidation::Token(*d));
    }

    // Cut B's listening connection: the feed reconnects by itself and says that it may have
    // missed announcements meanwhile.
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&db)
        .await
        .expect("connect");
    let cut: i64 = sqlx::query_scalar(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_one(&mut admin)
    .await
    .expect("terminate");
    assert_eq!(cut, 1);
    assert_eq!(next(&mut feed).await, Invalidation::All);
    a.announce_invalidation(&digests[..1])
        .await
        .expect("announce");
    assert_eq!(next(&mut feed).await, Invalidation::Token(digests[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_on_an_empty_database_bootstrap_once() {
    let db = pg::fresh_database().await;
    let store: SharedStore = Arc::new(
        PostgresStore::open(&db, &DatabaseConfig::default())
            .await
            .expect("open"),
    );
    let pool = vedauth::password::HashPool::start(
        vedauth::password::HashParams::insecure_for_tests(),
        2,
        0,
    )
    .expect("pool");
    let (da, db_dir) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let (a, b) = tokio::join!(
        vedauth::bootstrap::ensure_admin(store.as_ref(), &pool, da.path(), 0, None),
        vedauth::bootstrap::ensure_admin(store.as_ref(), &pool, db_dir.path(), 0, None),
    );
    let (a, b) = (a.expect("node a"), b.expect("node b"));
    // At most one created the admin (both may see the other's rows and do nothing).
    assert!(a.is_none() || b.is_none(), "both bootstrapped");
    let files: Vec<_> = [da.path(), db_dir.path()]
        .iter()
        .map(|d| d.join(vedauth::bootstrap::PASSWORD_FILE))
        .filter(|f| f.exists())
        .collect();
    assert_eq!(files.len(), usize::from(a.is_some() || b.is_some()));
    assert_eq!(store.list_users().await.expect("users").len(), 1);
    // The password file that remains is the admin's.
    if let Some(f) = files.first() {
        let pw = std::fs::read_to_string(f).expect("read");
        let admin = store
            .user_by_name("admin")
            .await
            .expect("store")
            .expect("admin");
        let v = pool
            .verify(&admin.password_hash, vedauth::secret::Secret::new(pw))
            .await
            .expect("verify");
        assert!(v.ok);
    }
}
