//! `kill -9` of a SQLite server under load: the group-commit writer answers a request only
//! after the commit that holds its write is on disk, so every token answered 200 (and not
//! rotated away since) verifies after a restart on the same data directory, and every last
//! refresh token answered still refreshes. (PostgreSQL's counterpart: `multinode.rs`.)

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::binary::{admin, Served};
use crate::common::Reply;

pub(crate) const PW: &str = "Alice-Pw-0001";
pub(crate) const APP: &str = "vcert-sdk";
pub(crate) const SCOPE: &str = "certificate:manage";

/// A grant's latest token pair as a 200 answered it.
#[derive(Debug, Clone)]
pub(crate) struct Answered {
    pub(crate) access: String,
    pub(crate) refresh: String,
}

/// A response read whole, or None if the connection died before it was (the answer is lost).
async fn read(sent: reqwest::Result<reqwest::Response>) -> Option<(StatusCode, serde_json::Value)> {
    let resp = sent.ok()?;
    let status = resp.status();
    let text = resp.text().await.ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or_default()))
}

fn pair_of(v: &serde_json::Value) -> Answered {
    let field = |k: &str| v[k].as_str().expect("token in a 200").to_string();
    Answered {
        access: field("access_token"),
        refresh: field("refresh_token"),
    }
}

/// Bounded load on one server (alice's password grants on [`APP`]) until it is killed: 4 workers, at most 40 rounds each, until
/// `deadline`. Each round gets a grant and, every other round, refreshes it. Returns the pairs
/// answered 200; a refresh whose answer was lost leaves its grant out (the rotation may or may
/// not have committed).
pub(crate) async fn load_then_kill(s: &mut Served, deadline: Instant) -> Vec<Answered> {
    let (client, base) = (s.client(), s.base.clone());
    let answered = Arc::new(Mutex::new(Vec::<Answered>::new()));
    let successes = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..4 {
        let (client, base) = (client.clone(), base.clone());
        let (answered, successes) = (answered.clone(), successes.clone());
        workers.spawn(async move {
            for round in 0..40 {
                if Instant::now() > deadline {
                    break;
                }
                let sent = client
                    .post(format!("{base}/vedauth/authorize/oauth"))
                    .json(&json!({"client_id": APP, "username": "alice", "password": PW, "scope": SCOPE}))
                    .send()
                    .await;
                let Some((status, body)) = read(sent).await else {
                    // The server is gone; keep the round count bounded without spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                if status != StatusCode::OK {
                    continue;
                }
                let mut pair = pair_of(&body);
                successes.fetch_add(1, Ordering::SeqCst);
                if (round + w) % 2 == 0 {
                    let sent = client
                        .post(format!("{base}/vedauth/authorize/token"))
                        .json(&json!({"client_id": APP, "refresh_token": pair.refresh}))
                        .send()
                        .await;
                    match read(sent).await {
                        Some((StatusCode::OK, body)) => pair = pair_of(&body),
                        // Refused before any write: the grant's pair is unchanged.
                        Some((s, _)) if s.is_client_error() => {}
                        // Lost or failed: the rotation may or may not have committed.
                        _ => continue,
                    }
                }
                answered.lock().expect("lock").push(pair);
            }
        });
    }
    while successes.load(Ordering::SeqCst) < 20 {
        assert!(Instant::now() < deadline, "the load never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.kill9();
    workers.join_all().await;
    let out = std::mem::take(&mut *answered.lock().expect("lock"));
    out
}

/// Creates `dir` with a configuration file of the tests' cheap hash parameters (for the users'
/// hashes and the server alike: other parameters would rehash at each login) and no per-address
/// rate limit (all load comes from one address); returns its path.
pub(crate) fn cheap_config(dir: &Path) -> String {
    std::fs::create_dir_all(dir).expect("mkdir");
    let cfg = dir.join("node.toml");
    std::fs::write(
        &cfg,
        "[password_hash]\nmemory_kib = 64\niterations = 1\nparallelism = 1\n\n\
         [rate_limit]\nenabled = false\n",
    )
    .expect("config");
    cfg.to_str().expect("utf-8").to_string()
}

/// Runs an admin command with the configuration `cfg` on the data directory `dir`.
pub(crate) fn cli(dir: &Path, cfg: &str, args: &[&str], stdin: Option<&str>) -> String {
    let all: Vec<&str> = ["--config", cfg]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    admin(dir, &all, stdin)
}

/// A SQLite data directory with `alice` (password [`PW`]) and [`APP`] open to everyone, made
/// with the command line; returns the configuration's path.
pub(crate) fn sqlite_node(dir: &Path) -> String {
    let cfg = cheap_config(dir);
    cli(
        dir,
        &cfg,
        &["user", "add", "alice", "--password-stdin"],
        Some(&format!("{PW}\n")),
    );
    cli(dir, &cfg, &["app", "add", APP, "--scope", SCOPE], None);
    cli(dir, &cfg, &["app", "allow", APP, "everyone"], None);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_sqlite_server_under_load_loses_no_answered_token() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let cfg = sqlite_node(&dir);

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut kept: Vec<Answered> = Vec::new();
    for crash in 0..3 {
        let mut s = Served::start(&dir, &["--config", &cfg]);
        // What was answered before every earlier kill is still there.
        let client = s.client();
        for pair in &kept {
            let r = client
                .get(format!("{}/vedauth/authorize/verify", s.base))
                .bearer_auth(&pair.access)
                .send()
                .await
                .expect("verify");
            assert_eq!(
                r.status(),
                StatusCode::OK,
                "crash {crash}: a token answered before a kill no longer verifies"
            );
        }
        let answered = load_then_kill(&mut s, deadline).await;
        // At least 20 grants were answered before the kill; at most one refresh per worker
        // (4) was cut off with its answer.
        assert!(
            answered.len() >= 16,
            "crash {crash}: {} pairs",
            answered.len()
        );
        kept.extend(answered);
    }

    // After the last kill: every access token verifies, every last refresh token refreshes.
    let s = Served::start(&dir, &["--config", &cfg]);
    let client = s.client();
    for pair in &kept {
        let v = client
            .get(format!("{}/vedauth/authorize/verify", s.base))
            .bearer_auth(&pair.access)
            .send()
            .await
            .expect("verify");
        assert_eq!(v.status(), StatusCode::OK, "an answered access token");
        let r = client
            .post(format!("{}/vedauth/authorize/token", s.base))
            .json(&json!({"client_id": APP, "refresh_token": pair.refresh}))
            .send()
            .await
            .expect("refresh");
        let r = Reply::read(r).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "an answered refresh token: {}",
            r.text
        );
    }
    assert!(kept.len() >= 48, "{} pairs in all", kept.len());
    s.sigterm();
    let (status, _) = s.wait();
    assert!(status.success());
}
