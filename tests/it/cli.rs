//! The command line as a person or a script meets it, through the built binary.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_vedauth");

fn data(dir: &Path) -> &str {
    dir.to_str().expect("utf-8 path")
}

/// The binary with stdin closed; (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run vedauth");
    triple(out)
}

fn triple(out: Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// What `build.rs` told cargo to watch, from this very build's record of it: the files that
/// name the revision (HEAD, the branch, packed-refs), never the index, which `git status`
/// rewrites (a rebuild of the whole binary after the first admin command on a fresh clone).
#[test]
fn the_build_script_watches_what_names_the_revision_not_the_index() {
    let out_dir = Path::new(env!("OUT_DIR"));
    let record = out_dir
        .parent()
        .map(|d| d.join("output"))
        .expect("build directory");
    let record = std::fs::read_to_string(&record).expect("the build script's output");
    let watched: Vec<std::path::PathBuf> = record
        .lines()
        .filter_map(|l| {
            l.strip_prefix("cargo:rerun-if-changed=")
                .or_else(|| l.strip_prefix("cargo::rerun-if-changed="))
        })
        .map(|p| Path::new(env!("CARGO_MANIFEST_DIR")).join(p))
        .collect();
    assert!(!watched.is_empty(), "{record}");
    assert!(
        !watched.iter().any(|p| p.ends_with("index")),
        "the index is watched:\n{record}"
    );
    let git = |args: &[&str]| -> Option<String> {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let watched: Vec<_> = watched.iter().map(|p| canonical(p)).collect();
    let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) else {
        return; // not built from a git checkout: nothing else to watch
    };
    let head = canonical(&Path::new(env!("CARGO_MANIFEST_DIR")).join(head));
    assert!(watched.contains(&head), "{head:?} not in\n{record}");
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        let file = git(&["rev-parse", "--git-path", &branch]).expect("git-path");
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let expect = if file.exists() {
            canonical(&file)
        } else {
            canonical(file.parent().expect("refs directory"))
        };
        assert!(watched.contains(&expect), "{expect:?} not in\n{record}");
    }
    // The version names the revision it was built from, and only that.
    let rev = git(&["rev-parse", "--short=12", "HEAD"]).expect("rev");
    let (_, version, _) = run(&["--version"]);
    assert_eq!(version.trim(), format!("vedauth 0.1.0 (git {rev})"));
}

/// PostgreSQL over TLS trusts the system's certificate authorities, as the directory
/// connections do: an enterprise CA installed on the machine works for both. The CA here is
/// made for the test and named by `SSL_CERT_FILE`, which the system-store loader honours in
/// place of the distribution's bundle (so the test leaves the machine's store alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tls_trusts_the_systems_certificate_authorities() {
    use sqlx::{Connection, Executor, Row};
    use std::os::unix::fs::MetadataExt;
    let cluster = tokio::task::spawn_blocking(crate::pg::Cluster::start)
        .await
        .expect("cluster");
    // A CA and a certificate for 127.0.0.1, installed in the cluster's data directory.
    let tmp = tempfile::tempdir().expect("tmp");
    let paths = vedauth::tls::TlsPaths::in_dir(tmp.path());
    assert!(vedauth::tls::ensure_generated(&paths).expect("generate"));
    let mut conn = sqlx::PgConnection::connect(&cluster.url)
        .await
        .expect("connect");
    let data_dir: String = conn
        .fetch_one("SHOW data_directory")
        .await
        .expect("data_directory")
        .get(0);
    let owner = std::fs::metadata(&data_dir).expect("stat");
    for (from, to) in [
        (&paths.cert, "test-server.crt"),
        (&paths.key, "test-server.key"),
    ] {
        let dest = Path::new(&data_dir).join(to);
        std::fs::copy(from, &dest).expect("copy");
        std::os::unix::fs::chown(&dest, Some(owner.uid()), Some(owner.gid())).expect("chown");
        std::fs::set_permissions(&dest, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
    }
    for sql in [
        "ALTER SYSTEM SET ssl_cert_file = 'test-server.crt'",
        "ALTER SYSTEM SET ssl_key_file = 'test-server.key'",
        "ALTER SYSTEM SET ssl = on",
        "SELECT pg_reload_conf()",
    ] {
        conn.execute(sql).await.expect(sql);
    }
    let _ = conn.close().await;
    let url = format!("{}?sslmode=verify-full", cluster.url);
    let dir = tmp.path().join("data");
    let list = |ca: Option<&Path>| {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "--data-dir",
            data(&dir),
            "--database-url",
            &url,
            "app",
            "list",
            "--json",
        ])
        .stdin(Stdio::null());
        match ca {
            Some(ca) => cmd.env("SSL_CERT_FILE", ca),
            // An empty bundle: nothing trusted.
            None => cmd.env("SSL_CERT_FILE", "/dev/null"),
        };
        triple(cmd.output().expect("run"))
    };
    // The reload is asynchronous: wait (bounded) until TLS is on.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out, err) = list(Some(&paths.ca_cert));
        if code == 0 {
            let apps: Value = serde_json::from_str(&out).expect("json");
            assert!(apps.is_array(), "{out}");
            break;
        }
        assert!(Instant::now() < deadline, "never connected over TLS: {err}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, _, err) = list(None);
    assert_ne!(code, 0, "connected without trusting the CA");
    assert!(
        err.to_lowercase().contains("certificate") || err.to_lowercase().contains("tls"),
        "{err}"
    );
}
