//! The schema: both databases reach the same version with the same tables, columns and indexes
//! (read from each database's own catalogue), every table belongs to an aggregate that `store
//! copy` walks, and databases made by the previous release upgrade in place and keep working,
//! with rules and roles that named users by name now naming them by identity.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use reqwest::StatusCode;
use sqlx::{Connection, Executor, PgConnection, Row, SqliteConnection};
use vedauth::config::DatabaseConfig;
use vedauth::password::{HashParams, HashPool};
use vedauth::secret::Secret;
use vedauth::store::postgres::PostgresStore;
use vedauth::store::sqlite::SqliteStore;
use vedauth::store::{RoleAssignment, SharedStore, Store};

use crate::common::{Options, TestServer};
use crate::{old_schema, pg};

/// The newest schema version.
const LATEST: i64 = 13;

/// Tables only one database has, and why.
const SQLITE_ONLY: &[&str] = &[
    // Revocation notices between processes; PostgreSQL has NOTIFY.
    "invalidations",
];

/// Each aggregate's tables (what `store copy` moves), and the store's own bookkeeping.
const AGGREGATE_TABLES: &[(&str, &[&str])] = &[
    ("Users", &["users"]),
    ("Applications", &["applications", "rules"]),
    ("ClientSecrets", &["client_secrets"]),
    ("Roles", &["roles"]),
    ("Lockout", &["lockout"]),
    ("Settings", &["settings"]),
    // `refresh_successors` is not copied: its rows live for the refresh grace window only.
    (
        "Grants",
        &["grants", "retired_refresh", "refresh_successors"],
    ),
    ("Jwt", &["jwt_mappings", "jwt_uses"]),
    ("Issuers", &["trusted_issuers"]),
    ("(schema version)", &["vedauth_schema"]),
    // Device authorization requests live 5 minutes: `store copy`, run with the server
    // stopped, leaves them behind (docs/console.md).
    ("(short-lived, not copied)", &["device_codes"]),
];

#[derive(Debug, Default, PartialEq, Eq)]
struct Table {
    /// name -> (type class, nullable)
    columns: BTreeMap<String, (String, bool)>,
    primary_key: Vec<String>,
    /// "unique? (columns) where predicate", primary keys left out (they are `primary_key`).
    indexes: BTreeSet<String>,
    foreign_keys: BTreeSet<String>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Catalogue {
    version: i64,
    tables: BTreeMap<String, Table>,
}

/// Lower case, no white space, no parentheses: how both databases' texts compare.
fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && *c != '(' && *c != ')' && *c != '"')
        .flat_map(char::to_lowercase)
        .collect()
}

fn index_key(unique: bool, cols: &[String], predicate: Option<&str>) -> String {
    format!(
        "{}({}){}",
        if unique { "unique " } else { "" },
        cols.join(", "),
        predicate
            .map(|p| format!(" where {}", squash(p)))
            .unwrap_or_default()
    )
}

/// SQLite keeps booleans and every integer width as INTEGER.
fn type_class(t: &str) -> String {
    match t.to_ascii_lowercase().as_str() {
        "integer" | "bigint" | "boolean" => "integer",
        "text" => "text",
        "blob" | "bytea" => "blob",
        other => panic!("a column type the comparison does not know: {other}"),
    }
    .to_string()
}

