//! Lockout: after `threshold` failed logins for one identity within `window_secs`, further
//! attempts fail for `duration_secs` without checking the password.
//!
//! The counter lives in the store and changes only by compare-and-swap, so parallel attempts
//! (on one node or several) never get more password checks than the threshold: each check
//! reserves a slot in the record first, and `failures + reservations` never passes the
//! threshold. A check that cannot reserve (every remaining slot is being checked right now)
//! waits for a verdict. Waiters of one identity queue fairly in this process: only the head of
//! the line reads the store, and it wakes when a local check ends (it polls the store only
//! while another node holds some of the slots). A success clears the failures, which frees the
//! slots for the line. A waiter is answered "locked" only when the identity is locked; one that
//! cannot get a slot within `wait_secs` is answered [`Begin::Busy`] (503), never "locked".

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::clock::{SharedClock, UnixTime};
use crate::domain::{LockoutRecord, SharedStore, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutPolicy {
    pub enabled: bool,
    pub threshold: u32,
    pub window_secs: i64,
    pub duration_secs: i64,
    /// Seconds an attempt waits for its turn while `threshold` checks of the same identity
    /// are under way, before it is answered 503.
    pub wait_secs: u64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: 5,
            window_secs: 900,
            duration_secs: 900,
            // Below the default request timeout (30 s), so the answer is a 503 of ours.
            wait_secs: 20,
        }
    }
}

/// A reservation older than this belongs to a node that died mid-check.
const STALE_PENDING_SECS: i64 = 60;
/// How often the head of a line re-reads the store while another node holds slots.
const REMOTE_POLL: Duration = Duration::from_millis(25);
/// Most records of unknown names this process remembers to delete (about 100 bytes each).
/// Past it, further ones stay in the store until a later attempt at the same name settles
/// them; the per-address rate limit keeps that far away.
const MAX_FORGET: usize = 100_000;

#[derive(Debug)]
pub enum Begin {
    /// Go ahead and check the password; report the result with [`Reservation::end`].
    Allowed(Reservation),
    /// Locked: refuse without checking.
    Locked { until: UnixTime },
    /// No slot freed up within the wait: answer "busy, retry" (not a credential verdict).
    Busy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    /// Neither (the user vanished, or was disabled): only the reservation is released.
    Neutral,
}

/// What an operator sees of an identity's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub failures: u32,
    pub locked_until: Option<UnixTime>,
}

/// The in-process side of one identity: its line of waiters and its local reservations.
#[derive(Debug, Default)]
struct Gate {
    /// Fair (FIFO): waiters take their turn in arrival order.
    line: tokio::sync::Mutex<()>,
    /// Signalled whenever a local check of this identity ends.
    ended: Notify,
    /// Reservations this process holds in the store record.
    local: AtomicU32,
}

type Gates = Arc<Mutex<HashMap<String, Arc<Gate>>>>;

/// A use of a gate; the last one removes the gate from the map.
#[derive(Debug)]
struct GateUse {
    gates: Gates,
    key: String,
    gate: Arc<Gate>,
}

impl Drop for GateUse {
    fn drop(&mut self) {
        let mut map = match self.gates.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        // The map's reference and ours: nobody else waits or checks.
        if Arc::strong_count(&self.gate) == 2 {
            map.remove(&self.key);
        }
    }
}

/// Records to delete once they count nothing any more, in the order they become due.
#[derive(Debug, Default)]
struct Forget {
    due: VecDeque<(UnixTime, String)>,
    sweeping: bool,
}

#[derive(Debug, Clone)]
pub struct Lockout {
    store: SharedStore,
    clock: SharedClock,
    policy: LockoutPolicy,
    gates: Gates,
    forget: Arc<Mutex<Forget>>,
}

/// A reserved password check. Report its result with [`Reservation::end`]; dropped without
/// that (the request was cancelled), it is released as [`Outcome::Neutral`] in the background,
/// so that a client that hangs up cannot hold a slot.
#[derive(Debug)]
pub struct Reservation {
    inner: Option<(Lockout, GateUse)>,
}

impl Reservation {
    fn none() -> Self {
        Self { inner: None }
    }

