//! The group-commit writer: the one SQLite-only specialisation of the grant write path.
//!
//! The writes of the token hot path (issue, rotate, revoke one grant, record a used JWT) go to one writer
//! connection, which takes whatever is queued, runs it in one transaction and answers every
//! request of the batch only after that transaction's commit (and so its fsync, with
//! `synchronous = FULL`). One fsync then covers many requests instead of one each, and writers
//! never wait in SQLite's busy handler for each other.
//!
//! Durability invariant: no request is answered before the commit holding its write returned.

use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::SqliteConnection;
use sqlx::{Row, Sqlite};
use tokio::sync::{mpsc, oneshot};

use super::super::rows::{digest_of, holder_row_from};
use super::super::sql::ports::{bind_grant, bind_record_jwt_use, GRANT_COLUMNS, RECORD_JWT_USE};
use super::super::sql::{Dialect, Health, Stmt};
use crate::clock::UnixTime;
use crate::domain::*;
use crate::token::TokenDigest;

/// Most writes one group commit takes; bounds how long the write lock is held at once.
const MAX_BATCH: usize = 256;

/// A write of the hot path, run by the writer inside the next group commit.
#[derive(Debug)]
enum Write {
    /// A grant, and for a holder the user as the login saw them (see [`Holder`]).
    InsertGrant(Box<Grant>, Option<Holder>),
    Rotate {
        grant_id: String,
        old_refresh: TokenDigest,
        new: Rotation,
    },
    DeleteGrant(String),
    /// A JWT grant's once-only record.
    RecordJwtUse(JwtUse, UnixTime),
    /// A write that needs room on disk and changes nothing anyone reads: for readiness after
    /// a failed commit.
    Probe,
}

#[derive(Debug)]
enum Written {
    /// None once written; the holder's change if not.
    Inserted(Option<HolderChange>),
    Rotated(bool),
    Deleted(Option<TokenDigest>),
    /// Whether the JWT use was recorded (its first use).
    Recorded(bool),
    Probed,
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
        Ok(Err(Sqlite::error(e)))
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
    let q = grants
        .iter()
        .fold(Stmt::<Sqlite>::new(&sql), |q, g| bind_grant(q, g));
    q.query.execute(&mut *conn).await.map(|_| ())
}

/// The rows of the holders' users, by id: (disabled, password hash), read in the batch's
/// transaction, which holds the database's write lock. A change to one of these users commits
/// either before (and is read here) or after this batch (and its revocation finds the grant).
async fn holder_rows(
    conn: &mut SqliteConnection,
    ids: &[&str],
) -> Result<std::collections::HashMap<String, (bool, String)>, sqlx::Error> {
    let sql = format!(
        "SELECT id, disabled, password_hash FROM users WHERE id IN ({})",
        vec!["?"; ids.len()].join(", ")
    );
    let q = ids.iter().fold(sqlx::query(&sql), |q, id| q.bind(*id));
    let mut rows = std::collections::HashMap::new();
    for r in q.fetch_all(&mut *conn).await? {
        let row = holder_row_from(&r).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        rows.insert(r.try_get("id")?, row);
    }
    Ok(rows)
}

