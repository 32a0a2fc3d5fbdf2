//! The invalidation feed of a SQLite store: how a running server learns, within about a
//! second, of tokens that another process (the command line) revoked on the same file.
//!
//! The other process appends the revoked access-token digests to the `invalidations` table
//! right after its revocation commits. The server follows the table: every [`POLL_EVERY`] it
//! asks `PRAGMA data_version` (which changes when any other connection committed, its own
//! writer included) and, when it changed, reads the rows past the last one it saw. The server
//! writes nothing for this on its request path: it does not announce its own revocations
//! (its cache dropped them already, and nobody else follows), and its sweep prunes the rows it
//! has read. A gap in the sequence (rows pruned before it read them) drops the whole cache.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Row, Sqlite};
use tokio::sync::{broadcast, oneshot};

use super::super::follower::Follower;
use super::super::sql::{Sql, Stmt};
use crate::domain::{Invalidation, StoreResult};
use crate::token::TokenDigest;

/// How often the follower looks for announcements.
pub const POLL_EVERY: Duration = Duration::from_millis(500);
/// Rows read per query.
const READ_AT_ONCE: i64 = 4096;
/// Digests per INSERT (SQLite allows 32,766 parameters per statement).
const DIGESTS_PER_INSERT: usize = 500;

pub struct Feed {
    connect: SqliteConnectOptions,
    follower: Follower,
    /// The highest sequence number the follower has read (0: none yet).
    cursor: Arc<AtomicI64>,
}

impl Feed {
    pub fn new(connect: SqliteConnectOptions) -> Self {
        Self {
            connect,
            follower: Follower::default(),
            cursor: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Starts following on the first call (on the caller's runtime; None without one).
    pub fn subscribe(&self) -> Option<broadcast::Receiver<Invalidation>> {
        let (connect, cursor) = (self.connect.clone(), self.cursor.clone());
        self.follower
            .subscribe(|tx, stop| follow(connect, tx, cursor, stop))
    }

    /// Appends the digests for a following server to read. A process that follows is the
    /// server itself: nobody else is listening, and it says nothing.
    pub async fn announce(&self, sql: &Sql<Sqlite>, digests: &[TokenDigest]) -> StoreResult<()> {
        if self.follower.started() {
            return Ok(());
        }
        for chunk in digests.chunks(DIGESTS_PER_INSERT) {
            let values: Vec<String> = (1..=chunk.len()).map(|i| format!("(${i})")).collect();
            let text = format!(
                "INSERT INTO invalidations (digest) VALUES {}",
                values.join(", ")
            );
            let s = chunk.iter().fold(Stmt::new(&text), |s, d| s.arg(d));
            sql.exec(s).await?;
        }
        Ok(())
    }

    /// Removes the rows the follower has read.
    pub async fn prune(&self, sql: &Sql<Sqlite>) -> StoreResult<()> {
        let upto = self.cursor.load(Ordering::SeqCst);
        if !self.follower.started() || upto <= 0 {
            return Ok(());
        }
        let s = Stmt::new("DELETE FROM invalidations WHERE seq <= $1").arg(upto);
        sql.exec(s).await.map(|_| ())
    }
}

/// The last sequence number ever handed out (rows before it do not concern a new follower).
async fn last_seq(conn: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'invalidations'), 0)",
    )
    .fetch_one(conn)
    .await
}

/// Reads every row past `cursor`, sending what it says and moving `cursor` past it.
async fn read_new(
    conn: &mut SqliteConnection,
    cursor: &AtomicI64,
    tx: &broadcast::Sender<Invalidation>,
) -> Result<(), sqlx::Error> {
    loop {
        let at = cursor.load(Ordering::SeqCst);
        let rows = sqlx::query(
            "SELECT seq, digest FROM invalidations WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(at)
        .bind(READ_AT_ONCE)
        .fetch_all(&mut *conn)
        .await?;
        for r in &rows {
            let seq: i64 = r.try_get("seq")?;
            if seq != cursor.load(Ordering::SeqCst) + 1 {
                // Rows were pruned before this follower read them.
                let _ = tx.send(Invalidation::All);
            }
            let digest: Vec<u8> = r.try_get("digest")?;
            // Anything else (the readiness probe's filler) is not an announcement.
            if let Some(d) = TokenDigest::from_slice(&digest) {
                let _ = tx.send(Invalidation::Token(d));
            }
            cursor.store(seq, Ordering::SeqCst);
        }
        if (rows.len() as i64) < READ_AT_ONCE {
            return Ok(());
        }
    }
}

/// Polls on `conn` until an error.
async fn poll(
    conn: &mut SqliteConnection,
    cursor: &AtomicI64,
    tx: &broadcast::Sender<Invalidation>,
) -> Result<std::convert::Infallible, sqlx::Error> {
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = None;
    loop {
        tick.tick().await;
        let version: i64 = sqlx::query_scalar("PRAGMA data_version")
            .fetch_one(&mut *conn)
            .await?;
        if seen == Some(version) {
            continue;
        }
        seen = Some(version);
        read_new(conn, cursor, tx).await?;
    }
}

/// Follows the table until `stop` fires, on a connection of its own (`data_version` is per
/// connection), reconnecting after any failure.
async fn follow(
    connect: SqliteConnectOptions,
    tx: broadcast::Sender<Invalidation>,
    cursor: Arc<AtomicI64>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut started = false;
    loop {
        let session = async {
            let mut conn = connect.connect().await?;
            if !started {
                cursor.store(last_seq(&mut conn).await?, Ordering::SeqCst);
                started = true;
                // Anything cached before this point may have been revoked before it: start
                // afresh (right after the server starts, its cache holds next to nothing).
                let _ = tx.send(Invalidation::All);
            }
            poll(&mut conn, &cursor, &tx).await
        };
        let outcome = tokio::select! {
            _ = &mut stop => break,
            r = session => r,
        };
        let Err(e) = outcome;
        tracing::warn!(error = %e, "the invalidation feed failed; retrying");
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(POLL_EVERY) => {}
        }
    }
}
