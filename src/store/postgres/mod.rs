//! The shared store: PostgreSQL, for several vedauth nodes on one database.
//!
//! Semantics match SQLite's (the SQL is the same, `sql/ports.rs`; the conformance suite checks
//! both). What is particular here:
//! - every operation is bounded in time (pool acquire timeout, then an overall timeout), so a
//!   database that is down or hangs turns into `StoreError::Unavailable` (503), never a hang;
//! - the pool tests connections before use, so the node recovers by itself when the database
//!   comes back;
//! - a refresh's compare-and-swap and the retirement of the old token are one statement;
//! - nodes tell each other of revoked and rotated tokens with NOTIFY (`feed.rs`).

mod feed;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row};
use tokio::sync::broadcast;

pub use feed::CHANNEL;

use super::rows::{digests, holder_row_from, Columns};
use super::sql::migrate::{self, migration, Migration};
use super::sql::ports::{
    bind_grant, bind_record_jwt_use, grant_columns, INSERT_GRANT, RECORD_JWT_USE,
};
use super::sql::{executor_glue, Backend, Dialect, Fault, Sql, SqlStore, Stmt};
use crate::domain::*;
use crate::token::TokenDigest;

/// The PostgreSQL store.
pub type PostgresStore = SqlStore<PgBackend>;

/// A grant written only if its holder (`$14`, the password hash `$15` or NULL) still holds,
/// answering the holder's row. `FOR SHARE` makes a concurrent change of the user wait for this
/// statement's commit, or this statement wait for the change's and then read the changed row:
/// either the change's revocation, which comes after it, finds the grant, or the grant is not
/// written. The condition is [`HolderChange::of`]'s.
const INSERT_HELD_GRANT: &str = concat!(
    "WITH u AS (SELECT disabled, password_hash FROM users WHERE id = $14 FOR SHARE), ",
    "ins AS (INSERT INTO grants (",
    grant_columns!(),
    ") SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 FROM u ",
    "WHERE NOT u.disabled AND ($15::text IS NULL OR u.password_hash = $15::text) RETURNING 1) ",
    "SELECT disabled, password_hash FROM u"
);

/// How a node uses its database (mapped from the configuration file by `app.rs`).
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Most connections of the pool (the invalidation feed has one more of its own).
    pub max_connections: u32,
    /// How long a request waits for a connection, connecting included.
    pub acquire_timeout: Duration,
    /// How long one store operation may take in all.
    pub operation_timeout: Duration,
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

impl Dialect for Postgres {
    const KIND: &'static str = "postgres";
    // The unique index is on lower(name); "C" makes lower() fold ASCII only, as SQLite's NOCASE.
    const USER_BY_NAME: &'static str =
        "SELECT * FROM users WHERE lower(name) = lower($1::text COLLATE \"C\")";
    // SKIP LOCKED: nodes sweeping at the same time take different rows instead of queueing
    // behind each other.
    const SWEEP_GRANTS: &'static str = "DELETE FROM grants WHERE id IN (
             SELECT id FROM grants
             WHERE (expires_at IS NOT NULL AND expires_at <= $1)
                OR (refresh_digest IS NULL AND access_expires_at <= $1)
             LIMIT $2 FOR UPDATE SKIP LOCKED)";
    const SWEEP_RETIRED: &'static str = "DELETE FROM retired_refresh WHERE digest IN (
             SELECT r.digest FROM retired_refresh r
             WHERE (r.expires_at IS NOT NULL AND r.expires_at <= $1)
                OR NOT EXISTS (SELECT 1 FROM grants g WHERE g.id = r.grant_id)
             LIMIT $2 FOR UPDATE OF r SKIP LOCKED)";
    const BEGIN_WRITE: &'static str = "BEGIN";
    // Any fixed number will do ("vedauth\x01").
    const MIGRATION_LOCK: &'static str = "SELECT pg_advisory_xact_lock(8531335438868441089)";
    const SCAN_BEGIN: &'static str = "";
    const SCAN_END: &'static str = "";
    const MIGRATIONS: &'static [Migration] = &[
        migration!(1, "postgres/0001_initial.sql"),
        migration!(2, "postgres/0002_roles.sql"),
        migration!(3, "postgres/0003_lockout.sql"),
        migration!(4, "common/0004_sweep_index.sql"),
        migration!(5, "common/0005_trustees_by_identity.sql"),
        migration!(6, "postgres/0006_invalidation_feed.sql"),
        migration!(7, "postgres/0007_jwt_mappings.sql"),
        migration!(8, "postgres/0008_jwt_uses.sql"),
        migration!(9, "postgres/0009_trusted_issuers.sql"),
        migration!(10, "postgres/0010_client_secrets.sql"),
        migration!(11, "postgres/0011_device_codes.sql"),
        migration!(13, "postgres/0013_refresh_successors.sql"),
    ];

    fn error(e: sqlx::Error) -> StoreError {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict,
            sqlx::Error::Database(d) if d.code().is_some_and(|c| transient(&c)) => {
                StoreError::Unavailable(e.into())
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.into()),
            _ => StoreError::Backend(e.into()),
        }
    }

    fn fault(e: &sqlx::Error) -> Option<Fault> {
        let sqlx::Error::Database(d) = e else {
            return None;
        };
        match d.code()?.as_ref() {
            // data_corrupted, index_corrupted
            "XX001" | "XX002" => Some(Fault::Corrupt),
            // disk_full, io_error, read-only transaction
            "53100" | "58030" | "25006" => Some(Fault::CannotWrite),
            _ => None,
        }
    }

    executor_glue!();
}

