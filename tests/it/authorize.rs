//! POST /vedauth/authorize/oauth: one test per row of docs/protocol.md §5, over real HTTPS.

use reqwest::StatusCode;
use serde_json::{json, Value};
use vedauth::password::HashParams;
use vedauth::store::{Lifetime, Settings};

use crate::common::{ClockExt, Options, TestServer};

const OAUTH: &str = "/vedauth/authorize/oauth";
const BAD_LOGIN: &str = "Username/password combination not valid";

fn body(client_id: &str, user: &str, pw: &str, scope: &str) -> Value {
    json!({"client_id": client_id, "username": user, "password": pw, "scope": scope})
}

async fn basic() -> TestServer {
    let s = TestServer::start().await;
    s.setup_basic(
        "alice",
        "alice-pw",
        "vcert-sdk",
        "certificate:manage,revoke",
    )
    .await;
    s
}

#[tokio::test]
async fn row1_malformed_body() {
    let s = basic().await;
    let malformed = "The request is missing a required parameter or is otherwise malformed";
    for raw in ["{", "[1,2]", "\"text\"", "", "{\"client_id\": }"] {
        s.post_raw(OAUTH, "application/json", raw)
            .await
            .assert_error(400, "invalid_request", malformed);
    }
    // A non-string where a string is expected is malformed too, even with everything else right.
    for bad in [
        json!({"client_id": 5, "username": "alice", "password": "alice-pw", "scope": "certificate"}),
        json!({"client_id": "vcert-sdk", "username": ["alice"], "password": "alice-pw", "scope": "certificate"}),
        json!({"client_id": "vcert-sdk", "username": "alice", "password": true, "scope": "certificate"}),
        json!({"client_id": "vcert-sdk", "username": "alice", "password": "alice-pw", "scope": {"a": 1}}),
    ] {
        s.post_json(OAUTH, &bad)
            .await
            .assert_error(400, "invalid_request", malformed);
    }
}

#[tokio::test]
async fn row2_client_id_missing() {
    let s = basic().await;
    for b in [
        json!({"username": "alice", "password": "alice-pw", "scope": "certificate"}),
        json!({"client_id": null, "username": "alice", "password": "alice-pw", "scope": "certificate"}),
        json!({"client_id": "", "username": "alice", "password": "alice-pw", "scope": "certificate"}),
        // Parameter names are case-sensitive.
        json!({"Client_Id": "vcert-sdk", "username": "alice", "password": "alice-pw", "scope": "certificate"}),
    ] {
        s.post_json(OAUTH, &b).await.assert_error(
            400,
            "invalid_request",
            "Application identifier is missing",
        );
    }
}

#[tokio::test]
async fn row3_username_or_password_missing() {
    let s = basic().await;
    for b in [
        json!({"client_id": "vcert-sdk", "password": "alice-pw", "scope": "certificate"}),
        json!({"client_id": "vcert-sdk", "username": "alice", "scope": "certificate"}),
        json!({"client_id": "vcert-sdk", "username": "alice", "password": "", "scope": "certificate"}),
        json!({"client_id": "vcert-sdk", "username": null, "password": "x", "scope": "certificate"}),
    ] {
        s.post_json(OAUTH, &b).await.assert_error(
            400,
            "invalid_request",
            "Missing username or password",
        );
    }
}

