//! The invalidation feed of a PostgreSQL store: nodes tell each other of revoked and rotated
//! tokens with NOTIFY on [`CHANNEL`]; a listener task per node, on a connection of its own,
//! feeds `InvalidationFeed::invalidations` and reconnects by itself (saying `All` after each
//! reconnect, since announcements made meanwhile are lost).

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::Postgres;
use tokio::sync::{broadcast, oneshot};

use super::super::follower::Follower;
use super::super::sql::{Sql, Stmt};
use crate::domain::{Invalidation, StoreResult};
use crate::token::TokenDigest;

/// The NOTIFY channel on which nodes announce invalidated access-token digests.
pub const CHANNEL: &str = "vedauth_invalidate";
/// Digests per notification: 64 hex characters and a separator each stay within PostgreSQL's
/// 8000-byte payload limit.
const DIGESTS_PER_NOTIFY: usize = 120;

pub struct Feed {
    connect: PgConnectOptions,
    acquire_timeout: Duration,
    follower: Follower,
}

impl Feed {
    pub fn new(connect: PgConnectOptions, acquire_timeout: Duration) -> Self {
        Self {
            connect,
            acquire_timeout,
            follower: Follower::default(),
        }
    }

    /// Every node announces, since every other node may have the tokens cached.
    pub async fn announce(&self, sql: &Sql<Postgres>, digests: &[TokenDigest]) -> StoreResult<()> {
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
        let q = sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
            .bind(CHANNEL)
            .bind(payloads);
        sql.exec(Stmt { query: q }).await.map(|_| ())
    }

    /// Starts the listener on the first call (on the caller's runtime; None without one).
    pub fn subscribe(&self) -> Option<broadcast::Receiver<Invalidation>> {
        let (connect, timeout) = (self.connect.clone(), self.acquire_timeout);
        self.follower
            .subscribe(|tx, stop| follow_channel(connect, timeout, tx, stop))
    }
}

/// Parses the NOTIFY payload: hex digests separated by commas. Anything else is skipped.
fn parse_payload(payload: &str) -> impl Iterator<Item = TokenDigest> + '_ {
    payload.split(',').filter_map(|h| {
        let mut out = [0u8; 32];
        hex::decode_to_slice(h.trim(), &mut out).ok()?;
        Some(TokenDigest(out))
    })
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
        // A sign is not a hex digit (u8::from_str_radix would take "+f").
        assert_eq!(parse_payload(&"+f".repeat(32)).count(), 0);
    }
}
