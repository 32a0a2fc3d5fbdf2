//! The store conformance suite: every `Store` implementation must pass these, on a fresh
//! database. Each backend gets a test that opens one and runs them all.

use std::sync::Arc;
use vedauth::domain::Role;

use vedauth::config::DatabaseConfig;
use vedauth::store::postgres::PostgresStore;
use vedauth::store::sqlite::SqliteStore;
use vedauth::store::{
    Application, ApplicationStore, Grant, GrantFilter, GrantStore, IssuerRecord, Lifetime,
    LockoutRecord, RoleAssignment, Rotation, Rule, Settings, SharedStore, Store, StoreError, User,
};
use vedauth::token::TokenDigest;

fn user(name: &str) -> User {
    User {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.into(),
        full_name: Some(format!("{name} full")),
        email: None,
        password_hash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        disabled: false,
        created_at: 1000,
    }
}

fn app(id: &str) -> Application {
    Application {
        client_id: id.into(),
        name: format!("{id} name"),
        vendor: "v".into(),
        description: "d".into(),
        url: "https://example.invalid".into(),
        scope: "certificate".into(),
        max_scope: crate::common::canon("certificate:manage"),
        access_validity: Some(60),
        grant_validity: Some(Lifetime::Never),
        renewable: Some(false),
        unused_expiration: None,
        created_at: 1000,
    }
}

fn rule(client_id: &str, trustee: &str) -> Rule {
    Rule {
        client_id: client_id.into(),
        trustee: trustee.into(),
        description: "r".into(),
        max_scope: Some(crate::common::canon("certificate")),
        access_validity: None,
        grant_validity: Some(Lifetime::Seconds(500)),
        renewable: Some(true),
        created_at: 1000,
    }
}

fn digest(tag: &str) -> TokenDigest {
    TokenDigest::of(tag)
}

fn grant(id: &str, client_id: &str, identity: &str, at: i64, expires: Option<i64>) -> Grant {
    Grant {
        id: id.into(),
        client_id: client_id.into(),
        identity: identity.into(),
        granted_to: "everyone".into(),
        scope: crate::common::canon("certificate"),
        issued_at: at,
        expires_at: expires,
        renewable: true,
        access_validity: 100,
        access_digest: digest(&format!("{id}-a")),
        access_issued_at: at,
        access_expires_at: at + 100,
        refresh_digest: Some(digest(&format!("{id}-r"))),
    }
}

