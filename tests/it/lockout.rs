//! Lockout under concurrency: right passwords are never refused because other checks of the
//! same identity were under way, while wrong guesses still get no more checks than the
//! threshold (that half is `security::fifty_parallel_wrong_passwords_check_exactly_five_then_lock`).

use std::time::Instant;

use reqwest::StatusCode;
use serde_json::{json, Value};
use vedauth::password::HashParams;

use crate::common::{Options, Reply, TestServer};

const OAUTH: &str = "/vedauth/authorize/oauth";

fn audit_events(s: &TestServer) -> Vec<Value> {
    let text = std::fs::read_to_string(s.dir.join("audit.log")).expect("audit log");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("every audit line is JSON"))
        .collect()
}

/// One hashing thread and a costly hash: 64 checks take well over the 10 s that attempts used
/// to wait for a free lockout slot before being refused as "locked".
fn slow_single_thread() -> Options {
    let mut o = Options {
        hash: HashParams {
            memory_kib: 8 * 1024,
            iterations: 48,
            parallelism: 1,
        },
        ..Options::default()
    };
    o.config.password_hash.threads = 1;
    o.config.password_hash.queue = 64;
    // The whole burst is served by one thread: give each request the time it needs.
    o.config.http.request_timeout_secs = 300;
    o.config.lockout.wait_secs = 290;
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_right_passwords_all_get_tokens() {
    let s = TestServer::start_with(slow_single_thread()).await;
    s.setup_basic("svc-ci", "svc-ci-password", "vcert-sdk", "certificate")
        .await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (client, url) = (s.client.clone(), s.url(OAUTH));
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .json(&json!({"client_id": "vcert-sdk", "username": "svc-ci", "password": "svc-ci-password", "scope": "certificate"}))
                .send()
                .await
                .expect("send");
            Reply::read(r).await
        }));
    }
    let mut refused = Vec::new();
    for t in tasks {
        let r = t.await.expect("join");
        if r.status != StatusCode::OK {
            refused.push(format!("{} {}", r.status, r.text));
        }
    }
    eprintln!("64 logins took {:?}", started.elapsed());
    let events = audit_events(&s);
    let failed: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "login_failed")
        .collect();
    assert!(
        refused.is_empty(),
        "{} of 64 right passwords refused: {:?}; audit: {failed:?}",
        refused.len(),
        refused.first()
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "grant_issued")
            .count(),
        64
    );
}

/// Fifty wrong guesses spread over two nodes on one PostgreSQL database: the store's
/// compare-and-swap still allows exactly five checks in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_the_budget_of_wrong_guesses() {
    let db = crate::pg::fresh_database().await;
    let a = TestServer::start_with(Options::on_database(&db)).await;
    let b = TestServer::start_with(Options::on_database(&db)).await;
    a.setup_basic("alice", "alice-pw", "vcert-sdk", "certificate")
        .await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let node = if i % 2 == 0 { &a } else { &b };
        let (client, url) = (node.client.clone(), node.url(OAUTH));
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .json(&json!({"client_id": "vcert-sdk", "username": "alice", "password": format!("wrong-{i}"), "scope": "certificate"}))
                .send()
                .await
                .expect("send");
            Reply::read(r).await
        }));
    }
    for t in tasks {
        let r = t.await.expect("join");
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
    let causes: Vec<String> = [&a, &b]
        .iter()
        .flat_map(|s| audit_events(s))
        .filter(|e| e["event"] == "login_failed")
        .map(|e| e["cause"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(causes.len(), 50);
    assert_eq!(causes.iter().filter(|c| *c == "wrong_password").count(), 5);
    assert_eq!(causes.iter().filter(|c| *c == "locked").count(), 45);
}

/// Right passwords through two nodes at once: slots held by the other node are waited for,
/// not answered "locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_serve_concurrent_right_passwords() {
    let db = crate::pg::fresh_database().await;
    let opts = || {
        let mut o = Options::on_database(&db);
        o.config.password_hash.threads = 1;
        o
    };
    let a = TestServer::start_with(opts()).await;
    let b = TestServer::start_with(opts()).await;
    a.setup_basic("svc", "svc-password", "vcert-sdk", "certificate")
        .await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let node = if i % 2 == 0 { &a } else { &b };
        let (client, url) = (node.client.clone(), node.url(OAUTH));
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .json(&json!({"client_id": "vcert-sdk", "username": "svc", "password": "svc-password", "scope": "certificate"}))
                .send()
                .await
                .expect("send");
            Reply::read(r).await
        }));
    }
    for t in tasks {
        let r = t.await.expect("join");
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
}

mod direct {
    //! The lockout on its own, on a real SQLite store, with a manual clock.

    use std::sync::Arc;
    use std::time::Duration;

    use vedauth::clock::ManualClock;
    use vedauth::lockout::{Begin, Lockout, LockoutPolicy, Outcome};
    use vedauth::store::sqlite::SqliteStore;

    async fn lockout(threshold: u32, wait_secs: u64) -> (Lockout, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("l.db"), 4)
            .await
            .expect("store");
        let policy = LockoutPolicy {
            threshold,
            wait_secs,
            ..LockoutPolicy::default()
        };
        let l = Lockout::new(
            Arc::new(store),
            Arc::new(ManualClock::starting_now()),
            policy,
        );
        (l, dir)
    }

    fn allowed(b: Begin) -> vedauth::lockout::Reservation {
        match b {
            Begin::Allowed(r) => r,
            other => panic!("expected a reservation, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_success_lets_the_waiting_attempt_through() {
        let (l, _dir) = lockout(1, 60).await;
        let first = allowed(l.begin("local:{a}").await.expect("begin"));
        let l2 = l.clone();
        let waiter = tokio::spawn(async move { l2.begin("local:{a}").await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished(), "the only slot is taken: it waits");
        assert_eq!(first.end(Outcome::Success).await.expect("end"), None);
        let second = allowed(waiter.await.expect("join").expect("begin"));
        second.end(Outcome::Success).await.expect("end");
    }

    #[tokio::test]
    async fn a_waiter_that_runs_out_of_time_is_busy_not_locked() {
        let (l, _dir) = lockout(1, 1).await;
        let held = allowed(l.begin("local:{b}").await.expect("begin"));
        match l.begin("local:{b}").await.expect("begin") {
            Begin::Busy => {}
            other => panic!("expected Busy, got {other:?}"),
        }
        held.end(Outcome::Failure).await.expect("end");
        assert!(matches!(
            l.begin("local:{b}").await.expect("begin"),
            Begin::Locked { .. }
        ));
    }

    #[tokio::test]
    async fn a_dropped_reservation_gives_its_slot_back() {
        let (l, _dir) = lockout(1, 10).await;
        // A request cancelled mid-check (the client hung up) must not hold the slot.
        drop(allowed(l.begin("local:{c}").await.expect("begin")));
        let again = allowed(l.begin("local:{c}").await.expect("begin"));
        again.end(Outcome::Failure).await.expect("end");
        assert_eq!(l.state("local:{c}").await.expect("state").failures, 1);
    }
}
