//! The JWT grant through a running server (`POST /vedauth/authorize/jwt`, decisions.md §12):
//! tokens signed by the test with RS256, ES256 and EdDSA keys published by a real loopback
//! HTTPS JWKS server (one issuer behind OIDC discovery), mappings made through the admin API,
//! on SQLite and PostgreSQL; the documented refusals and the audit trail's causes; pyVenafi.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{ClockExt, Options, Reply, TestServer};
use crate::jwt::{ec_key, ed_key, enc, rsa_key, test_ca, KeyServer, TestCa};

const APP: &str = "ci-app";
const SCOPE: &str = "certificate:manage";
const NOT_VALID: &str = "JWT is not valid";
const NO_MAPPING: &str = "No JWT mapping accepts this token";

pub(crate) fn events(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("audit.log"))
        .expect("audit log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// The causes of the `login_failed` events of JWT grants, in order.
pub(crate) fn jwt_refusal_causes(dir: &Path) -> Vec<String> {
    events(dir)
        .iter()
        .filter(|e| e["event"] == "login_failed" && e["detail"]["grant_type"] == "jwt")
        .map(|e| e["cause"].as_str().unwrap_or("").to_string())
        .collect()
}

/// A vedauth whose key fetches trust the test CA.
pub(crate) async fn server(ca: &TestCa, mut opts: Options) -> TestServer {
    let tmp = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(tmp.path(), &ca.pem).expect("write CA");
    // Kept for the server's life (it is read at start only).
    let (_, path) = tmp.keep().expect("keep");
    opts.config.tokens.jwt_ca_file = Some(path);
    TestServer::start_with(opts).await
}

/// A 200 of the token endpoint (the admin API's `ok` wants its envelope).
#[track_caller]
fn granted(r: Reply) -> Reply {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r
}

async fn jwt_grant(s: &TestServer, jwt: &str) -> Reply {
    s.post_json(
        "/vedauth/authorize/jwt",
        &json!({"client_id": APP, "jwt": jwt, "scope": SCOPE}),
    )
    .await
}

/// Turns the JWT grant on (or off) through setconfiguration, keeping the rest.
pub(crate) async fn switch(s: &TestServer, admin: &str, on: bool, refresh_delay: i64) {
    let cfg = s.oauth("GetConfiguration", admin, &json!({})).await.ok();
    let mut c = cfg.json["Configuration"].clone();
    assert_eq!(
        c["JwtConfiguration"]["ClockSkew"], 60,
        "the defaults are shown: {c}"
    );
    c["AuthorizeByJwt"] = json!(on);
    c["JwtConfiguration"]["CacheConfiguration"]["RefreshDelay"] = json!(refresh_delay);
    s.oauth("SetConfiguration", admin, &json!({"Configuration": c}))
        .await
        .ok();
}

pub(crate) fn claims(s: &TestServer, iss: &str, sub: &str) -> Value {
    let now = s.clock.now_secs();
    json!({"iss": iss, "aud": ["other", "vedauth"], "sub": sub, "iat": now - 5,
           "exp": now + 600, "jti": uuid::Uuid::new_v4().to_string()})
}

pub(crate) fn mapping(name: &str, issuer: &str, jwks: Option<String>) -> Value {
    json!({"Name": name, "IssuerUri": issuer, "JwksUri": jwks, "PurposeField": "aud",
           "PurposeMatch": "vedauth", "IdField": "sub",
           "IdMatch": "system:serviceaccount:ci:(.+)", "GranteePrefixedUniversal": null})
}

/// Everything a grant needs: a user, an application admitting everyone, the switch on, and
/// mappings for an issuer with a JWKS URI, one behind OIDC discovery (fixed grantee given as
/// a universal), and one on a second key server.
struct World {
    s: TestServer,
    keys: KeyServer,
    other_keys: KeyServer,
    /// `<keys>/k8s` with JwksUri `<keys>/jwks`.
    iss: String,
    /// `<keys>/oidc`, by discovery.
    oidc: String,
    /// `<other_keys>/far`.
    far: String,
    user_identity: String,
    admin: String,
}

async fn world(opts: Options) -> (World, TestCa) {
    let ca = test_ca("jwt grant test CA");
    let keys = KeyServer::start(&ca).await;
    let other_keys = KeyServer::start(&ca).await;
    let s = server(&ca, opts).await;
    let user = s.add_user("deployer", "Deployer-Pw-01").await;
    s.add_app(APP, "certificate:manage,revoke").await;
    s.allow(APP, "everyone", None).await;
    let admin = s.admin_token("admin").await;
    let iss = keys.url("/k8s");
    let oidc = keys.url("/oidc");
    let far = other_keys.url("/far");
    (
        World {
            s,
            keys,
            other_keys,
            iss,
            oidc,
            far,
            user_identity: format!("local:{{{}}}", user.id),
            admin,
        },
        ca,
    )
}

/// The grant's behaviour on one store.
async fn grants_on(opts: Options) -> World {
    let (w, _ca) = world(opts).await;
    let (s, admin) = (&w.s, &w.admin);
    let rsa = rsa_key("r1");
    let ec = ec_key("e1");
    let ed = ed_key("d1");
    w.keys.set_keys(&[&rsa, &ec, &ed]);

    // Off on a new install.
    let r = jwt_grant(
        s,
        &rsa.sign(
            "RS256",
            &claims(s, &w.iss, "system:serviceaccount:ci:deployer"),
        ),
    )
    .await;
    r.assert_error(400, "unauthorized_client", "JWT authentication not enabled");

    switch(s, admin, true, 60).await;
    s.oauth(
        "CreateJwtMapping",
        admin,
        &mapping("k8s", &w.iss, Some(w.keys.url("/jwks"))),
    )
    .await
    .ok();
    let mut by_discovery = mapping("oidc", &w.oidc, None);
    by_discovery["IdMatch"] = json!("repo:acme/app:ref:refs/heads/.+");
    by_discovery["GranteePrefixedUniversal"] = json!(w.user_identity);
    s.oauth("CreateJwtMapping", admin, &by_discovery).await.ok();
    s.oauth(
        "CreateJwtMapping",
        admin,
        &mapping("far", &w.far, Some(w.other_keys.url("/jwks"))),
    )
    .await
    .ok();

    // Each algorithm, the identity from IdMatch's group (a name), then the token at work.
    for (key, alg) in [(&rsa, "RS256"), (&ec, "ES256"), (&ed, "EdDSA")] {
        let jwt = key.sign(alg, &claims(s, &w.iss, "system:serviceaccount:ci:deployer"));
        let r = granted(jwt_grant(s, &jwt).await);
        assert_eq!(r.str("identity"), w.user_identity, "{alg}");
        assert_eq!(r.json["scope"], SCOPE);
        assert_eq!(r.json["token_type"], "Bearer");
        assert!(r.json["refresh_token"].is_string(), "{}", r.text);
        let me = s
            .get_bearer("/vedsdk/identity/self", Some(&r.str("access_token")))
            .await;
        let me = granted(me);
        assert_eq!(me.json["Identities"][0]["Name"], "deployer", "{}", me.text);
    }
    // OIDC discovery, the fixed grantee.
    let jwt = rsa.sign(
        "RS256",
        &claims(s, &w.oidc, "repo:acme/app:ref:refs/heads/main"),
    );
    let r = granted(jwt_grant(s, &jwt).await);
    assert_eq!(r.str("identity"), w.user_identity);
    assert!(w.keys.hits("/oidc/.well-known/openid-configuration") >= 1);

    // A used token is refused, whatever comes after.
    let once = ec.sign(
        "ES256",
        &claims(s, &w.iss, "system:serviceaccount:ci:deployer"),
    );
    granted(jwt_grant(s, &once).await);
    jwt_grant(s, &once)
        .await
        .assert_error(401, "invalid_grant", NOT_VALID);

    // Expired (beyond the 60 s skew), wrong audience, wrong issuer.
    let mut c = claims(s, &w.iss, "system:serviceaccount:ci:deployer");
    c["exp"] = json!(s.clock.now_secs() - 120);
    jwt_grant(s, &rsa.sign("RS256", &c))
        .await
        .assert_error(401, "invalid_grant", NOT_VALID);
    let mut c = claims(s, &w.iss, "system:serviceaccount:ci:deployer");
    c["aud"] = json!("someone-else");
    jwt_grant(s, &rsa.sign("RS256", &c))
        .await
        .assert_error(401, "invalid_grant", NO_MAPPING);
    let c = claims(
        s,
        "https://issuer.invalid",
        "system:serviceaccount:ci:deployer",
    );
    jwt_grant(s, &rsa.sign("RS256", &c))
        .await
        .assert_error(401, "invalid_grant", NOT_VALID);

    // alg none, and HS256 keyed with the issuer's public key.
    let c = claims(s, &w.iss, "system:serviceaccount:ci:deployer");
    let unsigned = format!(
        "{}.{}.",
        enc(json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes()),
        enc(c.to_string().as_bytes())
    );
    jwt_grant(s, &unsigned)
        .await
        .assert_error(401, "invalid_grant", NOT_VALID);
    let header = enc(json!({"alg": "HS256", "kid": "r1"}).to_string().as_bytes());
    let input = format!("{header}.{}", enc(c.to_string().as_bytes()));
    let hkey = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &rsa.public_der);
    let mac = ring::hmac::sign(&hkey, input.as_bytes());
    jwt_grant(s, &format!("{input}.{}", enc(mac.as_ref())))
        .await
        .assert_error(401, "invalid_grant", NOT_VALID);

    // A name nobody has: the mapping gives no identity.
    let c = claims(s, &w.iss, "system:serviceaccount:ci:nobody");
    jwt_grant(s, &rsa.sign("RS256", &c))
        .await
        .assert_error(401, "invalid_grant", NO_MAPPING);

    // No jwt, a jwt that is no JWS.
    s.post_json(
        "/vedauth/authorize/jwt",
        &json!({"client_id": APP, "scope": SCOPE}),
    )
    .await
    .assert_error(400, "invalid_request", "Missing jwt");
    jwt_grant(s, "not-a-jwt")
        .await
        .assert_error(400, "invalid_request", "JWT is malformed");

    // A key rotation at the issuer: a new kid is refused until the next fetch is allowed
    // (RefreshDelay after the last one), then found.
    let rotated = ec_key("e2");
    let fetches = w.keys.hits("/jwks");
    let c = claims(s, &w.iss, "system:serviceaccount:ci:deployer");
    jwt_grant(s, &rotated.sign("ES256", &c))
        .await
        .assert_error(401, "invalid_grant", NOT_VALID);
    w.keys.set_keys(&[&rsa, &ec, &ed, &rotated]);
    s.clock.advance(61);
    let c = claims(s, &w.iss, "system:serviceaccount:ci:deployer");
    granted(jwt_grant(s, &rotated.sign("ES256", &c)).await);
    assert!(w.keys.hits("/jwks") > fetches, "the rotation was fetched");

    // The keys of the far issuer cannot be had: 503, then (after RefreshDelay) they can.
    let mut other_keys = w.other_keys;
    other_keys.set_keys(&[&ed]);
    other_keys.stop().await;
    let c = claims(s, &w.far, "system:serviceaccount:ci:deployer");
    let r = jwt_grant(s, &ed.sign("EdDSA", &c)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.json["error"], "temporarily_unavailable");
    assert!(r.headers.contains_key("retry-after"));
    other_keys.restart().await;
    s.clock.advance(61);
    let c = claims(s, &w.far, "system:serviceaccount:ci:deployer");
    granted(jwt_grant(s, &ed.sign("EdDSA", &c)).await);

    // Every refusal is in the audit trail with its real cause.
    let causes = jwt_refusal_causes(&s.dir);
    assert_eq!(
        causes,
        [
            "flow_disabled",
            "replayed",
            "expired",
            "no_mapping",
            "issuer_not_trusted",
            "algorithm_not_allowed",
            "algorithm_not_allowed",
            "unknown_identity",
            "malformed",
            "malformed",
            "bad_signature",
            "keys_unreachable",
        ]
    );
    // With the real reason, which the client never sees.
    let reason = |cause: &str| -> String {
        events(&s.dir)
            .into_iter()
            .find(|e| e["event"] == "login_failed" && e["cause"] == cause)
            .and_then(|e| e["detail"]["reason"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    assert!(
        reason("expired").contains("expired at"),
        "{}",
        reason("expired")
    );
    assert!(
        reason("no_mapping").contains("aud is \"someone-else\", not \"vedauth\""),
        "{}",
        reason("no_mapping")
    );
    assert!(
        reason("replayed").contains("used before"),
        "{}",
        reason("replayed")
    );
    assert!(
        reason("keys_unreachable").contains(&format!("keys of {} unreachable", w.far)),
        "{}",
        reason("keys_unreachable")
    );
    let accepted = events(&s.dir)
        .into_iter()
        .filter(|e| e["event"] == "jwt_accepted")
        .collect::<Vec<_>>();
    assert_eq!(accepted.len(), 7, "{accepted:?}");
    assert_eq!(accepted[3]["detail"]["mapping"], "oidc");
    assert_eq!(accepted[3]["detail"]["identity_source"], "fixed");
    // No token text in the trail.
    let trail = std::fs::read_to_string(s.dir.join("audit.log")).expect("trail");
    assert!(
        !trail.contains(&once),
        "a JWT was written to the audit trail"
    );
    World { other_keys, ..w }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_grant_on_sqlite() {
    grants_on(Options::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_grant_on_postgres_and_a_used_token_is_refused_by_every_node() {
    let db = crate::pg::fresh_database().await;
    let w = grants_on(Options::on_database(&db)).await;
    // A second node on the same database (trusting the key server too): a token used on the
    // first is refused here.
    let mut o = Options::on_database(&db);
    o.config.tokens.jwt_ca_file = w.s.app.config.tokens.jwt_ca_file.clone();
    let b = TestServer::start_with(o).await;
    let key = ed_key("d9");
    w.keys.set_keys(&[&key]);
    w.s.clock.advance(61);
    b.clock.set(w.s.clock.now_secs());
    let jwt = key.sign(
        "EdDSA",
        &claims(&w.s, &w.iss, "system:serviceaccount:ci:deployer"),
    );
    granted(jwt_grant(&w.s, &jwt).await);
    jwt_grant(&b, &jwt)
        .await
        .assert_error(401, "invalid_grant", NOT_VALID);
    let causes = jwt_refusal_causes(&b.dir);
    assert_eq!(causes, ["replayed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_mappings_through_the_admin_api() {
    let ca = test_ca("jwt admin test CA");
    let keys = KeyServer::start(&ca).await;
    let s = server(&ca, Options::default()).await;
    let bob = s.add_user("bob", "Bob-Password-01").await;
    let admin = s.admin_token("admin").await;
    let iss = keys.url("/issuer");
    let mut m = mapping("ci", &iss, Some(keys.url("/jwks")));
    m["GranteePrefixedUniversal"] = json!("bob");
    let r = s.oauth("CreateJwtMapping", &admin, &m).await.ok();
    assert_eq!(r.json["JwtMapping"]["Name"], "ci");
    assert_eq!(r.json["JwtMapping"]["GranteePrefixedUniversal"], "bob");
    s.oauth("CreateJwtMapping", &admin, &m).await.refused(22);
    s.oauth("GetJwtMapping", &admin, &json!({"Name": "nope"}))
        .await
        .refused(21);
    let r = s
        .oauth(
            "GetJwtMapping",
            &admin,
            &json!({"Name": "ci", "ResolveIdentities": true}),
        )
        .await
        .ok();
    assert_eq!(r.json["JwtMapping"]["JwksUri"], keys.url("/jwks"));
    assert_eq!(
        r.json["IdentityEntries"][0]["PrefixedUniversal"],
        format!("local:{{{}}}", bob.id)
    );

    // Refused with their field: an http JWKS URI, a pattern with look-around, no group and no
    // grantee, an unknown grantee, a second key source for one issuer.
    let mut bad = mapping("x", &iss, Some("http://127.0.0.1:1/jwks".into()));
    let r = s.oauth("CreateJwtMapping", &admin, &bad).await;
    r.refused(6);
    assert!(r.text.contains("JwksUri"), "{}", r.text);
    bad = mapping("x", &iss, Some(keys.url("/jwks")));
    bad["IdMatch"] = json!("(?<=a)b");
    s.oauth("CreateJwtMapping", &admin, &bad).await.refused(6);
    bad["IdMatch"] = json!("fixed-subject");
    s.oauth("CreateJwtMapping", &admin, &bad).await.refused(6);
    bad["GranteePrefixedUniversal"] = json!("nobody-at-all");
    s.oauth("CreateJwtMapping", &admin, &bad).await.refused(18);
    let other_source = mapping("y", &iss, Some(keys.url("/moved")));
    let r = s.oauth("CreateJwtMapping", &admin, &other_source).await;
    r.refused(6);
    assert!(r.text.contains("same JwksUri"), "{}", r.text);
    // pyVenafi sends no JwksUri; the 26.2 docs spell it JWKSUrii.
    let mut second = mapping("b-second", &iss, None);
    second.as_object_mut().expect("object").remove("JwksUri");
    second["JWKSUrii"] = json!(keys.url("/jwks"));
    s.oauth("CreateJwtMapping", &admin, &second).await.ok();
    let other = mapping("other", &keys.url("/elsewhere"), Some(keys.url("/jwks")));
    s.oauth("CreateJwtMapping", &admin, &other).await.ok();

    let r = s
        .oauth("EnumerateJwtMappings", &admin, &json!({"Count": 2}))
        .await
        .ok();
    let names: Vec<&str> = r.json["JwtMappings"]
        .as_array()
        .expect("array")
        .iter()
        .map(|m| m["Name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["b-second", "ci"]);
    let r = s
        .oauth("GetJwtMappings", &admin, &json!({"IssuerUris": [iss]}))
        .await
        .ok();
    assert_eq!(r.json["JwtMappings"].as_array().map(Vec::len), Some(2));
    let r = s
        .oauth("GetJwtMappings", &admin, &json!({"Filter": "ELSEWHERE"}))
        .await
        .ok();
    assert_eq!(r.json["JwtMappings"][0]["Name"], "other");

    // Update replaces; unknown names are 21; delete.
    let mut changed = m.clone();
    changed["PurposeMatch"] = json!("tpp");
    s.oauth("UpdateJwtMapping", &admin, &json!({"JwtMapping": changed}))
        .await
        .ok();
    let r = s
        .oauth("GetJwtMapping", &admin, &json!({"Name": "ci"}))
        .await
        .ok();
    assert_eq!(r.json["JwtMapping"]["PurposeMatch"], "tpp");
    let mut ghost = m.clone();
    ghost["Name"] = json!("ghost");
    s.oauth("UpdateJwtMapping", &admin, &json!({"JwtMapping": ghost}))
        .await
        .refused(21);
    s.oauth("DeleteJwtMapping", &admin, &json!({"Name": "other"}))
        .await
        .ok();
    s.oauth("DeleteJwtMapping", &admin, &json!({"Name": "other"}))
        .await
        .refused(21);

    // JwtConfiguration: out of range is refused with its field.
    let cfg = s.oauth("GetConfiguration", &admin, &json!({})).await.ok();
    let mut c = cfg.json["Configuration"].clone();
    c["JwtConfiguration"] = json!({"ClockSkew": -1});
    let r = s
        .oauth("SetConfiguration", &admin, &json!({"Configuration": c}))
        .await;
    r.refused(6);
    assert!(r.text.contains("ClockSkew"), "{}", r.text);
    c["JwtConfiguration"] = json!({"CacheConfiguration": {"Timeout": 3}});
    s.oauth("SetConfiguration", &admin, &json!({"Configuration": c}))
        .await
        .ok();
    let cfg = s.oauth("GetConfiguration", &admin, &json!({})).await.ok();
    let jc = &cfg.json["Configuration"]["JwtConfiguration"];
    assert_eq!(jc["CacheConfiguration"]["Timeout"], 3);
    assert_eq!(
        jc["CacheConfiguration"]["MaxTtl"], 3600,
        "defaults filled in"
    );

    // Every change is audited as such.
    let changes: Vec<String> = events(&s.dir)
        .iter()
        .filter(|e| e["event"] == "admin_change")
        .filter_map(|e| e["cause"].as_str().map(str::to_string))
        .filter(|c| c.contains("jwt"))
        .collect();
    assert_eq!(
        changes,
        [
            "create_jwt_mapping",
            "create_jwt_mapping",
            "create_jwt_mapping",
            "update_jwt_mapping",
            "delete_jwt_mapping"
        ]
    );
}

/// Runs the binary on the server's data directory (it trusts the key server's CA through the
/// environment); returns (success, stdout, stderr).
fn cli(s: &TestServer, args: &[&str]) -> (bool, String, String) {
    let ca = s.app.config.tokens.jwt_ca_file.clone().expect("CA file");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vedauth"))
        .arg("--data-dir")
        .arg(&s.dir)
        .args(args)
        .env("VEDAUTH_TOKENS_JWT_CA_FILE", ca)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run vedauth");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_manages_mappings_and_explains_refusals() {
    let (w, _ca) = world(Options::default()).await;
    let s = &w.s;
    let ed = ed_key("d1");
    w.keys.set_keys(&[&ed]);
    let jwks = w.keys.url("/jwks");
    let (ok, out, err) = cli(
        s,
        &[
            "jwt",
            "add",
            "k8s",
            "--issuer",
            &w.iss,
            "--jwks-uri",
            &jwks,
            "--purpose-match",
            "vedauth",
            "--id-match",
            "system:serviceaccount:ci:(.+)",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("added k8s"), "{out}");
    let (ok, _, err) = cli(
        s,
        &[
            "jwt",
            "add",
            "k8s",
            "--issuer",
            &w.iss,
            "--jwks-uri",
            &jwks,
            "--purpose-match",
            "x",
            "--id-match",
            "(.+)",
            "--json",
        ],
    );
    assert!(!ok);
    let e: Value = serde_json::from_str(err.trim()).expect("json error");
    assert_eq!(e["result"], 22, "{err}");
    let (ok, out, err) = cli(s, &["jwt", "list", "--json"]);
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(list[0]["Name"], "k8s");
    assert_eq!(list[0]["JwksUri"], jwks);

    let dir = tempfile::tempdir().expect("tmp");
    let file = |name: &str, jwt: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("{jwt}\n")).expect("write");
        p.to_string_lossy().to_string()
    };
    let good = ed.sign(
        "EdDSA",
        &claims(s, &w.iss, "system:serviceaccount:ci:deployer"),
    );
    let good_file = file("good", &good);

    // The switch is off: explained as the first refusal; the rest is still checked.
    let (ok, out, _) = cli(s, &["jwt", "explain", "--jwt", &good_file]);
    assert!(!ok);
    assert!(
        out.contains("REFUSED  switch: AuthorizeByJwt is off"),
        "{out}"
    );
    assert!(out.contains("ok       token: signed by"), "{out}");
    let (ok, _, err) = cli(s, &["config", "set", "AuthorizeByJwt", "true"]);
    assert!(ok, "{err}");

    let (ok, out, err) = cli(s, &["jwt", "explain", "--jwt", &good_file, "--json"]);
    assert!(ok, "{out}{err}");
    let x: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(x["accepted"], true);
    assert_eq!(x["identity"], w.user_identity);
    // On through the application, its rule and the scope.
    let (ok, out, err) = cli(
        s,
        &[
            "jwt",
            "explain",
            "--jwt",
            &good_file,
            "--client-id",
            APP,
            "--scope",
            SCOPE,
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("ok       rule: admitted by the rule for everyone"),
        "{out}"
    );
    assert!(
        out.contains("ok       scope: certificate:manage is allowed"),
        "{out}"
    );
    let (ok, out, _) = cli(
        s,
        &[
            "jwt",
            "explain",
            "--jwt",
            &good_file,
            "--client-id",
            APP,
            "--scope",
            "ssh:approve",
        ],
    );
    assert!(!ok);
    assert!(
        out.contains("REFUSED  scope: ssh:approve exceeds the application's maximum"),
        "{out}"
    );
    let (ok, out, _) = cli(
        s,
        &["jwt", "explain", "--jwt", &good_file, "--client-id", "nope"],
    );
    assert!(!ok);
    assert!(
        out.contains("REFUSED  application: \"nope\" is not registered"),
        "{out}"
    );

    // Expired, and a name nobody has: each says which step refused.
    let mut c = claims(s, &w.iss, "system:serviceaccount:ci:deployer");
    c["exp"] = json!(crate::common::wall_now() - 3600);
    let (ok, out, _) = cli(
        s,
        &[
            "jwt",
            "explain",
            "--jwt",
            &file("old", &ed.sign("EdDSA", &c)),
        ],
    );
    assert!(!ok);
    assert!(
        out.contains("REFUSED  token (expired): expired at"),
        "{out}"
    );
    let nobody = ed.sign(
        "EdDSA",
        &claims(s, &w.iss, "system:serviceaccount:ci:nobody"),
    );
    let (ok, out, err) = cli(
        s,
        &[
            "jwt",
            "explain",
            "--jwt",
            &file("nobody", &nobody),
            "--json",
        ],
    );
    assert!(!ok);
    let x: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(x["refused_at"], "identity (unknown_identity)", "{out}");
    assert!(
        err.contains("would refuse this token at step identity"),
        "{err}"
    );

    // The dry run used nothing up: the token still gets a grant, once. The switch was turned
    // on by another process: the server sees it through the store's feed, within a second (a
    // refusal for the switch uses nothing up either).
    let start = std::time::Instant::now();
    loop {
        let r = jwt_grant(s, &good).await;
        if r.text.contains("JWT authentication not enabled") {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(2),
                "the switch still off at the server after {:?}",
                start.elapsed()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        }
        granted(r);
        break;
    }
    jwt_grant(s, &good)
        .await
        .assert_error(401, "invalid_grant", NOT_VALID);

    let (ok, _, err) = cli(s, &["jwt", "remove", "k8s"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(s, &["jwt", "show", "k8s", "--json"]);
    assert!(!ok);
    let e: Value = serde_json::from_str(err.trim()).expect("json error");
    assert_eq!(e["result"], 21, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyvenafi_logs_in_with_a_jwt_and_calls_identity_self() {
    let (w, _ca) = world(Options::default()).await;
    let s = &w.s;
    switch(s, &w.admin, true, 60).await;
    s.oauth(
        "CreateJwtMapping",
        &w.admin,
        &mapping("k8s", &w.iss, Some(w.keys.url("/jwks"))),
    )
    .await
    .ok();
    let rsa = rsa_key("r1");
    w.keys.set_keys(&[&rsa]);
    let jwt = rsa.sign(
        "RS256",
        &claims(s, &w.iss, "system:serviceaccount:ci:deployer"),
    );
    let jwt_file = s.dir.join("login.jwt");
    std::fs::write(&jwt_file, &jwt).expect("write JWT");
    let ca = s.launched.ca_file.clone().expect("generated CA");
    let host = s.base.trim_start_matches("https://").to_string();
    let identity = w.user_identity.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(crate::clients::client_python())
            .arg(crate::clients::repo().join("tests/clients/pyvenafi_jwt.py"))
            .args(["--host", &host, "--ca"])
            .arg(&ca)
            .args(["--client-id", APP, "--scope", SCOPE, "--jwt-file"])
            .arg(&jwt_file)
            .args(["--expect-identity", &identity])
            .output()
            .expect("run the pyVenafi script")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "pyVenafi JWT login failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("8 passed, 0 failed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_refresh_fetches_keys_ahead_of_tokens_when_due() {
    let (w, _ca) = world(Options::default()).await;
    let s = &w.s;
    s.oauth(
        "CreateJwtMapping",
        &w.admin,
        &mapping("k8s", &w.iss, Some(w.keys.url("/jwks"))),
    )
    .await
    .ok();
    let ed = ed_key("d1");
    w.keys.set_keys(&[&ed]);
    // Off: nothing fetched.
    assert!(s
        .app
        .engine
        .refresh_jwt_keys()
        .await
        .expect("pass")
        .is_none());
    switch(s, &w.admin, true, 60).await;
    let ran = s.app.engine.refresh_jwt_keys().await.expect("pass");
    assert_eq!(ran, Some(vec![(w.iss.clone(), Ok(1))]));
    assert_eq!(w.keys.hits("/jwks"), 1);
    // Not due again before AutoRefresh (300 s).
    assert!(s
        .app
        .engine
        .refresh_jwt_keys()
        .await
        .expect("pass")
        .is_none());
    // A token finds its keys without a fetch.
    let jwt = ed.sign(
        "EdDSA",
        &claims(s, &w.iss, "system:serviceaccount:ci:deployer"),
    );
    granted(jwt_grant(s, &jwt).await);
    assert_eq!(w.keys.hits("/jwks"), 1);
    s.clock.advance(301);
    assert!(s
        .app
        .engine
        .refresh_jwt_keys()
        .await
        .expect("pass")
        .is_some());
}
