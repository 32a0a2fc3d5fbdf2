//! The device authorization grant (decisions.md §12, RFC 8628) on the VEDauth face: codes,
//! polling errors, approval and denial through the use case the console's `/device` page calls,
//! expiry on the settable clock, `slow_down`, a code used once. The browser drives the same
//! flow through the page in `console.rs`.

use reqwest::StatusCode;
use serde_json::{json, Value};
use vedauth::grants::{DeviceDecision, GrantError, DEVICE_CODE_GRANT};
use vedauth::identity::Principal;
use vedauth::store::Settings;

use crate::common::{ClockExt, Reply, TestServer};

pub async fn enable_device(s: &TestServer) {
    let settings = Settings {
        authorize_device: true,
        ..s.app.store.settings().await.expect("settings")
    };
    s.put_settings(&settings).await;
}

pub async fn start(s: &TestServer, client_id: &str, scope: &str) -> Reply {
    s.post_json(
        "/vedauth/authorize/device",
        &json!({"client_id": client_id, "scope": scope}),
    )
    .await
}

pub async fn poll(s: &TestServer, client_id: &str, device_code: &str) -> Reply {
    // Form-encoded, as RFC 8628 clients (vcert's Firefly connector) send it.
    let body = serde_urlencoded::to_string([
        ("grant_type", DEVICE_CODE_GRANT),
        ("client_id", client_id),
        ("device_code", device_code),
    ])
    .expect("form");
    s.post_raw(
        "/vedauth/authorize/token",
        "application/x-www-form-urlencoded",
        &body,
    )
    .await
}

trait Ok200 {
    fn ok200(self) -> Self;
}

impl Ok200 for Reply {
    fn ok200(self) -> Self {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text);
        self
    }
}

async fn principal(s: &TestServer, identity: &str) -> Principal {
    s.app
        .services()
        .principal(identity)
        .await
        .expect("resolve")
        .expect("known")
}

#[tokio::test]
async fn the_switch_is_off_on_a_new_install() {
    let s = TestServer::start().await;
    s.add_app("dev-app", "certificate").await;
    start(&s, "dev-app", "certificate").await.assert_error(
        400,
        "unauthorized_client",
        "Device authentication not enabled",
    );
    poll(&s, "dev-app", "whatever").await.assert_error(
        400,
        "unauthorized_client",
        "Device authentication not enabled",
    );
}

#[tokio::test]
async fn the_request_is_checked_like_authorize() {
    let s = TestServer::start().await;
    enable_device(&s).await;
    s.add_app("dev-app", "certificate").await;
    s.post_json(
        "/vedauth/authorize/device",
        &json!({"scope": "certificate"}),
    )
    .await
    .assert_error(400, "invalid_request", "Application identifier is missing");
    start(&s, "dev-app", "certificate:bogus")
        .await
        .assert_error(
            400,
            "invalid_scope",
            "Failed to issue grant: scope 'certificate:bogus' is not valid",
        );
    start(&s, "nope", "certificate").await.assert_error(
        400,
        "invalid_client",
        "Failed to issue grant: application 'nope' is not registered",
    );
    s.post_json(
        "/vedauth/authorize/device",
        &json!({"client_id": 5, "scope": "certificate"}),
    )
    .await
    .assert_error(
        400,
        "invalid_request",
        "The request is missing a required parameter or is otherwise malformed",
    );
}