impl Columns for PgRow {
    fn text(&self, col: &str) -> StoreResult<String> {
        self.try_get(col).map_err(Postgres::error)
    }
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>> {
        self.try_get(col).map_err(Postgres::error)
    }
    fn int(&self, col: &str) -> StoreResult<i64> {
        // INTEGER columns (roles, versions) are 32-bit in PostgreSQL; BIGINT ones 64-bit.
        self.try_get::<i64, _>(col)
            .or_else(|_| self.try_get::<i32, _>(col).map(i64::from))
            .map_err(Postgres::error)
    }
    fn opt_int(&self, col: &str) -> StoreResult<Option<i64>> {
        self.try_get(col).map_err(Postgres::error)
    }
    fn flag(&self, col: &str) -> StoreResult<bool> {
        self.try_get(col).map_err(Postgres::error)
    }
    fn opt_flag(&self, col: &str) -> StoreResult<Option<bool>> {
        self.try_get(col).map_err(Postgres::error)
    }
    fn opt_bytes(&self, col: &str) -> StoreResult<Option<Vec<u8>>> {
        self.try_get(col).map_err(Postgres::error)
    }
}

/// Whether a URL names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// PostgreSQL's side of the store.
pub struct PgBackend {
    described: String,
    feed: feed::Feed,
}

impl PostgresStore {
    /// Connects, and applies pending migrations. Fails if the database cannot be reached now.
    pub async fn open(url: &str, opts: impl Into<PgOptions>) -> StoreResult<Self> {
        let o: PgOptions = opts.into();
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::backend(format!("database URL: {e}")))?
            .application_name("vedauth");
        let described = format!(
            "postgres://{}@{}:{}/{}",
            connect.get_username(),
            connect.get_host(),
            connect.get_port(),
            connect.get_database().unwrap_or_default()
        );
        let pool = PgPoolOptions::new()
            .max_connections(o.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(o.acquire_timeout)
            // A connection that died with the server is found out before use, not by a request.
            .test_before_acquire(true)
            .idle_timeout(Some(Duration::from_secs(300)))
            .connect_lazy_with(connect.clone());
        let sql = Sql::new(pool, Some(o.operation_timeout));
        sql.run("migrate", migrate::run(&sql.pool)).await?;
        Ok(SqlStore {
            sql,
            backend: PgBackend {
                described,
                feed: feed::Feed::new(connect, o.acquire_timeout),
            },
        })
    }
}

#[async_trait]
impl Backend for PgBackend {
    type Db = Postgres;

    fn describe(&self) -> String {
        self.described.clone()
    }

