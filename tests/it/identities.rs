//! One login, one lookup: the user checked is the user looked up, read once from the store
//! (local users) or searched once in the directory (see `ldap::one_directory_search_per_login`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use vedauth::clock::ManualClock;
use vedauth::config::DatabaseConfig;
use vedauth::identity::local::{LocalProvider, UserSource};
use vedauth::identity::{AuthOutcome, Identities, IdentityProvider, RejectCause};
use vedauth::lockout::{Lockout, LockoutPolicy};
use vedauth::password::{HashParams, HashPool};
use vedauth::secret::Secret;
use vedauth::store::postgres::PostgresStore;
use vedauth::store::sqlite::SqliteStore;
use vedauth::store::{SharedStore, StoreResult, User};

/// The real store, with the lookups by name counted; with `hold`, each lookup by name stops
/// after reading until told to go on (a login held between reading its user and storing its
/// grant).
#[derive(Debug)]
struct WatchedUsers {
    store: SharedStore,
    by_name: AtomicUsize,
    hold: bool,
    read: tokio::sync::Notify,
    go: tokio::sync::Notify,
}

impl WatchedUsers {
    fn new(store: &SharedStore, hold: bool) -> Arc<Self> {
        Arc::new(Self {
            store: store.clone(),
            by_name: AtomicUsize::new(0),
            hold,
            read: tokio::sync::Notify::new(),
            go: tokio::sync::Notify::new(),
        })
    }
}

#[async_trait]
impl UserSource for WatchedUsers {
    async fn user_by_name(&self, name: &str) -> StoreResult<Option<User>> {
        self.by_name.fetch_add(1, Ordering::SeqCst);
        let user = self.store.user_by_name(name).await;
        if self.hold {
            self.read.notify_one();
            self.go.notified().await;
        }
        user
    }
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        self.store.user_by_id(id).await
    }
    async fn replace_password_hash(
        &self,
        id: &str,
        expected: Option<&str>,
        new_hash: &str,
    ) -> StoreResult<bool> {
        self.store
            .replace_password_hash(id, expected, new_hash)
            .await
    }
}

/// A fresh SQLite store holding one local user with this password, and a hashing pool.
async fn store_with_user(name: &str, pw: &str) -> (tempfile::TempDir, SharedStore, HashPool, User) {
    store_with_user_on(false, name, pw).await
}

/// As [`store_with_user`], on a fresh PostgreSQL database if `postgres`.
async fn store_with_user_on(
    postgres: bool,
    name: &str,
    pw: &str,
) -> (tempfile::TempDir, SharedStore, HashPool, User) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: SharedStore = if postgres {
        let url = crate::pg::fresh_database().await;
        Arc::new(
            PostgresStore::open(&url, &DatabaseConfig::default())
                .await
                .expect("store"),
        )
    } else {
        Arc::new(
            SqliteStore::open(&dir.path().join("t.db"), 4)
                .await
                .expect("store"),
        )
    };
    let pool = HashPool::start(HashParams::insecure_for_tests(), 1, 0).expect("pool");
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.into(),
        full_name: None,
        email: None,
        password_hash: pool.hash(Secret::new(pw)).await.expect("hash"),
        disabled: false,
        created_at: 0,
    };
    store.create_user(&user).await.expect("create");
    (dir, store, pool, user)
}

#[tokio::test]
async fn a_local_login_reads_the_user_once() {
    let (_dir, store, pool, alice) = store_with_user("alice", "alice-pw").await;
    let users = WatchedUsers::new(&store, false);
    let local: Arc<dyn IdentityProvider> =
        Arc::new(LocalProvider::with_users(users.clone(), pool.clone()));
    let lockout = Lockout::new(
        store.clone(),
        Arc::new(ManualClock::starting_now()),
        LockoutPolicy::default(),
    );
    let ids = Identities::new(vec![local], pool, Some(lockout));

    let ok = ids
        .authenticate("alice", &Secret::new("alice-pw"))
        .await
        .expect("login");
    assert!(
        matches!(ok.outcome, AuthOutcome::Authenticated(_)),
        "{ok:?}"
    );
    assert_eq!(ok.identity.as_deref(), Some(alice.identity().as_str()));
    assert_eq!(
        users.by_name.load(Ordering::SeqCst),
        1,
        "a successful login"
    );

    let wrong = ids
        .authenticate("ALICE", &Secret::new("nope"))
        .await
        .expect("login");
    assert!(matches!(
        wrong.outcome,
        AuthOutcome::Rejected(RejectCause::WrongPassword)
    ));
    assert_eq!(users.by_name.load(Ordering::SeqCst), 2, "a wrong password");

    let unknown = ids
        .authenticate("nobody", &Secret::new("nope"))
        .await
        .expect("login");
    assert!(matches!(
        unknown.outcome,
        AuthOutcome::Rejected(RejectCause::UnknownUser)
    ));
    assert_eq!(users.by_name.load(Ordering::SeqCst), 3, "an unknown name");
}