#[tokio::test]
async fn approve_then_poll_gets_the_approvers_grant_once() {
    let s = TestServer::start().await;
    enable_device(&s).await;
    let alice = s.add_user("alice", "alice-password-1").await;
    s.add_app("dev-app", "certificate:manage").await;
    s.allow("dev-app", "everyone", None).await;

    let r = start(&s, "dev-app", "certificate:manage").await.ok200();
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
            "device_code",
            "user_code",
            "verification_uri",
            "verification_uri_complete",
            "expires_in",
            "expires",
            "interval"
        ]
    );
    let device_code = r.str("device_code");
    let user_code = r.str("user_code");
    assert_eq!(device_code.len(), 43, "32 bytes, base64url: {device_code}");
    assert!(
        user_code.len() == 9
            && user_code.as_bytes()[4] == b'-'
            && user_code
                .bytes()
                .filter(|b| *b != b'-')
                .all(|b| b"BCDFGHJKLMNPQRSTVWXZ".contains(&b)),
        "{user_code}"
    );
    assert_eq!(r.json["expires_in"], 300);
    assert_eq!(r.json["interval"], 5);
    assert_eq!(r.json["expires"], s.clock.now_secs() + 300);
    let uri = r.str("verification_uri");
    assert!(
        uri.starts_with("https://127.0.0.1:") && uri.ends_with("/device"),
        "{uri}"
    );
    assert_eq!(
        r.str("verification_uri_complete"),
        format!("{uri}?user_code={user_code}")
    );
    assert_eq!(
        r.headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    // Only the digest is stored.
    let db: Vec<u8> = ["vedauth.db", "vedauth.db-wal"]
        .iter()
        .flat_map(|f| std::fs::read(s.dir.join(f)).unwrap_or_default())
        .collect();
    assert!(!db.is_empty());
    assert!(!db
        .windows(device_code.len())
        .any(|w| w == device_code.as_bytes()));

    poll(&s, "dev-app", &device_code).await.assert_error(
        400,
        "authorization_pending",
        "The request has not been approved yet",
    );
    s.clock.advance(5);
    // Another client's code, an unknown code: invalid_grant.
    poll(&s, "other-app", &device_code).await.assert_error(
        400,
        "invalid_grant",
        "The device code is invalid, already used, or was issued to another client",
    );
    poll(&s, "dev-app", "AAAA").await.assert_error(
        400,
        "invalid_grant",
        "The device code is invalid, already used, or was issued to another client",
    );

    let services = s.app.services();
    let who = principal(&s, &alice.identity()).await;
    // What the approval page shows: the application, its vendor and the scope asked for.
    let pending = services
        .pending_device(&user_code.to_lowercase(), &alice.identity())
        .await
        .expect("pending");
    assert_eq!(pending.client_id.as_str(), "dev-app");
    assert_eq!(
        pending.application.as_ref().map(|a| a.vendor.as_str()),
        Some("tests")
    );
    assert_eq!(pending.scope.as_str(), "certificate:manage");
    assert_eq!(
        services
            .decide_device(&user_code, &who, true, None)
            .await
            .expect("approve"),
        DeviceDecision::Approved
    );
    // Decided: the code no longer shows on the page.
    assert!(matches!(
        services.pending_device(&user_code, &alice.identity()).await,
        Err(GrantError::UnknownUserCode)
    ));

    let r = poll(&s, "dev-app", &device_code).await.ok200();
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
    assert_eq!(r.str("identity"), alice.identity().as_str());
    assert_eq!(r.str("scope"), "certificate:manage");
    let v = s.verify(&r.str("access_token")).await.ok200();
    assert_eq!(v.json["application"], "dev-app");
    // Used once.
    s.clock.advance(5);
    poll(&s, "dev-app", &device_code).await.assert_error(
        400,
        "invalid_grant",
        "The device code is invalid, already used, or was issued to another client",
    );
    // The audit trail tells the story.
    let trail = std::fs::read_to_string(s.dir.join("audit.log")).unwrap_or_default();
    for event in [
        "device_authorization_started",
        "device_approved",
        "grant_issued",
    ] {
        assert!(trail.contains(event), "{event} missing from {trail}");
    }
    assert!(!trail.contains(&device_code));
}

#[tokio::test]
async fn deny_expiry_slow_down_and_approval_the_rules_refuse() {
    let s = TestServer::start().await;
    enable_device(&s).await;
    let bob = s.add_user("bob", "bob-password-12").await;
    s.add_app("dev-app", "certificate:manage").await;
    s.allow("dev-app", "everyone", Some("certificate")).await;
    let services = s.app.services();
    let who = principal(&s, &bob.identity()).await;

    // Denied: the device hears access_denied.
    let r = start(&s, "dev-app", "certificate").await.ok200();
    let (code, user) = (r.str("device_code"), r.str("user_code"));
    assert_eq!(
        services
            .decide_device(&user, &who, false, None)
            .await
            .expect("deny"),
        DeviceDecision::Denied
    );
    poll(&s, "dev-app", &code)
        .await
        .assert_error(400, "access_denied", "The request was denied");

    // Polling faster than the interval: slow_down, and the interval grows by 5 s.
    let r = start(&s, "dev-app", "certificate").await.ok200();
    let code = r.str("device_code");
    poll(&s, "dev-app", &code).await.assert_error(
        400,
        "authorization_pending",
        "The request has not been approved yet",
    );
    s.clock.advance(4);
    let slow = poll(&s, "dev-app", &code).await;
    assert_eq!(slow.status, StatusCode::BAD_REQUEST);
    assert_eq!(slow.json["error"], "slow_down");
    // The interval is now 10 s from the last poll.
    s.clock.advance(9);
    assert_eq!(poll(&s, "dev-app", &code).await.json["error"], "slow_down");
    s.clock.advance(15);
    assert_eq!(
        poll(&s, "dev-app", &code).await.json["error"],
        "authorization_pending"
    );

    // Expired after 300 s: expired_token, and the page no longer finds it.
    let r = start(&s, "dev-app", "certificate").await.ok200();
    let (code, user) = (r.str("device_code"), r.str("user_code"));
    s.clock.advance(300);
    poll(&s, "dev-app", &code).await.assert_error(
        400,
        "expired_token",
        "The device code has expired",
    );
    assert!(matches!(
        services.decide_device(&user, &who, true, None).await,
        Err(GrantError::UnknownUserCode)
    ));

    // Approval of a scope beyond the rule's maximum is refused on the page and denies the
    // request (decisions.md §4 row 9 for the approver).
    let r = start(&s, "dev-app", "certificate:manage").await.ok200();
    let (code, user) = (r.str("device_code"), r.str("user_code"));
    assert!(matches!(
        services.decide_device(&user, &who, true, None).await,
        Err(GrantError::ScopeNotAuthorized(_))
    ));
    poll(&s, "dev-app", &code)
        .await
        .assert_error(400, "access_denied", "The request was denied");
}