    /// Reports the check's result. Returns the lock's end if this failure locked the identity.
    pub async fn end(mut self, outcome: Outcome) -> Result<Option<UnixTime>, StoreError> {
        match self.inner.take() {
            Some((lockout, gate)) => lockout.finish(gate, outcome).await,
            None => Ok(None),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some((lockout, gate)) = self.inner.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = lockout.finish(gate, Outcome::Neutral).await {
                        tracing::warn!(error = %e, "could not release a lockout reservation");
                    }
                });
            }
        }
    }
}

impl Lockout {
    pub fn new(store: SharedStore, clock: SharedClock, policy: LockoutPolicy) -> Self {
        Self {
            store,
            clock,
            policy,
            gates: Arc::default(),
            forget: Arc::default(),
        }
    }

    pub fn policy(&self) -> &LockoutPolicy {
        &self.policy
    }

    fn gate(&self, key: &str) -> GateUse {
        let mut map = match self.gates.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let gate = map.entry(key.to_string()).or_default().clone();
        GateUse {
            gates: self.gates.clone(),
            key: key.to_string(),
            gate,
        }
    }

    /// Brings a record up to date at `now`: ends a lock or window that is over, drops stale
    /// reservations.
    fn settle(&self, rec: &mut LockoutRecord, now: UnixTime) {
        if rec.locked_until != 0 && rec.locked_until <= now {
            rec.locked_until = 0;
            rec.failures = 0;
            rec.window_start = now;
        }
        if now - rec.window_start >= self.policy.window_secs {
            rec.failures = 0;
            rec.window_start = now;
        }
        if rec.pending > 0 && now - rec.pending_since > STALE_PENDING_SECS {
            rec.pending = 0;
        }
    }

    /// Reserves a password check for `identity`, waits for its turn, or says it is locked.
    pub async fn begin(&self, identity: &str) -> Result<Begin, StoreError> {
        if !self.policy.enabled {
            return Ok(Begin::Allowed(Reservation::none()));
        }
        let deadline = Instant::now() + Duration::from_secs(self.policy.wait_secs);
        let gate = self.gate(identity);
        let line = gate.gate.clone();
        let Ok(_turn) = tokio::time::timeout_at(deadline, line.line.lock()).await else {
            return Ok(Begin::Busy);
        };
        loop {
            // Armed before the store is read, so that a check ending in between still wakes us.
            let ended = line.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let now = self.clock.now();
            let current = self.store.lockout(identity).await?;
            let mut rec = current.clone().unwrap_or(LockoutRecord {
                window_start: now,
                ..LockoutRecord::default()
            });
            self.settle(&mut rec, now);
            if rec.locked_until > now || rec.failures >= self.policy.threshold {
                return Ok(Begin::Locked {
                    until: rec.locked_until.max(now),
                });
            }
            if rec.failures + rec.pending < self.policy.threshold {
                if rec.pending == 0 {
                    rec.pending_since = now;
                }
                rec.pending += 1;
                // Counted before the write: a check that ends meanwhile must not see fewer
                // local reservations than the record holds.
                line.local.fetch_add(1, Ordering::SeqCst);
                match self
                    .store
                    .put_lockout(identity, current.map(|c| c.version), &rec)
                    .await
                {
                    Ok(true) => {
                        return Ok(Begin::Allowed(Reservation {
                            inner: Some((self.clone(), gate)),
                        }))
                    }
                    Ok(false) => {
                        // Someone else changed the record first: read it again.
                        line.local.fetch_sub(1, Ordering::SeqCst);
                        continue;
                    }
                    Err(e) => {
                        line.local.fetch_sub(1, Ordering::SeqCst);
                        return Err(e);
                    }
                }
            }
            // Every remaining slot is being checked now: wait for a verdict. Local checks wake
            // us when they end; slots held elsewhere (another node, a crashed one) are polled.
            let remote = rec.pending > line.local.load(Ordering::SeqCst);
            let wake = if remote {
                deadline.min(Instant::now() + REMOTE_POLL)
            } else {
                deadline
            };
            let _ = tokio::time::timeout_at(wake, ended).await;
            if Instant::now() >= deadline {
                return Ok(Begin::Busy);
            }
        }
    }

