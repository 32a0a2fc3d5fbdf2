//! The standard OAuth 2.0 face (decisions.md §13, docs/oauth2.md): the RFC 6749 §5.2 answers,
//! client secrets, tokens shared with the VEDauth face, introspection (RFC 7662), revocation
//! (RFC 7009) and the metadata document (RFC 8414), over real HTTPS.

use reqwest::StatusCode;
use serde_json::Value;
use vedauth::admin::Caller;

use crate::common::{Options, Reply, TestServer};

const PW: &str = "Alice-S3cret-pw";
const APP: &str = "api-client";
const SCOPE: &str = "certificate:manage,revoke;configuration";

/// A user `alice`, an application `APP` with a client secret (returned), a rule for everyone.
async fn server_with_secret(opts: Options) -> (TestServer, String) {
    let s = TestServer::start_with(opts).await;
    s.setup_basic("alice", PW, APP, SCOPE).await;
    let secret = s
        .app
        .admin
        .set_client_secret(&Caller::Operator, APP)
        .await
        .expect("set secret")
        .secret
        .expose()
        .to_string();
    (s, secret)
}

/// POST a form to the face, with Basic client credentials when given.
pub(crate) async fn form(
    s: &TestServer,
    path: &str,
    basic: Option<(&str, &str)>,
    body: &[(&str, &str)],
) -> Reply {
    let mut req = s.client.post(s.url(path)).form(body);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    Reply::read(req.send().await.expect("send")).await
}

pub(crate) fn assert_oauth_error(r: &Reply, status: u16, error: &str, challenge: Option<&str>) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
    assert_eq!(r.json["error"], error, "{}", r.text);
    assert!(r.json["error_description"].is_string(), "{}", r.text);
    assert_eq!(r.headers["cache-control"], "no-store", "{}", r.text);
    assert_eq!(
        r.headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        challenge,
        "{}",
        r.text
    );
}

pub(crate) const BASIC: Option<&str> = Some("Basic realm=\"vedauth\"");

#[tokio::test]
async fn every_rfc6749_error_case_has_its_status_error_and_challenge() {
    let (s, secret) = server_with_secret(Options::default()).await;
    let cc = [("grant_type", "client_credentials")];
    // Bad secret, by Basic and by the body.
    let r = form(&s, "/oauth2/token", Some((APP, "wrong")), &cc).await;
    assert_oauth_error(&r, 401, "invalid_client", BASIC);
    let r = form(
        &s,
        "/oauth2/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", APP),
            ("client_secret", "wrong"),
        ],
    )
    .await;
    assert_oauth_error(&r, 401, "invalid_client", BASIC);
    // Unknown client.
    let r = form(&s, "/oauth2/token", Some(("nobody", "x")), &cc).await;
    assert_oauth_error(&r, 401, "invalid_client", BASIC);
    // No client at all.
    let r = form(&s, "/oauth2/token", None, &cc).await;
    assert_oauth_error(&r, 401, "invalid_client", BASIC);
    // A confidential client that leaves its secret out, on the password grant.
    let r = form(
        &s,
        "/oauth2/token",
        None,
        &[
            ("grant_type", "password"),
            ("client_id", APP),
            ("username", "alice"),
            ("password", PW),
            ("scope", "certificate"),
        ],
    )
    .await;
    assert_oauth_error(&r, 401, "invalid_client", BASIC);
    // Bad password: 400 invalid_grant on this face (the VEDauth face answers 401).
    let pw = |p: &'static str, scope: &'static str| {
        [
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", p),
            ("scope", scope),
        ]
    };
    let r = form(
        &s,
        "/oauth2/token",
        Some((APP, &secret)),
        &pw("wrong-password", "certificate"),
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_grant", None);
    // Unsupported grant types: one this server has no use for, and RFC 7523's client
    // assertion type given as a grant type.
    for gt in [
        "authorization_code",
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    ] {
        let r = form(
            &s,
            "/oauth2/token",
            Some((APP, &secret)),
            &[("grant_type", gt)],
        )
        .await;
        assert_oauth_error(&r, 400, "unsupported_grant_type", None);
    }
    // jwt-bearer is served: with its switch off (a new install), unauthorized_client.
    let r = form(
        &s,
        "/oauth2/token",
        Some((APP, &secret)),
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", "a.b.c"),
            ("scope", "certificate"),
        ],
    )
    .await;
    assert_oauth_error(&r, 400, "unauthorized_client", None);
    // Bad scope: not in the grammar, and beyond the application's.
    let r = form(
        &s,
        "/oauth2/token",
        Some((APP, &secret)),
        &pw(PW, "nosuchscope"),
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_scope", None);
    let r = form(
        &s,
        "/oauth2/token",
        Some((APP, &secret)),
        &pw(PW, "ssh:manage"),
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_scope", None);
    let r = form(
        &s,
        "/oauth2/token",
        Some((APP, &secret)),
        &[("grant_type", "client_credentials"), ("scope", "admin")],
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_scope", None);
    // Missing grant_type; a bad refresh token.
    let r = form(&s, "/oauth2/token", Some((APP, &secret)), &[]).await;
    assert_oauth_error(&r, 400, "invalid_request", None);
    let r = form(
        &s,
        "/oauth2/token",
        Some((APP, &secret)),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "AAAAAAAAAAAAAAAAAAAAAA=="),
        ],
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_grant", None);
    // client_credentials for a public client (no secret): unauthorized_client.
    s.add_app("public-app", "certificate").await;
    let r = form(
        &s,
        "/oauth2/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "public-app"),
        ],
    )
    .await;
    assert_oauth_error(&r, 400, "unauthorized_client", None);

    // Failed client authentications are in the audit trail with their real causes, and the
    // secret is nowhere in it.
    let audit = std::fs::read_to_string(s.dir.join("audit.log")).expect("audit");
    for cause in ["wrong_secret", "unknown_client", "missing_secret"] {
        assert!(
            audit.contains(&format!("\"cause\":\"{cause}\"")),
            "{cause} not audited:\n{audit}"
        );
    }
    assert!(!audit.contains(&secret));
}

