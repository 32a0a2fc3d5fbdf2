//! Lockout: after `threshold` failed logins for one identity within `window_secs`, further
//! attempts fail for `duration_secs` without checking the password. The counter lives in the
//! store and changes only by compare-and-swap, so parallel attempts (on one node or several)
//! never get more password checks than the threshold: each check reserves a slot first.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{SharedClock, UnixTime};
use crate::store::{LockoutRecord, SharedStore, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutPolicy {
    pub enabled: bool,
    pub threshold: u32,
    pub window_secs: i64,
    pub duration_secs: i64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: 5,
            window_secs: 900,
            duration_secs: 900,
        }
    }
}

/// A reservation older than this belongs to a node that died mid-check.
const STALE_PENDING_SECS: i64 = 60;
/// How long an attempt waits for a free slot before it is refused like a locked one.
const MAX_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// Go ahead and check the password; report the result with [`Lockout::end`].
    Allowed,
    /// Locked (or too many checks already under way): refuse without checking.
    Locked { until: UnixTime },
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

#[derive(Debug, Clone)]
pub struct Lockout {
    store: SharedStore,
    clock: SharedClock,
    policy: LockoutPolicy,
}

impl Lockout {
    pub fn new(store: SharedStore, clock: SharedClock, policy: LockoutPolicy) -> Self {
        Self {
            store,
            clock,
            policy,
        }
    }

    pub fn policy(&self) -> &LockoutPolicy {
        &self.policy
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

    /// Reserves a password check for `identity`, or says it is locked.
    pub async fn begin(&self, identity: &str) -> Result<Begin, StoreError> {
        if !self.policy.enabled {
            return Ok(Begin::Allowed);
        }
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
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
            if rec.failures + rec.pending >= self.policy.threshold {
                // Every remaining guess is being checked right now; wait for the verdicts.
                if started.elapsed() > MAX_WAIT {
                    return Ok(Begin::Locked { until: now });
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
                continue;
            }
            if rec.pending == 0 {
                rec.pending_since = now;
            }
            rec.pending += 1;
            if self
                .store
                .put_lockout(identity, current.map(|c| c.version), &rec)
                .await?
            {
                return Ok(Begin::Allowed);
            }
            // Someone else changed the record first: read it again.
        }
    }

    /// Reports the result of a reserved check. Returns the lock's end if this failure locked
    /// the identity.
    pub async fn end(
        &self,
        identity: &str,
        outcome: Outcome,
    ) -> Result<Option<UnixTime>, StoreError> {
        if !self.policy.enabled {
            return Ok(None);
        }
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
