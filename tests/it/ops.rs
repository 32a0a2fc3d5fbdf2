//! Operations: metrics, health and readiness, JSON logs with request ids, the systemd unit,
//! `--version` and `status`.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::binary::{admin, Served};
use crate::common::{Options, Reply, TestServer};
use crate::pg;

const BIN: &str = env!("CARGO_BIN_EXE_vedauth");

/// Prometheus text format: `name{labels} value` lines into a map (labels sorted as written).
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn metric(m: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.iter()
        .filter(|(k, _)| {
            k.split('{').next() == Some(name)
                && labels
                    .iter()
                    .all(|(l, v)| k.contains(&format!("{l}=\"{v}\"")))
        })
        .map(|(_, v)| *v)
        .sum()
}

/// The metrics page's text, scraped with `token`.
async fn scrape(client: &reqwest::Client, base: &str, token: &str) -> String {
    Reply::get(client, &format!("{base}/metrics"), Some(token))
        .await
        .text
}

/// A token with the admin scope, for the bootstrap admin of a `Served` server.
async fn admin_token(client: &reqwest::Client, base: &str) -> String {
    Reply::read(
        client
            .post(format!("{base}/vedauth/authorize/oauth"))
            .json(&json!({"client_id": "vedauth-admin", "username": "admin", "password": "Initial-Admin-Pw-123", "scope": "admin"}))
            .send()
            .await
            .expect("send"),
    )
    .await
    .str("access_token")
}

/// The hashing threads' working memory shows in `vedauth_hash_memory_bytes`, and goes back to
/// the OS once no login has come for `password_hash.keep_memory_secs` (1 s here, from the data
/// directory's configuration file); the next login maps it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashing_memory_is_given_back_when_logins_stop() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).expect("data dir");
    std::fs::write(
        dir.join("vedauth.toml"),
        "[password_hash]\nkeep_memory_secs = 1\n",
    )
    .expect("config");
    let s = Served::start(&dir, &[]);
    let client = s.client();
    let token = admin_token(&client, &s.base).await;
    // A bounded wait for the idle threads, not a timing assertion.
    let mut held = f64::NAN;
    for _ in 0..300 {
        let m = parse_metrics(&scrape(&client, &s.base, &token).await);
        assert!(m.contains_key("vedauth_hash_memory_bytes"), "{m:?}");
        held = metric(&m, "vedauth_hash_memory_bytes", &[]);
        if held == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(held, 0.0, "the hashing threads kept their memory");
    assert!(!admin_token(&client, &s.base).await.is_empty());
    s.sigterm();
    assert!(s.wait().0.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_the_scripted_requests() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let s = Served::start(&dir, &[]);
    admin(
        &dir,
        &["user", "add", "mia", "--password-stdin"],
        Some("Mia-Password-1\n"),
    );
    admin(
        &dir,
        &["app", "add", "metrics-app", "--scope", "certificate"],
        None,
    );
    admin(&dir, &["app", "allow", "metrics-app", "everyone"], None);
    let client = s.client();
    let grant = |pw: &'static str| {
        let client = client.clone();
        let url = format!("{}/vedauth/authorize/oauth", s.base);
        async move {
            Reply::read(
                client
                    .post(url)
                    .json(&json!({"client_id": "metrics-app", "username": "mia", "password": pw, "scope": "certificate"}))
                    .send()
                    .await
                    .expect("send"),
            )
            .await
        }
    };
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let r = grant("Mia-Password-1").await;
        assert_eq!(r.status, StatusCode::OK);
        tokens.push(r.str("access_token"));
    }
    for _ in 0..2 {
        assert_eq!(grant("wrong").await.status, StatusCode::UNAUTHORIZED);
    }
    for _ in 0..4 {
        let r = client
            .get(format!("{}/vedauth/authorize/verify", s.base))
            .bearer_auth(&tokens[0])
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK);
    }
    // /metrics is for a token with the admin scope (metrics.public is off by default).
    let bare = client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .expect("send");
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    let admin_token = admin_token(&client, &s.base).await;
    let text = scrape(&client, &s.base, &admin_token).await;
    let m = parse_metrics(&text);
    let oauth = [("endpoint", "/vedauth/authorize/oauth")];
    // Mia's three grants and the admin's token for the scrape.
    assert_eq!(
        metric(
            &m,
            "vedauth_http_requests_total",
            &[oauth[0], ("status", "200")]
        ),
        4.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &m,
            "vedauth_http_requests_total",
            &[oauth[0], ("status", "401")]
        ),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            "vedauth_http_requests_total",
            &[("endpoint", "/vedauth/authorize/verify"), ("status", "200")]
        ),
        4.0
    );
    assert_eq!(
        metric(&m, "vedauth_http_request_duration_seconds_count", &oauth),
        6.0
    );
    assert_eq!(
        metric(
            &m,
            "vedauth_grants_issued_total",
            &[("client_id", "metrics-app")]
        ),
        3.0
    );
    assert_eq!(
        metric(
            &m,
            "vedauth_failed_logins_total",
            &[("client_id", "metrics-app")]
        ),
        2.0
    );
    // No metric tells one refusal from another: that is for the audit trail only.
    assert!(!text.contains("cause="), "{text}");
    assert!(!text.contains("wrong_password"), "{text}");
    // The first two verifies miss (a grant is kept from its second verify on); the next two
    // are hits. (The admin token's check for this scrape is the third miss.)
    assert_eq!(metric(&m, "vedauth_verify_cache_misses_total", &[]), 3.0);
    assert_eq!(metric(&m, "vedauth_verify_cache_hits_total", &[]), 2.0);
    // Every password check waited in the hashing queue (5 logins; the admin's first start too).
    assert!(metric(&m, "vedauth_hash_wait_seconds_count", &[]) >= 5.0);
    assert!(m.keys().any(|k| k.starts_with("vedauth_hash_queue_depth")));
    assert!(
        metric(
            &m,
            "vedauth_store_query_duration_seconds_count",
            &[("op", "insert_grant")]
        ) >= 3.0
    );
    assert!(m.keys().any(|k| k.starts_with("vedauth_live_grants")));
    s.sigterm();
    assert!(s.wait().0.success());
}

