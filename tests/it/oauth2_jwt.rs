//! RFC 7523's `jwt-bearer` grant on `POST /oauth2/token` (decisions.md §13, docs/oauth2.md):
//! the JWT grant's mappings and checks behind RFC 6749 §5.1/§5.2 answers, client authentication
//! before the assertion is looked at, tokens interchangeable with the VEDauth face. Tokens are
//! signed by the test; the issuers' keys come from real loopback HTTPS JWKS servers.

use reqwest::StatusCode;
use serde_json::{json, Value};
use vedauth::admin::Caller;

use crate::common::{ClockExt, Options, Reply, TestServer};
use crate::jwt::{ec_key, ed_key, rsa_key, test_ca, KeyServer};
use crate::jwt_grant::{claims, jwt_refusal_causes, mapping, server, switch};
use crate::oauth2::{assert_oauth_error, form, BASIC};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// A confidential application (it has a client secret).
const APP: &str = "ci-app";
/// A public application (no secret): it names itself with `client_id`.
const PUBLIC: &str = "ci-public";
const SCOPE: &str = "certificate:manage";
const SUB: &str = "system:serviceaccount:ci:deployer";
const NOT_VALID: &str = "JWT is not valid";
const NO_MAPPING: &str = "No JWT mapping accepts this token";

/// A jwt-bearer request with `assertion` and the `extra` parameters.
async fn bearer(
    s: &TestServer,
    basic: Option<(&str, &str)>,
    extra: &[(&str, &str)],
    assertion: &str,
) -> Reply {
    let mut body = vec![("grant_type", JWT_BEARER), ("assertion", assertion)];
    body.extend_from_slice(extra);
    form(s, "/oauth2/token", basic, &body).await
}