#[tokio::test]
async fn row4_password_authentication_disabled() {
    let s = basic().await;
    let settings = Settings {
        authorize_by_password: false,
        ..Settings::default()
    };
    s.put_settings(&settings).await;
    s.post_json(
        OAUTH,
        &body("vcert-sdk", "alice", "alice-pw", "certificate"),
    )
    .await
    .assert_error(
        400,
        "unauthorized_client",
        "Username/Password authentication not enabled",
    );
    // Turned back on, service resumes without a restart.
    s.put_settings(&Settings::default()).await;
    let r = s
        .post_json(
            OAUTH,
            &body("vcert-sdk", "alice", "alice-pw", "certificate"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn row5_invalid_scope() {
    let s = basic().await;
    let cases = [
        ("bogus", "bogus"),
        ("certificate:manage;bogus:read", "bogus:read"),
        ("certificate:fly", "certificate:fly"),
        ("", ""),
        (";", ""),
    ];
    for (scope, item) in cases {
        s.post_json(OAUTH, &body("vcert-sdk", "alice", "alice-pw", scope))
            .await
            .assert_error(
                400,
                "invalid_scope",
                &format!("Failed to issue grant: scope '{item}' is not valid"),
            );
    }
    // A missing scope is treated like an empty one.
    s.post_json(
        OAUTH,
        &json!({"client_id": "vcert-sdk", "username": "alice", "password": "alice-pw"}),
    )
    .await
    .assert_error(
        400,
        "invalid_scope",
        "Failed to issue grant: scope '' is not valid",
    );
}

#[tokio::test]
async fn row6_unknown_application() {
    let s = basic().await;
    s.post_json(
        OAUTH,
        &body("no-such-app", "alice", "alice-pw", "certificate"),
    )
    .await
    .assert_error(
        400,
        "invalid_client",
        "Failed to issue grant: application 'no-such-app' is not registered",
    );
    // client_id is case-sensitive.
    s.post_json(
        OAUTH,
        &body("VCERT-SDK", "alice", "alice-pw", "certificate"),
    )
    .await
    .assert_error(
        400,
        "invalid_client",
        "Failed to issue grant: application 'VCERT-SDK' is not registered",
    );
}

#[tokio::test]
async fn row7_bad_credentials_all_look_the_same() {
    let s = basic().await;
    let bob = s.add_user("bob", "bob-pw").await;
    s.app
        .store
        .set_user_disabled(&bob.id, true)
        .await
        .expect("disable");
    let attempts = [
        body("vcert-sdk", "alice", "wrong", "certificate"),
        body("vcert-sdk", "nobody", "whatever", "certificate"),
        body("vcert-sdk", "bob", "bob-pw", "certificate"),
        body("vcert-sdk", "local:nobody", "x", "certificate"),
    ];
    let mut bodies = Vec::new();
    for a in &attempts {
        let r = s.post_json(OAUTH, a).await;
        r.assert_error(401, "invalid_grant", BAD_LOGIN);
        bodies.push(r.text);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
}

#[tokio::test]
async fn row8_no_rule_admits_the_identity() {
    let s = TestServer::start().await;
    s.add_user("alice", "alice-pw").await;
    s.add_user("carol", "carol-pw").await;
    s.add_app("vcert-sdk", "certificate:manage,revoke").await;
    s.allow("vcert-sdk", "local:carol", None).await;
    s.post_json(
        OAUTH,
        &body("vcert-sdk", "alice", "alice-pw", "certificate"),
    )
    .await
    .assert_error(
        401,
        "invalid_grant",
        "Failed to issue grant: user is not allowed to use this application",
    );
    // Credentials are checked first: a wrong password never learns about rules.
    s.post_json(OAUTH, &body("vcert-sdk", "alice", "nope", "certificate"))
        .await
        .assert_error(401, "invalid_grant", BAD_LOGIN);
    let r = s
        .post_json(
            OAUTH,
            &body("vcert-sdk", "carol", "carol-pw", "certificate"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn row9_scope_beyond_application_or_rule() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "alice-pw").await;
    s.add_user("dave", "dave-pw").await;
    s.add_app("vcert-sdk", "certificate:manage,revoke;ssh")
        .await;
    s.allow("vcert-sdk", &alice.identity(), Some("certificate:manage"))
        .await;
    s.allow("vcert-sdk", "local:dave", None).await;
    let denied = "Failed to issue grant: User is not authorized for the requested scope";
    // Beyond the application.
    s.post_json(
        OAUTH,
        &body("vcert-sdk", "dave", "dave-pw", "configuration"),
    )
    .await
    .assert_error(403, "invalid_scope", denied);
    s.post_json(OAUTH, &body("vcert-sdk", "dave", "dave-pw", "ssh:manage"))
        .await
        .assert_error(403, "invalid_scope", denied);
    // Within the application but beyond alice's rule.
    s.post_json(
        OAUTH,
        &body("vcert-sdk", "alice", "alice-pw", "certificate:revoke"),
    )
    .await
    .assert_error(403, "invalid_scope", denied);
    let r = s
        .post_json(
            OAUTH,
            &body("vcert-sdk", "alice", "alice-pw", "certificate:manage"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s
        .post_json(
            OAUTH,
            &body("vcert-sdk", "dave", "dave-pw", "ssh;certificate:revoke"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["scope"], "certificate:revoke;ssh");
}

fn assert_token(v: &Value) {
    let t = v.as_str().expect("token is a string");
    assert_eq!(t.len(), 24, "{t}");
    assert!(t.ends_with("=="), "{t}");
}

#[tokio::test]
async fn success_body_has_every_key_in_order_with_its_type() {
    let s = basic().await;
    let before = s.clock.now_secs();
    let r = s
        .post_json(
            OAUTH,
            &body(
                "vcert-sdk",
                "alice",
                "alice-pw",
                "Certificate:revoke,manage;",
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.headers["content-type"], "application/json; charset=utf-8");
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["pragma"], "no-cache");
    let obj = r.json.as_object().expect("object");
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
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
    assert_token(&r.json["access_token"]);
    assert_token(&r.json["refresh_token"]);
    assert_ne!(r.json["access_token"], r.json["refresh_token"]);
    assert!(r.json["expires_in"].is_i64());
    assert!(r.json["expires"].is_i64());
    assert!(r.json["refresh_until"].is_i64());
    assert_eq!(r.json["token_type"], "Bearer");
    assert_eq!(r.json["scope"], "certificate:manage,revoke");
    let expires = r.json["expires"].as_i64().unwrap_or_default();
    assert_eq!(expires, before + 90 * 86_400);
    assert_eq!(r.json["expires_in"].as_i64(), Some(expires - before));
    assert_eq!(
        r.json["refresh_until"].as_i64(),
        Some(before + 365 * 86_400)
    );
    let identity = r.str("identity");
    let alice = s
        .app
        .store
        .user_by_name("alice")
        .await
        .expect("store")
        .expect("alice");
    assert_eq!(identity, format!("local:{{{}}}", alice.id));
    assert!(identity.starts_with("local:{") && identity.ends_with('}'));
}

#[tokio::test]
async fn form_bodies_state_echo_and_case_insensitive_paths() {
    let s = basic().await;
    let r = s
        .post_raw(
            "/VEDAUTH/Authorize/OAuth/",
            "application/x-www-form-urlencoded",
            "client_id=vcert-sdk&username=local%3Aalice&password=alice-pw&scope=certificate&state=xyz",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["state"], "xyz");
    assert_eq!(r.json["scope"], "certificate");
    // vcert-python always sends an empty state: it is not echoed.
    let r = s
        .post_json(
            OAUTH,
            &json!({"client_id": "vcert-sdk", "username": "alice", "password": "alice-pw", "scope": "certificate", "state": "", "grant_type": "password"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json.get("state").is_none());
    // A stale Authorization header is ignored on the authorize endpoint.
    let r = s
        .client
        .post(s.url(OAUTH))
        .bearer_auth("stalestalestalestalest==")
        .json(&body("vcert-sdk", "alice", "alice-pw", "certificate"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn non_renewable_grants_have_null_refresh_fields_and_capped_expiry() {
    let s = TestServer::start().await;
    s.add_user("alice", "alice-pw").await;
    let mut app = s.add_app("short", "certificate").await;
    app.renewable = Some(false);
    app.access_validity = Some(3600);
    app.grant_validity = Some(Lifetime::Seconds(600));
    s.update_app(&app).await;
    s.allow("short", "everyone", None).await;
    let now = s.clock.now_secs();
    let r = s
        .password_grant("short", "alice", "alice-pw", "certificate")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json["refresh_token"].is_null(), "{}", r.text);
    assert!(r.json["refresh_until"].is_null(), "{}", r.text);
    // The access token never outlives its grant.
    assert_eq!(r.json["expires"].as_i64(), Some(now + 600));
}

#[tokio::test]
async fn body_over_64k_is_refused_with_json() {
    let s = basic().await;
    let big = format!(
        "{{\"client_id\":\"vcert-sdk\",\"pad\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let r = s.post_raw(OAUTH, "application/json", &big).await;
    assert_eq!(r.status.as_u16(), 413, "{}", r.text);
    assert_eq!(r.json["error"], "invalid_request");
}

#[tokio::test]
async fn fifty_concurrent_grants_all_succeed_through_the_pool() {
    let mut opts = Options::default();
    opts.config.password_hash.threads = 2;
    opts.config.password_hash.queue = 64;
    let s = TestServer::start_with(opts).await;
    s.setup_basic("alice", "alice-pw", "vcert-sdk", "certificate")
        .await;
    let hashed_before = s.app.pool.completed();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (client, url) = (s.client.clone(), s.url(OAUTH));
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&body("vcert-sdk", "alice", "alice-pw", "certificate"))
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("join").expect("send"), StatusCode::OK);
    }
    // Every password check ran on the pool's own threads.
    assert!(s.app.pool.completed() - hashed_before >= 50);
    assert_eq!(s.app.pool.threads(), 2);
}

#[tokio::test]
async fn saturated_pool_sheds_with_503_and_retry_after() {
    let mut opts = Options::default();
    opts.config.password_hash.threads = 1;
    opts.config.password_hash.queue = 1;
    // Slow enough that concurrent requests pile up behind one thread.
    opts.hash = HashParams {
        memory_kib: 16 * 1024,
        iterations: 4,
        parallelism: 1,
    };
    let s = TestServer::start_with(opts).await;
    s.setup_basic("alice", "alice-pw", "vcert-sdk", "certificate")
        .await;
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let (client, url) = (s.client.clone(), s.url(OAUTH));
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .json(&body("vcert-sdk", "alice", "alice-pw", "certificate"))
                .send()
                .await
                .expect("send");
            crate::common::Reply::read(r).await
        }));
    }
    let (mut ok, mut shed) = (0, 0);
    for t in tasks {
        let r = t.await.expect("join");
        match r.status.as_u16() {
            200 => ok += 1,
            503 => {
                shed += 1;
                assert_eq!(r.json["error"], "temporarily_unavailable");
                assert!(r.headers.contains_key("retry-after"));
            }
            other => panic!("unexpected status {other}: {}", r.text),
        }
    }
    assert!(ok >= 1, "some requests were served");
    assert!(shed >= 1, "some requests were shed");
}

/// A change of a user through the administration core applies to the next login at once:
/// disabled, enabled, a new password, removed and made again with another. (A login reads its
/// user from the store every time; a copy kept in memory would have to be dropped here.)
#[tokio::test]
async fn a_user_changed_through_the_administration_applies_at_the_next_login() {
    use vedauth::admin::{Caller, NewUser};
    use vedauth::secret::Secret;
    let s = basic().await;
    let (op, new_pw, third_pw) = (Caller::Operator, "Alice-New-Password-2", "Alice-Third-Pw-3");
    let login = |pw: &'static str| s.password_grant("vcert-sdk", "alice", pw, "certificate");
    let refused = |r: crate::common::Reply| r.assert_error(401, "invalid_grant", BAD_LOGIN);
    assert_eq!(login("alice-pw").await.status, StatusCode::OK);
    let admin = &s.app.admin;
    admin
        .set_user_disabled(&op, "alice", true)
        .await
        .expect("disable");
    refused(login("alice-pw").await);
    admin
        .set_user_disabled(&op, "alice", false)
        .await
        .expect("enable");
    assert_eq!(login("alice-pw").await.status, StatusCode::OK);
    admin
        .set_password(&op, "alice", Secret::new(new_pw))
        .await
        .expect("password");
    refused(login("alice-pw").await);
    assert_eq!(login(new_pw).await.status, StatusCode::OK);
    admin.remove_user(&op, "alice").await.expect("remove");
    refused(login(new_pw).await);
    admin
        .add_user(
            &op,
            NewUser {
                name: "alice".into(),
                password: Secret::new(third_pw),
                full_name: None,
                email: None,
            },
        )
        .await
        .expect("add");
    refused(login(new_pw).await);
    // The new alice is another identity, which the application's rule (everyone) admits.
    assert_eq!(login(third_pw).await.status, StatusCode::OK);
}

/// A user changed in the store behind the administration core's back (no announcement, as
/// another process or an edited database would): the next login follows the store, whatever
/// an earlier login read. Any copy of a user a server keeps must pass this.
#[tokio::test]
async fn a_user_changed_behind_the_cores_back_applies_at_the_next_login() {
    let s = basic().await;
    let login = |pw: &'static str| s.password_grant("vcert-sdk", "alice", pw, "certificate");
    let refused = |r: crate::common::Reply| r.assert_error(401, "invalid_grant", BAD_LOGIN);
    assert_eq!(login("alice-pw").await.status, StatusCode::OK);
    let store = &s.app.store;
    let alice = store
        .user_by_name("alice")
        .await
        .expect("store")
        .expect("alice");
    let mine = vedauth::store::GrantFilter {
        identity: Some(alice.identity()),
        client_id: None,
    };
    let grants = || async { store.list_grants(&mine).await.expect("grants").len() };
    let held = grants().await;
    let new_hash = vedauth::password::hash_now(&HashParams::insecure_for_tests(), "alice-new-pw")
        .expect("hash");
    assert!(store
        .replace_password_hash(&alice.id, None, &new_hash)
        .await
        .expect("password"));
    // A new password: accepted at once.
    assert_eq!(login("alice-new-pw").await.status, StatusCode::OK);
    // Again (a server that keeps copies now holds the new hash).
    assert_eq!(login("alice-new-pw").await.status, StatusCode::OK);
    assert_eq!(grants().await, held + 2);
    // Disabled: refused, and no grant left.
    assert!(store
        .set_user_disabled(&alice.id, true)
        .await
        .expect("disable"));
    refused(login("alice-new-pw").await);
    assert_eq!(grants().await, held + 2, "a disabled user kept a new grant");
    assert!(store
        .set_user_disabled(&alice.id, false)
        .await
        .expect("enable"));
    assert_eq!(login("alice-new-pw").await.status, StatusCode::OK);
    // A password changed again: the one before is refused and leaves no grant; the new one
    // is accepted.
    let third_hash =
        vedauth::password::hash_now(&HashParams::insecure_for_tests(), "alice-3-pw").expect("hash");
    assert!(store
        .replace_password_hash(&alice.id, None, &third_hash)
        .await
        .expect("password"));
    refused(login("alice-new-pw").await);
    assert_eq!(grants().await, held + 3, "an old password kept a new grant");
    assert_eq!(login("alice-3-pw").await.status, StatusCode::OK);
    // Removed and made again under the name: the new alice logs in.
    assert_eq!(login("alice-3-pw").await.status, StatusCode::OK);
    assert!(store.delete_user(&alice.id).await.expect("remove"));
    let again = vedauth::store::User {
        id: uuid::Uuid::new_v4().to_string(),
        password_hash: vedauth::password::hash_now(&HashParams::insecure_for_tests(), "alice-4-pw")
            .expect("hash"),
        ..alice.clone()
    };
    store.create_user(&again).await.expect("add");
    let r = login("alice-4-pw").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.str("identity"), again.identity().as_str());
}

#[tokio::test]
async fn outdated_hash_is_upgraded_at_next_login() {
    let s = basic().await;
    let old = HashParams {
        memory_kib: 32,
        iterations: 1,
        parallelism: 1,
    };
    let alice = s
        .app
        .store
        .user_by_name("alice")
        .await
        .expect("store")
        .expect("alice");
    let old_hash = vedauth::password::hash_now(&old, "alice-pw").expect("hash");
    s.app
        .store
        .replace_password_hash(&alice.id, None, &old_hash)
        .await
        .expect("replace");
    let r = s
        .password_grant("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let after = s
        .app
        .store
        .user_by_id(&alice.id)
        .await
        .expect("store")
        .expect("alice");
    assert!(
        after
            .password_hash
            .starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
        "{}",
        after.password_hash
    );
    // A wrong password does not trigger an upgrade.
    s.app
        .store
        .replace_password_hash(&alice.id, None, &old_hash)
        .await
        .expect("replace");
    let r = s
        .password_grant("vcert-sdk", "alice", "bad", "certificate")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let after = s
        .app
        .store
        .user_by_id(&alice.id)
        .await
        .expect("store")
        .expect("alice");
    assert_eq!(after.password_hash, old_hash);
}
