//! The embedded store: one SQLite file in WAL mode.
//!
//! Durability: `synchronous = FULL`, so a commit is on disk before the request that made it is
//! answered; a crash (of the process or the machine) loses nothing that was answered 200.
//! The grant writes of the token endpoints go through the group-commit writer (`writer.rs`);
//! revocations made by other processes reach a running server through `feed.rs`. At open,
//! `PRAGMA quick_check` refuses a damaged file.

mod feed;
mod writer;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row, Sqlite};
use tokio::sync::broadcast;

use super::rows::Columns;
use super::sql::migrate::{self, migration, Migration};
use super::sql::{executor_glue, Backend, Dialect, Fault, Sql, SqlStore, Stmt};
use crate::domain::*;
use crate::token::TokenDigest;

/// The SQLite store.
pub type SqliteStore = SqlStore<SqliteBackend>;

// SQLite's primary result codes (the low byte of an extended code).
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_READONLY: i64 = 8;
const SQLITE_IOERR: i64 = 10;
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;
const SQLITE_NOTADB: i64 = 26;

/// The primary result code of a database error.
fn primary_code(e: &sqlx::Error) -> Option<i64> {
    match e {
        sqlx::Error::Database(d) => d.code()?.parse::<i64>().ok().map(|c| c & 0xff),
        _ => None,
    }
}

impl Dialect for Sqlite {
    const KIND: &'static str = "sqlite";
    // The column is NOCASE, and so is its unique index.
    const USER_BY_NAME: &'static str = "SELECT * FROM users WHERE name = $1";
    // Two index range scans (the partial index holds only grants without a refresh token);
    // SQLite's planner needs the hint to take the partial one.
    const SWEEP_GRANTS: &'static str = "DELETE FROM grants WHERE id IN (
             SELECT id FROM grants WHERE expires_at IS NOT NULL AND expires_at <= $1
             UNION ALL
             SELECT id FROM grants INDEXED BY grants_unrenewable_expires
             WHERE refresh_digest IS NULL AND access_expires_at <= $1
             LIMIT $2)";
    const SWEEP_RETIRED: &'static str = "DELETE FROM retired_refresh WHERE rowid IN (
             SELECT r.rowid FROM retired_refresh r
             WHERE (r.expires_at IS NOT NULL AND r.expires_at <= $1)
                OR NOT EXISTS (SELECT 1 FROM grants g WHERE g.id = r.grant_id)
             LIMIT $2)";
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    // BEGIN IMMEDIATE holds the database's write lock already.
    const MIGRATION_LOCK: &'static str = "";
    // A scan recycles a few pages instead of growing the cache to 2 MiB; the second
    // statement gives the reader back SQLite's default cache (readers do not set their own).
    const SCAN_BEGIN: &'static str = "PRAGMA cache_size = 16";
    const SCAN_END: &'static str = "PRAGMA cache_size = -2000";
    const MIGRATIONS: &'static [Migration] = &[
        migration!(1, "sqlite/0001_initial.sql"),
        migration!(2, "sqlite/0002_roles.sql"),
        migration!(3, "sqlite/0003_lockout.sql"),
        migration!(4, "common/0004_sweep_index.sql"),
        migration!(5, "common/0005_trustees_by_identity.sql"),
        migration!(6, "sqlite/0006_invalidation_feed.sql"),
        migration!(7, "sqlite/0007_jwt_mappings.sql"),
        migration!(8, "sqlite/0008_jwt_uses.sql"),
        migration!(9, "sqlite/0009_trusted_issuers.sql"),
        migration!(10, "sqlite/0010_client_secrets.sql"),
        migration!(11, "sqlite/0011_device_codes.sql"),
        migration!(13, "sqlite/0013_refresh_successors.sql"),
    ];

    fn error(e: sqlx::Error) -> StoreError {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(e.into())
            }
            _ => match primary_code(&e) {
                Some(
                    SQLITE_BUSY | SQLITE_LOCKED | SQLITE_READONLY | SQLITE_IOERR | SQLITE_CORRUPT
                    | SQLITE_FULL | SQLITE_CANTOPEN | SQLITE_NOTADB,
                ) => StoreError::Unavailable(e.into()),
                _ => StoreError::Backend(e.into()),
            },
        }
    }

    fn fault(e: &sqlx::Error) -> Option<Fault> {
        match primary_code(e)? {
            SQLITE_FULL | SQLITE_IOERR | SQLITE_READONLY | SQLITE_CANTOPEN => {
                Some(Fault::CannotWrite)
            }
            SQLITE_CORRUPT | SQLITE_NOTADB => Some(Fault::Corrupt),
            _ => None,
        }
    }

    executor_glue!();
}