#[track_caller]
fn granted(r: &Reply) {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_bearer_on_the_token_endpoint_follows_rfc7523() {
    let ca = test_ca("oauth2 jwt-bearer test CA");
    let keys = KeyServer::start(&ca).await;
    let mut far_keys = KeyServer::start(&ca).await;
    let s = server(&ca, Options::default()).await;
    let user = s.add_user("deployer", "Deployer-Pw-01").await;
    let identity = format!("local:{{{}}}", user.id);
    for app in [APP, PUBLIC] {
        s.add_app(app, "certificate:manage,revoke").await;
        s.allow(app, "everyone", None).await;
    }
    let secret = s
        .app
        .admin
        .set_client_secret(&Caller::Operator, APP)
        .await
        .expect("set secret")
        .secret
        .expose()
        .to_string();
    let admin = s.admin_token("admin").await;
    let rsa = rsa_key("r1");
    let ec = ec_key("e1");
    let ed = ed_key("d1");
    keys.set_keys(&[&rsa, &ec]);
    far_keys.set_keys(&[&ed]);
    let iss = keys.url("/k8s");
    let far = far_keys.url("/far");
    s.oauth(
        "CreateJwtMapping",
        &admin,
        &mapping("k8s", &iss, Some(keys.url("/jwks"))),
    )
    .await
    .ok();
    s.oauth(
        "CreateJwtMapping",
        &admin,
        &mapping("far", &far, Some(far_keys.url("/jwks"))),
    )
    .await
    .ok();
    let fresh = || rsa.sign("RS256", &claims(&s, &iss, SUB));
    let app = Some((APP, secret.as_str()));
    let scope = [("scope", SCOPE)];

    // Off on a new install: unauthorized_client (RFC 6749 §5.2), and the assertion is not used.
    let first = fresh();
    let r = bearer(&s, app, &scope, &first).await;
    assert_oauth_error(&r, 400, "unauthorized_client", None);
    assert_eq!(
        r.json["error_description"],
        "JWT authentication not enabled"
    );
    switch(&s, &admin, true, 60).await;

    // A valid assertion: an RFC 6749 §5.1 answer.
    let r = bearer(&s, app, &scope, &first).await;
    granted(&r);
    assert_eq!(r.headers["cache-control"], "no-store", "{}", r.text);
    assert_eq!(r.headers["pragma"], "no-cache", "{}", r.text);
    assert_eq!(r.json["token_type"], "Bearer", "{}", r.text);
    assert!(r.json["expires_in"].as_i64().unwrap() > 0, "{}", r.text);
    assert_eq!(r.json["scope"], SCOPE, "{}", r.text);
    assert_eq!(r.json["vedauth_scope"], SCOPE, "{}", r.text);
    assert_eq!(r.json["identity"], identity.as_str(), "{}", r.text);
    let access = r.str("access_token");
    let refresh = r.str("refresh_token");

    // The token is the VEDauth face's: it verifies there exactly as one from authorize/jwt,
    // works on /vedsdk, and its refresh token rotates on authorize/token.
    let o = s.verify(&access).await;
    granted(&o);
    let v = s
        .post_json(
            "/vedauth/authorize/jwt",
            &json!({"client_id": APP, "jwt": fresh(), "scope": SCOPE}),
        )
        .await;
    granted(&v);
    assert_eq!(v.json["identity"], identity.as_str(), "{}", v.text);
    let v = s.verify(&v.str("access_token")).await;
    granted(&v);
    for key in ["application", "identity", "scope", "valid_for"] {
        assert_eq!(o.json[key], v.json[key], "{key}: {} vs {}", o.text, v.text);
    }
    assert_eq!(o.json["application"], APP);
    assert_eq!(o.json["identity"], identity.as_str());
    let me = s.get_bearer("/vedsdk/identity/self", Some(&access)).await;
    granted(&me);
    assert_eq!(me.json["Identities"][0]["Name"], "deployer", "{}", me.text);
    let rotated = s.refresh(APP, &refresh).await;
    granted(&rotated);
    assert_eq!(s.verify(&access).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        s.verify(&rotated.str("access_token")).await.status,
        StatusCode::OK
    );

    // Used once: the same assertion again is invalid_grant.
    let r = bearer(&s, app, &scope, &first).await;
    assert_oauth_error(&r, 400, "invalid_grant", None);
    assert_eq!(r.json["error_description"], NOT_VALID);

    // The client authenticates first: a wrong secret is invalid_client and leaves the
    // assertion unused, so the right client can still use it.
    let jwt = fresh();
    let r = bearer(&s, Some((APP, "wrong")), &scope, &jwt).await;
    assert_oauth_error(&r, 401, "invalid_client", BASIC);
    let r = bearer(&s, None, &[("client_id", APP), ("scope", SCOPE)], &jwt).await;
    assert_oauth_error(&r, 401, "invalid_client", BASIC);
    granted(&bearer(&s, app, &scope, &jwt).await);

    // A public client names itself; RFC space-delimited scope tokens become TPP's scope.
    let r = bearer(
        &s,
        None,
        &[
            ("client_id", PUBLIC),
            ("scope", "certificate:manage certificate:revoke"),
        ],
        &ec.sign("ES256", &claims(&s, &iss, SUB)),
    )
    .await;
    granted(&r);
    assert_eq!(
        r.json["vedauth_scope"], "certificate:manage,revoke",
        "{}",
        r.text
    );
    assert_eq!(r.json["scope"], "certificate:manage,revoke", "{}", r.text);
    assert_eq!(
        s.verify(&r.str("access_token")).await.json["application"],
        PUBLIC
    );

    // Not valid: a signature by another key under a published kid, another audience, expired,
    // not a JWT at all. All invalid_grant (RFC 7523 §3.1, RFC 7521 §4.1.1).
    let impostor = ec_key("e1");
    let r = bearer(
        &s,
        app,
        &scope,
        &impostor.sign("ES256", &claims(&s, &iss, SUB)),
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_grant", None);
    assert_eq!(r.json["error_description"], NOT_VALID);
    let mut c = claims(&s, &iss, SUB);
    c["aud"] = json!("someone-else");
    let r = bearer(&s, app, &scope, &rsa.sign("RS256", &c)).await;
    assert_oauth_error(&r, 400, "invalid_grant", None);
    assert_eq!(r.json["error_description"], NO_MAPPING);
    let mut c = claims(&s, &iss, SUB);
    c["exp"] = json!(s.clock.now_secs() - 120);
    let r = bearer(&s, app, &scope, &rsa.sign("RS256", &c)).await;
    assert_oauth_error(&r, 400, "invalid_grant", None);
    assert_eq!(r.json["error_description"], NOT_VALID);
    let r = bearer(&s, app, &scope, "not-a-jwt").await;
    assert_oauth_error(&r, 400, "invalid_grant", None);
    assert_eq!(r.json["error_description"], "JWT is malformed");

    // The request's own faults.
    let r = form(
        &s,
        "/oauth2/token",
        app,
        &[("grant_type", JWT_BEARER), ("scope", SCOPE)],
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_request", None);
    let r = bearer(&s, app, &[], &fresh()).await;
    assert_oauth_error(&r, 400, "invalid_scope", None);
    let r = bearer(&s, app, &[("scope", "nosuchscope")], &fresh()).await;
    assert_oauth_error(&r, 400, "invalid_scope", None);
    let r = bearer(&s, app, &[("scope", "configuration")], &fresh()).await;
    assert_oauth_error(&r, 400, "invalid_scope", None);

    // The far issuer's keys cannot be fetched: 503 with Retry-After, not the client's fault.
    far_keys.stop().await;
    let r = bearer(&s, app, &scope, &ed.sign("EdDSA", &claims(&s, &far, SUB))).await;
    assert_oauth_error(&r, 503, "temporarily_unavailable", None);
    assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);
    far_keys.restart().await;
    s.clock.advance(61);
    granted(&bearer(&s, app, &scope, &ed.sign("EdDSA", &claims(&s, &far, SUB))).await);

    // Switched off again: unauthorized_client.
    switch(&s, &admin, false, 60).await;
    let r = bearer(&s, app, &scope, &fresh()).await;
    assert_oauth_error(&r, 400, "unauthorized_client", None);

    // The audit trail has each refusal's real cause, and no assertion.
    assert_eq!(
        jwt_refusal_causes(&s.dir),
        [
            "flow_disabled",
            "replayed",
            "bad_signature",
            "no_mapping",
            "expired",
            "malformed",
            "malformed",
            "invalid_scope",
            "keys_unreachable",
            "flow_disabled",
        ]
    );
    let trail = std::fs::read_to_string(s.dir.join("audit.log")).expect("trail");
    assert!(
        !trail.contains(&first),
        "an assertion was written to the trail"
    );
    let failed_clients = trail
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "client_auth_failed" && e["client_id"] == APP)
        .count();
    assert_eq!(failed_clients, 2, "{trail}");
}
