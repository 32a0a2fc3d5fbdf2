//! The built `vedauth` binary, driven as an operator would: serve, the admin commands on the
//! same data directory while it runs, SIGTERM. Also greps its database and log for secrets.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{client_for, Reply};

const BIN: &str = env!("CARGO_BIN_EXE_vedauth");

/// A `vedauth serve` child process whose output is collected.
pub(crate) struct Served {
    child: Child,
    dir: PathBuf,
    pub(crate) base: String,
    out: Arc<Mutex<String>>,
    /// Standard error alone (the log), apart from the banner on standard output.
    pub(crate) err: Arc<Mutex<String>>,
    /// Standard output alone.
    pub(crate) stdout: Arc<Mutex<String>>,
}

fn collect(
    stream: impl Read + Send + 'static,
    sink: Arc<Mutex<String>>,
    also: Option<Arc<Mutex<String>>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            for target in std::iter::once(&sink).chain(also.as_ref()) {
                if let Ok(mut s) = target.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        }
    });
}

/// The address the banner names: the human line on stdout, or the JSON event in the log.
fn banner_url(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        if let Some(url) = l.strip_prefix("vedauth is listening on ") {
            return Some(url.trim().to_string());
        }
        let event: Value = serde_json::from_str(l).ok()?;
        (event["fields"]["message"] == "vedauth is listening")
            .then(|| event["fields"]["url"].as_str().map(str::to_string))
            .flatten()
    })
}

