//! The store conformance suite: every `Store` implementation must pass these, on a fresh
//! database. Each backend gets a test that opens one and runs them all.

use std::sync::Arc;
use vedauth::domain::{ClientId, DeviceAuthorization, DeviceState, Role};

use vedauth::config::DatabaseConfig;
use vedauth::store::postgres::PostgresStore;
use vedauth::store::sqlite::SqliteStore;
use vedauth::store::{
    Application, ApplicationStore, Grant, GrantCounts, GrantFilter, GrantStore, Holder,
    HolderChange, IssuerRecord, JwtMapping, JwtUse, Lifetime, LockoutRecord, RoleAssignment,
    Rotation, Rule, Settings, SharedStore, Store, StoreError, Successor, User, Window,
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

/// A grant for a holder is written only if the holder's user is, at the write, as the login
/// saw them; otherwise nothing is written and the change is named.
pub async fn held_grants(s: &SharedStore) {
    s.create_application(&app("a")).await.expect("app");
    let ann = user("ann");
    s.create_user(&ann).await.expect("create");
    let as_seen = Holder {
        user_id: ann.id.clone(),
        password_hash: Some(ann.password_hash.clone()),
    };
    let mut n = 0;
    let mut write = |holder: Holder| {
        n += 1;
        let g = grant(&format!("h{n}"), "a", "local:{ann}", 1000, None);
        let s = s.clone();
        async move {
            let change = s.insert_grant_for(&g, Some(&holder)).await.expect("insert");
            let stored = s.grant_by_access(&g.access_digest).await.expect("get");
            (change, stored.is_some())
        }
    };
    assert_eq!(write(as_seen.clone()).await, (None, true));
    // A certificate or JWT login checked no password: only presence and enabled count.
    let no_password = Holder {
        password_hash: None,
        ..as_seen.clone()
    };
    assert_eq!(write(no_password.clone()).await, (None, true));
    let other_hash = Holder {
        password_hash: Some("$argon2id$v=19$m=64,t=1,p=1$b3RoZXJzYWx0$aGFzaA".into()),
        ..as_seen.clone()
    };
    assert_eq!(
        write(other_hash).await,
        (Some(HolderChange::NewPassword), false)
    );
    assert!(s.set_user_disabled(&ann.id, true).await.expect("disable"));
    assert_eq!(
        write(as_seen.clone()).await,
        (Some(HolderChange::Disabled), false)
    );
    assert_eq!(
        write(no_password).await,
        (Some(HolderChange::Disabled), false)
    );
    assert!(s.delete_user(&ann.id).await.expect("remove"));
    assert_eq!(write(as_seen).await, (Some(HolderChange::Gone), false));
    // A grant without a holder (a directory user, a client) is written as before.
    let g = grant("free", "a", "AD+x:1", 1000, None);
    assert_eq!(s.insert_grant_for(&g, None).await.expect("insert"), None);
    assert!(s
        .grant_by_access(&g.access_digest)
        .await
        .expect("get")
        .is_some());
}

/// Held grants written together: each gets its own holder's answer, whatever else shares its
/// write (SQLite's group commit takes concurrent writes in one batch), and a grant that breaks
/// a constraint fails alone.
pub async fn held_grants_written_together(s: &SharedStore) {
    s.create_application(&app("a")).await.expect("app");
    let (ann, bob) = (user("ann"), user("bob"));
    s.create_user(&ann).await.expect("create");
    s.create_user(&bob).await.expect("create");
    assert!(s.set_user_disabled(&bob.id, true).await.expect("disable"));
    let holder = |u: &User| Holder {
        user_id: u.id.clone(),
        password_hash: Some(u.password_hash.clone()),
    };
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..24 {
        let (who, h) = if i % 2 == 0 {
            ("ann", holder(&ann))
        } else {
            ("bob", holder(&bob))
        };
        let mut g = grant(&format!("t{i}"), "a", &format!("local:{who}"), 1000, None);
        if i == 22 {
            // The access digest of ann's first grant: a duplicate, refused on its own.
            g.access_digest = digest("t0-a");
        }
        let s = s.clone();
        writes.spawn(async move { (i, s.insert_grant_for(&g, Some(&h)).await) });
    }
    let mut answers: Vec<_> = writes.join_all().await;
    answers.sort_by_key(|(i, _)| *i);
    // Of the two with t0's access digest, one is written and the other refused on its own.
    let (first, twin) = (&answers[0].1, &answers[22].1);
    assert!(
        matches!((first, twin), (Ok(None), Err(_)) | (Err(_), Ok(None))),
        "{first:?} {twin:?}"
    );
    let winner = if first.is_ok() { "t0" } else { "t22" };
    let kept = s.grant_by_access(&digest("t0-a")).await.expect("get");
    assert_eq!(kept.map(|g| g.id.to_string()), Some(winner.to_string()));
    for (i, answer) in answers.into_iter().filter(|(i, _)| ![0, 22].contains(i)) {
        let stored = s
            .grant_by_access(&digest(&format!("t{i}-a")))
            .await
            .expect("get");
        if i % 2 == 0 {
            assert_eq!(answer.expect("ann's grant"), None, "{i}");
            assert!(stored.is_some(), "{i}: not written");
        } else {
            assert_eq!(
                answer.expect("bob's grant"),
                Some(HolderChange::Disabled),
                "{i}"
            );
            assert!(stored.is_none(), "{i}: written for a disabled user");
        }
    }
}

/// Pages and counts are cut by the store: windows in issue order either way, counts per
/// application with distinct identities.
pub async fn paging_and_counts(s: &SharedStore) {
    for (i, (client, who)) in [("a", "x"), ("a", "y"), ("a", "x"), ("b", "x"), ("a", "z")]
        .into_iter()
        .enumerate()
    {
        let id = format!("p{i}");
        s.insert_grant(&grant(&id, client, who, 1000 + i as i64, None))
            .await
            .expect("insert");
    }
    let ids = |v: Vec<Grant>| v.into_iter().map(|g| g.id.to_string()).collect::<Vec<_>>();
    let of_a = GrantFilter {
        client_id: Some("a".into()),
        ..Default::default()
    };
    let w = |offset, limit, descending| Window {
        offset,
        limit,
        descending,
    };
    assert_eq!(
        ids(s
            .page_grants(&of_a, w(1, Some(2), false))
            .await
            .expect("page")),
        ["p1", "p2"]
    );
    assert_eq!(
        ids(s
            .page_grants(&of_a, w(0, Some(3), true))
            .await
            .expect("page")),
        ["p4", "p2", "p1"]
    );
    assert_eq!(
        ids(s.page_grants(&of_a, w(3, None, false)).await.expect("page")),
        ["p4"]
    );
    assert!(s
        .page_grants(&of_a, w(10, None, false))
        .await
        .expect("page")
        .is_empty());
    let all = s
        .page_grants(&GrantFilter::default(), Window::default())
        .await
        .expect("page");
    assert_eq!(ids(all), ["p0", "p1", "p2", "p3", "p4"]);

    let mut counts = s
        .grant_counts(&["a".into(), "b".into(), "none".into()])
        .await
        .expect("counts");
    counts.sort_by(|l, r| l.0.as_str().cmp(r.0.as_str()));
    assert_eq!(
        counts,
        vec![
            (
                ClientId::from("a"),
                GrantCounts {
                    grants: 4,
                    identities: 3
                }
            ),
            (
                ClientId::from("b"),
                GrantCounts {
                    grants: 1,
                    identities: 1
                }
            ),
        ]
    );
    assert!(s.grant_counts(&[]).await.expect("none").is_empty());
}

/// The refresh grace window's sealed answers: kept until `until`, replaced on a second put,
/// removed by the sweep.
pub async fn successors(s: &SharedStore) {
    let kept = Successor {
        digest: digest("old"),
        grant_id: "g1".into(),
        sealed: vec![1, 2, 3],
        until: 1100,
    };
    s.put_successor(&kept).await.expect("put");
    assert_eq!(
        s.successor(&digest("old"), 1000).await.expect("get"),
        Some(kept.clone())
    );
    assert_eq!(s.successor(&digest("old"), 1100).await.expect("get"), None);
    assert_eq!(
        s.successor(&digest("other"), 1000).await.expect("get"),
        None
    );
    let replaced = Successor {
        sealed: vec![9],
        until: 1200,
        ..kept
    };
    s.put_successor(&replaced).await.expect("replace");
    assert_eq!(
        s.successor(&digest("old"), 1150).await.expect("get"),
        Some(replaced.clone())
    );
    s.sweep_expired(1200, 100).await.expect("sweep");
    assert_eq!(s.successor(&digest("old"), 0).await.expect("get"), None);
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

/// Client secrets: set, replace (a rotation), read, list, delete, import; none for a missing
/// application; gone with their application.
pub async fn client_secrets(s: &SharedStore) {
    use vedauth::store::{ClientSecret, Tally};
    let secret = |id: &str, hash: &str, at: i64| ClientSecret {
        client_id: id.into(),
        secret_hash: hash.into(),
        created_at: at,
    };
    assert!(matches!(
        s.put_client_secret(&secret("ghost", "$argon2id$x", 1))
            .await,
        Err(StoreError::Missing("application"))
    ));
    s.create_application(&app("a1")).await.expect("app");
    s.create_application(&app("a2")).await.expect("app");
    assert_eq!(s.client_secret("a1").await.expect("get"), None);
    s.put_client_secret(&secret("a1", "$argon2id$one", 10))
        .await
        .expect("put");
    s.put_client_secret(&secret("a1", "$argon2id$two", 20))
        .await
        .expect("rotate");
    assert_eq!(
        s.client_secret("a1").await.expect("get"),
        Some(secret("a1", "$argon2id$two", 20))
    );
    // client_id is case-sensitive.
    assert_eq!(s.client_secret("A1").await.expect("get"), None);
    s.put_client_secret(&secret("a2", "$argon2id$b", 30))
        .await
        .expect("put");
    assert_eq!(
        s.list_client_secrets().await.expect("list"),
        vec![
            secret("a1", "$argon2id$two", 20),
            secret("a2", "$argon2id$b", 30)
        ]
    );
    assert!(s.delete_client_secret("a2").await.expect("delete"));
    assert!(!s.delete_client_secret("a2").await.expect("delete again"));
    // Import skips existing keys.
    let t = s
        .import_client_secrets(&[
            secret("a1", "$argon2id$other", 1),
            secret("a2", "$argon2id$imported", 2),
        ])
        .await
        .expect("import");
    assert_eq!(
        t,
        Tally {
            copied: 1,
            skipped: 1
        }
    );
    assert_eq!(
        s.client_secret("a1").await.expect("get"),
        Some(secret("a1", "$argon2id$two", 20))
    );
    // Gone with the application.
    s.delete_application("a1").await.expect("delete app");
    assert_eq!(s.client_secret("a1").await.expect("get"), None);
    assert_eq!(s.list_client_secrets().await.expect("list").len(), 1);
}

/// Device requests: found by digest and by user code, a user code taken once, decided and
/// spent by compare-and-swap, polls on time or slowed down, swept after expiry.
pub async fn device_codes(s: &SharedStore) {
    let d = |tag: &str, code: &str| DeviceAuthorization {
        digest: digest(tag),
        user_code: code.into(),
        client_id: "a".into(),
        scope: crate::common::canon("certificate"),
        created_at: 1000,
        expires_at: 1300,
        interval: 5,
        last_poll: None,
        state: DeviceState::Pending,
    };
    s.insert_device(&d("one", "BCDFGHJK"))
        .await
        .expect("insert");
    assert!(matches!(
        s.insert_device(&d("two", "BCDFGHJK")).await,
        Err(StoreError::Conflict)
    ));
    s.insert_device(&d("two", "ZZZZZZZZ"))
        .await
        .expect("insert");
    assert_eq!(
        s.device_by_user_code("BCDFGHJK").await.expect("get"),
        Some(d("one", "BCDFGHJK"))
    );
    assert_eq!(s.device_by_user_code("bcdfghjk").await.expect("get"), None);
    assert_eq!(
        s.device_by_digest(&digest("none")).await.expect("get"),
        None
    );
    // Polls: the first is on time; one within the interval slows the device down by 5 s.
    assert!(s.poll_device(&digest("one"), 1010, 5).await.expect("poll"));
    assert!(!s.poll_device(&digest("one"), 1012, 5).await.expect("poll"));
    let got = s
        .device_by_digest(&digest("one"))
        .await
        .expect("get")
        .expect("there");
    assert_eq!((got.interval, got.last_poll), (10, Some(1012)));
    assert!(!s.poll_device(&digest("one"), 1021, 5).await.expect("poll"));
    assert!(s.poll_device(&digest("one"), 1036, 5).await.expect("poll"));
    // Decided once; spent once; a pending one cannot be spent.
    let who: vedauth::domain::Identity = "local:{u}".into();
    assert!(!s.consume_device(&digest("one")).await.expect("consume"));
    assert!(s
        .decide_device(&digest("one"), Some(&who))
        .await
        .expect("decide"));
    assert!(!s.decide_device(&digest("one"), None).await.expect("decide"));
    assert_eq!(
        s.device_by_digest(&digest("one"))
            .await
            .expect("get")
            .map(|d| d.state),
        Some(DeviceState::Approved(who))
    );
    assert!(s.consume_device(&digest("one")).await.expect("consume"));
    assert!(!s.consume_device(&digest("one")).await.expect("consume"));
    assert!(s.decide_device(&digest("two"), None).await.expect("decide"));
    assert_eq!(
        s.device_by_digest(&digest("two"))
            .await
            .expect("get")
            .map(|d| d.state),
        Some(DeviceState::Denied)
    );
    assert_eq!(s.sweep_devices(1300).await.expect("sweep"), 0);
    assert_eq!(s.sweep_devices(1301).await.expect("sweep"), 2);
    assert_eq!(s.device_by_user_code("ZZZZZZZZ").await.expect("get"), None);
}

fn jwt_mapping(name: &str, issuer: &str) -> JwtMapping {
    JwtMapping {
        name: name.into(),
        issuer_uri: issuer.into(),
        jwks_uri: None,
        purpose_field: "aud".into(),
        purpose_match: "vedauth".into(),
        id_field: "sub".into(),
        id_match: "system:serviceaccount:(.+)".into(),
        grantee_prefixed_universal: None,
    }
}

/// JWT mappings: create, conflict, read, list in ordinal name order, replace, delete.
pub async fn jwt_mappings(s: &SharedStore) {
    let mut b = jwt_mapping("b", "https://one.example");
    b.jwks_uri = Some("https://keys.example/jwks".into());
    b.grantee_prefixed_universal = Some("local:{0000}".into());
    s.create_jwt_mapping(&b).await.expect("create b");
    s.create_jwt_mapping(&jwt_mapping("a", "https://two.example"))
        .await
        .expect("create a");
    s.create_jwt_mapping(&jwt_mapping("B", "https://two.example"))
        .await
        .expect("names are case-sensitive");
    assert!(matches!(
        s.create_jwt_mapping(&jwt_mapping("b", "https://x.example"))
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(s.jwt_mapping("b").await.expect("get"), Some(b.clone()));
    assert_eq!(s.jwt_mapping("nope").await.expect("get"), None);
    let names: Vec<String> = s
        .list_jwt_mappings()
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.name)
        .collect();
    // Byte order on both databases: upper case first.
    assert_eq!(names, ["B", "a", "b"]);

    let mut changed = b.clone();
    changed.jwks_uri = Some(String::new()); // empty is stored as absent
    changed.id_match = "other".into();
    assert!(s.update_jwt_mapping(&changed).await.expect("update"));
    let got = s.jwt_mapping("b").await.expect("get").expect("there");
    assert_eq!(got.jwks_uri, None);
    assert_eq!(got.id_match, "other");
    assert!(!s
        .update_jwt_mapping(&jwt_mapping("nope", "https://x.example"))
        .await
        .expect("update"));
    assert!(s.delete_jwt_mapping("B").await.expect("delete"));
    assert!(!s.delete_jwt_mapping("B").await.expect("delete again"));
    assert_eq!(s.list_jwt_mappings().await.expect("list").len(), 2);
}

/// A JWT is recorded once until its record ends; concurrent records of one: one wins; the
/// sweep removes ended records only.
pub async fn jwt_uses(s: &SharedStore) {
    let first = JwtUse {
        digest: digest("jwt-1"),
        used_until: 2000,
    };
    assert!(s.record_jwt_use(&first, 1000).await.expect("record"));
    assert!(!s.record_jwt_use(&first, 1500).await.expect("replay"));
    // At its end the record no longer holds the token: it may be recorded again.
    let later = JwtUse {
        digest: first.digest,
        used_until: 4000,
    };
    assert!(s.record_jwt_use(&later, 2000).await.expect("after the end"));
    assert!(!s.record_jwt_use(&first, 3999).await.expect("replay"));

    let racing = JwtUse {
        digest: digest("jwt-race"),
        used_until: 5000,
    };
    let tries = (0..16).map(|_| {
        let s = s.clone();
        let u = racing.clone();
        async move { s.record_jwt_use(&u, 1000).await.expect("record") }
    });
    let won = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .filter(|w| *w)
        .count();
    assert_eq!(won, 1, "exactly one of the concurrent uses is the first");

    assert!(s
        .record_jwt_use(
            &JwtUse {
                digest: digest("jwt-old"),
                used_until: 100
            },
            50
        )
        .await
        .expect("record"));
    assert_eq!(s.list_jwt_uses().await.expect("list").len(), 3);
    assert_eq!(s.sweep_jwt_uses(4000, 10).await.expect("sweep"), 2);
    let left = s.list_jwt_uses().await.expect("list");
    assert_eq!(left, vec![racing]);
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
    held_grants(&open().await).await;
    held_grants_written_together(&open().await).await;
    paging_and_counts(&open().await).await;
    successors(&open().await).await;
    concurrent_writes(&open().await).await;
    roles(&open().await).await;
    lockout(&open().await).await;
    sweep(&open().await).await;
    device_codes(&open().await).await;
    jwt_mappings(&open().await).await;
    jwt_uses(&open().await).await;
    issuers(&open().await).await;
    readiness(&open().await).await;
    client_secrets(&open().await).await;
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

/// On PostgreSQL, a grant's write waits for an uncommitted change of its holder and then reads
/// the changed user: the change's revocation, which runs after the change, cannot miss a grant
/// whose write read the user as it was.
#[tokio::test]
async fn postgres_a_held_grant_waits_for_its_users_uncommitted_change() {
    use sqlx::{Connection, Executor, Row};
    let url = crate::pg::fresh_database().await;
    let s: SharedStore = Arc::new(
        PostgresStore::open(&url, &DatabaseConfig::default())
            .await
            .expect("open"),
    );
    s.create_application(&app("a")).await.expect("app");
    let ann = user("ann");
    s.create_user(&ann).await.expect("create");
    let mut change = sqlx::PgConnection::connect(&url).await.expect("connect");
    change.execute("BEGIN").await.expect("begin");
    sqlx::query("UPDATE users SET disabled = TRUE WHERE id = $1")
        .bind(&ann.id)
        .execute(&mut change)
        .await
        .expect("disable, not committed");
    let write = tokio::spawn({
        let s = s.clone();
        let holder = Holder {
            user_id: ann.id.clone(),
            password_hash: Some(ann.password_hash.clone()),
        };
        async move {
            let g = grant("held", "a", "local:{ann}", 1000, None);
            s.insert_grant_for(&g, Some(&holder)).await
        }
    });
    // The write must be waiting on the user's row lock before the change commits.
    let mut watch = sqlx::PgConnection::connect(&url).await.expect("connect");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watch)
        .await
        .expect("pg_stat_activity")
        .get("n");
        if waiting > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline && !write.is_finished(),
            "the grant's write did not wait for the user's change: {:?}",
            if write.is_finished() {
                Some(write.await)
            } else {
                None
            }
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    change.execute("COMMIT").await.expect("commit");
    let answer = write.await.expect("write task").expect("write");
    assert_eq!(answer, Some(HolderChange::Disabled));
    assert!(s
        .grant_by_access(&digest("held-a"))
        .await
        .expect("get")
        .is_none());
}
