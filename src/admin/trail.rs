//! Reading the audit trail back, for the console's audit page: newest first, filtered by a
//! word, from the end of the file only (the trail grows without bound; rotation is the
//! operator's).

use serde_json::Value;

use super::policy::Need;
use super::{Admin, AdminError, AdminResult, Caller};

/// How much of the file's end is read: enough for thousands of events.
const TAIL_BYTES: u64 = 4 * 1024 * 1024;

/// One event as the trail holds it.
#[derive(Debug, Clone)]
pub struct TrailEntry {
    pub time: String,
    pub event: String,
    pub cause: String,
    pub identity: String,
    pub client_id: String,
    pub source: String,
    /// The rest of the line (details, digests), as JSON text.
    pub detail: String,
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

impl TrailEntry {
    fn of(v: Value) -> Self {
        let mut rest = v.clone();
        if let Some(o) = rest.as_object_mut() {
            for k in [
                "time",
                "unix_time",
                "event",
                "cause",
                "identity",
                "client_id",
                "source",
            ] {
                o.remove(k);
            }
        }
        Self {
            time: text(&v, "time"),
            event: text(&v, "event"),
            cause: text(&v, "cause"),
            identity: text(&v, "identity"),
            client_id: text(&v, "client_id"),
            source: text(&v, "source"),
            detail: rest.to_string(),
        }
    }
}

impl Admin {
    /// The newest `limit` events whose line contains `filter` (case-insensitively; empty: all).
    /// None when the trail is not a file (off, or standard output).
    pub async fn audit_trail(
        &self,
        caller: &Caller,
        filter: &str,
        limit: usize,
    ) -> AdminResult<Option<Vec<TrailEntry>>> {
        caller.check(Need::ReadAll)?;
        let Some(path) = self.gate.trail_path() else {
            return Ok(None);
        };
        let needle = filter.trim().to_lowercase();
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<TrailEntry>> {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = std::fs::File::open(&path)?;
            let len = f.metadata()?.len();
            let start = len.saturating_sub(TAIL_BYTES);
            f.seek(SeekFrom::Start(start))?;
            let mut buf = Vec::new();
            f.take(TAIL_BYTES).read_to_end(&mut buf)?;
            let text = String::from_utf8_lossy(&buf);
            let mut lines = text.lines();
            if start > 0 {
                // The first line was cut by the seek.
                lines.next();
            }
            Ok(lines
                .rev()
                .filter(|l| needle.is_empty() || l.to_lowercase().contains(&needle))
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .take(limit)
                .map(TrailEntry::of)
                .collect())
        })
        .await
        .map_err(|e| AdminError::Unavailable(Box::new(e)))?;
        read.map(Some)
            .map_err(|e| AdminError::Unavailable(Box::new(e)))
    }
}