pub async fn users(s: &SharedStore) {
    let alice = user("alice");
    s.create_user(&alice).await.expect("create");
    assert!(matches!(
        s.create_user(&user("ALICE")).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        s.user_by_name("Alice").await.expect("get"),
        Some(alice.clone())
    );
    assert_eq!(
        s.user_by_id(&alice.id).await.expect("get"),
        Some(alice.clone())
    );
    assert_eq!(s.user_by_name("nobody").await.expect("get"), None);
    assert!(s.set_user_disabled(&alice.id, true).await.expect("disable"));
    assert!(s
        .user_by_id(&alice.id)
        .await
        .expect("get")
        .is_some_and(|u| u.disabled));
    // Compare-and-swap on the hash.
    assert!(!s
        .replace_password_hash(&alice.id, Some("not-the-hash"), "new")
        .await
        .expect("cas"));
    assert!(s
        .replace_password_hash(&alice.id, Some(&alice.password_hash), "new")
        .await
        .expect("cas"));
    assert_eq!(
        s.user_by_id(&alice.id)
            .await
            .expect("get")
            .map(|u| u.password_hash),
        Some("new".into())
    );
    s.create_user(&user("bob")).await.expect("create");
    assert_eq!(s.list_users().await.expect("list").len(), 2);
    assert!(s.delete_user(&alice.id).await.expect("delete"));
    assert!(!s.delete_user(&alice.id).await.expect("delete"));
}

pub async fn applications_and_rules(s: &SharedStore) {
    let a = app("vcert-sdk");
    s.create_application(&a).await.expect("create");
    assert!(matches!(
        s.create_application(&a).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        s.application("vcert-sdk").await.expect("get"),
        Some(a.clone())
    );
    // client_id is case-sensitive.
    assert_eq!(s.application("VCERT-SDK").await.expect("get"), None);
    let mut changed = a.clone();
    changed.grant_validity = Some(Lifetime::Seconds(42));
    changed.renewable = None;
    changed.description = "changed".into();
    assert!(s.update_application(&changed).await.expect("update"));
    assert_eq!(
        s.application("vcert-sdk").await.expect("get"),
        Some(changed)
    );
    assert!(!s.update_application(&app("missing")).await.expect("update"));

    let r = rule("vcert-sdk", "everyone");
    s.create_rule(&r).await.expect("rule");
    assert!(matches!(s.create_rule(&r).await, Err(StoreError::Conflict)));
    assert!(s
        .create_rule(&rule("missing-app", "everyone"))
        .await
        .is_err());
    s.create_rule(&rule("vcert-sdk", "local:bob"))
        .await
        .expect("rule");
    assert_eq!(s.rules(Some("vcert-sdk")).await.expect("rules").len(), 2);
    let mut r2 = r.clone();
    r2.max_scope = None;
    assert!(s.update_rule(&r2).await.expect("update"));
    assert!(s.rules(None).await.expect("rules").contains(&r2));
    assert!(s
        .delete_rule("vcert-sdk", "local:bob")
        .await
        .expect("delete"));
    assert!(!s
        .delete_rule("vcert-sdk", "local:bob")
        .await
        .expect("delete"));

    s.insert_grant(&grant("g1", "vcert-sdk", "local:{1}", 1000, None))
        .await
        .expect("grant");
    s.create_application(&app("other")).await.expect("create");
    s.insert_grant(&grant("g2", "other", "local:{1}", 1000, None))
        .await
        .expect("grant");
    // Deleting an application takes its rules and grants with it, and reports the digests.
    let gone = s.delete_application("vcert-sdk").await.expect("delete");
    assert_eq!(gone, Some(vec![digest("g1-a")]));
    assert_eq!(s.rules(Some("vcert-sdk")).await.expect("rules"), vec![]);
    assert_eq!(s.grant_by_access(&digest("g1-a")).await.expect("get"), None);
    assert!(s
        .grant_by_access(&digest("g2-a"))
        .await
        .expect("get")
        .is_some());
    assert_eq!(
        s.delete_application("vcert-sdk").await.expect("delete"),
        None
    );
}

pub async fn settings(s: &SharedStore) {
    assert_eq!(s.settings().await.expect("get"), Settings::default());
    let mut changed = Settings {
        authorize_by_password: false,
        default_access_token_validity: 10,
        ..Settings::default()
    };
    changed
        .other
        .insert("SessionPoolSize".into(), serde_json::json!(77));
    s.put_settings(&changed).await.expect("put");
    assert_eq!(s.settings().await.expect("get"), changed);
    s.put_settings(&Settings::default()).await.expect("put");
    assert_eq!(s.settings().await.expect("get"), Settings::default());
}

pub async fn grants(s: &SharedStore) {
    s.create_application(&app("a")).await.expect("app");
    let g = grant("g1", "a", "local:{1}", 1000, Some(2000));
    s.insert_grant(&g).await.expect("insert");
    assert!(s.insert_grant(&g).await.is_err(), "duplicate access digest");
    assert_eq!(
        s.grant_by_access(&digest("g1-a")).await.expect("get"),
        Some(g.clone())
    );
    assert_eq!(
        s.grant_by_refresh(&digest("g1-r")).await.expect("get"),
        Some(g.clone())
    );
    assert_eq!(
        s.grant_by_refresh(&digest("g1-a")).await.expect("get"),
        None
    );

    let rot = Rotation {
        access_digest: digest("g1-a2"),
        access_issued_at: 1500,
        access_expires_at: 1600,
        refresh_digest: Some(digest("g1-r2")),
    };
    assert!(s
        .rotate_tokens("g1", &digest("g1-r"), &rot, 1500)
        .await
        .expect("rotate"));
    // The same old token cannot rotate twice.
    assert!(!s
        .rotate_tokens("g1", &digest("g1-r"), &rot, 1500)
        .await
        .expect("rotate"));
    let after = s
        .grant_by_refresh(&digest("g1-r2"))
        .await
        .expect("get")
        .expect("grant");
    assert_eq!(after.access_digest, digest("g1-a2"));
    assert_eq!(after.access_issued_at, 1500);
    assert_eq!(after.issued_at, 1000);
    assert_eq!(s.grant_by_access(&digest("g1-a")).await.expect("get"), None);
    assert_eq!(
        s.grant_by_retired_refresh(&digest("g1-r"))
            .await
            .expect("retired"),
        Some("g1".into())
    );

    s.insert_grant(&grant("g2", "a", "local:{2}", 1000, None))
        .await
        .expect("insert");
    s.insert_grant(&grant("g3", "b", "local:{2}", 1000, None))
        .await
        .expect("insert");
    let by_id = GrantFilter {
        identity: Some("local:{2}".into()),
        ..Default::default()
    };
    assert_eq!(s.list_grants(&by_id).await.expect("list").len(), 2);
    let both = GrantFilter {
        identity: Some("local:{2}".into()),
        client_id: Some("b".into()),
    };
    assert_eq!(s.list_grants(&both).await.expect("list").len(), 1);
    assert_eq!(
        s.list_grants(&GrantFilter::default())
            .await
            .expect("list")
            .len(),
        3
    );
    assert_eq!(
        s.delete_grants(&both).await.expect("delete"),
        vec![digest("g3-a")]
    );
    assert_eq!(
        s.delete_grant("g2").await.expect("delete"),
        Some(digest("g2-a"))
    );
    assert_eq!(s.delete_grant("g2").await.expect("delete"), None);
    let counts = s.counts(1000).await.expect("counts");
    assert_eq!(counts.grants, 1);
    assert_eq!(counts.applications, 1);
}

/// Writes that arrive together (and so may share one group commit) each get their own
/// answer: a duplicate fails alone, of two rotations with one token exactly one wins, of two
/// revocations of one grant exactly one finds it.
pub async fn concurrent_writes(s: &SharedStore) {
    s.create_application(&app("a")).await.expect("app");
    s.insert_grant(&grant("g0", "a", "local:{0}", 1000, None))
        .await
        .expect("insert");
    let mut set = tokio::task::JoinSet::new();
    for i in 0..40 {
        let s = s.clone();
        set.spawn(async move {
            s.insert_grant(&grant(&format!("c{i}"), "a", "x", 1000, None))
                .await
                .is_ok()
        });
    }
    let s2 = s.clone();
    set.spawn(async move {
        s2.insert_grant(&grant("g0", "a", "x", 1000, None))
            .await
            .is_ok()
    });
    let mut ok = 0;
    while let Some(r) = set.join_next().await {
        ok += r.expect("task") as usize;
    }
    assert_eq!(ok, 40, "every new grant stored, the duplicate refused");
    assert_eq!(s.counts(1000).await.expect("counts").grants, 41);

    let mut set = tokio::task::JoinSet::new();
    for i in 0..40 {
        for twin in 0..2 {
            let s = s.clone();
            set.spawn(async move {
                let rot = Rotation {
                    access_digest: digest(&format!("c{i}-a-{twin}")),
                    access_issued_at: 1500,
                    access_expires_at: 1600,
                    refresh_digest: Some(digest(&format!("c{i}-r-{twin}"))),
                };
                let won = s
                    .rotate_tokens(&format!("c{i}"), &digest(&format!("c{i}-r")), &rot, 1500)
                    .await
                    .expect("rotate");
                (i, twin, won)
            });
        }
    }
    let mut winners = vec![Vec::new(); 40];
    while let Some(r) = set.join_next().await {
        let (i, twin, won) = r.expect("task");
        if won {
            winners[i].push(twin);
        }
    }
    for (i, w) in winners.iter().enumerate() {
        assert_eq!(w.len(), 1, "grant c{i}: exactly one rotation wins");
        let g = s
            .grant_by_refresh(&digest(&format!("c{i}-r-{}", w[0])))
            .await
            .expect("get")
            .expect("the winner's refresh token is the grant's");
        assert_eq!(g.access_digest, digest(&format!("c{i}-a-{}", w[0])));
        assert_eq!(
            s.grant_by_retired_refresh(&digest(&format!("c{i}-r")))
                .await
                .expect("retired"),
            Some(format!("c{i}"))
        );
    }

    let mut set = tokio::task::JoinSet::new();
    for i in 0..40 {
        for _ in 0..2 {
            let s = s.clone();
            set.spawn(async move { (i, s.delete_grant(&format!("c{i}")).await.expect("delete")) });
        }
    }
    let mut found = vec![0; 40];
    while let Some(r) = set.join_next().await {
        let (i, d) = r.expect("task");
        if let Some(d) = d {
            assert_eq!(d, digest(&format!("c{i}-a-{}", winners[i][0])));
            found[i] += 1;
        }
    }
    assert!(
        found.iter().all(|&n| n == 1),
        "each grant revoked exactly once: {found:?}"
    );
    assert_eq!(s.counts(1000).await.expect("counts").grants, 1);
}

pub async fn roles(s: &SharedStore) {
    let admin = RoleAssignment {
        grantee: "local:{1}".into(),
        role: Role::Admin,
        client_id: None,
    };
    let owner_a = RoleAssignment {
        grantee: "local:{2}".into(),
        role: Role::Owner,
        client_id: Some("a".into()),
    };
    let owner_b = RoleAssignment {
        grantee: "local:{2}".into(),
        role: Role::Owner,
        client_id: Some("b".into()),
    };
    for r in [&admin, &owner_a, &owner_b] {
        s.add_role(r).await.expect("add");
    }
    assert!(matches!(
        s.add_role(&admin).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(s.roles(None).await.expect("roles").len(), 3);
    assert_eq!(
        s.roles(Some("local:{2}")).await.expect("roles"),
        vec![owner_a.clone(), owner_b.clone()]
    );
    assert_eq!(
        s.roles(Some("local:{1}")).await.expect("roles"),
        vec![admin.clone()]
    );
    assert_eq!(
        s.remove_role("local:{2}", Role::Owner, Some("a"))
            .await
            .expect("remove"),
        1
    );
    assert_eq!(
        s.roles(Some("local:{2}")).await.expect("roles"),
        vec![owner_b.clone()]
    );
    // Without an application, every assignment of that role goes.
    s.add_role(&owner_a).await.expect("add");
    assert_eq!(
        s.remove_role("local:{2}", Role::Owner, None)
            .await
            .expect("remove"),
        2
    );
    assert_eq!(
        s.remove_role("local:{2}", Role::Owner, None)
            .await
            .expect("remove"),
        0
    );
    // Deleting an application removes the roles held on it.
    s.create_application(&app("a")).await.expect("app");
    s.add_role(&owner_a).await.expect("add");
    s.delete_application("a").await.expect("delete");
    assert_eq!(s.roles(Some("local:{2}")).await.expect("roles"), vec![]);
    assert_eq!(
        s.roles(Some("local:{1}")).await.expect("roles"),
        vec![admin]
    );
}

pub async fn lockout(s: &SharedStore) {
    let id = "local:{l}";
    assert_eq!(s.lockout(id).await.expect("get"), None);
    let mut rec = LockoutRecord {
        failures: 1,
        window_start: 100,
        pending: 1,
        pending_since: 100,
        locked_until: 0,
        version: 0,
    };
    assert!(s.put_lockout(id, None, &rec).await.expect("insert"));
    // A second insert loses: the record exists.
    assert!(!s.put_lockout(id, None, &rec).await.expect("insert"));
    let got = s.lockout(id).await.expect("get").expect("record");
    assert_eq!(got.version, 1);
    assert_eq!((got.failures, got.pending, got.window_start), (1, 1, 100));
    rec.failures = 2;
    assert!(s.put_lockout(id, Some(1), &rec).await.expect("cas"));
    // The same expected version cannot win twice.
    assert!(!s.put_lockout(id, Some(1), &rec).await.expect("cas"));
    assert_eq!(
        s.lockout(id)
            .await
            .expect("get")
            .map(|r| (r.failures, r.version)),
        Some((2, 2))
    );
    assert!(s.delete_lockout(id).await.expect("delete"));
    assert!(!s.delete_lockout(id).await.expect("delete"));
}

pub async fn sweep(s: &SharedStore) {
    s.create_application(&app("a")).await.expect("app");
    // Expired grant, live grant, never-expiring grant, and a non-renewable one whose access
    // token has expired.
    s.insert_grant(&grant("old", "a", "i", 0, Some(500)))
        .await
        .expect("insert");
    s.insert_grant(&grant("live", "a", "i", 0, Some(5000)))
        .await
        .expect("insert");
    s.insert_grant(&grant("forever", "a", "i", 0, None))
        .await
        .expect("insert");
    let mut dead = grant("dead-access", "a", "i", 0, Some(5000));
    dead.refresh_digest = None;
    dead.renewable = false;
    s.insert_grant(&dead).await.expect("insert");
    assert_eq!(s.sweep_expired(1000, 1).await.expect("sweep"), 1);
    assert_eq!(s.sweep_expired(1000, 10).await.expect("sweep"), 1);
    assert_eq!(s.sweep_expired(1000, 10).await.expect("sweep"), 0);
    let left: Vec<String> = s
        .list_grants(&GrantFilter::default())
        .await
        .expect("list")
        .into_iter()
        .map(|g| g.id.into_string())
        .collect();
    assert_eq!(left, vec!["forever".to_string(), "live".to_string()]);
}

/// Trusted certificate issuers: added once by fingerprint, listed by fingerprint, removed,
/// imported with existing ones skipped.
pub async fn issuers(s: &SharedStore) {
    let issuer = |fp: &str, subject: &str| IssuerRecord {
        fingerprint: fp.repeat(64 / fp.len()),
        subject: subject.into(),
        pem: format!("-----BEGIN CERTIFICATE-----\n{subject}\n-----END CERTIFICATE-----\n"),
        added_at: 1_700_000_000,
    };
    assert!(s.list_issuers().await.expect("list").is_empty());
    let (b, a) = (issuer("b", "CN=B"), issuer("a", "CN=A, O=Ünïcode"));
    assert!(s.add_issuer(&b).await.expect("add"));
    assert!(s.add_issuer(&a).await.expect("add"));
    // The same fingerprint again changes nothing, even with another subject.
    assert!(!s.add_issuer(&issuer("b", "CN=Other")).await.expect("add"));
    assert_eq!(
        s.list_issuers().await.expect("list"),
        vec![a.clone(), b.clone()]
    );
    assert!(s.remove_issuer(&b.fingerprint).await.expect("remove"));
    assert!(!s.remove_issuer(&b.fingerprint).await.expect("remove"));
    assert_eq!(s.list_issuers().await.expect("list"), vec![a.clone()]);
    let t = s
        .import_issuers(&[a.clone(), b.clone()])
        .await
        .expect("import");
    assert_eq!((t.copied, t.skipped), (1, 1));
    assert_eq!(s.list_issuers().await.expect("list"), vec![a, b]);
}

/// A store that answers and can write is ready; its kind is named.
pub async fn readiness(s: &SharedStore) {
    s.ready().await.expect("ready");
    assert!(["sqlite", "postgres"].contains(&s.kind()), "{}", s.kind());
    assert!(s.describe().starts_with(s.kind()), "{}", s.describe());
}

/// Every part of the suite, each on its own fresh store from `open`.
pub async fn run_all<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = SharedStore>,
{
    users(&open().await).await;
    applications_and_rules(&open().await).await;
    settings(&open().await).await;
    grants(&open().await).await;
    concurrent_writes(&open().await).await;
    roles(&open().await).await;
    lockout(&open().await).await;
    sweep(&open().await).await;
    issuers(&open().await).await;
    readiness(&open().await).await;
}

#[tokio::test]
async fn sqlite_store_passes_the_suite() {
    let tmp = tempfile::tempdir().expect("tmp");
    let counter = std::sync::atomic::AtomicUsize::new(0);
    run_all(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = tmp.path().join(format!("s{n}.db"));
        async move {
            let s: SharedStore = Arc::new(SqliteStore::open(&path, 4).await.expect("open"));
            s
        }
    })
    .await;
}

#[tokio::test]
async fn sqlite_migrations_are_idempotent_and_data_survives_reopen() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("x.db");
    {
        let s = SqliteStore::open(&path, 2).await.expect("open");
        vedauth::store::UserStore::create_user(&s, &user("keep"))
            .await
            .expect("create");
        s.create_application(&app("a")).await.expect("app");
        let g = grant("kept", "a", "i", 0, None);
        s.insert_grant(&g)
            .await
            .expect("a write through the group commit");
        s.close().await;
        // Closing folds the WAL into the database file and removes it.
        assert!(!tmp.path().join("x.db-wal").exists(), "WAL left behind");
        assert!(
            s.insert_grant(&grant("late", "a", "i", 0, None))
                .await
                .is_err(),
            "a closed store takes no writes"
        );
    }
    let s = SqliteStore::open(&path, 2).await.expect("reopen");
    assert!(vedauth::store::UserStore::user_by_name(&s, "keep")
        .await
        .expect("get")
        .is_some());
    assert!(s
        .grant_by_access(&digest("kept-a"))
        .await
        .expect("get")
        .is_some());
}

#[tokio::test]
async fn postgres_store_passes_the_suite() {
    run_all(|| async {
        let url = crate::pg::fresh_database().await;
        let s: SharedStore = Arc::new(
            PostgresStore::open(&url, &DatabaseConfig::default())
                .await
                .expect("open"),
        );
        s
    })
    .await;
}

#[tokio::test]
async fn postgres_migrations_run_once_when_nodes_start_together() {
    let url = crate::pg::fresh_database().await;
    let cfg = DatabaseConfig::default();
    // Two nodes starting at the same moment on an empty database.
    let (a, b) = tokio::join!(
        PostgresStore::open(&url, &cfg),
        PostgresStore::open(&url, &cfg)
    );
    let (a, b) = (a.expect("open a"), b.expect("open b"));
    vedauth::store::UserStore::create_user(&a, &user("keep"))
        .await
        .expect("create");
    a.close().await;
    b.close().await;
    let again = PostgresStore::open(&url, &cfg).await.expect("reopen");
    assert!(vedauth::store::UserStore::user_by_name(&again, "KEEP")
        .await
        .expect("get")
        .is_some());
}
