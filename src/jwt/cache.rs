//! The per-issuer key cache.
//!
//! Each trusted issuer has a slot holding its last good JWK Set and the time it is good until:
//! the JWKS response's Cache-Control `max-age` clamped to [MinTtl, MaxTtl], or MaxTtl without
//! one. Tokens prompt a fetch when the slot is empty or past that time, or when their `kid` is
//! not in the set; such fetches happen at most once per RefreshDelay per issuer, and concurrent
//! requests for one issuer share a single fetch. When a fetch fails, the keys in hand keep
//! being used ("stale") for up to MaxTtl past their time, so a short outage of the issuer does
//! not stop the grant; after that, or with nothing in hand, the token is refused with
//! `KeysUnreachable`. Time is the caller's `now`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::fetch::{FetchPolicy, Fetcher};
use super::jws::KeySet;
use super::model::{CacheConfiguration, KeySource};
use crate::clock::UnixTime;

/// One issuer's keys as handed to the verifier.
#[derive(Debug, Clone)]
pub struct KeyView {
    pub keys: Arc<KeySet>,
    /// The last fetch failed (its reason): the keys are those from before. An unknown `kid`
    /// is then "keys unreachable", not "bad signature".
    pub refresh_failed: Option<String>,
}

/// What the cache knows of an issuer, for operators (`key_status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerKeyStatus {
    pub issuer: String,
    pub source: KeySource,
    pub keys: usize,
    pub fetched_at: Option<UnixTime>,
    pub good_until: Option<UnixTime>,
    pub last_attempt: Option<UnixTime>,
    pub last_error: Option<String>,
    /// Fetch attempts made for this issuer since its slot was created.
    pub fetches: u64,
}

#[derive(Debug)]
struct Cached {
    keys: Arc<KeySet>,
    fetched_at: UnixTime,
    good_until: UnixTime,
}

#[derive(Debug, Default)]
struct SlotState {
    cached: Option<Cached>,
    last_attempt: Option<UnixTime>,
    last_error: Option<String>,
    /// Bumped by every completed attempt; a waiter that sees it move knows a fetch happened.
    generation: u64,
    fetches: u64,
}

#[derive(Debug)]
struct Slot {
    source: KeySource,
    state: Mutex<SlotState>,
    /// Held while a fetch for this issuer runs (single flight).
    flight: tokio::sync::Mutex<()>,
}

enum Decision {
    Serve(KeyView),
    Fetch,
    Fail(String),
}

/// The per-issuer key cache (see the module's doc).
#[derive(Debug)]
pub struct KeyCache {
    fetcher: Fetcher,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// DegreeOfParallelism: fetches in flight over all issuers.
    parallel: RwLock<(i32, Arc<Semaphore>)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the state half-updated in a way that
    // matters more than refusing every later token would.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Slot {
    fn decide(
        &self,
        st: &SlotState,
        kid: Option<&str>,
        now: UnixTime,
        c: &CacheConfiguration,
    ) -> Decision {
        let throttled = st
            .last_attempt
            .is_some_and(|t| now < t + i64::from(c.refresh_delay));
        let Some(cached) = &st.cached else {
            return if throttled {
                Decision::Fail(
                    st.last_error
                        .clone()
                        .unwrap_or_else(|| "no keys yet".into()),
                )
            } else {
                Decision::Fetch
            };
        };
        let due = now >= cached.good_until;
        let kid_unknown = kid.is_some_and(|k| !cached.keys.has_kid(k));
        if !due && !kid_unknown {
            return Decision::Serve(KeyView {
                keys: cached.keys.clone(),
                refresh_failed: None,
            });
        }
        if !throttled {
            return Decision::Fetch;
        }
        self.serve_or_fail(st, cached, now, c)
    }

    /// After a failed or throttled fetch: the keys in hand while not too stale.
    fn serve_or_fail(
        &self,
        st: &SlotState,
        cached: &Cached,
        now: UnixTime,
        c: &CacheConfiguration,
    ) -> Decision {
        if now >= cached.good_until + i64::from(c.max_ttl) {
            return Decision::Fail(
                st.last_error
                    .clone()
                    .unwrap_or_else(|| "keys expired".into()),
            );
        }
        Decision::Serve(KeyView {
            keys: cached.keys.clone(),
            refresh_failed: st.last_error.clone(),
        })
    }

