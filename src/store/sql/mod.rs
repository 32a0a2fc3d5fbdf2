//! The store's SQL, written once for SQLite and PostgreSQL.
//!
//! [`SqlStore<B>`] implements every port (`ports.rs`) over a [`Dialect`] (what differs between
//! the two databases, `dialect.rs`) and a [`Backend`] (what each does its own way: SQLite's
//! group-commit writer for the grant write path and its polled invalidation table, PostgreSQL's
//! single-statement rotation and NOTIFY). `SqliteStore` and `PostgresStore` are its two
//! instances.

mod dialect;
pub mod migrate;
pub mod ports;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Pool;
use tokio::sync::broadcast;

pub(crate) use dialect::executor_glue;
pub use dialect::{Arg, BoxFut, Dialect, Fault, Query, Stmt};

use crate::domain::*;
use crate::token::TokenDigest;

/// What a backend does its own way. Everything else is [`SqlStore`]'s shared SQL.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    type Db: Dialect;

    /// A short description without secrets.
    fn describe(&self) -> String;

    // The grant write path of the token endpoints.
    /// See [`GrantStore::insert_grant_for`]: the holder's check is part of the write.
    async fn insert_grant(
        &self,
        sql: &Sql<Self::Db>,
        grant: &Grant,
        holder: Option<&Holder>,
    ) -> StoreResult<Option<HolderChange>>;
    async fn rotate_tokens(
        &self,
        sql: &Sql<Self::Db>,
        grant_id: &str,
        old_refresh: &TokenDigest,
        new: &Rotation,
    ) -> StoreResult<bool>;
    async fn delete_grant(
        &self,
        sql: &Sql<Self::Db>,
        grant_id: &str,
    ) -> StoreResult<Option<TokenDigest>>;
    /// The JWT grant's once-only record ([`ports::RECORD_JWT_USE`]); true on the first use.
    async fn record_jwt_use(
        &self,
        sql: &Sql<Self::Db>,
        use_: &JwtUse,
        now: crate::clock::UnixTime,
    ) -> StoreResult<bool>;

    // The invalidation feed.
    async fn announce(&self, sql: &Sql<Self::Db>, digests: &[TokenDigest]) -> StoreResult<()>;
    fn invalidations(&self, sql: &Sql<Self::Db>) -> Option<broadcast::Receiver<Invalidation>>;
    /// Housekeeping after a sweep (pruning the feed).
    async fn after_sweep(&self, sql: &Sql<Self::Db>) -> StoreResult<()>;

    /// Whether the database can serve and write, beyond what [`Health`] remembers.
    async fn ready(&self, sql: &Sql<Self::Db>) -> StoreResult<()>;
    async fn close(&self, sql: &Sql<Self::Db>);
}

/// The store: the shared SQL over one backend.
pub struct SqlStore<B: Backend> {
    pub(crate) sql: Sql<B::Db>,
    pub(crate) backend: B,
}

impl<B: Backend> std::fmt::Debug for SqlStore<B> {
    // Written out so that connect options (which may hold a password) never print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("database", &self.backend.describe())
            .finish_non_exhaustive()
    }
}

impl<B: Backend> SqlStore<B> {
    /// The schema version the database is at.
    pub async fn schema_version(&self) -> StoreResult<i64> {
        migrate::version(&self.sql.pool).await
    }
}

/// What failed operations said about the store as a whole, for [`Store::ready`].
#[derive(Debug, Default)]
pub struct Health {
    /// The last write could not reach the disk; cleared by the next write that does.
    cannot_write: Mutex<Option<String>>,
    /// Damage was met; stays until a restart (whose integrity check then decides).
    corrupt: Mutex<Option<String>>,
}

impl Health {
    pub fn record(&self, fault: Fault, what: &dyn std::fmt::Display) {
        let slot = match fault {
            Fault::CannotWrite => &self.cannot_write,
            Fault::Corrupt => &self.corrupt,
        };
        if let Ok(mut s) = slot.lock() {
            if s.is_none() {
                tracing::error!(error = %what, ?fault, "the store cannot serve");
            }
            *s = Some(what.to_string());
        }
    }
    /// A write reached the disk.
    pub fn wrote(&self) {
        if let Ok(mut s) = self.cannot_write.lock() {
            if s.take().is_some() {
                tracing::info!("the store writes again");
            }
        }
    }
    pub fn cannot_write(&self) -> Option<String> {
        self.cannot_write.lock().ok().and_then(|s| s.clone())
    }
    pub fn corrupt(&self) -> Option<String> {
        self.corrupt.lock().ok().and_then(|s| s.clone())
    }
}

