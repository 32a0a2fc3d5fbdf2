//! The shared store: PostgreSQL, for several vedauth nodes on one database.
//!
//! Semantics match `sqlite.rs` (the conformance suite checks both). What is particular here:
//! - every operation is bounded in time (pool acquire timeout, then an overall timeout), so a
//!   database that is down or hangs turns into `StoreError::Unavailable` (503), never a hang;
//! - the pool tests connections before use, so the node recovers by itself when the database
//!   comes back;
//! - nodes tell each other of revoked and rotated tokens with NOTIFY on [`CHANNEL`]; a listener
//!   task per node feeds [`Store::invalidations`] and reconnects by itself.

use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use tokio::sync::{broadcast, oneshot};

use super::rows::{
    app_from, digests, grant_from, lockout_from, role_from, rule_from, user_from, Columns,
};
use super::*;
use crate::clock::UnixTime;
use crate::config::DatabaseConfig;
use crate::token::TokenDigest;

/// The NOTIFY channel on which nodes announce invalidated access-token digests.
pub const CHANNEL: &str = "vedauth_invalidate";
/// Digests per notification: 64 hex characters and a separator each stay within PostgreSQL's
/// 8000-byte payload limit.
const DIGESTS_PER_NOTIFY: usize = 120;
/// Announcements a slow follower may fall behind by before it drops its whole cache.
const FEED_CAPACITY: usize = 4096;
/// Serialises migrations of nodes that start at the same time (any fixed number will do).
const MIGRATION_LOCK: i64 = 0x7665_6461_7574_6801;

/// Schema versions, applied in order at start; each runs once, in its own transaction.
/// Key and name columns use the "C" collation: byte-wise comparison and ordering, as SQLite's
/// default. User names are unique case-insensitively in ASCII, as SQLite's NOCASE.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id            TEXT COLLATE "C" PRIMARY KEY,
    name          TEXT COLLATE "C" NOT NULL,
    full_name     TEXT,
    email         TEXT,
    password_hash TEXT NOT NULL,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_name_nocase ON users (lower(name));
CREATE TABLE applications (
    client_id         TEXT COLLATE "C" PRIMARY KEY,
    name              TEXT NOT NULL DEFAULT '',
    vendor            TEXT NOT NULL DEFAULT '',
    description       TEXT NOT NULL DEFAULT '',
    url               TEXT NOT NULL DEFAULT '',
    scope             TEXT NOT NULL,
    max_scope         TEXT NOT NULL,
    access_validity   BIGINT,
    grant_validity    BIGINT,
    renewable         BOOLEAN,
    unused_expiration BIGINT,
    created_at        BIGINT NOT NULL
);
CREATE TABLE rules (
    client_id       TEXT COLLATE "C" NOT NULL REFERENCES applications(client_id) ON DELETE CASCADE,
    trustee         TEXT COLLATE "C" NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    max_scope       TEXT,
    access_validity BIGINT,
    grant_validity  BIGINT,
    renewable       BOOLEAN,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (client_id, trustee)
);
CREATE TABLE settings (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    doc TEXT NOT NULL
);
CREATE TABLE grants (
    id                TEXT COLLATE "C" PRIMARY KEY,
    client_id         TEXT COLLATE "C" NOT NULL,
    identity          TEXT COLLATE "C" NOT NULL,
    granted_to        TEXT NOT NULL,
    scope             TEXT NOT NULL,
    issued_at         BIGINT NOT NULL,
    expires_at        BIGINT,
    renewable         BOOLEAN NOT NULL,
    access_validity   BIGINT NOT NULL,
    access_digest     BYTEA NOT NULL UNIQUE,
    access_issued_at  BIGINT NOT NULL,
    access_expires_at BIGINT NOT NULL,
    refresh_digest    BYTEA UNIQUE
);
CREATE INDEX grants_identity ON grants(identity);
CREATE INDEX grants_client ON grants(client_id);
CREATE INDEX grants_expires ON grants(expires_at);
CREATE INDEX grants_access_expires ON grants(access_expires_at);
CREATE TABLE retired_refresh (
    digest     BYTEA PRIMARY KEY,
    grant_id   TEXT COLLATE "C" NOT NULL,
    expires_at BIGINT
);
CREATE INDEX retired_refresh_grant ON retired_refresh(grant_id);
"#,
    r#"