    /// For a waiter whose fetch was done by another request meanwhile: use its outcome.
    fn after_flight(&self, st: &SlotState, now: UnixTime, c: &CacheConfiguration) -> Decision {
        match &st.cached {
            Some(cached) => self.serve_or_fail(st, cached, now, c),
            None => Decision::Fail(st.last_error.clone().unwrap_or_else(|| "no keys".into())),
        }
    }
}

impl KeyCache {
    pub fn new(fetcher: Fetcher, c: &CacheConfiguration) -> Self {
        let n = c.degree_of_parallelism.max(1);
        Self {
            fetcher,
            slots: Mutex::new(HashMap::new()),
            parallel: RwLock::new((n, Arc::new(Semaphore::new(n as usize)))),
        }
    }

    fn semaphore(&self, c: &CacheConfiguration) -> Arc<Semaphore> {
        let n = c.degree_of_parallelism.max(1);
        {
            let g = self.parallel.read().unwrap_or_else(|p| p.into_inner());
            if g.0 == n {
                return g.1.clone();
            }
        }
        let mut g = self.parallel.write().unwrap_or_else(|p| p.into_inner());
        if g.0 != n {
            *g = (n, Arc::new(Semaphore::new(n as usize)));
        }
        g.1.clone()
    }

    /// The slot of `issuer`, made anew if its key source changed.
    fn slot(&self, issuer: &str, source: &KeySource) -> Arc<Slot> {
        let mut slots = lock(&self.slots);
        if let Some(s) = slots.get(issuer) {
            if s.source == *source {
                return s.clone();
            }
        }
        let s = Arc::new(Slot {
            source: source.clone(),
            state: Mutex::new(SlotState::default()),
            flight: tokio::sync::Mutex::new(()),
        });
        slots.insert(issuer.to_string(), s.clone());
        s
    }

    /// Forgets the issuers that are no longer trusted and those whose key source changed.
    pub fn retain(&self, keep: &[(&str, &KeySource)]) {
        lock(&self.slots).retain(|issuer, slot| {
            keep.iter()
                .any(|(i, s)| *i == issuer.as_str() && **s == slot.source)
        });
    }

    /// The keys to check a token of `issuer` with, fetching them if needed (see the module's doc).
    pub async fn keys(
        &self,
        issuer: &str,
        source: &KeySource,
        kid: Option<&str>,
        now: UnixTime,
        c: &CacheConfiguration,
    ) -> Result<KeyView, String> {
        let slot = self.slot(issuer, source);
        let generation = {
            let st = lock(&slot.state);
            match slot.decide(&st, kid, now, c) {
                Decision::Serve(v) => return Ok(v),
                Decision::Fail(e) => return Err(e),
                Decision::Fetch => st.generation,
            }
        };
        let _flight = slot.flight.lock().await;
        {
            let st = lock(&slot.state);
            if st.generation != generation {
                return match slot.after_flight(&st, now, c) {
                    Decision::Serve(v) => Ok(v),
                    Decision::Fail(e) => Err(e),
                    Decision::Fetch => Err("no keys".into()),
                };
            }
        }
        self.fetch_into(issuer, &slot, now, c).await
    }

    /// Only what is cached, never fetching: for the benchmark hook and dry runs.
    pub fn cached(
        &self,
        issuer: &str,
        source: &KeySource,
        now: UnixTime,
        c: &CacheConfiguration,
    ) -> Result<KeyView, String> {
        let slot = self.slot(issuer, source);
        let st = lock(&slot.state);
        match &st.cached {
            Some(cached) => match slot.serve_or_fail(&st, cached, now, c) {
                Decision::Serve(v) => Ok(v),
                Decision::Fail(e) => Err(e),
                Decision::Fetch => Err("no keys".into()),
            },
            None => Err("no keys cached".into()),
        }
    }

    /// Fetches `issuer`'s keys if it has none or they are due, ignoring the unknown-`kid`
    /// throttle but not the retry delay after a failure. For the periodic refresh.
    pub async fn refresh(
        &self,
        issuer: &str,
        source: &KeySource,
        now: UnixTime,
        c: &CacheConfiguration,
    ) -> Result<usize, String> {
        let slot = self.slot(issuer, source);
        let _flight = slot.flight.lock().await;
        {
            let st = lock(&slot.state);
            match &st.cached {
                Some(cached) if now < cached.good_until => return Ok(cached.keys.len()),
                _ => {}
            }
            let failed_recently = st.last_error.is_some()
                && st
                    .last_attempt
                    .is_some_and(|t| now < t + i64::from(c.refresh_delay));
            if failed_recently {
                return Err(st.last_error.clone().unwrap_or_default());
            }
        }
        self.fetch_into(issuer, &slot, now, c)
            .await
            .map(|v| v.keys.len())
    }