impl Served {
    pub(crate) fn start(dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args([
                "--data-dir",
                dir.to_str().expect("utf-8 path"),
                "serve",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("VEDAUTH_ADMIN_PASSWORD", "Initial-Admin-Pw-123")
            .env("VEDAUTH_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vedauth");
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        collect(
            child.stdout.take().expect("stdout"),
            out.clone(),
            Some(stdout.clone()),
        );
        collect(
            child.stderr.take().expect("stderr"),
            out.clone(),
            Some(err.clone()),
        );
        // Bounded wait for the banner line that names the address.
        let deadline = Instant::now() + Duration::from_secs(60);
        let base = loop {
            let text = out.lock().map(|s| s.clone()).unwrap_or_default();
            if let Some(url) = banner_url(&text) {
                break url;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("vedauth exited early ({status}):\n{text}");
            }
            assert!(Instant::now() < deadline, "no banner:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        };
        Self {
            child,
            dir: dir.to_path_buf(),
            base,
            out,
            err,
            stdout,
        }
    }

    pub(crate) fn output(&self) -> String {
        self.out.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn wait_for_output(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.output().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "never saw {needle:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    pub(crate) fn wait(mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "vedauth did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        // Let the reader threads drain.
        std::thread::sleep(Duration::from_millis(100));
        (status, self.output())
    }

    pub(crate) fn client(&self) -> reqwest::Client {
        client_for(Some(&self.dir.join("tls/ca.crt")))
    }

    /// SIGKILL: no shutdown of any kind.
    pub(crate) fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }
}

/// A test that fails before it stops its server must not leave the process running.
impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs an admin command on the data directory; returns stdout, asserting success.
pub(crate) fn admin(dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out, err) = admin_outcome(dir, args, stdin);
    assert!(ok, "vedauth {args:?} failed: {err}");
    out
}

/// Runs an admin command on the data directory: (success, stdout, stderr).
pub(crate) fn admin_outcome(
    dir: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(["--data-dir", dir.to_str().expect("utf-8")])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

pub(crate) async fn grant(
    client: &reqwest::Client,
    base: &str,
    app: &str,
    user: &str,
    pw: &str,
    scope: &str,
) -> Reply {
    let r = client
        .post(format!("{base}/vedauth/authorize/oauth"))
        .json(&json!({"client_id": app, "username": user, "password": pw, "scope": scope}))
        .send()
        .await
        .expect("send");
    Reply::read(r).await
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_database_or_the_log_and_the_cli_shares_the_store() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let s = Served::start(&dir, &[]);
    let client = s.client();
    // Admin commands on the same store while the server runs; password only from stdin.
    admin(
        &dir,
        &[
            "user",
            "add",
            "bob",
            "--password-stdin",
            "--full-name",
            "Bob B",
        ],
        Some("Bobs-Secret-Pw-77\n"),
    );
    admin(
        &dir,
        &[
            "app",
            "add",
            "vcert-sdk",
            "--scope",
            "certificate:manage,revoke",
        ],
        None,
    );
    admin(&dir, &["app", "allow", "vcert-sdk", "everyone"], None);
    let users: Value =
        serde_json::from_str(&admin(&dir, &["user", "list", "--json"], None)).expect("json");
    assert_eq!(users.as_array().map(Vec::len), Some(2), "{users}");
    let apps: Value =
        serde_json::from_str(&admin(&dir, &["app", "show", "vcert-sdk", "--json"], None))
            .expect("json");
    assert_eq!(apps["scope"], "certificate:manage,revoke");
    assert_eq!(apps["rules"][0]["trustee"], "everyone");

    let mut secrets = vec![
        "Initial-Admin-Pw-123".to_string(),
        "Bobs-Secret-Pw-77".to_string(),
    ];
    let admin_grant = grant(
        &client,
        &s.base,
        "vedauth-admin",
        "admin",
        "Initial-Admin-Pw-123",
        "admin",
    )
    .await;
    assert_eq!(admin_grant.status, StatusCode::OK, "{}", admin_grant.text);
    let bob = grant(
        &client,
        &s.base,
        "vcert-sdk",
        "bob",
        "Bobs-Secret-Pw-77",
        "certificate:manage",
    )
    .await;
    assert_eq!(bob.status, StatusCode::OK, "{}", bob.text);
    let wrong = grant(
        &client,
        &s.base,
        "vcert-sdk",
        "bob",
        "Not-Bobs-Pw-99",
        "certificate",
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    secrets.push("Not-Bobs-Pw-99".into());
    for r in [&admin_grant, &bob] {
        secrets.push(r.str("access_token"));
        secrets.push(r.str("refresh_token"));
    }
    let refreshed = Reply::read(
        client
            .post(format!("{}/vedauth/authorize/token", s.base))
            .json(&json!({"client_id": "vcert-sdk", "refresh_token": bob.str("refresh_token")}))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text);
    secrets.push(refreshed.str("access_token"));
    secrets.push(refreshed.str("refresh_token"));
    let verified = client
        .get(format!("{}/vedauth/authorize/verify", s.base))
        .bearer_auth(refreshed.str("access_token"))
        .send()
        .await
        .expect("send");
    assert_eq!(verified.status(), StatusCode::OK);

    // grant list / revoke on the command line, against the running server's store.
    let listed: Value = serde_json::from_str(&admin(
        &dir,
        &["grant", "list", "--client-id", "vcert-sdk", "--json"],
        None,
    ))
    .expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["identity"], bob.json["identity"]);
    let identity = bob.str("identity");
    let revoked: Value = serde_json::from_str(&admin(
        &dir,
        &["grant", "revoke", "--identity", &identity, "--json"],
        None,
    ))
    .expect("json");
    assert_eq!(revoked["revoked"], 1);
    let listed: Value = serde_json::from_str(&admin(
        &dir,
        &["grant", "list", "--client-id", "vcert-sdk", "--json"],
        None,
    ))
    .expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(0));
    let refresh_after = Reply::read(
        client
            .post(format!("{}/vedauth/authorize/token", s.base))
            .json(
                &json!({"client_id": "vcert-sdk", "refresh_token": refreshed.str("refresh_token")}),
            )
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(refresh_after.status.as_u16(), 400, "{}", refresh_after.text);

    s.sigterm();
    let (status, log) = s.wait();
    assert!(status.success(), "exit status {status}\n{log}");
    assert!(log.contains("grant issued"), "the log was captured:\n{log}");
    let mut db_bytes = Vec::new();
    for f in ["vedauth.db", "vedauth.db-wal", "vedauth.db-shm"] {
        if let Ok(b) = std::fs::read(dir.join(f)) {
            db_bytes.extend(b);
        }
    }
    assert!(db_bytes.len() > 4096, "the database was read");
    for secret in &secrets {
        assert!(!contains(&db_bytes, secret), "a secret is in the database");
        assert!(!log.contains(secret.as_str()), "a secret is in the log");
    }
    // Nor a password hash in the log.
    assert!(!log.contains("$argon2id$"), "a hash is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_zero() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let s = Served::start(&dir, &["--insecure-http"]);
    let addr = s.base.trim_start_matches("http://").to_string();
    let body = br#"{"client_id":"vedauth-admin","username":"admin","password":"Initial-Admin-Pw-123","scope":"admin"}"#;
    let mut conn = std::net::TcpStream::connect(&addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let head = format!(
        "POST /vedauth/authorize/oauth HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).expect("write");
    conn.write_all(&body[..10]).expect("write");
    conn.flush().expect("flush");
    // Wait until the server is reading our body, then ask it to stop.
    std::thread::sleep(Duration::from_millis(200));
    s.sigterm();
    s.wait_for_output("shutdown requested");
    // New connections are refused once it stops accepting.
    s.wait_for_output("stopped accepting");
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "still accepting"
    );
    conn.write_all(&body[10..]).expect("write rest");
    let mut response = String::new();
    let _ = conn.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("access_token"), "{response}");
    let (status, log) = s.wait();
    assert!(status.success(), "exit status {status}\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_without_dropping_connections() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let s = Served::start(&dir, &[]);
    let probe = format!("{}/vedauth/authorize/isAuthServer", s.base);
    let old = s.client();
    assert_eq!(
        old.get(&probe)
            .send()
            .await
            .expect("send")
            .status()
            .as_u16(),
        202
    );
    // A new CA and server certificate, put in place of the old ones.
    let other = tmp.path().join("other");
    let paths = vedauth::tls::TlsPaths::in_dir(&other);
    assert!(vedauth::tls::ensure_generated(&paths, crate::common::wall_now()).expect("generate"));
    std::fs::copy(&paths.cert, dir.join("tls/server.crt")).expect("copy cert");
    std::fs::copy(&paths.key, dir.join("tls/server.key")).expect("copy key");
    let ok = Command::new("kill")
        .args(["-HUP", &s.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    s.wait_for_output("TLS certificate reloaded");
    // The connection opened before the reload still serves requests.
    assert_eq!(
        old.get(&probe)
            .send()
            .await
            .expect("same connection")
            .status()
            .as_u16(),
        202
    );
    // New connections get the new certificate: trusted by the new CA only.
    let fresh_new = client_for(Some(&paths.ca_cert));
    assert_eq!(
        fresh_new
            .get(&probe)
            .send()
            .await
            .expect("send")
            .status()
            .as_u16(),
        202
    );
    let fresh_old = s.client();
    assert!(
        fresh_old.get(&probe).send().await.is_err(),
        "old CA still accepted"
    );
    s.sigterm();
    let (status, _) = s.wait();
    assert!(status.success());
}

#[test]
fn app_update_changes_only_what_is_given() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    admin(
        &dir,
        &[
            "app",
            "add",
            "x-app",
            "--scope",
            "certificate",
            "--vendor",
            "Acme",
        ],
        None,
    );
    let v: Value = serde_json::from_str(&admin(
        &dir,
        &[
            "app",
            "update",
            "x-app",
            "--scope",
            "certificate:manage",
            "--renewable",
            "false",
            "--json",
        ],
        None,
    ))
    .expect("json");
    assert_eq!(v["scope"], "certificate:manage");
    assert_eq!(v["vendor"], "Acme");
    assert_eq!(v["renewable"], false);
    let bad = Command::new(BIN)
        .args([
            "--data-dir",
            dir.to_str().expect("utf-8"),
            "app",
            "update",
            "x-app",
            "--scope",
            "bogus",
        ])
        .output()
        .expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("result 17"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_show_says_locked_and_unlock_ends_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let s = Served::start(&dir, &[]);
    admin(
        &dir,
        &["user", "add", "bob", "--password-stdin"],
        Some("Bob-Password-1\n"),
    );
    admin(
        &dir,
        &["app", "add", "lock-app", "--scope", "certificate"],
        None,
    );
    admin(&dir, &["app", "allow", "lock-app", "everyone"], None);
    let client = s.client();
    for pw in ["w1", "w2", "w3", "w4", "w5", "Bob-Password-1"] {
        let r = grant(&client, &s.base, "lock-app", "bob", pw, "certificate").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{pw}");
    }
    let shown: Value =
        serde_json::from_str(&admin(&dir, &["user", "show", "bob", "--json"], None)).expect("json");
    assert_eq!(shown["state"], "locked", "{shown}");
    assert_eq!(shown["failed_logins"], 5);
    assert!(shown["locked_until"].is_i64());
    admin(&dir, &["user", "unlock", "bob"], None);
    let shown: Value =
        serde_json::from_str(&admin(&dir, &["user", "show", "bob", "--json"], None)).expect("json");
    assert_eq!(shown["state"], "active");
    let r = grant(
        &client,
        &s.base,
        "lock-app",
        "bob",
        "Bob-Password-1",
        "certificate",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let audit = std::fs::read_to_string(dir.join("audit.log")).expect("audit");
    assert!(audit.contains("\"event\":\"lockout\""));
    assert!(audit.contains("\"event\":\"unlock\""));
    s.sigterm();
    assert!(s.wait().0.success());
}

fn audit_lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every audit line is JSON"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_user_change_is_audited_and_a_new_password_revokes_grants() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let s = Served::start(&dir, &[]);
    let client = s.client();
    admin(
        &dir,
        &[
            "user",
            "add",
            "carl",
            "--password-stdin",
            "--email",
            "c@x.test",
        ],
        Some("Carl-Password-1\n"),
    );
    admin(
        &dir,
        &["app", "add", "audit-app", "--scope", "certificate"],
        None,
    );
    admin(&dir, &["app", "allow", "audit-app", "carl"], None);
    // A refused change is audited too, with its reason.
    let (ok, _, _) = admin_outcome(
        &dir,
        &["user", "add", "carl", "--password-stdin"],
        Some("Carl-Password-9\n"),
    );
    assert!(!ok, "a second carl was added");
    let first = grant(
        &client,
        &s.base,
        "audit-app",
        "carl",
        "Carl-Password-1",
        "certificate",
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let identity = first.str("identity");
    // A new password ends the grants made with the old one: the refresh token is dead at once
    // (the store is read on every refresh).
    let changed: Value = serde_json::from_str(&admin(
        &dir,
        &["user", "passwd", "carl", "--password-stdin", "--json"],
        Some("Carl-Password-2\n"),
    ))
    .expect("json");
    assert_eq!(changed["grants_revoked"], 1, "{changed}");
    let refresh = Reply::read(
        client
            .post(format!("{}/vedauth/authorize/token", s.base))
            .json(&json!({"client_id": "audit-app", "refresh_token": first.str("refresh_token")}))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(refresh.status.as_u16(), 400, "{}", refresh.text);
    let second = grant(
        &client,
        &s.base,
        "audit-app",
        "carl",
        "Carl-Password-2",
        "certificate",
    )
    .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    // Grants are listed by identity, which may be given by name.
    let listed: Value = serde_json::from_str(&admin(
        &dir,
        &["grant", "list", "--identity", "carl", "--json"],
        None,
    ))
    .expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["identity"], identity.as_str());
    admin(&dir, &["user", "disable", "carl"], None);
    admin(&dir, &["user", "enable", "carl"], None);
    admin(&dir, &["user", "unlock", "carl"], None);
    admin(&dir, &["user", "remove", "carl"], None);
    admin(&dir, &["app", "remove", "audit-app"], None);

    let events = audit_lines(&dir);
    let changes: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "admin_change")
        .filter_map(|e| e["cause"].as_str())
        .collect();
    for op in [
        "add_user",
        "change_password",
        "disable_user",
        "enable_user",
        "remove_user",
        "delete_application",
    ] {
        assert!(changes.contains(&op), "{op} not audited: {changes:?}");
    }
    let refused = events
        .iter()
        .find(|e| e["event"] == "admin_refused")
        .expect("admin_refused");
    assert_eq!(refused["cause"], "add_user");
    assert!(
        refused["detail"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("already exists")),
        "{refused}"
    );
    let added = events
        .iter()
        .find(|e| e["cause"] == "add_user" && e["event"] == "admin_change")
        .expect("add_user");
    assert_eq!(added["identity"], "operator (command line)");
    assert_eq!(added["detail"]["user"], "carl");
    assert_eq!(added["detail"]["identity"], identity.as_str());
    let removed = events
        .iter()
        .find(|e| e["cause"] == "remove_user")
        .expect("remove_user");
    assert_eq!(removed["detail"]["identity"], identity.as_str());
    assert!(events
        .iter()
        .any(|e| e["event"] == "unlock" && e["identity"] == identity.as_str()));
    let raw = std::fs::read_to_string(dir.join("audit.log")).expect("audit");
    for secret in [
        "Carl-Password-1",
        "Carl-Password-2",
        "Carl-Password-9",
        "$argon2id$",
    ] {
        assert!(!raw.contains(secret), "{secret} in the audit trail");
    }
    s.sigterm();
    assert!(s.wait().0.success());
}

#[test]
fn the_command_line_refuses_unbounded_validities_short_passwords_and_bad_names() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    // 100 years of 365.25 days is the longest validity.
    const BOUND: i64 = 3_155_760_000;
    let max = i64::MAX.to_string();
    let over = (BOUND + 1).to_string();
    let at = BOUND.to_string();
    for (flag, value) in [
        ("--access-validity", max.as_str()),
        ("--grant-validity", max.as_str()),
        ("--access-validity", over.as_str()),
        ("--grant-validity", over.as_str()),
    ] {
        let (ok, _, err) = admin_outcome(
            &dir,
            &["app", "add", "x", "--scope", "certificate", flag, value],
            None,
        );
        assert!(!ok, "{flag} {value} accepted");
        assert!(
            err.contains("100 years") && err.contains("result 6"),
            "{err}"
        );
    }
    admin(
        &dir,
        &[
            "app",
            "add",
            "x",
            "--scope",
            "certificate",
            "--access-validity",
            &at,
            "--grant-validity",
            &at,
        ],
        None,
    );
    let (ok, _, err) = admin_outcome(
        &dir,
        &["app", "allow", "x", "everyone", "--grant-validity", &max],
        None,
    );
    assert!(!ok && err.contains("100 years"), "{err}");
    for (name, value) in [
        ("DefaultAccessTokenValidity", max.as_str()),
        ("DefaultGrantValidity", over.as_str()),
    ] {
        let (ok, _, err) = admin_outcome(&dir, &["config", "set", name, value], None);
        assert!(!ok, "{name} {value} accepted");
        assert!(err.contains("100 years"), "{err}");
    }
    admin(&dir, &["config", "set", "DefaultGrantValidity", &at], None);

    let (ok, _, err) = admin_outcome(
        &dir,
        &["user", "add", "shorty", "--password-stdin"],
        Some("Only-11-chr\n"),
    );
    assert!(!ok && err.contains("12 characters"), "{err}");
    admin(
        &dir,
        &["user", "add", "shorty", "--password-stdin"],
        Some("Exactly-12ch\n"),
    );
    let (ok, _, err) = admin_outcome(
        &dir,
        &["user", "passwd", "shorty", "--password-stdin"],
        Some("short\n"),
    );
    assert!(!ok && err.contains("12 characters"), "{err}");
    for bad in ["a:b", "dom\\user", ""] {
        let (ok, _, err) = admin_outcome(
            &dir,
            &["user", "add", bad, "--password-stdin"],
            Some("Long-Enough-Pw-1\n"),
        );
        assert!(!ok, "{bad:?} accepted");
        assert!(err.contains("user name"), "{err}");
    }
    let users: Value =
        serde_json::from_str(&admin(&dir, &["user", "list", "--json"], None)).expect("json");
    assert_eq!(users.as_array().map(Vec::len), Some(1), "{users}");
    // A role number out of range is refused, not truncated (2^32 + 6 would be Admin).
    let (ok, _, err) = admin_outcome(&dir, &["role", "grant", "shorty", "4294967302"], None);
    assert!(!ok && err.contains("result 6"), "{err}");
    let roles: Value =
        serde_json::from_str(&admin(&dir, &["role", "list", "--json"], None)).expect("json");
    assert_eq!(roles, json!([]));
}