    async fn insert_grant(
        &self,
        sql: &Sql<Postgres>,
        grant: &Grant,
        holder: Option<&Holder>,
    ) -> StoreResult<Option<HolderChange>> {
        let Some(h) = holder else {
            sql.exec(bind_grant(Stmt::new(INSERT_GRANT), grant)).await?;
            return Ok(None);
        };
        let s = bind_grant(Stmt::new(INSERT_HELD_GRANT), grant)
            .arg(&h.user_id)
            .arg(&h.password_hash);
        let row = sql.one_as(s, holder_row_from).await?;
        Ok(HolderChange::of(h, row.as_ref()))
    }

    async fn record_jwt_use(
        &self,
        sql: &Sql<Postgres>,
        u: &JwtUse,
        now: crate::clock::UnixTime,
    ) -> StoreResult<bool> {
        let s = bind_record_jwt_use(Stmt::new(RECORD_JWT_USE), u, now);
        Ok(sql.exec(s).await? == 1)
    }

    async fn rotate_tokens(
        &self,
        sql: &Sql<Postgres>,
        grant_id: &str,
        old_refresh: &TokenDigest,
        new: &Rotation,
    ) -> StoreResult<bool> {
        // The guarded UPDATE is the compare-and-swap: a concurrent caller (on any node) blocks
        // on the row, then finds the refresh digest changed and updates nothing. One
        // statement, so the retirement of the old token commits with the swap.
        let s = Stmt::new(
            "WITH swapped AS (
                 UPDATE grants SET access_digest = $1, access_issued_at = $2,
                     access_expires_at = $3, refresh_digest = $4
                 WHERE id = $5 AND refresh_digest = $6
                 RETURNING id, expires_at),
             retired AS (
                 INSERT INTO retired_refresh (digest, grant_id, expires_at)
                 SELECT $6, id, expires_at FROM swapped
                 ON CONFLICT (digest) DO NOTHING)
             SELECT COUNT(*) AS n FROM swapped",
        )
        .arg(&new.access_digest)
        .arg(new.access_issued_at)
        .arg(new.access_expires_at)
        .arg(&new.refresh_digest)
        .arg(grant_id)
        .arg(old_refresh);
        let row = sql
            .one(s)
            .await?
            .ok_or_else(|| StoreError::backend("no row from a rotation"))?;
        Ok(row.int("n")? == 1)
    }

    async fn delete_grant(
        &self,
        sql: &Sql<Postgres>,
        grant_id: &str,
    ) -> StoreResult<Option<TokenDigest>> {
        let s = Stmt::new("DELETE FROM grants WHERE id = $1 RETURNING access_digest").arg(grant_id);
        Ok(digests(&sql.all(s).await?)?.into_iter().next())
    }

    async fn announce(&self, sql: &Sql<Postgres>, digests: &[TokenDigest]) -> StoreResult<()> {
        self.feed.announce(sql, digests).await
    }

    fn invalidations(&self, _sql: &Sql<Postgres>) -> Option<broadcast::Receiver<Invalidation>> {
        self.feed.subscribe()
    }

    async fn after_sweep(&self, _sql: &Sql<Postgres>) -> StoreResult<()> {
        Ok(())
    }

    async fn ready(&self, sql: &Sql<Postgres>) -> StoreResult<()> {
        // A standby (after a failover, or a URL that names one) answers reads but refuses
        // every write.
        let row = sql
            .one(Stmt::new("SELECT pg_is_in_recovery() AS standby"))
            .await?
            .ok_or_else(|| StoreError::backend("no row from pg_is_in_recovery"))?;
        if row.flag("standby")? {
            return Err(StoreError::unavailable(
                "the database is a read-only standby",
            ));
        }
        Ok(())
    }

    async fn close(&self, sql: &Sql<Postgres>) {
        sql.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_outages_are_unavailable() {
        assert!(transient("08006"));
        assert!(transient("57P01"));
        assert!(transient("53300"));
        assert!(!transient("23505"));
        assert!(!transient("42P01"));
        assert!(matches!(
            Postgres::error(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            Postgres::error(sqlx::Error::RowNotFound),
            StoreError::Backend(_)
        ));
    }
}