/// An approver disabled between the approval and the poll gets nothing; a locked one cannot
/// approve.
#[tokio::test]
async fn a_disabled_or_locked_approver_gives_no_tokens() {
    let s = TestServer::start().await;
    enable_device(&s).await;
    let erin = s.add_user("erin", "erin-password-12").await;
    s.add_app("dev-app", "certificate").await;
    s.allow("dev-app", "everyone", None).await;
    let services = s.app.services();
    let who = principal(&s, &erin.identity()).await;
    let r = start(&s, "dev-app", "certificate").await.ok200();
    let (code, user) = (r.str("device_code"), r.str("user_code"));
    assert_eq!(
        services
            .decide_device(&user, &who, true, None)
            .await
            .expect("approve"),
        DeviceDecision::Approved
    );
    s.app
        .store
        .set_user_disabled(&erin.id, true)
        .await
        .expect("disable");
    poll(&s, "dev-app", &code)
        .await
        .assert_error(400, "access_denied", "The request was denied");
    s.app
        .store
        .set_user_disabled(&erin.id, false)
        .await
        .expect("enable");

    // Five wrong passwords lock erin; her approval is refused and denies the request.
    for _ in 0..5 {
        s.password_grant("dev-app", "erin", "wrong-password-1", "certificate")
            .await;
    }
    let r = start(&s, "dev-app", "certificate").await.ok200();
    let (code, user) = (r.str("device_code"), r.str("user_code"));
    assert!(matches!(
        services.decide_device(&user, &who, true, None).await,
        Err(GrantError::BadCredentials(_))
    ));
    poll(&s, "dev-app", &code)
        .await
        .assert_error(400, "access_denied", "The request was denied");
}

/// Polls racing after the approval: exactly one gets the tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_polls_at_once_exactly_one_gets_the_tokens() {
    let s = TestServer::start().await;
    enable_device(&s).await;
    let fay = s.add_user("fay", "fay-password-123").await;
    s.add_app("dev-app", "certificate").await;
    s.allow("dev-app", "everyone", None).await;
    let r = start(&s, "dev-app", "certificate").await.ok200();
    let (code, user) = (r.str("device_code"), r.str("user_code"));
    let who = principal(&s, &fay.identity()).await;
    s.app
        .services()
        .decide_device(&user, &who, true, None)
        .await
        .expect("approve");
    let polls = (0..8).map(|_| poll(&s, "dev-app", &code));
    let answers = futures_util::future::join_all(polls).await;
    let won = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    assert_eq!(won, 1, "{answers:?}");
    for a in answers.iter().filter(|a| a.status != StatusCode::OK) {
        let e = a.json["error"].as_str().unwrap_or_default();
        assert!(e == "slow_down" || e == "invalid_grant", "{}", a.text);
    }
    let grants = s
        .app
        .store
        .list_grants(&vedauth::store::GrantFilter::default())
        .await
        .expect("list");
    assert_eq!(
        grants
            .iter()
            .filter(|g| g.client_id.as_str() == "dev-app")
            .count(),
        1
    );
}

