//! The embedded store: one SQLite file in WAL mode.
//!
//! Durability: `synchronous = FULL`, so a commit is on disk before the request that made it is
//! answered; a crash (of the process or the machine) loses nothing that was answered 200.
//!
//! Group commit: the writes of the token hot path (issue, rotate, revoke one grant) go to one
//! writer connection, which takes whatever is queued, runs it in one transaction and answers
//! every request of the batch only after that transaction's commit (and so its fsync). One
//! fsync then covers many requests instead of one each, and writers never wait in SQLite's
//! busy handler for each other.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row};
use tokio::sync::{mpsc, oneshot};

use super::rows::{
    app_from, digest_of, digests, grant_from, lockout_from, role_from, rule_from, user_from,
    Columns,
};
use super::*;
use crate::clock::UnixTime;
use crate::token::TokenDigest;

/// Schema versions, applied in order at start; each runs once, in its own transaction.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE COLLATE NOCASE,
    full_name     TEXT,
    email         TEXT,
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);
CREATE TABLE applications (
    client_id         TEXT PRIMARY KEY,
    name              TEXT NOT NULL DEFAULT '',
    vendor            TEXT NOT NULL DEFAULT '',
    description       TEXT NOT NULL DEFAULT '',
    url               TEXT NOT NULL DEFAULT '',
    scope             TEXT NOT NULL,
    max_scope         TEXT NOT NULL,
    access_validity   INTEGER,
    grant_validity    INTEGER,
    renewable         INTEGER,
    unused_expiration INTEGER,
    created_at        INTEGER NOT NULL
);
CREATE TABLE rules (
    client_id       TEXT NOT NULL REFERENCES applications(client_id) ON DELETE CASCADE,
    trustee         TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    max_scope       TEXT,
    access_validity INTEGER,
    grant_validity  INTEGER,
    renewable       INTEGER,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (client_id, trustee)
);
CREATE TABLE settings (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    doc TEXT NOT NULL
);
CREATE TABLE grants (
    id                TEXT PRIMARY KEY,
    client_id         TEXT NOT NULL,
    identity          TEXT NOT NULL,
    granted_to        TEXT NOT NULL,
    scope             TEXT NOT NULL,
    issued_at         INTEGER NOT NULL,
    expires_at        INTEGER,
    renewable         INTEGER NOT NULL,
    access_validity   INTEGER NOT NULL,
    access_digest     BLOB NOT NULL UNIQUE,
    access_issued_at  INTEGER NOT NULL,
    access_expires_at INTEGER NOT NULL,
    refresh_digest    BLOB UNIQUE
);
CREATE INDEX grants_identity ON grants(identity);
CREATE INDEX grants_client ON grants(client_id);
CREATE INDEX grants_expires ON grants(expires_at);
CREATE INDEX grants_access_expires ON grants(access_expires_at);
CREATE TABLE retired_refresh (
    digest     BLOB PRIMARY KEY,
    grant_id   TEXT NOT NULL,
    expires_at INTEGER
);
CREATE INDEX retired_refresh_grant ON retired_refresh(grant_id);
"#,
    r#"
CREATE TABLE roles (
    grantee   TEXT NOT NULL,
    role      INTEGER NOT NULL,
    client_id TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (grantee, role, client_id)
);
"#,
    r#"
CREATE TABLE lockout (
    identity      TEXT PRIMARY KEY,
    failures      INTEGER NOT NULL,
    window_start  INTEGER NOT NULL,
    pending       INTEGER NOT NULL,
    pending_since INTEGER NOT NULL,
    locked_until  INTEGER NOT NULL,
    version       INTEGER NOT NULL
);
"#,
    // Fewer index pages per rotation: the sweep needs access expiry only for grants without
    // a refresh token (which are never rotated), and nothing looks retired digests up by grant.
    r#"
DROP INDEX grants_access_expires;
CREATE INDEX grants_unrenewable_expires ON grants(access_expires_at) WHERE refresh_digest IS NULL;
DROP INDEX retired_refresh_grant;
"#,
];

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
    writer: mpsc::Sender<Msg>,
}

/// Most writes one group commit takes; bounds how long the write lock is held at once.
const MAX_BATCH: usize = 256;

/// A write of the hot path, run by the writer inside the next group commit.
#[derive(Debug)]
enum Write {
    InsertGrant(Box<Grant>),
    Rotate {
        grant_id: String,
        old_refresh: TokenDigest,
        new: Rotation,
    },
    DeleteGrant(String),
}

