//! A store that cannot serve says so: a damaged SQLite file is refused at start with a clear
//! message, the readiness check is honest while writes fail (a full database), and a store
//! this data directory saw holding data is not bootstrapped afresh when found empty.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vedauth::store::sqlite::{SqliteOptions, SqliteStore};
use vedauth::store::{
    ApplicationStore, Grant, GrantFilter, GrantStore, Store, StoreError, User, UserStore,
};
use vedauth::token::TokenDigest;

use crate::binary::Served;

const BIN: &str = env!("CARGO_BIN_EXE_vedauth");

/// Runs `vedauth --data-dir DIR serve` and waits (bounded) for it to exit; returns (exited
/// with success, standard error). A server that starts is killed and counts as a failure to
/// refuse.
fn serve_expecting_exit(dir: &Path) -> (bool, String) {
    let mut child = Command::new(BIN)
        .args(["--data-dir", dir.to_str().expect("utf-8")])
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vedauth serve did not refuse to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    (status.success(), err)
}

/// Overwrites page `n` (1-based) of a SQLite file with bytes no page can hold.
fn damage_page(path: &Path, n: u64) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut header = [0u8; 18];
    f.read_exact(&mut header).expect("header");
    let size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        s => u64::from(s),
    };
    assert!(f.metadata().expect("len").len() >= n * size, "no page {n}");
    f.seek(SeekFrom::Start((n - 1) * size)).expect("seek");
    f.write_all(&vec![0xA5; size as usize]).expect("write");
    f.sync_all().expect("sync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_sqlite_file_is_refused_at_start_with_a_clear_message() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let s = Served::start(&dir, &[]);
    s.sigterm();
    let (status, _) = s.wait();
    assert!(status.success());
    let db = dir.join("vedauth.db");
    // Page 2 is the root of the first table made (users).
    damage_page(&db, 2);

    // The store refuses to open it, naming the file and the check.
    let e = SqliteStore::open(&db, 2)
        .await
        .expect_err("a damaged file opens");
    let msg = e.to_string();
    assert!(matches!(e, StoreError::Corrupt(_)), "{msg}");
    assert!(msg.contains("damaged"), "{msg}");
    assert!(msg.contains("quick_check"), "{msg}");
    assert!(msg.contains(&db.display().to_string()), "{msg}");

    // And so does the server, before it listens.
    let (ok, err) = serve_expecting_exit(&dir);
    assert!(!ok, "{err}");
    assert!(err.contains("is damaged"), "{err}");
}

fn grant(i: usize) -> Grant {
    Grant {
        id: format!("g{i}").into(),
        client_id: "a".into(),
        identity: "local:{x}".into(),
        granted_to: "everyone".into(),
        scope: crate::common::canon("certificate"),
        issued_at: 0,
        expires_at: None,
        renewable: true,
        access_validity: 100,
        access_digest: TokenDigest::of(&format!("a{i}")),
        access_issued_at: 0,
        access_expires_at: 100,
        refresh_digest: Some(TokenDigest::of(&format!("r{i}"))),
    }
}