#[tokio::test]
async fn password_refresh_and_client_credentials_give_rfc6749_answers() {
    let (s, secret) = server_with_secret(Options::default()).await;
    // Password grant, Basic client authentication, RFC space-delimited scope.
    let r = form(
        &s,
        "/oauth2/token",
        Some((APP, &secret)),
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PW),
            ("scope", "certificate:manage configuration"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["pragma"], "no-cache");
    assert_eq!(r.json["token_type"], "Bearer");
    assert_eq!(r.json["scope"], "certificate:manage configuration");
    assert_eq!(r.json["vedauth_scope"], "certificate:manage;configuration");
    assert!(r.json["expires_in"].as_i64().is_some_and(|e| e > 0));
    let access = r.str("access_token");
    let refresh = r.str("refresh_token");
    assert!(access.ends_with("==") && access.len() == 24);

    // Refresh, client authentication in the body this time.
    let r = form(
        &s,
        "/oauth2/token",
        None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", APP),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let access2 = r.str("access_token");
    assert_ne!(access2, access);
    assert_eq!(s.verify(&access).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.verify(&access2).await.status, StatusCode::OK);

    // Client credentials: identity client:<id>, no refresh token, the app's scope by default.
    let r = form(
        &s,
        "/oauth2/token",
        Some((APP, &secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json.get("refresh_token").is_none(), "{}", r.text);
    assert_eq!(r.json["identity"], format!("client:{APP}"));
    assert_eq!(
        r.json["vedauth_scope"],
        "certificate:manage,revoke;configuration"
    );
    let cc = r.str("access_token");
    let v = s.verify(&cc).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text);
    assert_eq!(v.json["identity"], format!("client:{APP}"));
    assert_eq!(v.json["application"], APP);
    let r = form(
        &s,
        "/oauth2/token",
        Some((APP, &secret)),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "certificate"),
        ],
    )
    .await;
    assert_eq!(r.json["scope"], "certificate", "{}", r.text);

    // A public client (no secret) uses the password grant with its client_id alone, also as
    // Basic with an empty password (golang.org/x/oauth2's first try).
    s.add_app("public-app", "certificate").await;
    s.allow("public-app", "everyone", None).await;
    for basic in [None, Some(("public-app", ""))] {
        let mut body = vec![
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PW),
            ("scope", "certificate"),
        ];
        if basic.is_none() {
            body.push(("client_id", "public-app"));
        }
        let r = form(&s, "/oauth2/token", basic, &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    // A secret sent for a public client is refused, not ignored.
    let r = form(
        &s,
        "/oauth2/token",
        Some(("public-app", "guess")),
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PW),
            ("scope", "certificate"),
        ],
    )
    .await;
    assert_oauth_error(&r, 401, "invalid_client", BASIC);
}