impl Columns for SqliteRow {
    fn text(&self, col: &str) -> StoreResult<String> {
        self.try_get(col).map_err(Sqlite::error)
    }
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>> {
        self.try_get(col).map_err(Sqlite::error)
    }
    fn int(&self, col: &str) -> StoreResult<i64> {
        self.try_get(col).map_err(Sqlite::error)
    }
    fn opt_int(&self, col: &str) -> StoreResult<Option<i64>> {
        self.try_get(col).map_err(Sqlite::error)
    }
    // SQLite has no boolean type: flags are integers.
    fn flag(&self, col: &str) -> StoreResult<bool> {
        Ok(self.int(col)? != 0)
    }
    fn opt_flag(&self, col: &str) -> StoreResult<Option<bool>> {
        Ok(self.opt_int(col)?.map(|v| v != 0))
    }
    fn opt_bytes(&self, col: &str) -> StoreResult<Option<Vec<u8>>> {
        self.try_get(col).map_err(Sqlite::error)
    }
}

/// How a SQLite store is opened.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Connections of the read pool (the writer and the checkpointer have their own).
    pub max_connections: u32,
    /// Caps the database at this many pages (`PRAGMA max_page_count`): a write past it fails
    /// as on a full disk. None: no cap but the disk.
    pub max_page_count: Option<u32>,
    /// MiB of memory all of SQLite in this process may hold before its page caches recycle
    /// pages instead of growing (`PRAGMA soft_heap_limit`); the writer's cache is as large.
    pub cache_mib: u32,
    synchronous: SqliteSynchronous,
}

/// The default of `database.sqlite_cache_mib`: at 100,000 grants, refresh, cold verify and
/// revoke measured the same with 2 MiB as with 16 MiB, and the peak memory did not
/// (docs/BENCHMARKS.md, "The memory budgets' defaults").
pub const DEFAULT_CACHE_MIB: u32 = 2;