#[tokio::test]
async fn readiness_is_honest_while_writes_fail_for_a_full_database() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("full.db");
    // A database capped at 64 pages: a write past them fails as on a full disk (SQLITE_FULL).
    let mut o = SqliteOptions::new(2);
    o.max_page_count = Some(64);
    let s = SqliteStore::open_with(&path, &o).await.expect("open");
    s.create_application(&crate::common::app_record("a", "certificate", 0))
        .await
        .expect("app");
    s.ready().await.expect("ready at first");

    // Fill it (bounded: 64 pages hold far fewer than 20,000 grants).
    let mut stored = 0;
    let failure = loop {
        assert!(stored < 20_000, "the cap never hit");
        match s.insert_grant(&grant(stored)).await {
            Ok(()) => stored += 1,
            Err(e) => break e,
        }
    };
    assert!(stored > 0);
    assert!(matches!(failure, StoreError::Unavailable(_)), "{failure}");
    assert!(failure.to_string().contains("full"), "{failure}");
    // Not ready, and saying why; reads still work.
    let not_ready = s.ready().await.expect_err("ready while writes fail");
    assert!(not_ready.to_string().contains("full"), "{not_ready}");
    assert!(s
        .grant_by_access(&TokenDigest::of("a0"))
        .await
        .expect("read")
        .is_some());
    // Still not ready on a second look (the probe needs room as a write does).
    assert!(s.ready().await.is_err());

    // Room again: ready, and writes pass.
    let gone = s
        .delete_grants(&GrantFilter::default())
        .await
        .expect("delete");
    assert_eq!(gone.len(), stored);
    s.ready().await.expect("ready once a write passes");
    s.insert_grant(&grant(0)).await.expect("a write after");
    let u = User {
        id: uuid::Uuid::new_v4().to_string(),
        name: "after".into(),
        full_name: None,
        email: None,
        password_hash: "x".into(),
        disabled: false,
        created_at: 0,
    };
    s.create_user(&u).await.expect("another write after");
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_database_is_refused_rather_than_bootstrapped_afresh() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let s = Served::start(&dir, &[]);
    s.sigterm();
    let (status, _) = s.wait();
    assert!(status.success());
    let db = dir.join("vedauth.db");
    let admin_id = || async {
        let s = SqliteStore::open(&db, 1).await.expect("open");
        let id = UserStore::user_by_name(&s, "admin")
            .await
            .expect("read")
            .map(|u| u.id);
        s.close().await;
        id
    };
    let first = admin_id().await.expect("the first administrator");

    // The database file is emptied (truncated, as a failed copy or a full disk can leave it).
    std::fs::File::create(&db).expect("truncate");
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("vedauth.db{ext}")));
    }
    let (ok, err) = serve_expecting_exit(&dir);
    assert!(!ok, "{err}");
    assert!(err.contains("is empty"), "{err}");
    assert!(err.contains(vedauth::bootstrap::STORES_FILE), "{err}");
    assert_eq!(admin_id().await, None, "no new administrator");

    // On purpose: without the line, the store is bootstrapped afresh.
    std::fs::remove_file(dir.join(vedauth::bootstrap::STORES_FILE)).expect("remove");
    let s = Served::start(&dir, &[]);
    s.sigterm();
    let (status, _) = s.wait();
    assert!(status.success());
    let second = admin_id().await.expect("a new administrator");
    assert_ne!(first, second);
}

#[tokio::test]
async fn a_data_directory_of_a_store_with_data_remembers_it() {
    // A data directory from before the list existed: the store holds data, no list.
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("vedauth.db");
    let store = SqliteStore::open(&path, 2).await.expect("open");
    let pool = vedauth::password::HashPool::start(
        vedauth::password::HashParams::insecure_for_tests(),
        1,
        0,
    )
    .expect("pool");
    UserStore::create_user(
        &store,
        &User {
            id: uuid::Uuid::new_v4().to_string(),
            name: "alice".into(),
            full_name: None,
            email: None,
            password_hash: "x".into(),
            disabled: false,
            created_at: 0,
        },
    )
    .await
    .expect("user");
    let made = vedauth::bootstrap::ensure_admin(&store, &pool, tmp.path(), 0, None)
        .await
        .expect("start");
    assert!(made.is_none(), "the store holds data: no bootstrap");
    let seen = std::fs::read_to_string(tmp.path().join(vedauth::bootstrap::STORES_FILE))
        .expect("the list");
    assert!(seen.lines().any(|l| l == store.describe()), "{seen}");
    store.close().await;
}

#[tokio::test]
async fn a_stored_number_that_is_no_role_grants_nothing() {
    use sqlx::{Connection, Executor};
    use vedauth::domain::{Role, RoleAssignment};
    use vedauth::store::RoleStore;
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("roles.db");
    let s = SqliteStore::open(&path, 2).await.expect("open");
    s.add_role(&RoleAssignment {
        grantee: "local:{me}".into(),
        role: Role::Auditor,
        client_id: None,
    })
    .await
    .expect("add");
    // A row written by something else, with a number that is no role.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{}", path.display()))
        .await
        .expect("connect");
    conn.execute("INSERT INTO roles (grantee, role, client_id) VALUES ('local:{me}', 42, '')")
        .await
        .expect("insert");
    conn.close().await.expect("close");
    // It is left out (and logged), not an error that locks the identity out of everything.
    let roles = s.roles(Some("local:{me}")).await.expect("roles");
    assert_eq!(
        roles.iter().map(|r| r.role).collect::<Vec<_>>(),
        vec![Role::Auditor]
    );
    s.close().await;
}