CREATE TABLE roles (
    grantee   TEXT COLLATE "C" NOT NULL,
    role      INTEGER NOT NULL,
    client_id TEXT COLLATE "C" NOT NULL DEFAULT '',
    PRIMARY KEY (grantee, role, client_id)
);
"#,
    r#"
CREATE TABLE lockout (
    identity      TEXT COLLATE "C" PRIMARY KEY,
    failures      BIGINT NOT NULL,
    window_start  BIGINT NOT NULL,
    pending       BIGINT NOT NULL,
    pending_since BIGINT NOT NULL,
    locked_until  BIGINT NOT NULL,
    version       BIGINT NOT NULL
);
"#,
];

/// The listener task's side of the store: started on the first call to `invalidations`.
struct Feed {
    tx: broadcast::Sender<Invalidation>,
    /// Dropped with the store, which ends the listener task.
    _stop: oneshot::Sender<()>,
}

pub struct PostgresStore {
    pool: PgPool,
    connect: PgConnectOptions,
    described: String,
    cfg: DatabaseConfig,
    feed: Mutex<Option<Feed>>,
}

impl std::fmt::Debug for PostgresStore {
    // Written out so that the connect options (which hold the password) never print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("database", &self.described)
            .finish_non_exhaustive()
    }
}

/// SQLSTATE classes and codes that mean "the database cannot serve now, try later".
fn transient(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources (too many connections, ...)
        || code.starts_with("57P") // shutting down, crashed, starting up
        || code == "40001" // serialization failure
        || code == "40P01" // deadlock detected
        || code == "25006" // read-only transaction: a standby after a failover
}

fn err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::Database(d) if d.code().is_some_and(|c| transient(&c)) => {
            StoreError::Unavailable(d.to_string())
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        other => StoreError::Backend(other.to_string()),
    }
}

impl Columns for PgRow {
    fn text(&self, col: &str) -> StoreResult<String> {
        self.try_get(col).map_err(err)
    }
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>> {
        self.try_get(col).map_err(err)
    }
    fn int(&self, col: &str) -> StoreResult<i64> {
        // INTEGER columns (roles) are 32-bit in PostgreSQL; BIGINT ones 64-bit.
        self.try_get::<i64, _>(col)
            .or_else(|_| self.try_get::<i32, _>(col).map(i64::from))
            .map_err(err)
    }
    fn opt_int(&self, col: &str) -> StoreResult<Option<i64>> {
        self.try_get(col).map_err(err)
    }
    fn flag(&self, col: &str) -> StoreResult<bool> {
        self.try_get(col).map_err(err)
    }
    fn opt_flag(&self, col: &str) -> StoreResult<Option<bool>> {
        self.try_get(col).map_err(err)
    }
    fn opt_bytes(&self, col: &str) -> StoreResult<Option<Vec<u8>>> {
        self.try_get(col).map_err(err)
    }
}

/// The WHERE clause of a grant filter, with its bind values in order.
fn grant_where(filter: &GrantFilter) -> (String, Vec<String>) {
    let mut clauses = Vec::new();
    let mut binds = Vec::new();
    if let Some(c) = &filter.client_id {
        binds.push(c.clone());
        clauses.push(format!("client_id = ${}", binds.len()));
    }
    if let Some(i) = &filter.identity {
        binds.push(i.clone());
        clauses.push(format!("identity = ${}", binds.len()));
    }
    if clauses.is_empty() {
        (String::new(), binds)
    } else {
        (format!(" WHERE {}", clauses.join(" AND ")), binds)
    }
}

const GRANT_COLUMNS: &str = "id, client_id, identity, granted_to, scope, issued_at, expires_at, renewable, access_validity, access_digest, access_issued_at, access_expires_at, refresh_digest";

/// Whether a URL names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Parses the NOTIFY payload: hex digests separated by commas. Anything else is skipped.
fn parse_payload(payload: &str) -> impl Iterator<Item = TokenDigest> + '_ {
    payload.split(',').filter_map(|hex| {
        let hex = hex.trim();
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(TokenDigest(out))
    })
}