async fn sqlite_catalogue(path: &Path) -> Catalogue {
    let mut c = SqliteConnection::connect(&format!("sqlite:{}", path.display()))
        .await
        .expect("open");
    let version: i64 = sqlx::query_scalar("SELECT MAX(version) FROM vedauth_schema")
        .fetch_one(&mut c)
        .await
        .expect("version");
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(&mut c)
    .await
    .expect("tables");
    let mut tables = BTreeMap::new();
    for t in names {
        let mut table = Table::default();
        let mut pk = Vec::new();
        for r in sqlx::query(r#"SELECT name, type, "notnull", pk FROM pragma_table_info($1)"#)
            .bind(&t)
            .fetch_all(&mut c)
            .await
            .expect("columns")
        {
            let (name, ty): (String, String) = (r.get("name"), r.get("type"));
            let (notnull, pk_at): (i64, i64) = (r.get("notnull"), r.get("pk"));
            // SQLite lets a non-integer primary key hold NULL; PostgreSQL does not. Both
            // refuse it here in practice (every key is bound from a value).
            table
                .columns
                .insert(name.clone(), (type_class(&ty), notnull == 0 && pk_at == 0));
            if pk_at > 0 {
                pk.push((pk_at, name));
            }
        }
        pk.sort();
        table.primary_key = pk.into_iter().map(|(_, n)| n).collect();
        for r in sqlx::query(r#"SELECT name, "unique", origin FROM pragma_index_list($1)"#)
            .bind(&t)
            .fetch_all(&mut c)
            .await
            .expect("indexes")
        {
            let (name, unique, origin): (String, i64, String) =
                (r.get("name"), r.get("unique"), r.get("origin"));
            if origin == "pk" {
                continue;
            }
            let mut cols = Vec::new();
            for k in sqlx::query(
                "SELECT name, coll FROM pragma_index_xinfo($1) WHERE key = 1 ORDER BY seqno",
            )
            .bind(&name)
            .fetch_all(&mut c)
            .await
            .expect("index columns")
            {
                let col: String = k.get("name");
                let coll: String = k.get("coll");
                // A case-insensitive column is PostgreSQL's index on lower(column).
                cols.push(if coll.eq_ignore_ascii_case("nocase") {
                    format!("lower{col}")
                } else {
                    col
                });
            }
            let sql: Option<String> =
                sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = $1")
                    .bind(&name)
                    .fetch_one(&mut c)
                    .await
                    .expect("index sql");
            let predicate = sql
                .as_deref()
                .and_then(|s| s.split_once(" WHERE ").map(|(_, p)| p.to_string()));
            table
                .indexes
                .insert(index_key(unique == 1, &cols, predicate.as_deref()));
        }
        for r in sqlx::query(
            r#"SELECT "from", "table", "to", on_delete FROM pragma_foreign_key_list($1)"#,
        )
        .bind(&t)
        .fetch_all(&mut c)
        .await
        .expect("foreign keys")
        {
            let (from, to_table, to, on_delete): (String, String, String, String) = (
                r.get("from"),
                r.get("table"),
                r.get("to"),
                r.get("on_delete"),
            );
            table.foreign_keys.insert(squash(&format!(
                "FOREIGN KEY ({from}) REFERENCES {to_table}({to}) ON DELETE {on_delete}"
            )));
        }
        tables.insert(t, table);
    }
    let _ = c.close().await;
    Catalogue { version, tables }
}

async fn pg_catalogue(url: &str) -> Catalogue {
    let mut c = PgConnection::connect(url).await.expect("connect");
    let version: i32 = sqlx::query_scalar("SELECT MAX(version) FROM vedauth_schema")
        .fetch_one(&mut c)
        .await
        .expect("version");
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&mut c)
    .await
    .expect("tables");
    let mut tables = BTreeMap::new();
    for t in names {
        let mut table = Table::default();
        for r in sqlx::query(
            "SELECT column_name::text AS name, data_type::text AS ty, is_nullable::text AS nullable
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(&t)
        .fetch_all(&mut c)
        .await
        .expect("columns")
        {
            let (name, ty, nullable): (String, String, String) =
                (r.get("name"), r.get("ty"), r.get("nullable"));
            table
                .columns
                .insert(name, (type_class(&ty), nullable == "YES"));
        }
        for r in sqlx::query(
            "SELECT ix.indexrelid::oid AS id, ix.indisunique AS uniq, ix.indisprimary AS pk,
                    ix.indnatts::int AS n, pg_get_expr(ix.indpred, ix.indrelid) AS pred
             FROM pg_index ix JOIN pg_class t ON t.oid = ix.indrelid
             WHERE t.relname = $1 AND t.relnamespace = current_schema()::regnamespace",
        )
        .bind(&t)
        .fetch_all(&mut c)
        .await
        .expect("indexes")
        {
            let id: sqlx::postgres::types::Oid = r.get("id");
            let (unique, pk, n): (bool, bool, i32) = (r.get("uniq"), r.get("pk"), r.get("n"));
            let pred: Option<String> = r.get("pred");
            let cols: Vec<String> = sqlx::query_scalar(
                "SELECT pg_get_indexdef($1, k, true) FROM generate_series(1, $2) AS k ORDER BY k",
            )
            .bind(id)
            .bind(n)
            .fetch_all(&mut c)
            .await
            .expect("index columns")
            .into_iter()
            .map(|s: String| squash(&s))
            .collect();
            if pk {
                table.primary_key = cols;
            } else {
                table
                    .indexes
                    .insert(index_key(unique, &cols, pred.as_deref()));
            }
        }
        for def in sqlx::query_scalar::<_, String>(
            "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
             JOIN pg_class t ON t.oid = c.conrelid
             WHERE c.contype = 'f' AND t.relname = $1",
        )
        .bind(&t)
        .fetch_all(&mut c)
        .await
        .expect("foreign keys")
        {
            table.foreign_keys.insert(squash(&def));
        }
        tables.insert(t, table);
    }
    let _ = c.close().await;
    Catalogue {
        version: i64::from(version),
        tables,
    }
}

/// The catalogue of a new SQLite database, made by the store.
async fn fresh_sqlite(dir: &Path) -> Catalogue {
    let path = dir.join("fresh.db");
    let s = SqliteStore::open(&path, 2).await.expect("open");
    assert_eq!(s.schema_version().await.expect("version"), LATEST);
    s.close().await;
    sqlite_catalogue(&path).await
}

/// The catalogue of a new PostgreSQL database, made by the store.
async fn fresh_postgres() -> Catalogue {
    let url = pg::fresh_database().await;
    let s = PostgresStore::open(&url, &DatabaseConfig::default())
        .await
        .expect("open");
    assert_eq!(s.schema_version().await.expect("version"), LATEST);
    s.close().await;
    pg_catalogue(&url).await
}

/// `c` without the tables only SQLite has.
fn shared_part(mut c: Catalogue) -> Catalogue {
    for t in SQLITE_ONLY {
        assert!(
            c.tables.remove(*t).is_some(),
            "{t} is gone: update SQLITE_ONLY"
        );
    }
    c
}

#[tokio::test]
async fn both_databases_reach_the_same_version_tables_columns_and_indexes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sqlite = fresh_sqlite(tmp.path()).await;
    let postgres = fresh_postgres().await;
    assert_eq!(sqlite.version, LATEST);
    assert_eq!(postgres.version, LATEST);

    // Every table belongs to an aggregate (or is the store's own bookkeeping): a table that
    // `store copy` would not know of fails here.
    let covered: BTreeSet<&str> = AGGREGATE_TABLES
        .iter()
        .flat_map(|(_, t)| t.iter().copied())
        .chain(SQLITE_ONLY.iter().copied())
        .collect();
    let sqlite_tables: BTreeSet<&str> = sqlite.tables.keys().map(String::as_str).collect();
    assert_eq!(sqlite_tables, covered);

    let sqlite = shared_part(sqlite);
    // The comparison has something to compare: a case-insensitive name index, a partial index,
    // a foreign key.
    let users = &sqlite.tables["users"];
    assert!(users.indexes.contains("unique (lowername)"), "{users:?}");
    let grants = &sqlite.tables["grants"];
    assert!(
        grants
            .indexes
            .contains("(access_expires_at) where refresh_digestisnull"),
        "{grants:?}"
    );
    assert_eq!(sqlite.tables["rules"].foreign_keys.len(), 1);
    for (name, table) in &sqlite.tables {
        assert_eq!(
            Some(table),
            postgres.tables.get(name),
            "table {name} differs"
        );
    }
    assert_eq!(sqlite, postgres);
}

const ALICE_PW: &str = "Alice-Pw-0001";

/// What the previous release's databases hold for the upgrade tests: users alice and bob;
/// rules and roles naming them by name in several spellings, beside ones naming identities,
/// groups, everyone, and a name no user has; a grant with a live token pair, a retired refresh
/// token, a lockout record and settings.
struct Seed {
    alice: String,
    bob: String,
    alice_hash: String,
    access: vedauth::token::IssuedToken,
    refresh: vedauth::token::IssuedToken,
    now: i64,
}

impl Seed {
    async fn new() -> Self {
        let pool = HashPool::start(HashParams::insecure_for_tests(), 1, 0).expect("pool");
        Self {
            alice: uuid::Uuid::new_v4().to_string(),
            bob: uuid::Uuid::new_v4().to_string(),
            alice_hash: pool.hash(Secret::new(ALICE_PW)).await.expect("hash"),
            access: vedauth::token::generate(),
            refresh: vedauth::token::generate(),
            now: time_now(),
        }
    }
}

fn time_now() -> i64 {
    crate::common::wall_now()
}

/// Writes the seed with `conn` (the same statements for both databases; booleans bound as
/// Rust bools, which sqlx writes as integers for SQLite).
macro_rules! write_seed {
    ($conn:expr, $seed:expr) => {{
        let s: &Seed = $seed;
        let conn = $conn;
        for (id, name, hash) in [
            (&s.alice, "alice", s.alice_hash.as_str()),
            (
                &s.bob,
                "Bob",
                "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
            ),
        ] {
            sqlx::query(
                "INSERT INTO users (id, name, password_hash, disabled, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(name)
            .bind(hash)
            .bind(false)
            .bind(s.now)
            .execute(&mut *conn)
            .await
            .expect("user");
        }
        for app in ["vcert-sdk", "two", "three"] {
            sqlx::query(
                "INSERT INTO applications (client_id, scope, max_scope, created_at)
                 VALUES ($1, 'certificate:manage', 'certificate:manage', $2)",
            )
            .bind(app)
            .bind(s.now)
            .execute(&mut *conn)
            .await
            .expect("application");
        }
        let alice_id = format!("local:{{{}}}", s.alice);
        for (app, trustee, description) in [
            ("vcert-sdk", "local:Alice".to_string(), "by name"),
            ("vcert-sdk", "everyone".to_string(), "everyone"),
            ("vcert-sdk", "LDAP+dir:ops".to_string(), "a group"),
            ("vcert-sdk", "local:ghost".to_string(), "nobody's name"),
            ("two", "local:BOB".to_string(), "bob, one spelling"),
            ("two", "local:bob".to_string(), "bob, another"),
            ("three", alice_id.clone(), "by identity"),
            ("three", "LOCAL:alice".to_string(), "by name too"),
        ] {
            sqlx::query(
                "INSERT INTO rules (client_id, trustee, description, created_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(app)
            .bind(trustee)
            .bind(description)
            .bind(s.now)
            .execute(&mut *conn)
            .await
            .expect("rule");
        }
        for (grantee, role, app) in [
            ("local:Alice".to_string(), 6, ""),
            (alice_id.clone(), 3, "two"),
            ("local:alice".to_string(), 3, "two"),
            ("local:ghost".to_string(), 1, ""),
        ] {
            sqlx::query("INSERT INTO roles (grantee, role, client_id) VALUES ($1, $2, $3)")
                .bind(grantee)
                .bind(role)
                .bind(app)
                .execute(&mut *conn)
                .await
                .expect("role");
        }
        sqlx::query(
            "INSERT INTO grants (id, client_id, identity, granted_to, scope, issued_at,
                 expires_at, renewable, access_validity, access_digest, access_issued_at,
                 access_expires_at, refresh_digest)
             VALUES ('g1', 'vcert-sdk', $1, 'local:Alice', 'certificate:manage', $2, NULL,
                 $3, 3600, $4, $2, $5, $6)",
        )
        .bind(&alice_id)
        .bind(s.now - 60)
        .bind(true)
        .bind(&s.access.digest.0[..])
        .bind(s.now + 3600)
        .bind(&s.refresh.digest.0[..])
        .execute(&mut *conn)
        .await
        .expect("grant");
        sqlx::query(
            "INSERT INTO retired_refresh (digest, grant_id, expires_at) VALUES ($1, 'g1', NULL)",
        )
        .bind(&vedauth::token::TokenDigest::of("an older refresh token").0[..])
        .execute(&mut *conn)
        .await
        .expect("retired");
        sqlx::query(
            "INSERT INTO lockout (identity, failures, window_start, pending, pending_since,
                 locked_until, version)
             VALUES ($1, 2, $2, 0, 0, 0, 7)",
        )
        .bind(format!("local:{{{}}}", s.bob))
        .bind(s.now)
        .execute(&mut *conn)
        .await
        .expect("lockout");
        sqlx::query("INSERT INTO settings (id, doc) VALUES (1, '{\"SessionPoolSize\":12}')")
            .execute(&mut *conn)
            .await
            .expect("settings");
    }};
}

/// After the upgrade: rules and roles of alice and bob by identity, the rest as it was.
async fn assert_rewritten(store: &SharedStore, seed: &Seed) {
    let alice = format!("local:{{{}}}", seed.alice);
    let bob = format!("local:{{{}}}", seed.bob);
    let rules: BTreeSet<(String, String, String)> = store
        .rules(None)
        .await
        .expect("rules")
        .into_iter()
        .map(|r| {
            (
                r.client_id.into_string(),
                r.trustee.into_string(),
                r.description,
            )
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = [
        ("vcert-sdk", alice.as_str(), "by name"),
        ("vcert-sdk", "everyone", "everyone"),
        ("vcert-sdk", "LDAP+dir:ops", "a group"),
        ("vcert-sdk", "local:ghost", "nobody's name"),
        // Of two spellings of one name, the smaller ("local:BOB") stays.
        ("two", bob.as_str(), "bob, one spelling"),
        // The rule that named the identity already stays; the one by name goes.
        ("three", alice.as_str(), "by identity"),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(rules, expected);
    let roles: BTreeSet<(String, i32, Option<String>)> = store
        .roles(None)
        .await
        .expect("roles")
        .into_iter()
        .map(
            |RoleAssignment {
                 grantee,
                 role,
                 client_id,
             }| {
                (
                    grantee.into_string(),
                    role.code(),
                    client_id.map(|c| c.into_string()),
                )
            },
        )
        .collect();
    let expected: BTreeSet<(String, i32, Option<String>)> = [
        (alice.clone(), 6, None),
        (alice.clone(), 3, Some("two".to_string())),
        ("local:ghost".to_string(), 1, None),
    ]
    .into_iter()
    .collect();
    assert_eq!(roles, expected);
}

/// The upgraded store keeps working: its records read back, a node on it admits alice through
/// the rewritten rule, verifies and refreshes the grant made before the upgrade.
async fn assert_works(url: &str, seed: &Seed) {
    let node = TestServer::start_with(Options::on_database(url)).await;
    assert_rewritten(&node.app.store, seed).await;
    assert_eq!(
        node.app.store.settings().await.expect("settings").other["SessionPoolSize"],
        12
    );
    let lock = node
        .app
        .store
        .lockout(&format!("local:{{{}}}", seed.bob))
        .await
        .expect("lockout")
        .expect("bob's record");
    assert_eq!((lock.failures, lock.version), (2, 7));
    let v = node.verify(seed.access.value.expose()).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text);
    let r = node.refresh("vcert-sdk", seed.refresh.value.expose()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (access, _) = node
        .tokens("vcert-sdk", "alice", ALICE_PW, "certificate:manage")
        .await;
    assert_eq!(node.verify(&access).await.status, StatusCode::OK);
    // The sweep runs on the upgraded indexes.
    node.app
        .store
        .sweep_expired(seed.now + 10 * 365 * 86_400, 100)
        .await
        .expect("sweep");
}

#[tokio::test]
async fn a_sqlite_database_of_the_previous_release_upgrades_in_place_and_works() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("old.db");
    let seed = Seed::new().await;
    {
        let mut conn = SqliteConnection::connect(&format!("sqlite:{}?mode=rwc", path.display()))
            .await
            .expect("create");
        conn.execute("CREATE TABLE vedauth_schema (version INTEGER NOT NULL)")
            .await
            .expect("schema table");
        for (i, sql) in old_schema::SQLITE.iter().enumerate() {
            sqlx::raw_sql(sql)
                .execute(&mut conn)
                .await
                .expect("old schema");
            sqlx::query("INSERT INTO vedauth_schema (version) VALUES ($1)")
                .bind(i as i64 + 1)
                .execute(&mut conn)
                .await
                .expect("version");
        }
        write_seed!(&mut conn, &seed);
        conn.close().await.expect("close");
    }
    let url = format!("sqlite:{}", path.display());
    assert_works(&url, &seed).await;
    // And the upgraded file has exactly the schema of a new one.
    let fresh = fresh_sqlite(tmp.path()).await;
    assert_eq!(sqlite_catalogue(&path).await, fresh);
}

#[tokio::test]
async fn a_postgres_database_of_the_previous_release_upgrades_in_place_and_works() {
    let url = pg::fresh_database().await;
    let seed = Seed::new().await;
    {
        let mut conn = PgConnection::connect(&url).await.expect("connect");
        conn.execute("CREATE TABLE vedauth_schema (version INTEGER NOT NULL)")
            .await
            .expect("schema table");
        for (i, sql) in old_schema::POSTGRES.iter().enumerate() {
            sqlx::raw_sql(sql)
                .execute(&mut conn)
                .await
                .expect("old schema");
            sqlx::query("INSERT INTO vedauth_schema (version) VALUES ($1)")
                .bind(i as i32 + 1)
                .execute(&mut conn)
                .await
                .expect("version");
        }
        write_seed!(&mut conn, &seed);
        conn.close().await.expect("close");
    }
    assert_works(&url, &seed).await;
    let upgraded: SharedStore = Arc::new(
        PostgresStore::open(&url, &DatabaseConfig::default())
            .await
            .expect("open"),
    );
    upgraded.close().await;
    assert_eq!(pg_catalogue(&url).await, fresh_postgres().await);
}