impl SqliteOptions {
    pub fn new(max_connections: u32) -> Self {
        Self {
            max_connections,
            max_page_count: None,
            cache_mib: DEFAULT_CACHE_MIB,
            synchronous: SqliteSynchronous::Full,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "the database file {path} is damaged (PRAGMA quick_check: {report}); restore it from a \
     backup, or move it away to start afresh"
)]
struct Damaged {
    path: PathBuf,
    report: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open the database file {path}: {source}")]
struct CannotOpen {
    path: PathBuf,
    #[source]
    source: sqlx::Error,
}

/// SQLite's side of the store.
pub struct SqliteBackend {
    path: PathBuf,
    writer: writer::Writer,
    feed: feed::Feed,
}

/// Checks the file's structure before anything reads or writes it.
async fn check_integrity(opts: &SqliteConnectOptions, path: &Path) -> StoreResult<()> {
    let cannot_open = |source| {
        StoreError::Unavailable(Box::new(CannotOpen {
            path: path.to_path_buf(),
            source,
        }))
    };
    let damaged = |report: String| {
        StoreError::Corrupt(
            Damaged {
                path: path.to_path_buf(),
                report,
            }
            .to_string(),
        )
    };
    // Damage bad enough makes the check (or the connection's first read) fail outright.
    let failed = |e: sqlx::Error| match Sqlite::fault(&e) {
        Some(Fault::Corrupt) => damaged(e.to_string()),
        _ => cannot_open(e),
    };
    let mut conn = opts.connect().await.map_err(failed)?;
    // One row "ok", or up to 100 rows naming the damage.
    let rows: Vec<String> = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_all(&mut conn)
        .await
        .map_err(failed)?;
    let _ = sqlx::Connection::close(conn).await;
    if rows.len() == 1 && rows[0] == "ok" {
        return Ok(());
    }
    let mut report: Vec<&str> = rows.iter().take(3).map(String::as_str).collect();
    if rows.len() > 3 {
        report.push("...");
    }
    Err(damaged(report.join("; ")))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file, checks it and applies pending migrations.
    pub async fn open(path: &Path, max_connections: u32) -> StoreResult<Self> {
        Self::open_with(path, &SqliteOptions::new(max_connections)).await
    }

    pub async fn open_with(path: &Path, o: &SqliteOptions) -> StoreResult<Self> {
        let mut opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(o.synchronous)
            .foreign_keys(true)
            // Statement journals (multi-row statements of a group commit) stay in memory
            // instead of a temporary file created and deleted per batch.
            .pragma("temp_store", "memory")
            // After a checkpoint has caught up, the WAL is cut back to this size.
            .pragma("journal_size_limit", "67108864")
            .busy_timeout(Duration::from_secs(5));
        // The limit is SQLite's, process-wide: every connection sets the same value.
        let budget_kib = u64::from(o.cache_mib.max(1)) * 1024;
        opts = opts.pragma("soft_heap_limit", (budget_kib * 1024).to_string());
        if let Some(pages) = o.max_page_count {
            opts = opts.pragma("max_page_count", pages.to_string());
        }
        check_integrity(&opts, path).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(o.max_connections.max(1))
            // A connection to a local file does not go stale; the default ping before each
            // use was a round trip to the connection's worker thread ahead of every query.
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts.clone())
            .await
            .map_err(Sqlite::error)?;
        migrate::run(&pool).await?;
        // The pool's bounds (acquire and busy timeouts) already bound each operation.
        let sql = Sql::new(pool, None);
        let conn = opts
            .clone()
            // The writer never checkpoints (see writer.rs).
            .pragma("wal_autocheckpoint", "0")
            // The writer touches random index pages of the whole token table: it may use the
            // whole budget (a page not cached is a read from the OS's file cache); the soft
            // heap limit keeps the sum of all caches within it.
            .pragma("cache_size", format!("-{budget_kib}"))
            .connect()
            .await
            .map_err(Sqlite::error)?;
        let checkpoint = opts.connect().await.map_err(Sqlite::error)?;
        let writer = writer::Writer::start(conn, checkpoint, sql.health.clone())?;
        Ok(SqlStore {
            sql,
            backend: SqliteBackend {
                path: path.to_path_buf(),
                writer,
                feed: feed::Feed::new(opts),
            },
        })
    }

    /// Opens a database given as `sqlite:PATH` / `sqlite://PATH` or a bare path.
    pub async fn open_url(url: &str) -> StoreResult<Self> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let path = PathBuf::from_str(path).map_err(|e| StoreError::Backend(e.into()))?;
        Self::open(&path, 8).await
    }

