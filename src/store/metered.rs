//! Latency and error metrics around every store operation, from one place: each operation of
//! the shared SQL (`sql/ports.rs`) runs through [`observe`], which also applies the backend's
//! per-operation time bound. (It replaces a decorator that repeated every method of the store
//! by hand.)

use std::future::Future;
use std::time::{Duration, Instant};

use crate::domain::{StoreError, StoreResult};

/// Runs one operation named `op`: within `timeout` if given, recording its latency in
/// `vedauth_store_query_duration_seconds{op}` and a failure in `vedauth_store_errors_total{op,
/// kind}`.
pub async fn observe<T>(
    op: &'static str,
    timeout: Option<Duration>,
    f: impl Future<Output = StoreResult<T>>,
) -> StoreResult<T> {
    let _ = CALLS.try_with(|n| n.set(n.get() + 1));
    let start = Instant::now();
    let r = match timeout {
        None => f.await,
        Some(t) => tokio::time::timeout(t, f).await.unwrap_or_else(|_| {
            Err(StoreError::unavailable(format!(
                "no answer from the database within {} s",
                t.as_secs()
            )))
        }),
    };
    metrics::histogram!("vedauth_store_query_duration_seconds", "op" => op)
        .record(start.elapsed().as_secs_f64());
    if let Err(e) = &r {
        metrics::counter!("vedauth_store_errors_total", "op" => op, "kind" => e.kind())
            .increment(1);
    }
    r
}

tokio::task_local! {
    static CALLS: std::cell::Cell<usize>;
}

/// Runs `f` and counts the store operations it made on its own task (what a page costs in
/// round trips; tests use it to show that listings make no call per row).
pub async fn counting<T>(f: impl Future<Output = T>) -> (T, usize) {
    CALLS
        .scope(std::cell::Cell::new(0), async move {
            let out = f.await;
            (out, CALLS.with(|n| n.get()))
        })
        .await
}
