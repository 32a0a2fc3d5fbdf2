//! PostgreSQL for the tests. One throwaway cluster per test process (or the one `scripts/test`
//! started, named by `VEDAUTH_TEST_PG_URL`), a fresh database on it for each store or group of
//! nodes, and dedicated clusters for tests that stop and start the server.
//!
//! Clusters are run by `scripts/pg`. Each one this process starts is watched by a `scripts/pg
//! watch` process in its own process group, which stops and removes the cluster when this
//! process ends, however it ends.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection, Row};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg");

fn script(args: &[&str]) -> String {
    let out = Command::new(SCRIPT)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/pg");
    assert!(
        out.status.success(),
        "scripts/pg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A cluster of our own, in a temporary directory.
pub struct Cluster {
    dir: PathBuf,
    pub url: String,
}

impl Cluster {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vedauth-pg-")
            .tempdir()
            .expect("tempdir")
            .keep();
        let d = dir.to_str().expect("utf-8 path");
        // Never waited for: the watchdog is meant to outlive this process.
        #[allow(clippy::zombie_processes)]
        Command::new(SCRIPT)
            .args(["watch", &std::process::id().to_string(), d])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group: a Ctrl-C to the test run must not take the watchdog with it.
            .process_group(0)
            .spawn()
            .expect("spawn the cluster watchdog");
        let url = script(&["start", d]);
        Self { dir, url }
    }

    fn dir(&self) -> &str {
        self.dir.to_str().expect("utf-8 path")
    }

    /// `pg_ctl stop -m fast`: open connections are cut.
    pub async fn stop(&self) {
        let d = self.dir().to_string();
        tokio::task::spawn_blocking(move || script(&["stop", &d]))
            .await
            .expect("stop");
    }

    /// Starts the stopped cluster again, on the same port.
    pub async fn start_again(&self) {
        let d = self.dir().to_string();
        let url = tokio::task::spawn_blocking(move || script(&["start", &d]))
            .await
            .expect("start");
        assert_eq!(url, self.url, "the cluster came back elsewhere");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(SCRIPT)
            .args(["stop", self.dir()])
            .stdin(Stdio::null())
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The superuser URL of the shared cluster; started on first use.
pub fn server_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("VEDAUTH_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let cluster = Cluster::start();
            let url = cluster.url.clone();
            // Lives as long as the process; the watchdog stops it after.
            std::mem::forget(cluster);
            url
        }
    })
    .clone()
}

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let mut u = reqwest::Url::parse(url).expect("database URL");
    u.set_path(&format!("/{db}"));
    u.to_string()
}

/// The database name in a URL.
pub fn database_of(url: &str) -> String {
    let u = reqwest::Url::parse(url).expect("database URL");
    u.path().trim_start_matches('/').to_string()
}

/// A new, empty database on the cluster at `server`; returns its URL.
pub async fn fresh_database_on(server: &str) -> String {
    let name = format!("vt_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(server)
        .await
        .expect("connect as superuser");
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create database");
    conn.close().await.expect("close");
    with_database(server, &name)
}

/// A new, empty database on the shared cluster.
pub async fn fresh_database() -> String {
    let server = tokio::task::spawn_blocking(server_url)
        .await
        .expect("cluster");
    fresh_database_on(&server).await
}

/// How many sessions on the database of `url` are LISTENing (their last statement was one).
pub async fn listeners(url: &str) -> i64 {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM pg_stat_activity
         WHERE datname = $1 AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
    )
    .bind(database_of(url))
    .fetch_one(&mut conn)
    .await
    .expect("pg_stat_activity");
    let _ = conn.close().await;
    row.get::<i64, _>("n")
}

/// Waits (bounded) until `n` nodes listen for invalidations on the database of `url`.
pub async fn wait_for_listeners(url: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let have = listeners(url).await;
        if have >= n {
            return;
        }
        assert!(Instant::now() < deadline, "only {have} of {n} nodes listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