/// Unknown names are counted like known users (same store work, same lock), under a digest
/// of the name; their records are deleted once they count nothing, so that trying many names
/// does not fill the store.
#[tokio::test]
async fn unknown_names_are_counted_and_their_records_forgotten() {
    use vedauth::identity::unknown_name_key;

    let dir = tempfile::tempdir().expect("tempdir");
    let store: SharedStore = Arc::new(
        SqliteStore::open(&dir.path().join("t.db"), 4)
            .await
            .expect("store"),
    );
    let pool = HashPool::start(HashParams::insecure_for_tests(), 1, 0).expect("pool");
    let clock = Arc::new(ManualClock::starting_now());
    let local: Arc<dyn IdentityProvider> =
        Arc::new(LocalProvider::new(store.clone(), pool.clone()));
    let lockout = Lockout::new(store.clone(), clock.clone(), LockoutPolicy::default());
    let ids = Identities::new(vec![local], pool, Some(lockout));

    let nobody = unknown_name_key("nobody");
    for _ in 0..5 {
        let a = ids
            .authenticate("Nobody", &Secret::new("guess"))
            .await
            .expect("login");
        assert!(matches!(
            a.outcome,
            AuthOutcome::Rejected(RejectCause::UnknownUser)
        ));
    }
    let rec = store
        .lockout(&nobody)
        .await
        .expect("read")
        .expect("a record");
    assert_eq!(rec.failures, 5);
    assert!(rec.locked_until > 0, "locked after five, like a known user");
    // The name as typed is nowhere in the key.
    assert!(!nobody.contains("nobody"));

    // Past the lock and the window, the next unknown name's refusal sweeps it away.
    clock.advance(901);
    ids.authenticate("someone-else", &Secret::new("guess"))
        .await
        .expect("login");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.lockout(&nobody).await.expect("read").is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle record of an unknown name was not deleted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(store
        .lockout(&unknown_name_key("someone-else"))
        .await
        .expect("read")
        .is_some());
}

/// A user disabled, given a new password or removed while a login of theirs is under way:
/// the change revokes the user's grants as the administration core does, before the login
/// stores its grant. The login must not leave a grant behind that the revocation missed.
#[tokio::test]
async fn a_user_changed_while_their_login_is_under_way_keeps_no_grant_from_it() {
    use vedauth::audit::{Audit, AuditConfig};
    use vedauth::grants::{Engine, EngineOptions, GrantError, GrantRequest, PasswordRequest};
    use vedauth::store::GrantFilter;

    for (postgres, change) in [false, true]
        .into_iter()
        .flat_map(|pg| ["none", "disable", "password", "remove"].map(|c| (pg, c)))
    {
        let (dir, store, pool, ann) = store_with_user_on(postgres, "ann", "ann-pw").await;
        crate::common::app_for_everyone(&store, "app", "certificate").await;
        let users = WatchedUsers::new(&store, true);
        let local: Arc<dyn IdentityProvider> =
            Arc::new(LocalProvider::with_users(users.clone(), pool.clone()));
        let clock = Arc::new(ManualClock::starting_now());
        let audit = Arc::new(
            Audit::open(&AuditConfig::default(), dir.path(), clock.clone()).expect("audit"),
        );
        let ids = Arc::new(Identities::new(vec![local], pool.clone(), None));
        let engine = Engine::new(store.clone(), ids, clock, EngineOptions::default(), audit);
        let login = tokio::spawn({
            let engine = engine.clone();
            async move {
                engine
                    .token(GrantRequest::Password(PasswordRequest {
                        client_id: Some("app".into()),
                        username: Some("ann".into()),
                        password: Some(Secret::new("ann-pw")),
                        scope: Some("certificate".into()),
                        ..Default::default()
                    }))
                    .await
            }
        });
        users.read.notified().await;
        match change {
            "disable" => assert!(store
                .set_user_disabled(&ann.id, true)
                .await
                .expect("disable")),
            "password" => {
                let other = pool.hash(Secret::new("other-pw")).await.expect("hash");
                assert!(store
                    .replace_password_hash(&ann.id, None, &other)
                    .await
                    .expect("password"));
            }
            "remove" => assert!(store.delete_user(&ann.id).await.expect("remove")),
            _ => {}
        }
        let mine = GrantFilter {
            identity: Some(ann.identity()),
            client_id: None,
        };
        if change != "none" {
            engine.revoke_matching(&mine).await.expect("revoke");
        }
        users.go.notify_one();
        let answer = login.await.expect("login task");
        let left = store.list_grants(&mine).await.expect("grants");
        if change == "none" {
            assert!(answer.is_ok(), "{answer:?}");
            assert_eq!(left.len(), 1);
        } else {
            let cause = match change {
                "disable" => RejectCause::Disabled,
                "password" => RejectCause::WrongPassword,
                _ => RejectCause::UnknownUser,
            };
            assert!(
                matches!(answer, Err(GrantError::BadCredentials(c)) if c == cause),
                "{change}: {answer:?}"
            );
            assert!(left.is_empty(), "{change}: a grant survived: {left:?}");
            // The trail says why the grant it recorded as issued was not written.
            let trail = std::fs::read_to_string(dir.path().join("audit.log")).expect("trail");
            let word = vedauth::grants::reject_word(cause);
            assert!(
                trail
                    .lines()
                    .any(|l| l.contains(r#""event":"change_not_committed""#)
                        && l.contains(&format!("the user changed meanwhile: {word}"))),
                "{change}: {trail}"
            );
        }
    }
}
