//! The TLS files: a key that is not the certificate's (at start and on reload), lost files
//! (a new server certificate from the same CA, or a refusal), whole-file writes, and a data
//! directory that cannot be made private.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vedauth::app::App;
use vedauth::cli::serve::launch;
use vedauth::clock::ManualClock;
use vedauth::config::Config;
use vedauth::password::HashParams;
use vedauth::tls::{ensure_generated, TlsPaths};

use crate::common::{client_for, Options, TestServer};

const PROBE: &str = "/vedauth/authorize/isAuthServer";

// --- TLS files ---

/// Opens an app on `dir` and launches it; the launch error's text, if it failed.
async fn try_launch(dir: &Path, config: Config) -> Result<TestServerLite, String> {
    let listen = config.listen_addr().expect("listen");
    let app = Arc::new(
        App::open(
            config,
            dir,
            Arc::new(ManualClock::starting_now()),
            Some(HashParams::insecure_for_tests()),
        )
        .await
        .map_err(|e| e.to_string())?,
    );
    let launched = launch(app, listen).await.map_err(|e| format!("{e:#}"))?;
    Ok(TestServerLite { launched })
}

struct TestServerLite {
    launched: vedauth::cli::serve::Launched,
}

impl TestServerLite {
    /// Whether a client trusting `ca` gets an answer.
    async fn serves_with(&self, ca: &Path) -> bool {
        let url = format!("{}{PROBE}", self.launched.handle.base_url());
        match client_for(Some(ca)).get(url).send().await {
            Ok(r) => r.status().as_u16() == 202,
            Err(_) => false,
        }
    }

    async fn stop(self) {
        self.launched.handle.shutdown().await;
    }
}

fn test_config() -> Config {
    Options::default().config
}