#[tokio::test]
async fn tokens_work_across_the_two_faces() {
    let (s, secret) = server_with_secret(Options::default()).await;
    // A VEDauth token: introspected and revoked on the OAuth 2.0 face.
    let (ved, _) = s.tokens(APP, "alice", PW, "certificate").await;
    let r = form(
        &s,
        "/oauth2/introspect",
        Some((APP, &secret)),
        &[("token", &ved)],
    )
    .await;
    assert_eq!(r.json["active"], true, "{}", r.text);
    let r = form(
        &s,
        "/oauth2/revoke",
        Some((APP, &secret)),
        &[("token", &ved)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(s.verify(&ved).await.status, StatusCode::UNAUTHORIZED);
    // An OAuth 2.0 token: verified and revoked on the VEDauth face.
    let r = form(
        &s,
        "/oauth2/token",
        Some((APP, &secret)),
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PW),
            ("scope", "certificate"),
        ],
    )
    .await;
    let o = r.str("access_token");
    assert_eq!(s.verify(&o).await.status, StatusCode::OK);
    assert_eq!(
        s.get_bearer("/vedsdk/identity/self", Some(&o)).await.status,
        StatusCode::OK
    );
    let r = s.get_bearer("/vedauth/revoke/token", Some(&o)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = form(
        &s,
        "/oauth2/introspect",
        Some((APP, &secret)),
        &[("token", &o)],
    )
    .await;
    assert_eq!(r.json, serde_json::json!({"active": false}));
}

#[tokio::test]
async fn introspection_and_revocation_follow_rfc7662_and_rfc7009() {
    let (s, secret) = server_with_secret(Options::default()).await;
    let r = form(
        &s,
        "/oauth2/token",
        Some((APP, &secret)),
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PW),
            ("scope", "certificate:manage;configuration"),
        ],
    )
    .await;
    let (access, refresh) = (r.str("access_token"), r.str("refresh_token"));

    // The caller must authenticate: nobody, a public client, a wrong secret are refused.
    s.add_app("public-app", "certificate").await;
    for basic in [None, Some(("public-app", "")), Some((APP, "wrong"))] {
        let mut body = vec![("token", access.as_str())];
        if basic.is_none() {
            body.push(("client_id", "public-app"));
        }
        let r = form(&s, "/oauth2/introspect", basic, &body).await;
        assert_oauth_error(&r, 401, "invalid_client", BASIC);
    }
    // A bearer token without the admin scope is no caller either; one with it is.
    let r = s
        .client
        .post(s.url("/oauth2/introspect"))
        .bearer_auth(&access)
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let admin = s.admin_token("admin").await;
    let r = s
        .client
        .post(s.url("/oauth2/introspect"))
        .bearer_auth(&admin)
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    let r = Reply::read(r).await;
    assert_eq!(r.json["active"], true, "{}", r.text);

    // Active access token: the RFC 7662 fields.
    let r = form(
        &s,
        "/oauth2/introspect",
        Some((APP, &secret)),
        &[("token", &access)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["cache-control"], "no-store");
    let j = &r.json;
    assert_eq!(j["active"], true);
    assert_eq!(j["client_id"], APP);
    assert_eq!(j["username"], "local:alice");
    assert!(j["sub"].as_str().is_some_and(|x| x.starts_with("local:{")));
    assert_eq!(j["token_type"], "Bearer");
    assert_eq!(j["token_use"], "access_token");
    assert_eq!(j["scope"], "certificate certificate:manage configuration");
    assert_eq!(j["vedauth_scope"], "certificate:manage;configuration");
    assert!(j["exp"].as_i64() > j["iat"].as_i64());
    assert_eq!(j["iss"], s.base.as_str());
    // The `scope` parameter: active only when the token holds it.
    let r = form(
        &s,
        "/oauth2/introspect",
        Some((APP, &secret)),
        &[("token", &access), ("scope", "certificate:manage")],
    )
    .await;
    assert_eq!(r.json["active"], true);
    let r = form(
        &s,
        "/oauth2/introspect",
        Some((APP, &secret)),
        &[("token", &access), ("scope", "certificate:revoke")],
    )
    .await;
    assert_eq!(r.json, serde_json::json!({"active": false}));
    // A token whose `+` arrived as spaces (a caller that did not percent-encode).
    if access.contains('+') {
        let raw = format!("token={access}");
        let r = s
            .client
            .post(s.url("/oauth2/introspect"))
            .basic_auth(APP, Some(&secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(Reply::read(r).await.json["active"], true);
    }
    // The refresh token, with its hint and without, for its own client only.
    for hint in [Some("refresh_token"), None] {
        let mut body = vec![("token", refresh.as_str())];
        if let Some(h) = hint {
            body.push(("token_type_hint", h));
        }
        let r = form(&s, "/oauth2/introspect", Some((APP, &secret)), &body).await;
        assert_eq!(r.json["active"], true, "{}", r.text);
        assert_eq!(r.json["token_use"], "refresh_token");
    }
    s.add_app("other", "certificate").await;
    let other = s
        .app
        .admin
        .set_client_secret(&Caller::Operator, "other")
        .await
        .unwrap()
        .secret;
    let r = form(
        &s,
        "/oauth2/introspect",
        Some(("other", other.expose())),
        &[("token", &refresh)],
    )
    .await;
    assert_eq!(r.json, serde_json::json!({"active": false}));
    // Unknown and malformed tokens: inactive, nothing else.
    for t in ["AAAAAAAAAAAAAAAAAAAAAA==", "not a token"] {
        let r = form(
            &s,
            "/oauth2/introspect",
            Some((APP, &secret)),
            &[("token", t)],
        )
        .await;
        assert_eq!(r.json, serde_json::json!({"active": false}), "{t}");
    }
    let r = form(&s, "/oauth2/introspect", Some((APP, &secret)), &[]).await;
    assert_oauth_error(&r, 400, "invalid_request", None);

    // Revocation: another client's token is left alone (200 all the same), unknown is 200.
    let r = form(
        &s,
        "/oauth2/revoke",
        Some(("other", other.expose())),
        &[("token", &refresh)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(s.verify(&access).await.status, StatusCode::OK);
    let r = form(
        &s,
        "/oauth2/revoke",
        Some((APP, &secret)),
        &[("token", "AAAAAAAAAAAAAAAAAAAAAA==")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = form(
        &s,
        "/oauth2/revoke",
        Some((APP, "wrong")),
        &[("token", &refresh)],
    )
    .await;
    assert_oauth_error(&r, 401, "invalid_client", BASIC);
    // Revoking the refresh token revokes the whole grant, the access token with it.
    let r = form(
        &s,
        "/oauth2/revoke",
        Some((APP, &secret)),
        &[("token", &refresh), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(s.verify(&access).await.status, StatusCode::UNAUTHORIZED);
    let r = form(
        &s,
        "/oauth2/introspect",
        Some((APP, &secret)),
        &[("token", &refresh)],
    )
    .await;
    assert_eq!(r.json, serde_json::json!({"active": false}));
}

#[tokio::test]
async fn the_metadata_document_names_the_configured_issuer() {
    let mut opts = Options::default();
    opts.config.public_url = "https://auth.example.test:9443/".into();
    let s = TestServer::start_with(opts).await;
    let r = s
        .get_bearer("/.well-known/oauth-authorization-server", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let j = &r.json;
    assert_eq!(j["issuer"], "https://auth.example.test:9443");
    assert_eq!(
        j["token_endpoint"],
        "https://auth.example.test:9443/oauth2/token"
    );
    assert_eq!(
        j["introspection_endpoint"],
        "https://auth.example.test:9443/oauth2/introspect"
    );
    assert_eq!(
        j["revocation_endpoint"],
        "https://auth.example.test:9443/oauth2/revoke"
    );
    assert_eq!(j["response_types_supported"], serde_json::json!([]));
    let grants: Vec<&str> = j["grant_types_supported"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        grants,
        [
            "password",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:device_code",
            "urn:ietf:params:oauth:grant-type:jwt-bearer"
        ]
    );
    assert_eq!(
        j["device_authorization_endpoint"],
        "https://auth.example.test:9443/oauth2/device_authorization"
    );
    assert!(j["scopes_supported"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == "certificate:manage"));
}

#[tokio::test]
async fn client_secrets_are_hashed_rotated_and_removed_through_the_audited_core() {
    let (s, first) = server_with_secret(Options::default()).await;
    let stored = s
        .app
        .store
        .client_secret(APP)
        .await
        .unwrap()
        .expect("stored");
    assert!(
        stored.secret_hash.starts_with("$argon2id$"),
        "{}",
        stored.secret_hash
    );
    assert!(!stored.secret_hash.contains(&first));
    let cc = |secret: String| {
        let s = &s;
        async move {
            form(
                s,
                "/oauth2/token",
                Some((APP, &secret)),
                &[("grant_type", "client_credentials")],
            )
            .await
            .status
        }
    };
    assert_eq!(cc(first.clone()).await, StatusCode::OK);

    // Rotation through the administration API: the new secret once, the old one dead at once.
    let admin = s.admin_token("admin").await;
    let r = s
        .oauth(
            "setclientsecret",
            &admin,
            &serde_json::json!({"ApplicationId": APP}),
        )
        .await
        .ok();
    assert_eq!(r.json["Rotated"], true);
    assert_eq!(r.headers["cache-control"], "no-store");
    let second = r.str("ClientSecret");
    assert_ne!(second, first);
    assert_eq!(cc(first.clone()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(cc(second.clone()).await, StatusCode::OK);
    s.oauth(
        "setclientsecret",
        &admin,
        &serde_json::json!({"ApplicationId": "nope"}),
    )
    .await
    .refused(2);

    // Removal: a public client again.
    let r = s
        .oauth(
            "removeclientsecret",
            &admin,
            &serde_json::json!({"ApplicationId": APP}),
        )
        .await
        .ok();
    assert_eq!(r.json["Removed"], true);
    assert_eq!(cc(second.clone()).await, StatusCode::UNAUTHORIZED);
    assert!(s.app.store.client_secret(APP).await.unwrap().is_none());

    // Every change is audited, without the secret.
    let audit = std::fs::read_to_string(s.dir.join("audit.log")).expect("audit");
    assert!(audit.contains("\"cause\":\"set_client_secret\""), "{audit}");
    assert!(
        audit.contains("\"cause\":\"remove_client_secret\""),
        "{audit}"
    );
    assert!(!audit.contains(&first) && !audit.contains(&second));

    // Removing the application removes its secret.
    s.app
        .admin
        .set_client_secret(&Caller::Operator, APP)
        .await
        .unwrap();
    s.app
        .admin
        .delete_application(&Caller::Operator, APP)
        .await
        .unwrap();
    assert!(s.app.store.client_secret(APP).await.unwrap().is_none());
}

/// `token` introspected by the application `client_id` with `secret`.
pub(crate) async fn introspect_as(
    s: &TestServer,
    client_id: &str,
    secret: String,
    token: String,
) -> Reply {
    form(
        s,
        "/oauth2/introspect",
        Some((client_id, &secret)),
        &[("token", &token)],
    )
    .await
}

/// A gateway introspects on every request: a client secret already checked against the stored
/// hash is not hashed again, until the stored hash changes (rotation) or goes (removal).
#[tokio::test]
async fn a_checked_client_secret_is_not_hashed_again_until_it_changes() {
    let (s, secret) = server_with_secret(Options::default()).await;
    let (token, _) = s.tokens(APP, "alice", PW, "certificate").await;
    let introspect = |secret: String| introspect_as(&s, APP, secret, token.clone());
    // Hashing-pool jobs finish on the pool's own threads; wait (bounded) until it is idle.
    let settled = || async {
        for _ in 0..200 {
            if s.app.pool.in_flight() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        s.app.pool.completed()
    };
    let before = settled().await;
    assert_eq!(introspect(secret.clone()).await.json["active"], true);
    let after_first = settled().await;
    assert_eq!(after_first, before + 1, "the first check hashes");
    for _ in 0..5 {
        assert_eq!(introspect(secret.clone()).await.json["active"], true);
    }
    assert_eq!(settled().await, after_first, "later checks do not");
    // A wrong secret is always hashed, and refused.
    let r = introspect("wrong".into()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(settled().await, after_first + 1);
    // Rotation: the remembered secret no longer counts.
    let new = s
        .app
        .admin
        .set_client_secret(&Caller::Operator, APP)
        .await
        .unwrap()
        .secret;
    let r = introspect(secret.clone()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert_eq!(
        introspect(new.expose().to_string()).await.json["active"],
        true
    );
    // Removal: a public client, which may not introspect.
    s.app
        .admin
        .remove_client_secret(&Caller::Operator, APP)
        .await
        .unwrap();
    let r = introspect(new.expose().to_string()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
}

/// A client that authenticated once is not read from the store again while its entry lives:
/// a secret row deleted behind the server's back (no announcement) still counts, which only a
/// cache can explain; the announcement every change through the administration core makes
/// (here the engine's own, as another node's would arrive over the feed) ends it at once.
#[tokio::test]
async fn a_client_authentication_is_cached_until_its_change_is_announced() {
    let (s, secret) = server_with_secret(Options::default()).await;
    let (token, _) = s.tokens(APP, "alice", PW, "certificate").await;
    let introspect = || introspect_as(&s, APP, secret.clone(), token.clone());
    let r = introspect().await;
    assert_eq!(r.json["active"], true, "{}", r.text);
    assert_eq!(r.json["username"], "local:alice", "{}", r.text);
    assert!(s.app.store.delete_client_secret(APP).await.unwrap());
    let r = introspect().await;
    assert_eq!(r.json["active"], true, "cached: {}", r.text);
    s.app.engine.client_changed(APP).await;
    let r = introspect().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert_eq!(r.json["error"], "invalid_client", "{}", r.text);
}

/// The OAuth 2.0 face shares the VEDauth face's lockout, per-address rate limit and metrics.
#[tokio::test]
async fn the_face_shares_the_lockout_the_rate_limit_and_the_metrics() {
    const LOCK_APP: &str = "lockout-face-app";
    let mut opts = Options::default();
    opts.config.metrics.public = true;
    let s = TestServer::start_with(opts).await;
    // The process-wide recorder is installed by the first scrape; counts before it are lost.
    assert_eq!(s.get_bearer("/metrics", None).await.status, StatusCode::OK);
    s.setup_basic("lou", PW, LOCK_APP, "certificate").await;
    let secret = s
        .app
        .admin
        .set_client_secret(&Caller::Operator, LOCK_APP)
        .await
        .unwrap()
        .secret;
    // Five wrong passwords on this face lock the user out on the VEDauth face too.
    for _ in 0..5 {
        let r = form(
            &s,
            "/oauth2/token",
            Some((LOCK_APP, secret.expose())),
            &[
                ("grant_type", "password"),
                ("username", "lou"),
                ("password", "wrong-password"),
                ("scope", "certificate"),
            ],
        )
        .await;
        assert_oauth_error(&r, 400, "invalid_grant", None);
    }
    let r = s.password_grant(LOCK_APP, "lou", PW, "certificate").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "locked out: {}", r.text);
    let audit = std::fs::read_to_string(s.dir.join("audit.log")).expect("audit");
    assert!(audit.contains("\"event\":\"lockout\""), "{audit}");

    // Metrics: grants by grant type, failed client authentications.
    let r = form(
        &s,
        "/oauth2/token",
        Some((LOCK_APP, secret.expose())),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    form(
        &s,
        "/oauth2/token",
        Some((LOCK_APP, "wrong")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    let text = s.get_bearer("/metrics", None).await.text;
    assert!(
        text.lines()
            .any(|l| l.starts_with("vedauth_grants_issued_total")
                && l.contains(&format!("client_id=\"{LOCK_APP}\""))
                && l.contains("grant_type=\"client_credentials\"")),
        "{text}"
    );
    assert!(
        text.contains("vedauth_client_auth_failures_total"),
        "{text}"
    );

    // The per-address rate limit, answered in this face's shape.
    let mut opts = Options::default();
    opts.config.rate_limit.enabled = true;
    opts.config.rate_limit.per_second = 1;
    opts.config.rate_limit.burst = 2;
    let s = TestServer::start_with(opts).await;
    let mut limited = None;
    for _ in 0..10 {
        let r = form(
            &s,
            "/oauth2/token",
            None,
            &[("grant_type", "client_credentials"), ("client_id", "x")],
        )
        .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("rate limited within 10 requests");
    assert_eq!(r.json["error"], "temporarily_unavailable", "{}", r.text);
    assert!(r.headers.contains_key("retry-after"));
}