#[derive(Debug)]
enum Written {
    Inserted,
    Rotated(bool),
    Deleted(Option<TokenDigest>),
}

/// What the writer's queue carries.
#[derive(Debug)]
enum Msg {
    Job(Job),
    /// Commit what is queued, close the writer's connections, then answer.
    Close(oneshot::Sender<()>),
}

#[derive(Debug)]
struct Job {
    write: Write,
    reply: oneshot::Sender<StoreResult<Written>>,
}

/// A constraint violation fails only its own statement; the batch's transaction goes on.
fn statement_only(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if !matches!(d.kind(), sqlx::error::ErrorKind::Other))
}

/// Every placeholder row `(?, ?, ...)` of a multi-row statement, `rows` times.
fn value_rows(rows: usize, cols: usize) -> String {
    let one = format!("({})", vec!["?"; cols].join(", "));
    vec![one; rows].join(", ")
}

type Outcome = Option<StoreResult<Written>>;

/// What one write of a batch gets when its own statement fails on a constraint; any other
/// error ends the batch.
fn own_failure(e: sqlx::Error) -> Result<StoreResult<Written>, sqlx::Error> {
    if statement_only(&e) {
        Ok(Err(err(e)))
    } else {
        Err(e)
    }
}

/// One INSERT of every grant given.
async fn insert_rows(conn: &mut SqliteConnection, grants: &[&Grant]) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO grants ({GRANT_COLUMNS}) VALUES {}",
        value_rows(grants.len(), 13)
    );
    let mut q = sqlx::query(&sql);
    for g in grants {
        q = q
            .bind(&g.id)
            .bind(&g.client_id)
            .bind(&g.identity)
            .bind(&g.granted_to)
            .bind(&g.scope)
            .bind(g.issued_at)
            .bind(g.expires_at)
            .bind(g.renewable as i64)
            .bind(g.access_validity)
            .bind(&g.access_digest.0[..])
            .bind(g.access_issued_at)
            .bind(g.access_expires_at)
            .bind(g.refresh_digest.as_ref().map(|d| &d.0[..]));
    }
    q.execute(&mut *conn).await.map(|_| ())
}