#[tokio::test]
async fn wrong_user_codes_are_limited_per_person() {
    let s = TestServer::start().await;
    enable_device(&s).await;
    let carol = s.add_user("carol", "carol-password-1").await;
    s.add_app("dev-app", "certificate").await;
    s.allow("dev-app", "everyone", None).await;
    let r = start(&s, "dev-app", "certificate").await.ok200();
    let user = r.str("user_code");
    let services = s.app.services();
    let me = carol.identity();
    // Ten wrong codes (never the real one: its first letter is changed).
    let first = user.as_bytes()[0];
    let other = if first == b'B' { 'C' } else { 'B' };
    let wrong = format!("{other}{}", &user[1..]);
    for _ in 0..10 {
        assert!(matches!(
            services.pending_device(&wrong, &me).await,
            Err(GrantError::UnknownUserCode)
        ));
    }
    // The eleventh try is refused even with the right code, for ten minutes.
    assert!(matches!(
        services.pending_device(&user, &me).await,
        Err(GrantError::TooManyGuesses)
    ));
    s.clock.advance(600);
    assert!(
        services.pending_device(&user, &me).await.is_err(),
        "expired by now"
    );
    let r = start(&s, "dev-app", "certificate").await.ok200();
    assert!(services
        .pending_device(&r.str("user_code"), &me)
        .await
        .is_ok());
}

/// What the client sees when it polls before any approval, as a JSON body too.
#[tokio::test]
async fn polling_accepts_json_and_refresh_still_works() {
    let s = TestServer::start().await;
    enable_device(&s).await;
    s.setup_basic("dave", "dave-password-1", "dev-app", "certificate")
        .await;
    let r = start(&s, "dev-app", "certificate").await.ok200();
    let body: Value = json!({
        "grant_type": DEVICE_CODE_GRANT,
        "client_id": "dev-app",
        "device_code": r.str("device_code"),
    });
    s.post_json("/vedauth/authorize/token", &body)
        .await
        .assert_error(
            400,
            "authorization_pending",
            "The request has not been approved yet",
        );
    // A poll without its device code.
    s.post_json(
        "/vedauth/authorize/token",
        &json!({"grant_type": DEVICE_CODE_GRANT, "client_id": "dev-app"}),
    )
    .await
    .assert_error(400, "invalid_request", "Missing device code");
    // The refresh grant is untouched.
    let (_, refresh) = s
        .tokens("dev-app", "dave", "dave-password-1", "certificate")
        .await;
    s.refresh("dev-app", &refresh).await.ok200();
}

/// RFC 8628 on the OAuth 2.0 face: `/oauth2/device_authorization`, the poll on `/oauth2/token`
/// with RFC 8628's errors, the endpoint in the metadata document.
#[tokio::test]
async fn the_device_flow_on_the_oauth2_face() {
    let s = TestServer::start().await;
    enable_device(&s).await;
    let alice = s.add_user("alice", "alice-password-1").await;
    s.add_app("dev-app", "certificate:manage").await;
    s.allow("dev-app", "everyone", None).await;
    let form = |path: &'static str, body: Vec<(&'static str, String)>| {
        let s = &s;
        async move {
            s.post_raw(
                path,
                "application/x-www-form-urlencoded",
                &serde_urlencoded::to_string(body).expect("form"),
            )
            .await
        }
    };
    let started = form(
        "/oauth2/device_authorization",
        vec![
            ("client_id", "dev-app".into()),
            ("scope", "certificate:manage".into()),
        ],
    )
    .await
    .ok200();
    let (device_code, user_code) = (started.str("device_code"), started.str("user_code"));
    assert!(started.str("verification_uri").ends_with("/device"));
    let poll = || {
        form(
            "/oauth2/token",
            vec![
                ("grant_type", DEVICE_CODE_GRANT.into()),
                ("client_id", "dev-app".into()),
                ("device_code", device_code.clone()),
            ],
        )
    };
    let pending = poll().await;
    assert_eq!(pending.status, StatusCode::BAD_REQUEST);
    assert_eq!(pending.json["error"], "authorization_pending");
    let who = principal(&s, &alice.identity()).await;
    s.app
        .services()
        .decide_device(&user_code, &who, true, None)
        .await
        .expect("approve");
    s.clock.advance(5);
    let tokens = poll().await.ok200();
    assert_eq!(tokens.json["token_type"], "Bearer");
    assert_eq!(tokens.json["scope"], "certificate:manage");
    assert_eq!(tokens.json["identity"], alice.identity().as_str());
    assert_eq!(
        s.verify(&tokens.str("access_token")).await.status,
        StatusCode::OK
    );
    s.clock.advance(5);
    let again = poll().await;
    assert_eq!(again.json["error"], "invalid_grant", "{}", again.text);
    let meta = s
        .get_bearer("/.well-known/oauth-authorization-server", None)
        .await;
    assert!(meta.json["device_authorization_endpoint"]
        .as_str()
        .is_some_and(|u| u.ends_with("/oauth2/device_authorization")));
    assert!(meta.json["grant_types_supported"]
        .as_array()
        .expect("list")
        .iter()
        .any(|g| g == DEVICE_CODE_GRANT));
}