/// A pool of database `D`, with the store's bounds and bookkeeping around each call.
pub struct Sql<D: Dialect> {
    pub pool: Pool<D>,
    /// The bound on each whole operation; None where the pool's own timeouts suffice.
    timeout: Option<Duration>,
    pub health: Arc<Health>,
}

impl<D: Dialect> Sql<D> {
    pub fn new(pool: Pool<D>, timeout: Option<Duration>) -> Self {
        Self {
            pool,
            timeout,
            health: Arc::new(Health::default()),
        }
    }

    /// One store operation: bounded in time, measured, counted on failure.
    pub async fn run<T>(
        &self,
        op: &'static str,
        f: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        super::metered::observe(op, self.timeout, f).await
    }

    /// Maps a database error, remembering what it says about the store.
    pub fn fail(&self, e: sqlx::Error) -> StoreError {
        if let Some(f) = D::fault(&e) {
            self.health.record(f, &e);
        }
        D::error(e)
    }

    pub async fn exec(&self, s: Stmt<'_, D>) -> StoreResult<u64> {
        D::execute(&self.pool, s.query)
            .await
            .map_err(|e| self.fail(e))
    }
    pub async fn all(&self, s: Stmt<'_, D>) -> StoreResult<Vec<D::Row>> {
        D::fetch_all(&self.pool, s.query)
            .await
            .map_err(|e| self.fail(e))
    }
    pub async fn one(&self, s: Stmt<'_, D>) -> StoreResult<Option<D::Row>> {
        D::fetch_optional(&self.pool, s.query)
            .await
            .map_err(|e| self.fail(e))
    }
    /// Rows decoded into records.
    pub async fn all_as<T>(
        &self,
        s: Stmt<'_, D>,
        decode: fn(&D::Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        self.all(s).await?.iter().map(decode).collect()
    }
    pub async fn one_as<T>(
        &self,
        s: Stmt<'_, D>,
        decode: fn(&D::Row) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        self.one(s).await?.as_ref().map(decode).transpose()
    }

    /// Closes every connection of the pool. sqlx's `close` can return with one left open: a
    /// connection that went back to the pool while `close` waited for the last of them (its
    /// final round takes the permits without looking at the idle queue again). Another round
    /// closes it; a closed pool hands nothing out, so a few rounds end it.
    pub async fn close(&self) {
        for _ in 0..4 {
            self.pool.close().await;
            if self.pool.size() == 0 {
                break;
            }
        }
    }

    /// One connection of the pool, for statements that must run on the same one.
    pub async fn acquire(&self) -> StoreResult<sqlx::pool::PoolConnection<D>> {
        self.pool.acquire().await.map_err(|e| self.fail(e))
    }

    /// A transaction that will write.
    pub async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, D>> {
        self.pool
            .begin_with(D::BEGIN_WRITE)
            .await
            .map_err(|e| self.fail(e))
    }
    pub async fn commit(&self, tx: sqlx::Transaction<'static, D>) -> StoreResult<()> {
        tx.commit().await.map_err(|e| self.fail(e))
    }

    /// Runs `insert` (an INSERT ... ON CONFLICT DO NOTHING) for each row inside `conn`'s
    /// transaction; a row that changed nothing had a key the table holds already.
    pub async fn import_rows<T>(
        &self,
        conn: &mut D::Connection,
        insert: &str,
        rows: &[T],
        bind: for<'q> fn(Stmt<'q, D>, &'q T) -> Stmt<'q, D>,
    ) -> StoreResult<Tally> {
        let mut t = Tally::default();
        for r in rows {
            let n = D::execute_on(conn, bind(Stmt::new(insert), r).query)
                .await
                .map_err(|e| self.fail(e))?;
            if n == 0 {
                t.skipped += 1;
            } else {
                t.copied += 1;
            }
        }
        Ok(t)
    }
}