/// The argon2id checks the hashing queue has run so far, from a scrape with `token`.
async fn hashes_so_far(client: &reqwest::Client, base: &str, token: &str) -> f64 {
    let text = scrape(client, base, token).await;
    metric(
        &parse_metrics(&text),
        "vedauth_hash_wait_seconds_count",
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_authentications_of_one_client_cost_one_hash() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let s = Served::start(&dir, &[]);
    admin(
        &dir,
        &["app", "add", "herd-app", "--scope", "certificate"],
        None,
    );
    let out = admin(&dir, &["app", "secret", "herd-app"], None);
    let secret = out.lines().last().expect("the secret").trim().to_string();
    let client = s.client();
    let admin_token = admin_token(&client, &s.base).await;
    let before = hashes_so_far(&client, &s.base, &admin_token).await;
    // A gateway opening its connections at once: 16 client-credentials grants with one secret,
    // sent together.
    let grants = (0..16).map(|_| {
        let c = client.clone();
        let url = format!("{}/oauth2/token", s.base);
        let secret = secret.clone();
        async move {
            c.post(url)
                .basic_auth("herd-app", Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .expect("send")
                .status()
        }
    });
    let statuses = futures_util::future::join_all(grants).await;
    assert!(
        statuses.iter().all(|st| *st == StatusCode::OK),
        "{statuses:?}"
    );
    let after = hashes_so_far(&client, &s.base, &admin_token).await;
    // One check of the secret; the 15 others waited for it (or, later, found it kept).
    assert_eq!(after - before, 1.0, "{before} -> {after}");
    s.sigterm();
    assert!(s.wait().0.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_store() {
    let cluster = pg::Cluster::start();
    let db = pg::fresh_database_on(&cluster.url).await;
    let s = TestServer::start_with(Options::on_database(&db)).await;
    let health = s.get_bearer("/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json["status"], "ok");
    let ready = s.get_bearer("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert_eq!(ready.json["store"], "ok");
    cluster.stop().await;
    let down = s.get_bearer("/readyz", None).await;
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        down.text
    );
    assert_eq!(down.json["status"], "not_ready");
    // Liveness does not depend on the store.
    assert_eq!(s.get_bearer("/healthz", None).await.status, StatusCode::OK);
    cluster.start_again().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = s.get_bearer("/readyz", None).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "never ready again: {}", r.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Verify, the gateway check and introspection reach their handlers without the router (the
/// hot lane, src/http/hot.rs): they still get a request id, their own endpoint label, and the
/// router's answers for the methods the lane does not take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hot_routes_pass_the_same_middleware_as_the_router() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let s = Served::start(&dir, &[]);
    let client = s.client();
    let token = admin_token(&client, &s.base).await;
    let mut ids = Vec::new();
    let mut seen = |r: &reqwest::Response| {
        let id = r.headers()["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_string();
        assert_eq!(id.len(), 36, "{id}");
        ids.push(id);
    };
    let verify = |method: reqwest::Method| {
        client
            .request(method, format!("{}/vedauth/authorize/verify", s.base))
            .bearer_auth(&token)
            .send()
    };
    let r = verify(reqwest::Method::GET).await.expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    seen(&r);
    for path in ["/gateway/check", "/gateway/check/vedsdk/certificates/x"] {
        let r = client
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        seen(&r);
    }
    let r = client
        .post(format!("{}/oauth2/introspect", s.base))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    seen(&r);
    // The methods the lane leaves to the router: HEAD is GET without a body, POST is refused
    // in the VEDauth face's shape.
    let r = verify(reqwest::Method::HEAD).await.expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    seen(&r);
    assert!(r.bytes().await.expect("body").is_empty());
    let r = verify(reqwest::Method::POST).await.expect("send");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    seen(&r);
    let r = Reply::read(r).await;
    assert!(r.json.get("error").is_some(), "{}", r.text);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "one id per request");

    let text = scrape(&client, &s.base, &token).await;
    let m = parse_metrics(&text);
    let count = |endpoint: &str, status: &str| {
        metric(
            &m,
            "vedauth_http_requests_total",
            &[("endpoint", endpoint), ("status", status)],
        )
    };
    // GET through the lane and HEAD through the router count under one label.
    assert_eq!(count("/vedauth/authorize/verify", "200"), 2.0, "{text}");
    assert_eq!(count("/gateway/check", "401"), 1.0, "{text}");
    assert_eq!(count("/gateway/check/{*rest}", "401"), 1.0, "{text}");
    assert_eq!(count("/oauth2/introspect", "401"), 1.0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id_and_no_secrets() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let s = Served::start(&dir, &["--log-format", "json"]);
    let client = s.client();
    let r = client
        .post(format!("{}/vedauth/authorize/oauth", s.base))
        .header("x-request-id", "req-grant-0001")
        .json(&json!({"client_id": "vedauth-admin", "username": "admin", "password": "Initial-Admin-Pw-123", "scope": "admin"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.headers()["x-request-id"], "req-grant-0001");
    let r = Reply::read(r).await;
    assert_eq!(r.status, StatusCode::OK);
    let token = r.str("access_token");
    let refresh = r.str("refresh_token");
    let v = client
        .get(format!("{}/vedauth/authorize/verify", s.base))
        .header("x-request-id", "req-verify-0002")
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    assert_eq!(v.status(), StatusCode::OK);
    let bad = client
        .get(format!("{}/vedauth/authorize/verify", s.base))
        .header("x-request-id", "req-verify-0003")
        .bearer_auth("not-a-token")
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let wrong = client
        .post(format!("{}/vedauth/authorize/oauth", s.base))
        .header("x-request-id", "req-grant-0004")
        .json(&json!({"client_id": "vedauth-admin", "username": "admin", "password": "not-the-password", "scope": "admin"}))
        .send()
        .await
        .expect("send");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    // Without one, the server makes one up and returns it.
    let n = client
        .get(format!("{}/vedsdk/", s.base))
        .send()
        .await
        .expect("send");
    assert!(n
        .headers()
        .get("x-request-id")
        .is_some_and(|v| !v.is_empty()));
    let log = s.err.clone();
    s.sigterm();
    let (status, _) = s.wait();
    assert!(status.success());
    let log = log.lock().map(|l| l.clone()).unwrap_or_default();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 3, "{log}");
    // Every line logged while handling a request carries that request's id.
    let of = |id: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["span"]["request_id"] == id)
            .collect()
    };
    let grant_lines = of("req-grant-0001");
    assert!(
        grant_lines
            .iter()
            .any(|l| l["fields"]["message"] == "grant issued"),
        "{log}"
    );
    assert!(
        grant_lines
            .iter()
            .any(|l| l["fields"]["message"] == "request"),
        "{log}"
    );
    // A successful verify is logged at debug (resource servers verify on every call); a
    // refused one at info, like every other request.
    let access_line = |id: &str| -> Value {
        of(id)
            .into_iter()
            .find(|l| l["fields"]["message"] == "request")
            .cloned()
            .unwrap_or_else(|| panic!("no access-log line for {id}: {log}"))
    };
    assert_eq!(access_line("req-verify-0002")["level"], "DEBUG");
    assert_eq!(access_line("req-verify-0003")["level"], "INFO");
    assert_eq!(access_line("req-grant-0001")["level"], "INFO");
    // A refusal's access-log line names its cause in the audit trail's words; the client got
    // only the documented text.
    assert_eq!(
        access_line("req-grant-0004")["fields"]["cause"],
        "wrong_password"
    );
    assert_eq!(
        access_line("req-verify-0003")["fields"]["cause"],
        "invalid_token"
    );
    assert!(access_line("req-grant-0001")["fields"]["cause"].is_null());
    // Every line inside a request span names the request (the log runs at debug level here,
    // so library lines from inside handlers count too).
    let in_requests: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["name"] == "request")
        .collect();
    assert!(in_requests.len() >= 4, "{log}");
    for l in in_requests {
        assert!(
            l["span"]["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "{l}"
        );
    }
    for secret in [
        token.as_str(),
        refresh.as_str(),
        "Initial-Admin-Pw-123",
        "not-the-password",
    ] {
        assert!(!log.contains(secret), "a secret is in the log");
    }
    assert!(!log.contains("$argon2id$"));
}

#[test]
fn the_systemd_unit_verifies() {
    // The unit names the installed path; verify a copy that points at this build's binary.
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dist/vedauth.service"))
            .expect("unit");
    assert!(unit.contains("ExecStart=/usr/local/bin/vedauth serve"));
    let tmp = tempfile::tempdir().expect("tmp");
    let copy = tmp.path().join("vedauth.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/vedauth", BIN)).expect("write");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (scripts/test installs the systemd package)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{err}"
    );
    // Warnings about the unit itself would name it.
    assert!(!err.contains("vedauth.service:"), "{err}");
}

#[test]
fn version_names_the_git_revision() {
    let out = Command::new(BIN).arg("--version").output().expect("run");
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(v.starts_with("vedauth 0.1.0 (git "), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_health_store_and_counts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let s = Served::start(&dir, &[]);
    let out = Command::new(BIN)
        .args([
            "--data-dir",
            dir.to_str().expect("utf-8"),
            "status",
            "--json",
            "--url",
            &s.base,
        ])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["server"]["reachable"], true, "{report}");
    assert_eq!(report["server"]["ready"], true);
    // The server's unauthenticated probes give the release without the revision; the tool
    // names its own revision.
    assert_eq!(
        report["server"]["health"]["version"],
        env!("CARGO_PKG_VERSION")
    );
    assert!(report["version"]
        .as_str()
        .is_some_and(|v| v.contains("git")));
    assert!(report["store"]
        .as_str()
        .is_some_and(|st| st.starts_with("sqlite:")));
    assert_eq!(report["counts"]["users"], 1);
    assert_eq!(report["counts"]["applications"], 1);
    assert_eq!(report["counts"]["live_grants"], 0);
    assert_eq!(report["providers"][0]["name"], "local");
    s.sigterm();
    assert!(s.wait().0.success());
}

/// Listing a page of a large grant table asks the store for that page, and the statistics are
/// counted by the store: the server never loads the whole table (issue 16). Seen in the store
/// metrics of a server process of its own, over 1,000 grants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_grants_and_the_counts_come_from_the_store() {
    use vedauth::store::sqlite::SqliteStore;
    use vedauth::store::{Grant, GrantStore};
    use vedauth::token::TokenDigest;

    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let s = Served::start(&dir, &[]);
    admin(
        &dir,
        &["app", "add", "paged", "--scope", "certificate"],
        None,
    );
    // 1,000 grants of 10 identities, written straight into the server's database.
    let now = crate::common::wall_now();
    let grants: Vec<Grant> = (0..1000)
        .map(|i| Grant {
            id: format!("g{i:04}").into(),
            client_id: "paged".into(),
            identity: format!("local:{{{}}}", i % 10).into(),
            granted_to: "everyone".into(),
            scope: crate::common::canon("certificate"),
            issued_at: now - 2000 + i,
            expires_at: None,
            renewable: true,
            access_validity: 3600,
            access_digest: TokenDigest::of(&format!("a{i}")),
            access_issued_at: now,
            access_expires_at: now + 3600,
            refresh_digest: None,
        })
        .collect();
    {
        let store = SqliteStore::open(&dir.join("vedauth.db"), 1)
            .await
            .expect("open");
        store.import_grants(&grants, &[]).await.expect("import");
    }
    let client = s.client();
    let token = admin_token(&client, &s.base).await;
    let oauth = |op: &'static str, body: Value| {
        let (client, token) = (client.clone(), token.clone());
        let url = format!("{}/vedsdk/oauth/{op}", s.base);
        async move {
            Reply::read(
                client
                    .post(url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .expect("send"),
            )
            .await
        }
    };
    let page = oauth(
        "EnumerateGrants",
        json!({"ApplicationId": "paged", "Start": 990, "Count": 5}),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    // Grant i was issued at now - 2000 + i: the page holds grants 990..995, oldest first.
    let issued: Vec<i64> = page.json["Grants"]
        .as_array()
        .expect("grants")
        .iter()
        .map(|g| g["GrantIssuedOnUnixTime"].as_i64().expect("issued") - (now - 2000))
        .collect();
    assert_eq!(issued, [990, 991, 992, 993, 994], "{}", page.text);
    let count = oauth("GrantCount", json!({"ApplicationId": "paged"})).await;
    assert_eq!(count.json["Count"], 1000, "{}", count.text);
    let users = oauth("UserCount", json!({"ApplicationId": "paged"})).await;
    assert_eq!(users.json["Count"], 10, "{}", users.text);

    let text = scrape(&client, &s.base, &token).await;
    let m = parse_metrics(&text);
    let ops = |op: &str| {
        metric(
            &m,
            "vedauth_store_query_duration_seconds_count",
            &[("op", op)],
        )
    };
    assert_eq!(ops("page_grants"), 1.0, "{text}");
    assert_eq!(ops("grant_counts"), 2.0, "{text}");
    assert_eq!(ops("list_grants"), 0.0, "{text}");
    s.sigterm();
    assert!(s.wait().0.success());
}