    /// Fetches now (the caller holds the slot's flight lock) and records the outcome.
    async fn fetch_into(
        &self,
        issuer: &str,
        slot: &Slot,
        now: UnixTime,
        c: &CacheConfiguration,
    ) -> Result<KeyView, String> {
        let policy = FetchPolicy {
            timeout: Duration::from_secs(c.timeout.max(1) as u64),
            allow_http: c.no_https,
            check_issuer: !c.no_oidc_issuer_check,
        };
        let jwks_uri = match &slot.source {
            KeySource::Jwks(u) => Some(u.as_str()),
            KeySource::Discovery => None,
        };
        let outcome = {
            let sem = self.semaphore(c);
            let _permit = sem.acquire().await.map_err(|e| e.to_string())?;
            self.fetcher.fetch_keys(issuer, jwks_uri, policy).await
        };
        let mut st = lock(&slot.state);
        st.generation += 1;
        st.fetches += 1;
        st.last_attempt = Some(now);
        match outcome {
            Ok(f) => {
                metrics::counter!("vedauth_jwt_key_fetches_total", "result" => "ok").increment(1);
                let ttl = f
                    .max_age
                    .map(|a| a.min(i32::MAX as u64) as i64)
                    .unwrap_or(i64::from(c.max_ttl))
                    .clamp(i64::from(c.min_ttl), i64::from(c.max_ttl));
                tracing::info!(issuer, jwks = %f.jwks_url, keys = f.keys.len(), skipped = f.keys.skipped, ttl, "JWT issuer keys fetched");
                let keys = Arc::new(f.keys);
                st.cached = Some(Cached {
                    keys: keys.clone(),
                    fetched_at: now,
                    good_until: now + ttl,
                });
                st.last_error = None;
                Ok(KeyView {
                    keys,
                    refresh_failed: None,
                })
            }
            Err(e) => {
                metrics::counter!("vedauth_jwt_key_fetches_total", "result" => "error")
                    .increment(1);
                let reason = e.to_string();
                st.last_error = Some(reason.clone());
                let decision = match &st.cached {
                    Some(cached) => slot.serve_or_fail(&st, cached, now, c),
                    None => Decision::Fail(reason.clone()),
                };
                match decision {
                    Decision::Serve(v) => {
                        tracing::warn!(issuer, reason = %reason, "JWT issuer keys could not be fetched; using the keys in hand");
                        Ok(v)
                    }
                    _ => {
                        tracing::warn!(issuer, reason = %reason, "JWT issuer keys could not be fetched");
                        st.cached = None;
                        Err(reason)
                    }
                }
            }
        }
    }

    /// Puts a key set in the cache as if just fetched (benchmark hook, tests).
    pub fn preload(
        &self,
        issuer: &str,
        source: &KeySource,
        keys: KeySet,
        now: UnixTime,
        c: &CacheConfiguration,
    ) {
        let slot = self.slot(issuer, source);
        let mut st = lock(&slot.state);
        st.cached = Some(Cached {
            keys: Arc::new(keys),
            fetched_at: now,
            good_until: now + i64::from(c.max_ttl),
        });
        st.generation += 1;
    }

    pub fn status(&self) -> Vec<IssuerKeyStatus> {
        let slots = lock(&self.slots);
        let mut out: Vec<IssuerKeyStatus> = slots
            .iter()
            .map(|(issuer, slot)| {
                let st = lock(&slot.state);
                IssuerKeyStatus {
                    issuer: issuer.clone(),
                    source: slot.source.clone(),
                    keys: st.cached.as_ref().map_or(0, |c| c.keys.len()),
                    fetched_at: st.cached.as_ref().map(|c| c.fetched_at),
                    good_until: st.cached.as_ref().map(|c| c.good_until),
                    last_attempt: st.last_attempt,
                    last_error: st.last_error.clone(),
                    fetches: st.fetches,
                }
            })
            .collect();
        out.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        out
    }
}
