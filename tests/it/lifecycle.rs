//! Refresh, verify, revoke, the /vedsdk calls, expiry with a moved clock, the sweep, restarts.

use reqwest::StatusCode;
use serde_json::json;
use vedauth::store::{GrantFilter, Lifetime};

use crate::common::{ClockExt, Options, TestServer};

const INVALID_GRANT: &str = "Grant has been revoked, has expired, or the refresh token is invalid";
const INVALID_TOKEN: &str =
    "The access token provided is expired, revoked, malformed, or invalid for other reasons";

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

fn assert_invalid_token(r: &crate::common::Reply) {
    r.assert_error(401, "invalid_token", INVALID_TOKEN);
    assert_eq!(
        r.headers["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
}

#[tokio::test]
async fn refresh_rotates_both_tokens_and_keeps_the_grant() {
    let s = basic().await;
    let first = s
        .password_grant("vcert-sdk", "alice", "alice-pw", "certificate:manage")
        .await;
    let (a1, r1) = (first.str("access_token"), first.str("refresh_token"));
    s.clock.advance(100);
    let second = s.refresh("vcert-sdk", &r1).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    let (a2, r2) = (second.str("access_token"), second.str("refresh_token"));
    assert_ne!(a1, a2);
    assert_ne!(r1, r2);
    assert_eq!(second.json["scope"], "certificate:manage");
    assert_eq!(second.json["identity"], first.json["identity"]);
    // The grant's expiry stays anchored to its issue time; the access token moves on.
    assert_eq!(second.json["refresh_until"], first.json["refresh_until"]);
    assert_eq!(
        second.json["expires"].as_i64(),
        first.json["expires"].as_i64().map(|e| e + 100)
    );
    // The old pair stops working at once.
    assert_invalid_token(&s.verify(&a1).await);
    s.refresh("vcert-sdk", &r1)
        .await
        .assert_error(400, "invalid_grant", INVALID_GRANT);
    let v = s.verify(&a2).await;
    assert_eq!(v.status, StatusCode::OK);
    assert_eq!(
        v.json["grant_issued_on_unix_time"].as_i64(),
        first.json["expires"].as_i64().map(|e| e - 90 * 86_400)
    );
    assert_eq!(
        v.json["access_issued_on_unix_time"].as_i64(),
        v.json["grant_issued_on_unix_time"]
            .as_i64()
            .map(|g| g + 100)
    );
}

#[tokio::test]
async fn refresh_errors_of_section_6() {
    let s = basic().await;
    s.add_app("other-app", "certificate").await;
    let (_, r1) = s
        .tokens("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;
    s.post_json("/vedauth/authorize/token", &json!({"refresh_token": r1}))
        .await
        .assert_error(400, "invalid_request", "Application identifier is missing");
    s.post_json(
        "/vedauth/authorize/token",
        &json!({"client_id": "vcert-sdk"}),
    )
    .await
    .assert_error(400, "invalid_request", "Missing refresh token");
    s.refresh("other-app", &r1).await.assert_error(
        400,
        "invalid_grant",
        "The client_id value being requested with the refresh token does not match the client_id of the access token making the call",
    );
    for bad in ["WRONGREFRESHTOKEN", "AAAAAAAAAAAAAAAAAAAAAA==", ""] {
        let r = s.refresh("vcert-sdk", bad).await;
        if bad.is_empty() {
            r.assert_error(400, "invalid_request", "Missing refresh token");
        } else {
            r.assert_error(400, "invalid_grant", INVALID_GRANT);
        }
    }
    s.post_raw("/vedauth/authorize/token", "application/json", "{nope")
        .await
        .assert_error(
            400,
            "invalid_request",
            "The request is missing a required parameter or is otherwise malformed",
        );
    // Form bodies work on the token endpoint too.
    let r = s
        .post_raw(
            "/vedauth/authorize/token",
            "application/x-www-form-urlencoded",
            &format!("client_id=vcert-sdk&refresh_token={}", urlencode(&r1)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Revoked grant: its refresh token is dead.
    let (a3, r3) = s
        .tokens("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;
    let rv = s.get_bearer("/vedauth/revoke/token", Some(&a3)).await;
    assert_eq!(rv.status, StatusCode::OK);
    s.refresh("vcert-sdk", &r3)
        .await
        .assert_error(400, "invalid_grant", INVALID_GRANT);
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

#[tokio::test]
async fn expiry_follows_the_clock_and_the_sweep_removes_what_expired() {
    let s = TestServer::start().await;
    s.add_user("alice", "alice-pw").await;
    let mut app = s.add_app("short", "certificate").await;
    app.access_validity = Some(60);
    app.grant_validity = Some(Lifetime::Seconds(300));
    s.update_app(&app).await;
    s.allow("short", "everyone", None).await;
    let (a, r) = s.tokens("short", "alice", "alice-pw", "certificate").await;
    assert_eq!(s.verify(&a).await.status, StatusCode::OK);
    // Access token expired (verify fails) but the grant still refreshes.
    s.clock.advance(61);
    assert_invalid_token(&s.verify(&a).await);
    let r2 = s.refresh("short", &r).await;
    assert_eq!(r2.status, StatusCode::OK, "{}", r2.text);
    let (a2, rt2) = (r2.str("access_token"), r2.str("refresh_token"));
    assert_eq!(s.verify(&a2).await.status, StatusCode::OK);
    // Past the grant's expiry: refresh fails and so does verify.
    s.clock.advance(300);
    s.refresh("short", &rt2)
        .await
        .assert_error(400, "invalid_grant", INVALID_GRANT);
    assert_invalid_token(&s.verify(&a2).await);
    // A grant that never expires is reported as such.
    let mut forever = s.add_app("forever", "certificate").await;
    forever.grant_validity = Some(Lifetime::Never);
    s.app
        .store
        .update_application(&forever)
        .await
        .expect("update");
    s.allow("forever", "everyone", None).await;
    let (af, _) = s
        .tokens("forever", "alice", "alice-pw", "certificate")
        .await;
    let v = s.verify(&af).await;
    assert_eq!(v.status, StatusCode::OK);
    assert!(v.json["expires"].is_null());
    assert!(v.json["expires_ISO8601"].is_null());
    assert_eq!(v.json["expires_unix_time"], 0);
    // The sweep deletes the expired grant and keeps the live one.
    let all = GrantFilter::default();
    assert_eq!(s.app.store.list_grants(&all).await.expect("list").len(), 2);
    let removed = s.app.engine.sweep(1).await.expect("sweep");
    assert_eq!(removed, 1);
    let left = s.app.store.list_grants(&all).await.expect("list");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].client_id, "forever");
}

#[tokio::test]
async fn sweep_works_in_bounded_batches() {
    let s = TestServer::start().await;
    s.add_user("alice", "alice-pw").await;
    let mut app = s.add_app("short", "certificate").await;
    app.grant_validity = Some(Lifetime::Seconds(10));
    s.update_app(&app).await;
    s.allow("short", "everyone", None).await;
    for _ in 0..7 {
        s.tokens("short", "alice", "alice-pw", "certificate").await;
    }
    s.clock.advance(11);
    let now = s.clock.now_secs();
    // One store call removes at most a batch.
    assert_eq!(s.app.store.sweep_expired(now, 3).await.expect("sweep"), 3);
    // The engine loops over batches until nothing is left.
    assert_eq!(s.app.engine.sweep(3).await.expect("sweep"), 4);
    assert!(s
        .app
        .store
        .list_grants(&GrantFilter::default())
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn thirty_two_concurrent_refreshes_exactly_one_wins() {
    let s = basic().await;
    let (_, r) = s
        .tokens("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, url, r) = (
            s.client.clone(),
            s.url("/vedauth/authorize/token"),
            r.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(url)
                .json(&json!({"client_id": "vcert-sdk", "refresh_token": r}))
                .send()
                .await
                .expect("send");
            crate::common::Reply::read(resp).await
        }));
    }
    let mut winners = Vec::new();
    let mut losers = 0;
    for t in tasks {
        let reply = t.await.expect("join");
        match reply.status.as_u16() {
            200 => winners.push(reply),
            400 => {
                reply.assert_error(400, "invalid_grant", INVALID_GRANT);
                losers += 1;
            }
            other => panic!("unexpected {other}: {}", reply.text),
        }
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(losers, 31);
    let w = &winners[0];
    assert_eq!(
        s.verify(&w.str("access_token")).await.status,
        StatusCode::OK
    );
    let again = s.refresh("vcert-sdk", &w.str("refresh_token")).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
}

#[tokio::test]
async fn verify_fields_and_errors() {
    let s = basic().await;
    let now = s.clock.now_secs();
    let (a, _) = s
        .tokens(
            "vcert-sdk",
            "alice",
            "alice-pw",
            "certificate:revoke,manage",
        )
        .await;
    let v = s.get_bearer("/vedauth/Authorize/Verify", Some(&a)).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text);
    let keys: Vec<&str> = v
        .json
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "access_issued_on",
            "access_issued_on_ISO8601",
            "access_issued_on_unix_time",
            "application",
            "expires",
            "expires_ISO8601",
            "expires_unix_time",
            "grant_issued_on",
            "grant_issued_on_ISO8601",
            "grant_issued_on_unix_time",
            "identity",
            "scope",
            "valid_for"
        ]
    );
    assert_eq!(
        v.json["access_issued_on"],
        format!("/Date({})/", now * 1000)
    );
    assert_eq!(v.json["access_issued_on_unix_time"], now);
    let iso = v.json["access_issued_on_ISO8601"].as_str().expect("iso");
    assert_eq!(iso.len(), 20, "{iso}");
    assert!(iso.ends_with('Z') && iso.as_bytes()[10] == b'T', "{iso}");
    assert_eq!(v.json["application"], "vcert-sdk");
    assert_eq!(v.json["expires_unix_time"], now + 365 * 86_400);
    assert_eq!(v.json["grant_issued_on_unix_time"], now);
    assert_eq!(v.json["scope"], "certificate:manage,revoke");
    assert_eq!(v.json["valid_for"], 90 * 86_400);
    assert!(v.json["identity"]
        .as_str()
        .is_some_and(|i| i.starts_with("local:{")));
    // Errors: missing header, wrong scheme, malformed, unknown.
    assert_invalid_token(&s.get_bearer("/vedauth/authorize/verify", None).await);
    let basic_auth = s
        .client
        .get(s.url("/vedauth/authorize/verify"))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .await
        .expect("send");
    assert_invalid_token(&crate::common::Reply::read(basic_auth).await);
    assert_invalid_token(&s.verify("not-a-token").await);
    assert_invalid_token(&s.verify("AAAAAAAAAAAAAAAAAAAAAA==").await);
}

#[tokio::test]
async fn revoke_ends_the_grant_and_answers_202_for_unknown_tokens() {
    let s = basic().await;
    let (a, r) = s
        .tokens("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;
    s.verify_twice(&a).await; // now cached
    let rv = s.get_bearer("/vedauth/Revoke/Token", Some(&a)).await;
    assert_eq!(rv.status, StatusCode::OK, "{}", rv.text);
    assert_eq!(rv.json, json!({}));
    assert_eq!(
        rv.headers["content-type"],
        "application/json; charset=utf-8"
    );
    assert_invalid_token(&s.verify(&a).await);
    s.refresh("vcert-sdk", &r)
        .await
        .assert_error(400, "invalid_grant", INVALID_GRANT);
    // Again, and without a token: 202 with a JSON body.
    let again = s.get_bearer("/vedauth/revoke/token", Some(&a)).await;
    assert_eq!(again.status.as_u16(), 202);
    assert_eq!(again.json["error"], "invalid_token");
    let none = s.get_bearer("/vedauth/revoke/token", None).await;
    assert_eq!(none.status.as_u16(), 202);
    assert!(none.json.is_object());
    // DELETE works as GET does.
    let (a2, _) = s
        .tokens("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;
    let del = s
        .client
        .delete(s.url("/vedauth/revoke/token"))
        .bearer_auth(&a2)
        .send()
        .await
        .expect("send");
    assert_eq!(del.status(), StatusCode::OK);
    assert_invalid_token(&s.verify(&a2).await);
}

#[tokio::test]
async fn reuse_detection_revokes_the_grant_when_enabled() {
    let mut opts = Options::default();
    opts.config.tokens.refresh_reuse_detection = true;
    let s = TestServer::start_with(opts).await;
    s.setup_basic("alice", "alice-pw", "vcert-sdk", "certificate")
        .await;
    let (_, r1) = s
        .tokens("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;
    let second = s.refresh("vcert-sdk", &r1).await;
    assert_eq!(second.status, StatusCode::OK);
    let (a2, r2) = (second.str("access_token"), second.str("refresh_token"));
    assert_eq!(s.verify(&a2).await.status, StatusCode::OK);
    // Someone replays the rotated token: the whole grant goes.
    s.refresh("vcert-sdk", &r1)
        .await
        .assert_error(400, "invalid_grant", INVALID_GRANT);
    assert_invalid_token(&s.verify(&a2).await);
    s.refresh("vcert-sdk", &r2)
        .await
        .assert_error(400, "invalid_grant", INVALID_GRANT);
}

#[tokio::test]
async fn reuse_without_detection_leaves_the_grant_alone() {
    let s = basic().await;
    let (_, r1) = s
        .tokens("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;
    let second = s.refresh("vcert-sdk", &r1).await;
    let a2 = second.str("access_token");
    s.refresh("vcert-sdk", &r1)
        .await
        .assert_error(400, "invalid_grant", INVALID_GRANT);
    assert_eq!(s.verify(&a2).await.status, StatusCode::OK);
}

#[tokio::test]
async fn tokens_survive_a_restart_and_revocations_stay() {
    let s = basic().await;
    let (keep, keep_refresh) = s
        .tokens("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;
    let (gone, _) = s
        .tokens("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;
    assert_eq!(
        s.get_bearer("/vedauth/revoke/token", Some(&gone))
            .await
            .status,
        StatusCode::OK
    );
    let s = s.restart().await;
    assert_eq!(s.verify(&keep).await.status, StatusCode::OK);
    assert_invalid_token(&s.verify(&gone).await);
    assert_eq!(
        s.refresh("vcert-sdk", &keep_refresh).await.status,
        StatusCode::OK
    );
    // Users and applications survived too.
    assert!(s
        .app
        .store
        .user_by_name("alice")
        .await
        .expect("store")
        .is_some());
    assert!(s
        .app
        .store
        .application("vcert-sdk")
        .await
        .expect("store")
        .is_some());
    let r = s
        .password_grant("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn vedsdk_calls_clients_make() {
    let s = basic().await;
    let (a, _) = s
        .tokens("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;
    let auth = s.get_bearer("/vedauth/authorize/isAuthServer", None).await;
    assert_eq!(auth.status.as_u16(), 202);
    let ping = s.get_bearer("/vedsdk/", None).await;
    assert_eq!(ping.status, StatusCode::OK);
    assert!(ping.json.is_object());
    let v = s.get_bearer("/vedsdk/SystemStatus/Version", Some(&a)).await;
    assert_eq!(v.status, StatusCode::OK);
    let version = v.str("Version");
    assert_eq!(version.split('.').count(), 4, "{version}");
    assert!(version.split('.').all(|p| p.parse::<u32>().is_ok()));
    assert_invalid_token(&s.get_bearer("/vedsdk/SystemStatus/Version", None).await);
    let me = s.get_bearer("/vedsdk/Identity/Self", Some(&a)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    let id = &me.json["Identities"][0];
    let alice = s
        .app
        .store
        .user_by_name("alice")
        .await
        .expect("store")
        .expect("alice");
    assert_eq!(id["Name"], "alice");
    assert_eq!(id["Prefix"], "local");
    assert_eq!(id["PrefixedName"], "local:alice");
    assert_eq!(id["PrefixedUniversal"], alice.identity().as_str());
    assert_eq!(id["Universal"], format!("{{{}}}", alice.id));
    assert_eq!(id["Type"], 1);
    assert_eq!(id["FullName"], "\\VED\\Identity\\alice");
    assert_invalid_token(&s.get_bearer("/vedsdk/Identity/Self", Some("bogus")).await);
    let legacy = s
        .post_json(
            "/vedsdk/authorize/",
            &json!({"Username": "alice", "Password": "alice-pw"}),
        )
        .await;
    assert_eq!(legacy.status.as_u16(), 401);
    assert!(legacy
        .str("error_description")
        .starts_with("API keys are deprecated."));
    // Unknown paths answer JSON too.
    let nf = s.get_bearer("/vedsdk/NoSuchThing", None).await;
    assert_eq!(nf.status.as_u16(), 404);
    assert!(nf.json.is_object());
}

/// `UnusedAccessTokenExpiration` (global) and an application's `UnusedExpiration`: a grant whose
/// access token stayed expired that long can no longer be refreshed; the application's value
/// wins over the global one, and 0 turns it off for that application.
#[tokio::test]
async fn a_grant_left_unused_past_the_unused_expiration_cannot_be_refreshed() {
    let s = TestServer::start().await;
    s.add_user("alice", "alice-pw").await;
    let mut settings = s.app.store.settings().await.expect("settings");
    settings.unused_access_token_expiration = 1000;
    s.put_settings(&settings).await;
    for (client, unused) in [("global", None), ("own", Some(100)), ("never", Some(0))] {
        let mut a = s.add_app(client, "certificate").await;
        a.access_validity = Some(60);
        a.unused_expiration = unused;
        s.update_app(&a).await;
        s.allow(client, "everyone", None).await;
    }
    let fresh = |client: &'static str| {
        let s = &s;
        async move {
            s.password_grant(client, "alice", "alice-pw", "certificate")
                .await
                .str("refresh_token")
        }
    };
    // Expired for less than the limit: refreshed.
    let (g, o) = (fresh("global").await, fresh("own").await);
    s.clock.advance(60 + 99);
    assert_eq!(s.refresh("global", &g).await.status, StatusCode::OK);
    assert_eq!(s.refresh("own", &o).await.status, StatusCode::OK);
    // The application's 100 s is reached, the global 1000 s is not.
    let (g, o, n) = (
        fresh("global").await,
        fresh("own").await,
        fresh("never").await,
    );
    s.clock.advance(60 + 100);
    s.refresh("own", &o)
        .await
        .assert_error(400, "invalid_grant", INVALID_GRANT);
    let g = s.refresh("global", &g).await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text);
    // Past the global limit too; "never" still refreshes.
    let (g, n) = (
        g.str("refresh_token"),
        s.refresh("never", &n).await.str("refresh_token"),
    );
    s.clock.advance(60 + 1000);
    s.refresh("global", &g)
        .await
        .assert_error(400, "invalid_grant", INVALID_GRANT);
    assert_eq!(s.refresh("never", &n).await.status, StatusCode::OK);
}

async fn with_grace(secs: u64, reuse_detection: bool) -> TestServer {
    let mut o = Options::default();
    o.config.tokens.refresh_grace_secs = secs;
    o.config.tokens.refresh_reuse_detection = reuse_detection;
    let s = TestServer::start_with(o).await;
    s.setup_basic("alice", "alice-pw", "vcert-sdk", "certificate:manage")
        .await;
    s
}

/// `tokens.refresh_grace_secs`: the old refresh token presented again within the window gets
/// the same new pair (also after a restart: the answer is kept in the store, sealed); after
/// the window it is refused, and reuse detection fires as before.
#[tokio::test]
async fn a_refresh_retried_within_the_grace_window_gets_the_same_pair() {
    let s = with_grace(30, true).await;
    let first = s
        .password_grant("vcert-sdk", "alice", "alice-pw", "certificate:manage")
        .await;
    let r1 = first.str("refresh_token");
    s.clock.advance(5);
    let second = s.refresh("vcert-sdk", &r1).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    let (a2, r2) = (second.str("access_token"), second.str("refresh_token"));
    s.clock.advance(10);
    let again = s.refresh("vcert-sdk", &r1).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.str("access_token"), a2);
    assert_eq!(again.str("refresh_token"), r2);
    assert_eq!(again.json["expires"], second.json["expires"]);
    // The answer is in the store, not in this process.
    let s = s.restart().await;
    let after_restart = s.refresh("vcert-sdk", &r1).await;
    assert_eq!(after_restart.str("access_token"), a2);
    assert_eq!(s.verify(&a2).await.status, StatusCode::OK);
    // Past the window (30 s after the refresh at +5 s): refused, and (reuse detection on) the
    // grant is revoked.
    s.clock.advance(20);
    s.refresh("vcert-sdk", &r1)
        .await
        .assert_error(400, "invalid_grant", INVALID_GRANT);
    assert_invalid_token(&s.verify(&a2).await);
}

/// The window answers only while its pair is still the grant's: once the new refresh token was
/// used in turn, or the grant revoked, the old token is refused even within the window; and
/// with the window off (the default) a retry is refused at once.
#[tokio::test]
async fn the_grace_window_gives_nothing_once_the_pair_moved_on() {
    let s = with_grace(60, false).await;
    let r1 = s
        .password_grant("vcert-sdk", "alice", "alice-pw", "certificate:manage")
        .await
        .str("refresh_token");
    let second = s.refresh("vcert-sdk", &r1).await;
    let r2 = second.str("refresh_token");
    // Another application cannot use the window.
    s.add_app("other", "certificate:manage").await;
    s.allow("other", "everyone", None).await;
    assert_eq!(
        s.refresh("other", &r1).await.status,
        StatusCode::BAD_REQUEST
    );
    let third = s.refresh("vcert-sdk", &r2).await;
    assert_eq!(third.status, StatusCode::OK);
    s.refresh("vcert-sdk", &r1)
        .await
        .assert_error(400, "invalid_grant", INVALID_GRANT);
    // r2 is now in its own window: it repeats the third answer, until the grant is revoked.
    let again = s.refresh("vcert-sdk", &r2).await;
    assert_eq!(again.str("access_token"), third.str("access_token"));
    let revoked = s
        .client
        .get(s.url("/vedauth/revoke/token"))
        .bearer_auth(third.str("access_token"))
        .send()
        .await
        .expect("revoke");
    assert!(revoked.status().is_success(), "{}", revoked.status());
    s.refresh("vcert-sdk", &r2)
        .await
        .assert_error(400, "invalid_grant", INVALID_GRANT);

    let off = basic().await;
    let r1 = off
        .password_grant("vcert-sdk", "alice", "alice-pw", "certificate:manage")
        .await
        .str("refresh_token");
    assert_eq!(off.refresh("vcert-sdk", &r1).await.status, StatusCode::OK);
    off.refresh("vcert-sdk", &r1)
        .await
        .assert_error(400, "invalid_grant", INVALID_GRANT);
}