    pub fn path(&self) -> &Path {
        &self.backend.path
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    type Db = Sqlite;

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    async fn insert_grant(
        &self,
        _sql: &Sql<Sqlite>,
        grant: &Grant,
        holder: Option<&Holder>,
    ) -> StoreResult<Option<HolderChange>> {
        self.writer.insert_grant(grant, holder).await
    }

    async fn record_jwt_use(
        &self,
        _sql: &Sql<Sqlite>,
        u: &JwtUse,
        now: crate::clock::UnixTime,
    ) -> StoreResult<bool> {
        self.writer.record_jwt_use(u, now).await
    }

    async fn rotate_tokens(
        &self,
        _sql: &Sql<Sqlite>,
        grant_id: &str,
        old_refresh: &TokenDigest,
        new: &Rotation,
    ) -> StoreResult<bool> {
        self.writer.rotate(grant_id, old_refresh, new).await
    }

    async fn delete_grant(
        &self,
        _sql: &Sql<Sqlite>,
        grant_id: &str,
    ) -> StoreResult<Option<TokenDigest>> {
        self.writer.delete_grant(grant_id).await
    }

    async fn announce(&self, sql: &Sql<Sqlite>, digests: &[TokenDigest]) -> StoreResult<()> {
        self.feed.announce(sql, digests).await
    }

    fn invalidations(&self, _sql: &Sql<Sqlite>) -> Option<broadcast::Receiver<Invalidation>> {
        self.feed.subscribe()
    }

    async fn after_sweep(&self, sql: &Sql<Sqlite>) -> StoreResult<()> {
        self.feed.prune(sql).await
    }

    async fn ready(&self, sql: &Sql<Sqlite>) -> StoreResult<()> {
        // After a failed commit, only a write that reaches the disk says it would work again.
        if let Some(why) = sql.health.cannot_write() {
            self.writer.probe().await.map_err(|e| {
                StoreError::unavailable(format!("writes fail ({why}); a probe write too: {e}"))
            })?;
        }
        sql.exec(Stmt::new("SELECT 1")).await.map(|_| ())
    }

    async fn close(&self, sql: &Sql<Sqlite>) {
        self.writer.close().await;
        // The last connection to close checkpoints the WAL into the database and removes it.
        sql.close().await;
    }
}

/// For bulk-loading tools only (the benchmark's seeding): commits are not synced, so a crash
/// of the machine while it runs can lose or corrupt what it wrote. It is not a [`Store`] (no
/// server can be given one), only the ports a loader needs.
pub struct BulkLoad(SqliteStore);

impl BulkLoad {
    pub async fn open_unsynced(path: &Path) -> StoreResult<Self> {
        let mut o = SqliteOptions::new(1);
        o.synchronous = SqliteSynchronous::Off;
        Ok(Self(SqliteStore::open_with(path, &o).await?))
    }
    pub fn users(&self) -> &dyn UserStore {
        &self.0
    }
    pub fn applications(&self) -> &dyn ApplicationStore {
        &self.0
    }
    pub fn grants(&self) -> &dyn GrantStore {
        &self.0
    }
    pub fn jwt(&self) -> &dyn JwtStore {
        &self.0
    }
    pub fn settings(&self) -> &dyn SettingsStore {
        &self.0
    }
    /// Commits what is queued and closes the file.
    pub async fn close(self) {
        self.0.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The only tests of this binary that open a SQLite store, both through `open` with the
    // same 3 MiB budget: the limit is process-wide.
    async fn open(dir: &tempfile::TempDir, readers: u32) -> anyhow::Result<SqliteStore> {
        let mut o = SqliteOptions::new(readers);
        o.cache_mib = 3;
        Ok(SqliteStore::open_with(&dir.path().join("t.db"), &o).await?)
    }

    /// The gauges' count reads with a small cache and gives the reader its cache back.
    #[tokio::test]
    async fn a_count_leaves_the_readers_cache_as_it_found_it() -> anyhow::Result<()> {
        use crate::domain::ports::Store;
        let dir = tempfile::tempdir()?;
        // One reader, so that the count and the check below share it.
        let store = open(&dir, 1).await?;
        let size = || sqlx::query_scalar::<_, i64>("PRAGMA cache_size").fetch_one(&store.sql.pool);
        let before = size().await?;
        let counts = store.counts(0).await?;
        assert_eq!(counts.grants, 0);
        assert_eq!(size().await?, before);
        assert_eq!(before, -2000, "SCAN_END restores SQLite's default");
        store.backend.writer.close().await;
        Ok(())
    }

    #[tokio::test]
    async fn the_cache_budget_becomes_sqlites_soft_heap_limit() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = open(&dir, 2).await?;
        let limit: i64 = sqlx::query_scalar("PRAGMA soft_heap_limit")
            .fetch_one(&store.sql.pool)
            .await?;
        assert_eq!(limit, 3 * 1024 * 1024);
        store.backend.writer.close().await;
        Ok(())
    }
}