/// All new grants of a batch in one INSERT; if one of them violates a constraint (the whole
/// statement then changed nothing), each is retried alone so only that one fails.
async fn insert_many(
    conn: &mut SqliteConnection,
    jobs: &[&Job],
    out: &mut [&mut Outcome],
) -> Result<(), sqlx::Error> {
    let grants: Vec<&Grant> = jobs
        .iter()
        .filter_map(|j| match &j.write {
            Write::InsertGrant(g) => Some(&**g),
            _ => None,
        })
        .collect();
    if grants.is_empty() {
        return Ok(());
    }
    match insert_rows(conn, &grants).await {
        Ok(()) => {
            for o in out.iter_mut() {
                **o = Some(Ok(Written::Inserted));
            }
        }
        Err(e) if statement_only(&e) => {
            for (g, o) in grants.iter().zip(out.iter_mut()) {
                **o = Some(match insert_rows(conn, &[*g]).await {
                    Ok(()) => Ok(Written::Inserted),
                    Err(e) => own_failure(e)?,
                });
            }
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// A rotation as the writer runs it: grant id, the refresh digest presented, the new tokens.
type RotationRow<'a> = (&'a str, &'a TokenDigest, &'a Rotation);

/// One guarded UPDATE (the compare-and-swap) of every rotation given, then one INSERT of the
/// retired refresh digests of those that matched. Returns the new access digests of the
/// matched rotations (unique per rotation). Only the UPDATE's own failure is reported as a
/// statement failure: once it has changed rows, a failure means the batch must roll back.
async fn rotate_rows(
    conn: &mut SqliteConnection,
    rows: &[RotationRow<'_>],
) -> Result<std::collections::HashSet<[u8; 32]>, sqlx::Error> {
    let sql = format!(
        "WITH v(id, old, ad, ai, ae, rd) AS (VALUES {})
         UPDATE grants SET access_digest = v.ad, access_issued_at = v.ai,
             access_expires_at = v.ae, refresh_digest = v.rd
         FROM v WHERE grants.id = v.id AND grants.refresh_digest = v.old
         RETURNING grants.access_digest",
        value_rows(rows.len(), 6)
    );
    let mut q = sqlx::query(&sql);
    for (id, old, new) in rows {
        q = q
            .bind(*id)
            .bind(&old.0[..])
            .bind(&new.access_digest.0[..])
            .bind(new.access_issued_at)
            .bind(new.access_expires_at)
            .bind(new.refresh_digest.as_ref().map(|d| &d.0[..]));
    }
    let mut matched = std::collections::HashSet::new();
    for r in q.fetch_all(&mut *conn).await? {
        if let Some(d) = digest_of(&r, "access_digest")
            .map_err(|e| sqlx::Error::Protocol(format!("rotated grant: {e}")))?
        {
            matched.insert(d.0);
        }
    }
    let won: Vec<_> = rows
        .iter()
        .filter(|(_, _, new)| matched.contains(&new.access_digest.0))
        .collect();
    if !won.is_empty() {
        let sql = format!(
            "WITH v(old, id) AS (VALUES {})
             INSERT OR IGNORE INTO retired_refresh (digest, grant_id, expires_at)
             SELECT v.old, g.id, g.expires_at FROM v, grants g WHERE g.id = v.id",
            value_rows(won.len(), 2)
        );
        let mut q = sqlx::query(&sql);
        for (id, old, _) in &won {
            q = q.bind(&old.0[..]).bind(*id);
        }
        q.execute(&mut *conn)
            .await
            .map_err(|e| sqlx::Error::Protocol(format!("retiring refresh digests: {e}")))?;
    }
    Ok(matched)
}

/// All rotations of a batch through one [`rotate_rows`]; if the UPDATE fails on a constraint,
/// each is retried alone so only that one fails. Of two rotations presenting the same token
/// only the first may match, as if they had run one after the other.
async fn rotate_many(
    conn: &mut SqliteConnection,
    jobs: &[&Job],
    out: &mut [&mut Outcome],
) -> Result<(), sqlx::Error> {
    let mut seen = std::collections::HashSet::new();
    let mut live: Vec<(usize, RotationRow)> = Vec::new();
    for (i, j) in jobs.iter().enumerate() {
        if let Write::Rotate {
            grant_id,
            old_refresh,
            new,
        } = &j.write
        {
            if seen.insert((grant_id.as_str(), old_refresh.0)) {
                live.push((i, (grant_id, old_refresh, new)));
            } else {
                *out[i] = Some(Ok(Written::Rotated(false)));
            }
        }
    }
    if live.is_empty() {
        return Ok(());
    }
    let all: Vec<RotationRow> = live.iter().map(|(_, r)| *r).collect();
    match rotate_rows(conn, &all).await {
        Ok(matched) => {
            for (i, (_, _, new)) in &live {
                *out[*i] = Some(Ok(Written::Rotated(matched.contains(&new.access_digest.0))));
            }
        }
        Err(e) if statement_only(&e) => {
            for (i, r) in &live {
                *out[*i] = Some(match rotate_rows(conn, &[*r]).await {
                    Ok(matched) => Ok(Written::Rotated(!matched.is_empty())),
                    Err(e) => own_failure(e)?,
                });
            }
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// All revocations of a batch in one DELETE; a grant named twice is deleted by the first.
async fn delete_many(
    conn: &mut SqliteConnection,
    jobs: &[&Job],
    out: &mut [&mut Outcome],
) -> Result<(), sqlx::Error> {
    let ids: Vec<&str> = jobs
        .iter()
        .filter_map(|j| match &j.write {
            Write::DeleteGrant(id) => Some(id.as_str()),
            _ => None,
        })
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "DELETE FROM grants WHERE id IN ({}) RETURNING id, access_digest",
        vec!["?"; ids.len()].join(", ")
    );
    let mut q = sqlx::query(&sql);
    for id in &ids {
        q = q.bind(*id);
    }
    let mut gone = std::collections::HashMap::new();
    for r in q.fetch_all(&mut *conn).await? {
        let id: String = r.try_get("id")?;
        let d = digest_of(&r, "access_digest")
            .map_err(|e| sqlx::Error::Protocol(format!("deleted grant: {e}")))?;
        gone.insert(id, d);
    }
    for (id, o) in ids.iter().zip(out.iter_mut()) {
        **o = Some(Ok(Written::Deleted(gone.remove(*id).flatten())));
    }
    Ok(())
}

/// Runs one batch in one transaction and answers each job after the commit.
///
/// The batch's writes run grouped by kind, a few statements in all instead of one or two per
/// write: each statement is a round trip to SQLite's worker thread, and those round trips, not
/// SQLite, were most of a batch's time. Grouping reorders the writes of one batch, which is
/// safe because they were concurrent (none was answered yet): a grant is rotated or revoked
/// only with a token that an answered request returned.
async fn commit_batch(conn: &mut SqliteConnection, jobs: Vec<Job>) {
    let fail_all = |jobs: Vec<Job>, msg: String| {
        for j in jobs {
            let _ = j.reply.send(Err(StoreError::Unavailable(msg.clone())));
        }
    };
    if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
        return fail_all(jobs, e.to_string());
    }
    let mut results: Vec<Outcome> = jobs.iter().map(|_| None).collect();
    let applied = {
        let mut ins = (Vec::new(), Vec::new());
        let mut rot = (Vec::new(), Vec::new());
        let mut del = (Vec::new(), Vec::new());
        for (j, o) in jobs.iter().zip(results.iter_mut()) {
            let group = match j.write {
                Write::InsertGrant(_) => &mut ins,
                Write::Rotate { .. } => &mut rot,
                Write::DeleteGrant(_) => &mut del,
            };
            group.0.push(j);
            group.1.push(o);
        }
        async {
            insert_many(conn, &ins.0, &mut ins.1).await?;
            rotate_many(conn, &rot.0, &mut rot.1).await?;
            delete_many(conn, &del.0, &mut del.1).await
        }
        .await
    };
    if let Err(e) = applied {
        // Anything but a single write's constraint may have ended the transaction: nothing
        // of the batch counts.
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        return fail_all(jobs, e.to_string());
    }
    if let Err(e) = sqlx::query("COMMIT").execute(&mut *conn).await {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        return fail_all(jobs, e.to_string());
    }
    metrics::histogram!("vedauth_store_group_commit_size").record(jobs.len() as f64);
    for (j, r) in jobs.into_iter().zip(results) {
        let r = r.unwrap_or_else(|| Err(StoreError::Backend("write left without a result".into())));
        let _ = j.reply.send(r);
    }
}

/// How often the checkpointer copies committed WAL frames into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// WAL size (frames of 4 KiB) past which the checkpointer makes the writer wait for a
/// complete checkpoint. Passive checkpoints never catch up while commits keep coming, and
/// SQLite starts the WAL over only after one has; this bounds the file (about 32 MiB).
const WAL_RESTART_FRAMES: i64 = 8192;

/// The writer: one connection, one batch at a time, until `close` or every store handle is
/// gone.
///
/// Its connection never checkpoints (`wal_autocheckpoint = 0`): SQLite would otherwise run
/// a checkpoint inside every thousandth page's commit, copying and fsyncing the database file
/// while the whole batch waits. A second connection checkpoints beside it instead (PASSIVE:
/// it does not block the writer or readers), so a commit waits for its own WAL fsync only.
async fn writer(
    mut conn: SqliteConnection,
    checkpoint: SqliteConnection,
    mut rx: mpsc::Receiver<Msg>,
) {
    let (stop, stopped) = oneshot::channel();
    let checkpointer = tokio::spawn(checkpointer(checkpoint, stopped));
    let mut buf = Vec::with_capacity(MAX_BATCH);
    let mut closers = Vec::new();
    while closers.is_empty() && rx.recv_many(&mut buf, MAX_BATCH).await > 0 {
        let mut jobs = Vec::with_capacity(buf.len());
        for m in buf.drain(..) {
            match m {
                Msg::Job(j) => jobs.push(j),
                Msg::Close(c) => closers.push(c),
            }
        }
        if !jobs.is_empty() {
            commit_batch(&mut conn, jobs).await;
        }
    }
    rx.close();
    while let Ok(m) = rx.try_recv() {
        match m {
            Msg::Job(j) => {
                let _ = j
                    .reply
                    .send(Err(StoreError::Unavailable("the store is closed".into())));
            }
            Msg::Close(c) => closers.push(c),
        }
    }
    let _ = stop.send(());
    let _ = checkpointer.await;
    let _ = sqlx::Connection::close(conn).await;
    for c in closers {
        let _ = c.send(());
    }
}

async fn checkpointer(mut conn: SqliteConnection, mut stop: oneshot::Receiver<()>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => break,
        }
        if let Err(e) = checkpoint_once(&mut conn).await {
            metrics::counter!("vedauth_store_errors_total", "op" => "wal_checkpoint", "kind" => "backend")
                .increment(1);
            tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
        }
    }
    let _ = sqlx::Connection::close(conn).await;
}

async fn checkpoint_once(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    // The answer is (busy, frames in the WAL, frames checkpointed).
    let (_, frames, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut *conn)
        .await?;
    if frames > WAL_RESTART_FRAMES {
        sqlx::query("PRAGMA wal_checkpoint(RESTART)")
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

fn err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(e.to_string())
        }
        other => StoreError::Backend(other.to_string()),
    }
}

/// The WHERE clause of a grant filter, with its bind values in order.
fn grant_where(filter: &GrantFilter) -> (String, Vec<String>) {
    let mut clauses = Vec::new();
    let mut binds = Vec::new();
    if let Some(c) = &filter.client_id {
        clauses.push("client_id = ?");
        binds.push(c.clone());
    }
    if let Some(i) = &filter.identity {
        clauses.push("identity = ?");
        binds.push(i.clone());
    }
    if clauses.is_empty() {
        (String::new(), binds)
    } else {
        (format!(" WHERE {}", clauses.join(" AND ")), binds)
    }
}

impl Columns for SqliteRow {
    fn text(&self, col: &str) -> StoreResult<String> {
        self.try_get(col).map_err(err)
    }
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>> {
        self.try_get(col).map_err(err)
    }
    fn int(&self, col: &str) -> StoreResult<i64> {
        self.try_get(col).map_err(err)
    }
    fn opt_int(&self, col: &str) -> StoreResult<Option<i64>> {
        self.try_get(col).map_err(err)
    }
    // SQLite has no boolean type: flags are integers.
    fn flag(&self, col: &str) -> StoreResult<bool> {
        Ok(self.int(col)? != 0)
    }
    fn opt_flag(&self, col: &str) -> StoreResult<Option<bool>> {
        Ok(self.opt_int(col)?.map(|v| v != 0))
    }
    fn opt_bytes(&self, col: &str) -> StoreResult<Option<Vec<u8>>> {
        self.try_get(col).map_err(err)
    }
}

const GRANT_COLUMNS: &str = "id, client_id, identity, granted_to, scope, issued_at, expires_at, renewable, access_validity, access_digest, access_issued_at, access_expires_at, refresh_digest";

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path, max_connections: u32) -> StoreResult<Self> {
        Self::open_with(path, max_connections, SqliteSynchronous::Full).await
    }

    /// For bulk-loading tools only (the benchmark's seeding): commits are not synced, so a
    /// crash of the machine while it runs can lose or corrupt what it wrote. The server never
    /// opens its store this way.
    pub async fn open_unsynced(path: &Path) -> StoreResult<Self> {
        Self::open_with(path, 1, SqliteSynchronous::Off).await
    }

    async fn open_with(
        path: &Path,
        max_connections: u32,
        synchronous: SqliteSynchronous,
    ) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            // Statement journals (multi-row statements of a group commit) stay in memory
            // instead of a temporary file created and deleted per batch.
            .pragma("temp_store", "memory")
            // After a checkpoint has caught up, the WAL is cut back to this size.
            .pragma("journal_size_limit", "67108864")
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            // A connection to a local file does not go stale; the default ping before each
            // use was a round trip to the connection's worker thread ahead of every query.
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts.clone())
            .await
            .map_err(err)?;
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let store = Self {
            pool,
            path: path.to_path_buf(),
            writer: tx,
        };
        store.migrate().await?;
        let conn = opts
            .clone()
            .pragma("wal_autocheckpoint", "0")
            // The writer touches random index pages of the whole token table; SQLite's
            // default 2 MiB cache made most of them a read from the OS per rotation.
            .pragma("cache_size", "-65536")
            .connect()
            .await
            .map_err(err)?;
        let checkpoint = opts.connect().await.map_err(err)?;
        // The writer gets a thread of its own: every statement of a batch is a round trip to
        // SQLite's worker thread, and on the shared runtime each of those would also queue
        // behind the HTTP tasks for its turn, stretching every batch and so every commit.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        std::thread::Builder::new()
            .name("vedauth-sqlite-writer".into())
            .spawn(move || rt.block_on(writer(conn, checkpoint, rx)))
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(store)
    }

    /// Queues a write for the next group commit and waits for that commit.
    async fn write(&self, write: Write) -> StoreResult<Written> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Msg::Job(Job { write, reply }))
            .await
            .map_err(|_| StoreError::Unavailable("the store's writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the store's writer has stopped".into()))?
    }

    /// Opens a database given as `sqlite:PATH` / `sqlite://PATH` or a bare path.
    pub async fn open_url(url: &str) -> StoreResult<Self> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let path = PathBuf::from_str(path).map_err(|e| StoreError::Backend(e.to_string()))?;
        Self::open(&path, 8).await
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await.map_err(err)?;
        sqlx::query("CREATE TABLE IF NOT EXISTS vedauth_schema (version INTEGER NOT NULL)")
            .execute(&mut *conn)
            .await
            .map_err(err)?;
        let current: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM vedauth_schema")
                .fetch_one(&mut *conn)
                .await
                .map_err(err)?;
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let version = i as i64 + 1;
            if version <= current {
                continue;
            }
            let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(err)?;
            sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(err)?;
            sqlx::query("INSERT INTO vedauth_schema (version) VALUES (?)")
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            tx.commit().await.map_err(err)?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.writer.send(Msg::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
        // The last connection to close checkpoints the WAL into the database and removes it.
        self.pool.close().await;
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn counts(&self, now: UnixTime) -> StoreResult<Counts> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM users) AS u, (SELECT COUNT(*) FROM applications) AS a,
                    (SELECT COUNT(*) FROM grants WHERE expires_at IS NULL OR expires_at > ?) AS g",
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
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        let any: i64 = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM applications)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(err)?;
        Ok(any == 0)
    }

    async fn create_user(&self, u: &User) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (id, name, full_name, email, password_hash, disabled, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&u.id)
        .bind(&u.name)
        .bind(&u.full_name)
        .bind(&u.email)
        .bind(&u.password_hash)
        .bind(u.disabled as i64)
        .bind(u.created_at)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn user_by_name(&self, name: &str) -> StoreResult<Option<User>> {
        sqlx::query("SELECT * FROM users WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .as_ref()
            .map(user_from)
            .transpose()
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        sqlx::query("SELECT * FROM users WHERE id = ?")
            .bind(id.to_ascii_lowercase())
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .as_ref()
            .map(user_from)
            .transpose()
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        sqlx::query("SELECT * FROM users ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(err)?
            .iter()
            .map(user_from)
            .collect()
    }

    async fn replace_password_hash(
        &self,
        id: &str,
        expected: Option<&str>,
        new_hash: &str,
    ) -> StoreResult<bool> {
        let res = match expected {
            Some(old) => {
                sqlx::query("UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?")
                    .bind(new_hash)
                    .bind(id)
                    .bind(old)
            }
            None => sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
                .bind(new_hash)
                .bind(id),
        }
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(res.rows_affected() == 1)
    }

    async fn set_user_disabled(&self, id: &str, disabled: bool) -> StoreResult<bool> {
        let res = sqlx::query("UPDATE users SET disabled = ? WHERE id = ?")
            .bind(disabled as i64)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(res.rows_affected() == 1)
    }

    async fn delete_user(&self, id: &str) -> StoreResult<bool> {
        let res = sqlx::query("DELETE FROM users WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(res.rows_affected() == 1)
    }

    async fn create_application(&self, a: &Application) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO applications (client_id, name, vendor, description, url, scope, max_scope,
                 access_validity, grant_validity, renewable, unused_expiration, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .bind(a.renewable.map(|b| b as i64))
        .bind(a.unused_expiration)
        .bind(a.created_at)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn application(&self, client_id: &str) -> StoreResult<Option<Application>> {
        sqlx::query("SELECT * FROM applications WHERE client_id = ?")
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .as_ref()
            .map(app_from)
            .transpose()
    }

    async fn list_applications(&self) -> StoreResult<Vec<Application>> {
        sqlx::query("SELECT * FROM applications ORDER BY client_id")
            .fetch_all(&self.pool)
            .await
            .map_err(err)?
            .iter()
            .map(app_from)
            .collect()
    }

    async fn update_application(&self, a: &Application) -> StoreResult<bool> {
        let res = sqlx::query(
            "UPDATE applications SET name = ?, vendor = ?, description = ?, url = ?, scope = ?,
                 max_scope = ?, access_validity = ?, grant_validity = ?, renewable = ?,
                 unused_expiration = ?
             WHERE client_id = ?",
        )
        .bind(&a.name)
        .bind(&a.vendor)
        .bind(&a.description)
        .bind(&a.url)
        .bind(&a.scope)
        .bind(&a.max_scope)
        .bind(a.access_validity)
        .bind(a.grant_validity.map(Lifetime::to_db))
        .bind(a.renewable.map(|b| b as i64))
        .bind(a.unused_expiration)
        .bind(&a.client_id)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(res.rows_affected() == 1)
    }

    async fn delete_application(&self, client_id: &str) -> StoreResult<Option<Vec<TokenDigest>>> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        // The first statement writes, so the transaction takes the write lock at once.
        let gone = sqlx::query("DELETE FROM applications WHERE client_id = ?")
            .bind(client_id)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        if gone.rows_affected() == 0 {
            return Ok(None);
        }
        for table in ["rules", "roles"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE client_id = ?"))
                .bind(client_id)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        let rows = sqlx::query("DELETE FROM grants WHERE client_id = ? RETURNING access_digest")
            .bind(client_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        digests(&rows).map(Some)
    }

    async fn create_rule(&self, r: &Rule) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO rules (client_id, trustee, description, max_scope, access_validity,
                 grant_validity, renewable, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.client_id)
        .bind(&r.trustee)
        .bind(&r.description)
        .bind(&r.max_scope)
        .bind(r.access_validity)
        .bind(r.grant_validity.map(Lifetime::to_db))
        .bind(r.renewable.map(|b| b as i64))
        .bind(r.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| match err(e) {
            // A rule for a missing application violates the foreign key.
            StoreError::Backend(m) if m.contains("FOREIGN KEY") => {
                StoreError::Backend("no such application".into())
            }
            other => other,
        })?;
        Ok(())
    }

    async fn rules(&self, client_id: Option<&str>) -> StoreResult<Vec<Rule>> {
        let q = match client_id {
            Some(c) => sqlx::query("SELECT * FROM rules WHERE client_id = ? ORDER BY trustee")
                .bind(c.to_string()),
            None => sqlx::query("SELECT * FROM rules ORDER BY client_id, trustee"),
        };
        q.fetch_all(&self.pool)
            .await
            .map_err(err)?
            .iter()
            .map(rule_from)
            .collect()
    }

    async fn update_rule(&self, r: &Rule) -> StoreResult<bool> {
        let res = sqlx::query(
            "UPDATE rules SET description = ?, max_scope = ?, access_validity = ?,
                 grant_validity = ?, renewable = ?
             WHERE client_id = ? AND trustee = ?",
        )
        .bind(&r.description)
        .bind(&r.max_scope)
        .bind(r.access_validity)
        .bind(r.grant_validity.map(Lifetime::to_db))
        .bind(r.renewable.map(|b| b as i64))
        .bind(&r.client_id)
        .bind(&r.trustee)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(res.rows_affected() == 1)
    }

    async fn delete_rule(&self, client_id: &str, trustee: &str) -> StoreResult<bool> {
        let res = sqlx::query("DELETE FROM rules WHERE client_id = ? AND trustee = ?")
            .bind(client_id)
            .bind(trustee)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(res.rows_affected() == 1)
    }

    async fn add_role(&self, r: &RoleAssignment) -> StoreResult<()> {
        sqlx::query("INSERT INTO roles (grantee, role, client_id) VALUES (?, ?, ?)")
            .bind(&r.grantee)
            .bind(r.role)
            .bind(r.client_id.as_deref().unwrap_or(""))
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn remove_role(
        &self,
        grantee: &str,
        role: i32,
        client_id: Option<&str>,
    ) -> StoreResult<u64> {
        let q = match client_id {
            Some(c) => {
                sqlx::query("DELETE FROM roles WHERE grantee = ? AND role = ? AND client_id = ?")
                    .bind(grantee.to_string())
                    .bind(role)
                    .bind(c.to_string())
            }
            None => sqlx::query("DELETE FROM roles WHERE grantee = ? AND role = ?")
                .bind(grantee.to_string())
                .bind(role),
        };
        Ok(q.execute(&self.pool).await.map_err(err)?.rows_affected())
    }

    async fn roles(&self, grantee: Option<&str>) -> StoreResult<Vec<RoleAssignment>> {
        let q = match grantee {
            Some(g) => sqlx::query("SELECT grantee, role, client_id FROM roles WHERE grantee = ? ORDER BY grantee, role, client_id")
                .bind(g.to_string()),
            None => sqlx::query("SELECT grantee, role, client_id FROM roles ORDER BY grantee, role, client_id"),
        };
        q.fetch_all(&self.pool)
            .await
            .map_err(err)?
            .iter()
            .map(role_from)
            .collect()
    }

    async fn lockout(&self, identity: &str) -> StoreResult<Option<LockoutRecord>> {
        let row = sqlx::query("SELECT * FROM lockout WHERE identity = ?")
            .bind(identity)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(lockout_from).transpose()
    }

    async fn put_lockout(
        &self,
        identity: &str,
        expected: Option<i64>,
        r: &LockoutRecord,
    ) -> StoreResult<bool> {
        let res = match expected {
            None => sqlx::query(
                "INSERT INTO lockout (identity, failures, window_start, pending, pending_since, locked_until, version)
                 VALUES (?, ?, ?, ?, ?, ?, 1) ON CONFLICT(identity) DO NOTHING",
            )
            .bind(identity.to_string())
            .bind(r.failures as i64)
            .bind(r.window_start)
            .bind(r.pending as i64)
            .bind(r.pending_since)
            .bind(r.locked_until),
            Some(v) => sqlx::query(
                "UPDATE lockout SET failures = ?, window_start = ?, pending = ?, pending_since = ?,
                     locked_until = ?, version = version + 1
                 WHERE identity = ? AND version = ?",
            )
            .bind(r.failures as i64)
            .bind(r.window_start)
            .bind(r.pending as i64)
            .bind(r.pending_since)
            .bind(r.locked_until)
            .bind(identity.to_string())
            .bind(v),
        }
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(res.rows_affected() == 1)
    }

    async fn delete_lockout(&self, identity: &str) -> StoreResult<bool> {
        let res = sqlx::query("DELETE FROM lockout WHERE identity = ?")
            .bind(identity)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(res.rows_affected() == 1)
    }

    async fn settings(&self) -> StoreResult<Settings> {
        let doc: Option<String> = sqlx::query_scalar("SELECT doc FROM settings WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        match doc {
            None => Ok(Settings::default()),
            Some(d) => serde_json::from_str(&d).map_err(|e| StoreError::Corrupt(e.to_string())),
        }
    }

    async fn put_settings(&self, s: &Settings) -> StoreResult<()> {
        let doc = serde_json::to_string(s).map_err(|e| StoreError::Backend(e.to_string()))?;
        sqlx::query(
            "INSERT INTO settings (id, doc) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
        )
        .bind(doc)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn insert_grant(&self, g: &Grant) -> StoreResult<()> {
        self.write(Write::InsertGrant(Box::new(g.clone())))
            .await
            .map(|_| ())
    }

    async fn grant_by_access(&self, d: &TokenDigest) -> StoreResult<Option<Grant>> {
        sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE access_digest = ?"
        ))
        .bind(&d.0[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?
        .as_ref()
        .map(grant_from)
        .transpose()
    }

    async fn grant_by_refresh(&self, d: &TokenDigest) -> StoreResult<Option<Grant>> {
        sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE refresh_digest = ?"
        ))
        .bind(&d.0[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?
        .as_ref()
        .map(grant_from)
        .transpose()
    }

    async fn rotate_tokens(
        &self,
        grant_id: &str,
        old_refresh: &TokenDigest,
        new: &Rotation,
        _now: UnixTime,
    ) -> StoreResult<bool> {
        let w = Write::Rotate {
            grant_id: grant_id.to_string(),
            old_refresh: *old_refresh,
            new: new.clone(),
        };
        Ok(matches!(self.write(w).await?, Written::Rotated(true)))
    }

    async fn grant_by_retired_refresh(&self, d: &TokenDigest) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT grant_id FROM retired_refresh WHERE digest = ?")
            .bind(&d.0[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(err)
    }

    async fn delete_grant(&self, grant_id: &str) -> StoreResult<Option<TokenDigest>> {
        match self.write(Write::DeleteGrant(grant_id.to_string())).await? {
            Written::Deleted(d) => Ok(d),
            _ => Ok(None),
        }
    }

    async fn delete_grants(&self, filter: &GrantFilter) -> StoreResult<Vec<TokenDigest>> {
        let (clause, binds) = grant_where(filter);
        let sql = format!("DELETE FROM grants{clause} RETURNING access_digest");
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(b);
        }
        digests(&q.fetch_all(&self.pool).await.map_err(err)?)
    }

    async fn list_grants(&self, filter: &GrantFilter) -> StoreResult<Vec<Grant>> {
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
    }

    async fn sweep_expired(&self, now: UnixTime, batch: u32) -> StoreResult<u64> {
        let res = sqlx::query(
            "DELETE FROM grants WHERE id IN (
                 SELECT id FROM grants WHERE expires_at IS NOT NULL AND expires_at <= ?1
                 UNION ALL
                 SELECT id FROM grants INDEXED BY grants_unrenewable_expires
                 WHERE refresh_digest IS NULL AND access_expires_at <= ?1
                 LIMIT ?2)",
        )
        .bind(now)
        .bind(batch as i64)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        // Retired refresh digests are only useful while their grant could still be alive.
        sqlx::query(
            "DELETE FROM retired_refresh WHERE rowid IN (
                 SELECT r.rowid FROM retired_refresh r
                 WHERE (r.expires_at IS NOT NULL AND r.expires_at <= ?1)
                    OR NOT EXISTS (SELECT 1 FROM grants g WHERE g.id = r.grant_id)
                 LIMIT ?2)",
        )
        .bind(now)
        .bind(batch as i64)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(res.rows_affected())
    }
}
