//! The subscriber side of an invalidation feed, common to both backends: the first
//! subscription starts the backend's follower task on the caller's runtime; dropping the
//! store (and with it this handle) ends the task.

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::{broadcast, oneshot};

use crate::domain::Invalidation;

/// Announcements a slow subscriber may fall behind by before it drops its whole cache.
const CAPACITY: usize = 4096;

#[derive(Default)]
pub struct Follower {
    running: Mutex<Option<Running>>,
}

struct Running {
    tx: broadcast::Sender<Invalidation>,
    /// Dropped with the store, which ends the task.
    _stop: oneshot::Sender<()>,
}

impl Follower {
    /// Whether a follower task runs (this process follows the feed).
    pub fn started(&self) -> bool {
        self.running.lock().map(|r| r.is_some()).unwrap_or(false)
    }

    /// A receiver of the feed; the first call spawns `task(sender, stop)`. None without a
    /// runtime to run it on.
    pub fn subscribe<F, T>(&self, task: F) -> Option<broadcast::Receiver<Invalidation>>
    where
        F: FnOnce(broadcast::Sender<Invalidation>, oneshot::Receiver<()>) -> T,
        T: Future<Output = ()> + Send + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let mut running = self.running.lock().ok()?;
        if let Some(r) = running.as_ref() {
            return Some(r.tx.subscribe());
        }
        let (tx, rx) = broadcast::channel(CAPACITY);
        let (stop_tx, stop_rx) = oneshot::channel();
        runtime.spawn(task(tx.clone(), stop_rx));
        *running = Some(Running { tx, _stop: stop_tx });
        Some(rx)
    }
}