/// All new grants of a batch whose holders still hold in one INSERT; if one of them violates a
/// constraint (the whole statement then changed nothing), each is retried alone so only that
/// one fails.
async fn insert_many(
    conn: &mut SqliteConnection,
    jobs: &[&Job],
    out: &mut [&mut Outcome],
) -> Result<(), sqlx::Error> {
    let ids: Vec<&str> = jobs
        .iter()
        .filter_map(|j| match &j.write {
            Write::InsertGrant(_, Some(h)) => Some(h.user_id.as_str()),
            _ => None,
        })
        .collect();
    let users = if ids.is_empty() {
        Default::default()
    } else {
        holder_rows(conn, &ids).await?
    };
    let mut grants: Vec<&Grant> = Vec::new();
    let mut outs: Vec<&mut Outcome> = Vec::new();
    for (j, o) in jobs.iter().zip(out.iter_mut()) {
        let Write::InsertGrant(g, holder) = &j.write else {
            continue;
        };
        let change = holder
            .as_ref()
            .and_then(|h| HolderChange::of(h, users.get(&h.user_id)));
        match change {
            Some(c) => **o = Some(Ok(Written::Inserted(Some(c)))),
            None => {
                grants.push(&**g);
                outs.push(&mut **o);
            }
        }
    }
    if grants.is_empty() {
        return Ok(());
    }
    match insert_rows(conn, &grants).await {
        Ok(()) => {
            for o in outs {
                *o = Some(Ok(Written::Inserted(None)));
            }
        }
        Err(e) if statement_only(&e) => {
            for (g, o) in grants.iter().zip(outs) {
                *o = Some(match insert_rows(conn, &[*g]).await {
                    Ok(()) => Ok(Written::Inserted(None)),
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

/// The JWT uses of a batch, one statement each, in arrival order: of two with one digest the
/// first records it and the second sees it (they are rare next to grants, so not grouped).
async fn record_jwt_uses(
    conn: &mut SqliteConnection,
    jobs: &[&Job],
    out: &mut [&mut Outcome],
) -> Result<(), sqlx::Error> {
    for (j, o) in jobs.iter().zip(out.iter_mut()) {
        if let Write::RecordJwtUse(u, now) = &j.write {
            let q = bind_record_jwt_use(Stmt::<Sqlite>::new(RECORD_JWT_USE), u, *now);
            **o = Some(match q.query.execute(&mut *conn).await {
                Ok(r) => Ok(Written::Recorded(r.rows_affected() == 1)),
                Err(e) => own_failure(e)?,
            });
        }
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
async fn commit_batch(conn: &mut SqliteConnection, health: &Health, jobs: Vec<Job>) {
    // Every job of the batch fails with the same error; SQLite's own says what the store can
    // still do (a full disk or an I/O error: no write now; damage: nothing until a restart).
    let fail_all = |jobs: Vec<Job>, e: sqlx::Error| {
        if let Some(f) = Sqlite::fault(&e) {
            health.record(f, &e);
        }
        let msg = e.to_string();
        for j in jobs {
            let _ = j.reply.send(Err(StoreError::unavailable(msg.clone())));
        }
    };
    if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
        return fail_all(jobs, e);
    }
    let mut results: Vec<Outcome> = jobs.iter().map(|_| None).collect();
    let applied = {
        let mut ins = (Vec::new(), Vec::new());
        let mut rot = (Vec::new(), Vec::new());
        let mut del = (Vec::new(), Vec::new());
        let mut jwt = (Vec::new(), Vec::new());
        let mut probe = (Vec::new(), Vec::new());
        for (j, o) in jobs.iter().zip(results.iter_mut()) {
            let group = match j.write {
                Write::InsertGrant(..) => &mut ins,
                Write::Rotate { .. } => &mut rot,
                Write::DeleteGrant(_) => &mut del,
                Write::RecordJwtUse(..) => &mut jwt,
                Write::Probe => &mut probe,
            };
            group.0.push(j);
            group.1.push(o);
        }
        async {
            insert_many(conn, &ins.0, &mut ins.1).await?;
            rotate_many(conn, &rot.0, &mut rot.1).await?;
            delete_many(conn, &del.0, &mut del.1).await?;
            record_jwt_uses(conn, &jwt.0, &mut jwt.1).await?;
            probe_once(conn, &mut probe.1).await
        }
        .await
    };
    if let Err(e) = applied {
        // Anything but a single write's constraint may have ended the transaction: nothing
        // of the batch counts.
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        return fail_all(jobs, e);
    }
    if let Err(e) = sqlx::query("COMMIT").execute(&mut *conn).await {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        return fail_all(jobs, e);
    }
    health.wrote();
    metrics::histogram!("vedauth_store_group_commit_size").record(jobs.len() as f64);
    for (j, r) in jobs.into_iter().zip(results) {
        let r = r.unwrap_or_else(|| Err(StoreError::backend("write left without a result")));
        let _ = j.reply.send(r);
    }
}

/// Bytes the probe writes: more than a page, so that it needs pages the database may not
/// have room for, as a grant's insert would.
const PROBE_BYTES: i64 = 16 * 1024;

/// The probes of a batch: one row in the invalidation table, whose readers skip anything
/// that is not a digest and whose pruning removes it with the rest.
async fn probe_once(
    conn: &mut SqliteConnection,
    out: &mut [&mut Outcome],
) -> Result<(), sqlx::Error> {
    if out.is_empty() {
        return Ok(());
    }
    sqlx::query("INSERT INTO invalidations (digest) VALUES (zeroblob($1))")
        .bind(PROBE_BYTES)
        .execute(&mut *conn)
        .await?;
    for o in out.iter_mut() {
        **o = Some(Ok(Written::Probed));
    }
    Ok(())
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
    health: Arc<Health>,
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
            commit_batch(&mut conn, &health, jobs).await;
        }
    }
    rx.close();
    while let Ok(m) = rx.try_recv() {
        match m {
            Msg::Job(j) => {
                let _ = j
                    .reply
                    .send(Err(StoreError::unavailable("the store is closed")));
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

/// The store's handle on the writer thread.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::Sender<Msg>,
}

impl Writer {
    /// Starts the writer on `conn` (which must not checkpoint: `wal_autocheckpoint = 0`), with
    /// `checkpoint` as the checkpointer's connection.
    ///
    /// The writer gets a thread of its own: every statement of a batch is a round trip to
    /// SQLite's worker thread, and on the shared runtime each of those would also queue behind
    /// the HTTP tasks for its turn, stretching every batch and so every commit.
    pub fn start(
        conn: SqliteConnection,
        checkpoint: SqliteConnection,
        health: Arc<Health>,
    ) -> StoreResult<Self> {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| StoreError::Backend(e.into()))?;
        std::thread::Builder::new()
            .name("vedauth-sqlite-writer".into())
            .spawn(move || rt.block_on(writer(conn, checkpoint, health, rx)))
            .map_err(|e| StoreError::Backend(e.into()))?;
        Ok(Self { tx })
    }

    /// Queues a write for the next group commit and waits for that commit.
    async fn write(&self, write: Write) -> StoreResult<Written> {
        let stopped = || StoreError::unavailable("the store's writer has stopped");
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Job(Job { write, reply }))
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    pub async fn insert_grant(
        &self,
        g: &Grant,
        holder: Option<&Holder>,
    ) -> StoreResult<Option<HolderChange>> {
        match self
            .write(Write::InsertGrant(Box::new(g.clone()), holder.cloned()))
            .await?
        {
            Written::Inserted(change) => Ok(change),
            _ => Err(StoreError::backend("unexpected answer to a grant's insert")),
        }
    }

    pub async fn rotate(
        &self,
        grant_id: &str,
        old_refresh: &TokenDigest,
        new: &Rotation,
    ) -> StoreResult<bool> {
        let w = Write::Rotate {
            grant_id: grant_id.to_string(),
            old_refresh: *old_refresh,
            new: new.clone(),
        };
        Ok(matches!(self.write(w).await?, Written::Rotated(true)))
    }

    pub async fn delete_grant(&self, grant_id: &str) -> StoreResult<Option<TokenDigest>> {
        match self.write(Write::DeleteGrant(grant_id.to_string())).await? {
            Written::Deleted(d) => Ok(d),
            _ => Ok(None),
        }
    }

    /// Commits a write that needs room on disk; Ok once one did.
    pub async fn record_jwt_use(&self, u: &JwtUse, now: UnixTime) -> StoreResult<bool> {
        match self.write(Write::RecordJwtUse(u.clone(), now)).await? {
            Written::Recorded(first) => Ok(first),
            _ => Err(StoreError::backend("unexpected answer to a JWT use")),
        }
    }

    pub async fn probe(&self) -> StoreResult<()> {
        self.write(Write::Probe).await.map(|_| ())
    }

    /// Commits what is queued and closes the writer's connections.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}
