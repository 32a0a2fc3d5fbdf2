//! PostgreSQL for the tests. One throwaway cluster per test process (or the one `scripts/test`
//! started, named by `VEDAUTH_TEST_PG_URL`), and a fresh database on it for each store.
//!
//! Clusters are run by `scripts/pg`. Each one this process starts is watched by a `scripts/pg
//! watch` process in its own process group, which stops and removes the cluster when this
//! process ends, however it ends.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use sqlx::{Connection, Executor, PgConnection};

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
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(SCRIPT)
            .arg("stop")
            .arg(&self.dir)
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