    /// Writes a check's verdict and releases its slot.
    async fn finish(
        &self,
        gate: GateUse,
        outcome: Outcome,
    ) -> Result<Option<UnixTime>, StoreError> {
        let result = self.record(&gate.key, outcome).await;
        gate.gate.local.fetch_sub(1, Ordering::SeqCst);
        gate.gate.ended.notify_waiters();
        result
    }

    async fn record(
        &self,
        identity: &str,
        outcome: Outcome,
    ) -> Result<Option<UnixTime>, StoreError> {
        loop {
            let now = self.clock.now();
            let Some(current) = self.store.lockout(identity).await? else {
                return Ok(None);
            };
            let mut rec = current.clone();
            self.settle(&mut rec, now);
            rec.pending = rec.pending.saturating_sub(1);
            let mut locked_now = None;
            match outcome {
                Outcome::Success => {
                    rec.failures = 0;
                    rec.window_start = now;
                }
                Outcome::Failure => {
                    rec.failures += 1;
                    if rec.failures >= self.policy.threshold && rec.locked_until <= now {
                        rec.locked_until = now + self.policy.duration_secs;
                        locked_now = Some(rec.locked_until);
                    }
                }
                Outcome::Neutral => {}
            }
            if self
                .store
                .put_lockout(identity, Some(current.version), &rec)
                .await?
            {
                return Ok(locked_now);
            }
        }
    }

    /// Asks for `key`'s record to be deleted once its window and any lock are over. For keys
    /// that no identity owns (the digests of unknown names), whose records would otherwise
    /// pile up, one per name anybody ever tried. Deletion runs in the background.
    pub fn forget_when_idle(&self, key: &str) {
        let now = self.clock.now();
        let due = now
            .saturating_add(self.policy.window_secs.max(self.policy.duration_secs))
            .saturating_add(1);
        let start = {
            let mut f = match self.forget.lock() {
                Ok(f) => f,
                Err(poisoned) => poisoned.into_inner(),
            };
            if f.due.len() < MAX_FORGET {
                f.due.push_back((due, key.to_string()));
            }
            let ready = f.due.front().is_some_and(|(at, _)| *at <= now);
            let start = ready && !f.sweeping;
            if start {
                f.sweeping = true;
            }
            start
        };
        if start {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let this = self.clone();
                rt.spawn(async move { this.sweep_forgotten().await });
            } else if let Ok(mut f) = self.forget.lock() {
                f.sweeping = false;
            }
        }
    }

    /// Deletes the due records that count nothing any more (no failures in the window, no
    /// lock, no check under way). One at a time: this is background work.
    async fn sweep_forgotten(&self) {
        loop {
            let now = self.clock.now();
            let next = {
                let mut f = match self.forget.lock() {
                    Ok(f) => f,
                    Err(poisoned) => poisoned.into_inner(),
                };
                match f.due.front() {
                    Some((at, _)) if *at <= now => f.due.pop_front().map(|(_, k)| k),
                    _ => {
                        f.sweeping = false;
                        None
                    }
                }
            };
            let Some(key) = next else { return };
            let idle = match self.store.lockout(&key).await {
                Ok(Some(mut rec)) => {
                    self.settle(&mut rec, now);
                    rec.failures == 0 && rec.pending == 0 && rec.locked_until == 0
                }
                Ok(None) => false,
                Err(e) => {
                    tracing::debug!(error = %e, "lockout sweep could not read a record");
                    false
                }
            };
            // Racing a new attempt at the same name loses at most that attempt's count, for a
            // name nobody has.
            if idle {
                if let Err(e) = self.store.delete_lockout(&key).await {
                    tracing::debug!(error = %e, "lockout sweep could not delete a record");
                }
            }
        }
    }

    pub async fn state(&self, identity: &str) -> Result<State, StoreError> {
        let now = self.clock.now();
        let Some(mut rec) = self.store.lockout(identity).await? else {
            return Ok(State {
                failures: 0,
                locked_until: None,
            });
        };
        self.settle(&mut rec, now);
        Ok(State {
            failures: rec.failures,
            locked_until: (rec.locked_until > now).then_some(rec.locked_until),
        })
    }

    /// Clears the identity's failures and lock. True if there was anything to clear.
    pub async fn unlock(&self, identity: &str) -> Result<bool, StoreError> {
        self.store.delete_lockout(identity).await
    }
}
