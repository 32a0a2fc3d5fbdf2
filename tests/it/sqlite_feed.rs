//! Revocations made by another process on a SQLite store (the command line) reach the running
//! server within about a second, through the store's invalidation table: the server's verify
//! cache (30 s) does not keep a revoked token alive.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use vedauth::store::sqlite::SqliteStore;
use vedauth::store::{Invalidation, InvalidationFeed};
use vedauth::token::TokenDigest;

use crate::binary::Served;
use crate::common::Reply;
use crate::crash::{cli, sqlite_node, APP, PW, SCOPE};

/// How long a revocation by another process may take to reach the server: the feed is polled
/// every 500 ms; the margin is for a loaded machine. (The verify cache keeps tokens 30 s.)
const BOUND: Duration = Duration::from_secs(3);

async fn verify(client: &reqwest::Client, base: &str, token: &str) -> StatusCode {
    Reply::get(
        client,
        &format!("{base}/vedauth/authorize/verify"),
        Some(token),
    )
    .await
    .status
}

/// Polls until the server refuses `token`, for at most [`BOUND`] from now.
async fn refused_soon(client: &reqwest::Client, base: &str, token: &str, what: &str) {
    let start = Instant::now();
    loop {
        match verify(client, base, token).await {
            StatusCode::UNAUTHORIZED => return,
            StatusCode::OK => {}
            other => panic!("{what}: {other}"),
        }
        assert!(
            start.elapsed() < BOUND,
            "{what}: the server still accepts the token after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_by_the_command_line_reaches_the_running_server_within_seconds() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let cfg = sqlite_node(&dir);
    let cli = |args: &[&str]| cli(&dir, &cfg, args, None);
    let s = Served::start(&dir, &["--config", &cfg]);
    let client = s.client();
    let token = || async {
        let r = client
            .post(format!("{}/vedauth/authorize/oauth", s.base))
            .json(&json!({"client_id": APP, "username": "alice", "password": PW, "scope": SCOPE}))
            .send()
            .await
            .expect("grant");
        assert_eq!(r.status(), StatusCode::OK);
        let v: serde_json::Value = r.json().await.expect("json");
        v["access_token"].as_str().expect("token").to_string()
    };

    // `grant revoke` from another process.
    let access = token().await;
    assert_eq!(verify(&client, &s.base, &access).await, StatusCode::OK);
    assert_eq!(
        verify(&client, &s.base, &access).await,
        StatusCode::OK,
        "cached now"
    );
    let out = cli(&["grant", "revoke", "--client-id", APP]);
    assert!(out.contains("1 grant"), "{out}");
    refused_soon(&client, &s.base, &access, "grant revoke").await;

    // `user disable` from another process.
    let access = token().await;
    assert_eq!(verify(&client, &s.base, &access).await, StatusCode::OK);
    cli(&["user", "disable", "alice"]);
    refused_soon(&client, &s.base, &access, "user disable").await;

    s.sigterm();
    let (status, _) = s.wait();
    assert!(status.success());
}

async fn next(rx: &mut tokio::sync::broadcast::Receiver<Invalidation>) -> Invalidation {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an invalidation within 10 s")
        .expect("the feed is open")
}

#[tokio::test]
async fn the_sqlite_feed_carries_another_process_announcements_and_says_when_it_missed_some() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("feed.db");
    // The server's store follows; the other process's store (here another handle on the same
    // file) announces.
    let server = SqliteStore::open(&path, 2).await.expect("open");
    let cli = SqliteStore::open(&path, 2).await.expect("open");
    let mut feed = server.invalidations().expect("a feed");
    // Following starts with "drop everything": what was cached before is of unknown state.
    assert_eq!(next(&mut feed).await, Invalidation::All);
    let digests: Vec<TokenDigest> = (0..1200)
        .map(|i| TokenDigest::of(&format!("t{i}")))
        .collect();
    cli.announce_invalidation(&digests).await.expect("announce");
    for d in &digests {
        assert_eq!(next(&mut feed).await, Invalidation::Token(*d));
    }
    // The server announces nothing of its own (its cache dropped the tokens already, and
    // nobody else follows): the table gets no row from it.
    server
        .announce_invalidation(&digests[..1])
        .await
        .expect("announce");
    let rows = || async {
        let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
            "sqlite:{}",
            path.display()
        ))
        .await
        .expect("connect");
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM invalidations")
            .fetch_one(&mut c)
            .await
            .expect("count");
        n
    };
    assert_eq!(rows().await, 1200);
    // The server's sweep prunes what its follower has read.
    vedauth::store::GrantStore::sweep_expired(&server, 0, 100)
        .await
        .expect("sweep");
    assert_eq!(rows().await, 0);
    // Rows that vanish before the follower read them (another server's sweep): the follower
    // says it may have missed announcements. (One transaction, so that the follower cannot
    // read the first row in between.)
    let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite:{}",
        path.display()
    ))
    .await
    .expect("connect");
    let mut tx = sqlx::Connection::begin(&mut c).await.expect("begin");
    for d in &digests[..2] {
        sqlx::query("INSERT INTO invalidations (digest) VALUES ($1)")
            .bind(&d.0[..])
            .execute(&mut *tx)
            .await
            .expect("insert");
    }
    sqlx::query("DELETE FROM invalidations WHERE seq = (SELECT MIN(seq) FROM invalidations)")
        .execute(&mut *tx)
        .await
        .expect("delete");
    tx.commit().await.expect("commit");
    assert_eq!(next(&mut feed).await, Invalidation::All);
    assert_eq!(next(&mut feed).await, Invalidation::Token(digests[1]));
}