/// A second, unrelated CA and server certificate.
fn other_pair(tmp: &Path) -> TlsPaths {
    let paths = TlsPaths::in_dir(&tmp.join("other"));
    assert!(ensure_generated(&paths).expect("generate"));
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_is_not_the_certificates_is_refused_at_start() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = TlsPaths::in_dir(&tmp.path().join("a"));
    assert!(ensure_generated(&a).expect("generate"));
    let b = other_pair(tmp.path());
    // Configured files.
    let mut config = test_config();
    config.tls_cert_file = Some(a.cert.clone());
    config.tls_key_file = Some(b.key.clone());
    let err = try_launch(&tmp.path().join("data1"), config)
        .await
        .err()
        .expect("a mismatched pair must not start");
    assert!(err.contains("does not belong"), "{err}");
    assert!(err.contains(&a.cert.display().to_string()), "{err}");
    assert!(err.contains(&b.key.display().to_string()), "{err}");
    // The generated files in the data directory.
    let data = tmp.path().join("data2");
    let started = try_launch(&data, test_config()).await.expect("first start");
    started.stop().await;
    let mine = TlsPaths::in_dir(&data);
    std::fs::copy(&b.key, &mine.key).expect("copy key");
    let err = try_launch(&data, test_config())
        .await
        .err()
        .expect("a mismatched pair must not start");
    assert!(err.contains("does not belong"), "{err}");
    assert!(err.contains("server.key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_is_not_the_certificates_is_refused_on_reload() {
    let s = TestServer::start().await;
    let certs = s.launched.certs.clone().expect("TLS");
    let ca = s.launched.ca_file.clone().expect("CA");
    let tmp = tempfile::tempdir().expect("tmp");
    let other = other_pair(tmp.path());
    std::fs::copy(&other.key, s.dir.join("tls/server.key")).expect("copy key");
    let err = certs.reload().expect_err("the reload must fail");
    assert!(err.to_string().contains("does not belong"), "{err}");
    // The old pair still serves new connections.
    let fresh = client_for(Some(&ca));
    let r = fresh.get(s.url(PROBE)).send().await.expect("handshake");
    assert_eq!(r.status().as_u16(), 202);
    // A pair that matches is taken.
    std::fs::copy(&other.cert, s.dir.join("tls/server.crt")).expect("copy cert");
    certs.reload().expect("a matching pair reloads");
    let r = client_for(Some(&other.ca_cert))
        .get(s.url(PROBE))
        .send()
        .await
        .expect("handshake with the new pair");
    assert_eq!(r.status().as_u16(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_server_key_or_certificate_is_reissued_by_the_same_ca() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let paths = TlsPaths::in_dir(&data);
    try_launch(&data, test_config())
        .await
        .expect("first start")
        .stop()
        .await;
    let ca_before = std::fs::read(&paths.ca_cert).expect("ca.crt");
    let ca_key_before = std::fs::read(&paths.ca_key).expect("ca.key");
    // A client that pinned the CA at first start.
    let pinned = tmp.path().join("pinned-ca.crt");
    std::fs::write(&pinned, &ca_before).expect("pin");
    for lost in [&paths.key, &paths.cert] {
        let leaf_before = std::fs::read(&paths.cert).expect("server.crt");
        std::fs::remove_file(lost).expect("remove");
        let s = try_launch(&data, test_config())
            .await
            .expect("starts with a new server certificate");
        assert_eq!(std::fs::read(&paths.ca_cert).expect("ca.crt"), ca_before);
        assert_eq!(std::fs::read(&paths.ca_key).expect("ca.key"), ca_key_before);
        assert_ne!(
            std::fs::read(&paths.cert).expect("server.crt"),
            leaf_before,
            "a new server certificate"
        );
        assert!(
            s.serves_with(&pinned).await,
            "the pinned CA still works after losing {}",
            lost.display()
        );
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incomplete_ca_stops_the_start_with_a_way_out() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (lost, names) in [
        (vec!["ca.crt"], "ca.crt"),
        (vec!["ca.key", "server.key"], "ca.key, server.key"),
    ] {
        let data = tmp.path().join(lost.join("-"));
        let paths = TlsPaths::in_dir(&data);
        try_launch(&data, test_config())
            .await
            .expect("first start")
            .stop()
            .await;
        let ca_key = std::fs::read(&paths.ca_key).expect("ca.key");
        for f in &lost {
            std::fs::remove_file(data.join("tls").join(f)).expect("remove");
        }
        let err = try_launch(&data, test_config())
            .await
            .err()
            .expect("must not make a new CA by itself");
        assert!(err.contains(&format!("{names} missing")), "{err}");
        assert!(err.contains("remove the directory"), "{err}");
        assert!(
            err.contains(&data.join("tls").display().to_string()),
            "{err}"
        );
        // Nothing was replaced.
        if !lost.contains(&"ca.key") {
            assert_eq!(std::fs::read(&paths.ca_key).expect("ca.key"), ca_key);
        }
        assert!(!paths.ca_cert.exists() || !lost.contains(&"ca.crt"));
        // The way out it names works: a new CA.
        std::fs::remove_dir_all(data.join("tls")).expect("remove tls");
        let s = try_launch(&data, test_config()).await.expect("starts over");
        assert!(s.serves_with(&paths.ca_cert).await);
        s.stop().await;
    }
}

#[test]
fn key_and_certificate_files_are_replaced_whole() {
    let tmp = tempfile::tempdir().expect("tmp");
    let target = tmp.path().join("server.key");
    std::fs::write(&target, "old").expect("write");
    // A second name for the same file: an in-place write would change it too.
    let twin = tmp.path().join("twin");
    std::fs::hard_link(&target, &twin).expect("link");
    vedauth::bootstrap::write_private_or_public(&target, b"new", true).expect("write");
    assert_eq!(std::fs::read_to_string(&target).expect("read"), "new");
    assert_eq!(std::fs::read_to_string(&twin).expect("read"), "old");
    let names: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .expect("list")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A first start writes the whole tls directory at once.
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    assert!(ensure_generated(&TlsPaths::in_dir(&data)).expect("generate"));
    let left: Vec<_> = std::fs::read_dir(&data)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("tls")]);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_data_directory_that_cannot_be_made_private_is_refused() {
    // procfs refuses chmod even to root: a directory whose mode cannot be set.
    let err = App::open(
        test_config(),
        Path::new("/proc/self/fdinfo"),
        Arc::new(ManualClock::starting_now()),
        Some(HashParams::insecure_for_tests()),
    )
    .await
    .expect_err("must refuse")
    .to_string();
    assert!(err.contains("/proc/self/fdinfo"), "{err}");
    assert!(err.contains("0700"), "{err}");
}