impl PostgresStore {
    /// Connects, and applies pending migrations. Fails if the database cannot be reached now.
    pub async fn open(url: &str, cfg: &DatabaseConfig) -> StoreResult<Self> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(format!("database URL: {e}")))?
            .application_name("vedauth");
        let described = format!(
            "postgres://{}@{}:{}/{}",
            connect.get_username(),
            connect.get_host(),
            connect.get_port(),
            connect.get_database().unwrap_or_default()
        );
        let pool = PgPoolOptions::new()
            .max_connections(cfg.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(cfg.acquire_timeout())
            // A connection that died with the server is found out before use, not by a request.
            .test_before_acquire(true)
            .idle_timeout(Some(Duration::from_secs(300)))
            .connect_lazy_with(connect.clone());
        let store = Self {
            pool,
            connect,
            described,
            cfg: cfg.clone(),
            feed: Mutex::new(None),
        };
        store.timed(store.migrate()).await?;
        Ok(store)
    }

    /// Runs one store operation within the configured overall bound.
    async fn timed<T>(
        &self,
        op: impl std::future::Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        tokio::time::timeout(self.cfg.operation_timeout(), op)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(format!(
                    "no answer from the database within {} s",
                    self.cfg.operation_timeout_secs
                )))
            })
    }

    async fn migrate(&self) -> StoreResult<()> {
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let version = i as i64 + 1;
            let mut tx = self.pool.begin().await.map_err(err)?;
            // Held until commit: a second node starting now waits, then sees the new version.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            sqlx::query("CREATE TABLE IF NOT EXISTS vedauth_schema (version INTEGER NOT NULL)")
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            let current: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(version), 0)::BIGINT FROM vedauth_schema")
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(err)?;
            if version > current {
                sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(err)?;
                sqlx::query("INSERT INTO vedauth_schema (version) VALUES ($1)")
                    .bind(version as i32)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
            }
            tx.commit().await.map_err(err)?;
        }
        Ok(())
    }

    async fn announce(&self, digests: &[TokenDigest]) -> StoreResult<()> {
        let payloads: Vec<String> = digests
            .chunks(DIGESTS_PER_NOTIFY)
            .map(|chunk| {
                chunk
                    .iter()
                    .map(TokenDigest::to_hex)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        // One statement for all batches: one round trip, delivered together at commit.
        sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
            .bind(CHANNEL)
            .bind(payloads)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }
}

/// Listens on [`CHANNEL`] until `stop` fires, reconnecting after any loss of the connection.
async fn follow_channel(
    connect: PgConnectOptions,
    acquire_timeout: Duration,
    tx: broadcast::Sender<Invalidation>,
    mut stop: oneshot::Receiver<()>,
) {
    // A pool of its own, so the listening connection never takes one from requests. Two slots:
    // a connection being torn down must not block its replacement.
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(acquire_timeout)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(connect);
    let first_backoff = Duration::from_millis(100);
    let mut backoff = first_backoff;
    // For the log: whether we ever listened, and whether a failure to connect was reported
    // since we last did (one line per outage, not one per attempt).
    let mut listened_before = false;
    let mut reported = false;
    loop {
        let mut listening = false;
        let session = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            // Reconnection is ours to do, so that every reconnect is followed by `All` below.
            listener.eager_reconnect(false);
            listener.listen(CHANNEL).await?;
            listening = true;
            if listened_before {
                tracing::info!("invalidation feed reconnected");
            }
            // Announcements made while we were not listening are lost: whatever this node has
            // cached may be stale. (At first start the cache is empty, and this costs nothing.)
            let _ = tx.send(Invalidation::All);
            while let Some(n) = listener.try_recv().await? {
                for d in parse_payload(n.payload()) {
                    let _ = tx.send(Invalidation::Token(d));
                }
            }
            Ok::<(), sqlx::Error>(())
        };
        let outcome = tokio::select! {
            _ = &mut stop => break,
            r = session => r,
        };
        if listening {
            listened_before = true;
            reported = false;
            backoff = first_backoff;
            tracing::warn!(error = ?outcome.err(), "invalidation feed lost its connection; reconnecting");
        } else if !reported {
            reported = true;
            tracing::warn!(error = ?outcome.err(), "invalidation feed cannot connect; retrying");
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
    pool.close().await;
}

#[async_trait]
impl Store for PostgresStore {
    fn describe(&self) -> String {
        self.described.clone()
    }

    async fn close(&self) {
        self.pool.close().await;
    }
    async fn ping(&self) -> StoreResult<()> {
        self.timed(async {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn counts(&self, now: UnixTime) -> StoreResult<Counts> {
        self.timed(async {
            let row = sqlx::query(
                "SELECT (SELECT COUNT(*) FROM users) AS u, (SELECT COUNT(*) FROM applications) AS a,
                        (SELECT COUNT(*) FROM grants WHERE expires_at IS NULL OR expires_at > $1) AS g",
            )
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
            let get = |c: &str| row.try_get::<i64, _>(c).map(|v| v as u64).map_err(err);
            Ok(Counts {
                users: get("u")?,
                applications: get("a")?,
                grants: get("g")?,
            })
        })
        .await
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        self.timed(async {
            let any: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM applications)",
            )
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
            Ok(!any)
        })
        .await
    }

    async fn create_user(&self, u: &User) -> StoreResult<()> {
        self.timed(async {
            sqlx::query(
                "INSERT INTO users (id, name, full_name, email, password_hash, disabled, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&u.id)
            .bind(&u.name)
            .bind(&u.full_name)
            .bind(&u.email)
            .bind(&u.password_hash)
            .bind(u.disabled)
            .bind(u.created_at)
            .execute(&self.pool)
            .await
            .map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn user_by_name(&self, name: &str) -> StoreResult<Option<User>> {
        self.timed(async {
            sqlx::query("SELECT * FROM users WHERE lower(name) = lower($1::text COLLATE \"C\")")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?
                .as_ref()
                .map(user_from)
                .transpose()
        })
        .await
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        self.timed(async {
            sqlx::query("SELECT * FROM users WHERE id = $1")
                .bind(id.to_ascii_lowercase())
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?
                .as_ref()
                .map(user_from)
                .transpose()
        })
        .await
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        self.timed(async {
            sqlx::query("SELECT * FROM users ORDER BY lower(name), name")
                .fetch_all(&self.pool)
                .await
                .map_err(err)?
                .iter()
                .map(user_from)
                .collect()
        })
        .await
    }

    async fn replace_password_hash(
        &self,
        id: &str,
        expected: Option<&str>,
        new_hash: &str,
    ) -> StoreResult<bool> {
        self.timed(async {
            let res = match expected {
                Some(old) => sqlx::query(
                    "UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3",
                )
                .bind(new_hash)
                .bind(id)
                .bind(old),
                None => sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                    .bind(new_hash)
                    .bind(id),
            }
            .execute(&self.pool)
            .await
            .map_err(err)?;
            Ok(res.rows_affected() == 1)
        })
        .await
    }

    async fn set_user_disabled(&self, id: &str, disabled: bool) -> StoreResult<bool> {
        self.timed(async {
            let res = sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
                .bind(disabled)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(err)?;
            Ok(res.rows_affected() == 1)
        })
        .await
    }

    async fn delete_user(&self, id: &str) -> StoreResult<bool> {
        self.timed(async {
            let res = sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(err)?;
            Ok(res.rows_affected() == 1)
        })
        .await
    }

    async fn create_application(&self, a: &Application) -> StoreResult<()> {
        self.timed(async {
            sqlx::query(
                "INSERT INTO applications (client_id, name, vendor, description, url, scope,
                     max_scope, access_validity, grant_validity, renewable, unused_expiration,
                     created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(&a.client_id)
            .bind(&a.name)
            .bind(&a.vendor)
            .bind(&a.description)
            .bind(&a.url)
            .bind(&a.scope)
            .bind(&a.max_scope)
            .bind(a.access_validity)
            .bind(a.grant_validity.map(Lifetime::to_db))
            .bind(a.renewable)
            .bind(a.unused_expiration)
            .bind(a.created_at)
            .execute(&self.pool)
            .await
            .map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn application(&self, client_id: &str) -> StoreResult<Option<Application>> {
        self.timed(async {
            sqlx::query("SELECT * FROM applications WHERE client_id = $1")
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?
                .as_ref()
                .map(app_from)
                .transpose()
        })
        .await
    }

    async fn list_applications(&self) -> StoreResult<Vec<Application>> {
        self.timed(async {
            sqlx::query("SELECT * FROM applications ORDER BY client_id")
                .fetch_all(&self.pool)
                .await
                .map_err(err)?
                .iter()
                .map(app_from)
                .collect()
        })
        .await
    }

    async fn update_application(&self, a: &Application) -> StoreResult<bool> {
        self.timed(async {
            let res = sqlx::query(
                "UPDATE applications SET name = $1, vendor = $2, description = $3, url = $4,
                     scope = $5, max_scope = $6, access_validity = $7, grant_validity = $8,
                     renewable = $9, unused_expiration = $10
                 WHERE client_id = $11",
            )
            .bind(&a.name)
            .bind(&a.vendor)
            .bind(&a.description)
            .bind(&a.url)
            .bind(&a.scope)
            .bind(&a.max_scope)
            .bind(a.access_validity)
            .bind(a.grant_validity.map(Lifetime::to_db))
            .bind(a.renewable)
            .bind(a.unused_expiration)
            .bind(&a.client_id)
            .execute(&self.pool)
            .await
            .map_err(err)?;
            Ok(res.rows_affected() == 1)
        })
        .await
    }

    async fn delete_application(&self, client_id: &str) -> StoreResult<Option<Vec<TokenDigest>>> {
        self.timed(async {
            let mut tx = self.pool.begin().await.map_err(err)?;
            let gone = sqlx::query("DELETE FROM applications WHERE client_id = $1")
                .bind(client_id)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            if gone.rows_affected() == 0 {
                return Ok(None);
            }
            // The foreign key would cascade; said here so that the intent does not hang on it.
            for table in ["rules", "roles"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE client_id = $1"))
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
            }
            let rows =
                sqlx::query("DELETE FROM grants WHERE client_id = $1 RETURNING access_digest")
                    .bind(client_id)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(err)?;
            tx.commit().await.map_err(err)?;
            digests(&rows).map(Some)
        })
        .await
    }

    async fn create_rule(&self, r: &Rule) -> StoreResult<()> {
        self.timed(async {
            sqlx::query(
                "INSERT INTO rules (client_id, trustee, description, max_scope, access_validity,
                     grant_validity, renewable, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&r.client_id)
            .bind(&r.trustee)
            .bind(&r.description)
            .bind(&r.max_scope)
            .bind(r.access_validity)
            .bind(r.grant_validity.map(Lifetime::to_db))
            .bind(r.renewable)
            .bind(r.created_at)
            .execute(&self.pool)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                    StoreError::Backend("no such application".into())
                }
                other => err(other),
            })?;
            Ok(())
        })
        .await
    }

    async fn rules(&self, client_id: Option<&str>) -> StoreResult<Vec<Rule>> {
        self.timed(async {
            let q = match client_id {
                Some(c) => sqlx::query("SELECT * FROM rules WHERE client_id = $1 ORDER BY trustee")
                    .bind(c.to_string()),
                None => sqlx::query("SELECT * FROM rules ORDER BY client_id, trustee"),
            };
            q.fetch_all(&self.pool)
                .await
                .map_err(err)?
                .iter()
                .map(rule_from)
                .collect()
        })
        .await
    }

    async fn update_rule(&self, r: &Rule) -> StoreResult<bool> {
        self.timed(async {
            let res = sqlx::query(
                "UPDATE rules SET description = $1, max_scope = $2, access_validity = $3,
                     grant_validity = $4, renewable = $5
                 WHERE client_id = $6 AND trustee = $7",
            )
            .bind(&r.description)
            .bind(&r.max_scope)
            .bind(r.access_validity)
            .bind(r.grant_validity.map(Lifetime::to_db))
            .bind(r.renewable)
            .bind(&r.client_id)
            .bind(&r.trustee)
            .execute(&self.pool)
            .await
            .map_err(err)?;
            Ok(res.rows_affected() == 1)
        })
        .await
    }

    async fn add_role(&self, r: &RoleAssignment) -> StoreResult<()> {
        self.timed(async {
            sqlx::query("INSERT INTO roles (grantee, role, client_id) VALUES ($1, $2, $3)")
                .bind(&r.grantee)
                .bind(r.role)
                .bind(r.client_id.as_deref().unwrap_or(""))
                .execute(&self.pool)
                .await
                .map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn remove_role(
        &self,
        grantee: &str,
        role: i32,
        client_id: Option<&str>,
    ) -> StoreResult<u64> {
        self.timed(async {
            let q = match client_id {
                Some(c) => sqlx::query(
                    "DELETE FROM roles WHERE grantee = $1 AND role = $2 AND client_id = $3",
                )
                .bind(grantee)
                .bind(role)
                .bind(c),
                None => sqlx::query("DELETE FROM roles WHERE grantee = $1 AND role = $2")
                    .bind(grantee)
                    .bind(role),
            };
            Ok(q.execute(&self.pool).await.map_err(err)?.rows_affected())
        })
        .await
    }

    async fn roles(&self, grantee: Option<&str>) -> StoreResult<Vec<RoleAssignment>> {
        self.timed(async {
            let q = match grantee {
                Some(g) => sqlx::query(
                    "SELECT grantee, role, client_id FROM roles WHERE grantee = $1 ORDER BY grantee, role, client_id",
                )
                .bind(g),
                None => sqlx::query(
                    "SELECT grantee, role, client_id FROM roles ORDER BY grantee, role, client_id",
                ),
            };
            q.fetch_all(&self.pool)
                .await
                .map_err(err)?
                .iter()
                .map(role_from)
                .collect()
        })
        .await
    }

    async fn lockout(&self, identity: &str) -> StoreResult<Option<LockoutRecord>> {
        self.timed(async {
            let row = sqlx::query("SELECT * FROM lockout WHERE identity = $1")
                .bind(identity)
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
            row.as_ref().map(lockout_from).transpose()
        })
        .await
    }

    async fn put_lockout(
        &self,
        identity: &str,
        expected: Option<i64>,
        r: &LockoutRecord,
    ) -> StoreResult<bool> {
        self.timed(async {
            let res = match expected {
                None => sqlx::query(
                    "INSERT INTO lockout (identity, failures, window_start, pending, pending_since, locked_until, version)
                     VALUES ($1, $2, $3, $4, $5, $6, 1) ON CONFLICT (identity) DO NOTHING",
                )
                .bind(identity)
                .bind(r.failures as i64)
                .bind(r.window_start)
                .bind(r.pending as i64)
                .bind(r.pending_since)
                .bind(r.locked_until),
                Some(v) => sqlx::query(
                    "UPDATE lockout SET failures = $1, window_start = $2, pending = $3, pending_since = $4,
                         locked_until = $5, version = version + 1
                     WHERE identity = $6 AND version = $7",
                )
                .bind(r.failures as i64)
                .bind(r.window_start)
                .bind(r.pending as i64)
                .bind(r.pending_since)
                .bind(r.locked_until)
                .bind(identity)
                .bind(v),
            }
            .execute(&self.pool)
            .await
            .map_err(err)?;
            Ok(res.rows_affected() == 1)
        })
        .await
    }

    async fn delete_lockout(&self, identity: &str) -> StoreResult<bool> {
        self.timed(async {
            let res = sqlx::query("DELETE FROM lockout WHERE identity = $1")
                .bind(identity)
                .execute(&self.pool)
                .await
                .map_err(err)?;
            Ok(res.rows_affected() == 1)
        })
        .await
    }

    async fn delete_rule(&self, client_id: &str, trustee: &str) -> StoreResult<bool> {
        self.timed(async {
            let res = sqlx::query("DELETE FROM rules WHERE client_id = $1 AND trustee = $2")
                .bind(client_id)
                .bind(trustee)
                .execute(&self.pool)
                .await
                .map_err(err)?;
            Ok(res.rows_affected() == 1)
        })
        .await
    }

    async fn settings(&self) -> StoreResult<Settings> {
        self.timed(async {
            let doc: Option<String> = sqlx::query_scalar("SELECT doc FROM settings WHERE id = 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
            match doc {
                None => Ok(Settings::default()),
                Some(d) => serde_json::from_str(&d).map_err(|e| StoreError::Corrupt(e.to_string())),
            }
        })
        .await
    }

    async fn put_settings(&self, s: &Settings) -> StoreResult<()> {
        let doc = serde_json::to_string(s).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.timed(async {
            sqlx::query(
                "INSERT INTO settings (id, doc) VALUES (1, $1)
                 ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
            )
            .bind(doc)
            .execute(&self.pool)
            .await
            .map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn insert_grant(&self, g: &Grant) -> StoreResult<()> {
        self.timed(async {
            sqlx::query(
                "INSERT INTO grants (id, client_id, identity, granted_to, scope, issued_at,
                     expires_at, renewable, access_validity, access_digest, access_issued_at,
                     access_expires_at, refresh_digest)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(&g.id)
            .bind(&g.client_id)
            .bind(&g.identity)
            .bind(&g.granted_to)
            .bind(&g.scope)
            .bind(g.issued_at)
            .bind(g.expires_at)
            .bind(g.renewable)
            .bind(g.access_validity)
            .bind(&g.access_digest.0[..])
            .bind(g.access_issued_at)
            .bind(g.access_expires_at)
            .bind(g.refresh_digest.as_ref().map(|d| d.0.to_vec()))
            .execute(&self.pool)
            .await
            .map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn grant_by_access(&self, d: &TokenDigest) -> StoreResult<Option<Grant>> {
        self.timed(async {
            sqlx::query(&format!(
                "SELECT {GRANT_COLUMNS} FROM grants WHERE access_digest = $1"
            ))
            .bind(&d.0[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .as_ref()
            .map(grant_from)
            .transpose()
        })
        .await
    }

    async fn grant_by_refresh(&self, d: &TokenDigest) -> StoreResult<Option<Grant>> {
        self.timed(async {
            sqlx::query(&format!(
                "SELECT {GRANT_COLUMNS} FROM grants WHERE refresh_digest = $1"
            ))
            .bind(&d.0[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .as_ref()
            .map(grant_from)
            .transpose()
        })
        .await
    }

    async fn rotate_tokens(
        &self,
        grant_id: &str,
        old_refresh: &TokenDigest,
        new: &Rotation,
        _now: UnixTime,
    ) -> StoreResult<bool> {
        self.timed(async {
            // The guarded UPDATE is the compare-and-swap: a concurrent caller (on any node)
            // blocks on the row, then finds the refresh digest changed and updates nothing.
            // One statement, so the retirement of the old token commits with the swap.
            let swapped: i64 = sqlx::query_scalar(
                "WITH swapped AS (
                     UPDATE grants SET access_digest = $1, access_issued_at = $2,
                         access_expires_at = $3, refresh_digest = $4
                     WHERE id = $5 AND refresh_digest = $6
                     RETURNING id, expires_at),
                 retired AS (
                     INSERT INTO retired_refresh (digest, grant_id, expires_at)
                     SELECT $6, id, expires_at FROM swapped
                     ON CONFLICT (digest) DO NOTHING)
                 SELECT COUNT(*) FROM swapped",
            )
            .bind(&new.access_digest.0[..])
            .bind(new.access_issued_at)
            .bind(new.access_expires_at)
            .bind(new.refresh_digest.as_ref().map(|d| d.0.to_vec()))
            .bind(grant_id)
            .bind(&old_refresh.0[..])
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
            Ok(swapped == 1)
        })
        .await
    }

    async fn grant_by_retired_refresh(&self, d: &TokenDigest) -> StoreResult<Option<String>> {
        self.timed(async {
            sqlx::query_scalar("SELECT grant_id FROM retired_refresh WHERE digest = $1")
                .bind(&d.0[..])
                .fetch_optional(&self.pool)
                .await
                .map_err(err)
        })
        .await
    }

    async fn delete_grant(&self, grant_id: &str) -> StoreResult<Option<TokenDigest>> {
        self.timed(async {
            let rows = sqlx::query("DELETE FROM grants WHERE id = $1 RETURNING access_digest")
                .bind(grant_id)
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
            Ok(digests(&rows)?.into_iter().next())
        })
        .await
    }

    async fn delete_grants(&self, filter: &GrantFilter) -> StoreResult<Vec<TokenDigest>> {
        self.timed(async {
            let (clause, binds) = grant_where(filter);
            let sql = format!("DELETE FROM grants{clause} RETURNING access_digest");
            let mut q = sqlx::query(&sql);
            for b in binds {
                q = q.bind(b);
            }
            digests(&q.fetch_all(&self.pool).await.map_err(err)?)
        })
        .await
    }

    async fn list_grants(&self, filter: &GrantFilter) -> StoreResult<Vec<Grant>> {
        self.timed(async {
            let (clause, binds) = grant_where(filter);
            let sql = format!("SELECT {GRANT_COLUMNS} FROM grants{clause} ORDER BY issued_at, id");
            let mut q = sqlx::query(&sql);
            for b in binds {
                q = q.bind(b);
            }
            q.fetch_all(&self.pool)
                .await
                .map_err(err)?
                .iter()
                .map(grant_from)
                .collect()
        })
        .await
    }

    async fn sweep_expired(&self, now: UnixTime, batch: u32) -> StoreResult<u64> {
        self.timed(async {
            // SKIP LOCKED: nodes sweeping at the same time take different rows instead of
            // queueing behind each other.
            let res = sqlx::query(
                "DELETE FROM grants WHERE id IN (
                     SELECT id FROM grants
                     WHERE (expires_at IS NOT NULL AND expires_at <= $1)
                        OR (refresh_digest IS NULL AND access_expires_at <= $1)
                     LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(now)
            .bind(i64::from(batch))
            .execute(&self.pool)
            .await
            .map_err(err)?;
            // Retired refresh digests are only useful while their grant could still be alive.
            sqlx::query(
                "DELETE FROM retired_refresh WHERE digest IN (
                     SELECT r.digest FROM retired_refresh r
                     WHERE (r.expires_at IS NOT NULL AND r.expires_at <= $1)
                        OR NOT EXISTS (SELECT 1 FROM grants g WHERE g.id = r.grant_id)
                     LIMIT $2 FOR UPDATE OF r SKIP LOCKED)",
            )
            .bind(now)
            .bind(i64::from(batch))
            .execute(&self.pool)
            .await
            .map_err(err)?;
            Ok(res.rows_affected())
        })
        .await
    }

    async fn announce_invalidation(&self, digests: &[TokenDigest]) -> StoreResult<()> {
        if digests.is_empty() {
            return Ok(());
        }
        self.timed(self.announce(digests)).await
    }

    fn invalidations(&self) -> Option<broadcast::Receiver<Invalidation>> {
        // The listener is a task on the caller's runtime; without one there is no feed.
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let mut feed = self.feed.lock().ok()?;
        if let Some(f) = feed.as_ref() {
            return Some(f.tx.subscribe());
        }
        let (tx, rx) = broadcast::channel(FEED_CAPACITY);
        let (stop_tx, stop_rx) = oneshot::channel();
        runtime.spawn(follow_channel(
            self.connect.clone(),
            self.cfg.acquire_timeout(),
            tx.clone(),
            stop_rx,
        ));
        *feed = Some(Feed { tx, _stop: stop_tx });
        Some(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_back_and_fit_the_limit() {
        let ds: Vec<TokenDigest> = (0..DIGESTS_PER_NOTIFY)
            .map(|i| TokenDigest::of(&i.to_string()))
            .collect();
        let payload = ds
            .iter()
            .map(TokenDigest::to_hex)
            .collect::<Vec<_>>()
            .join(",");
        assert!(payload.len() < 8000, "{}", payload.len());
        assert_eq!(parse_payload(&payload).collect::<Vec<_>>(), ds);
        assert_eq!(parse_payload("zz,").count(), 0);
        assert_eq!(parse_payload(&"é".repeat(32)).count(), 0);
    }

    #[test]
    fn only_outages_are_unavailable() {
        assert!(transient("08006"));
        assert!(transient("57P01"));
        assert!(transient("53300"));
        assert!(!transient("23505"));
        assert!(!transient("42P01"));
        assert!(matches!(
            err(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            err(sqlx::Error::RowNotFound),
            StoreError::Backend(_)
        ));
    }
}
