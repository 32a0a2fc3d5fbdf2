//! Password hashing (argon2id, PHC strings) on a bounded pool of dedicated threads.
//!
//! Hashing never runs on the async runtime's threads: a request hands its job to the pool's
//! queue and awaits the answer. When the queue is full the request is refused at once
//! ([`PoolError::Overloaded`], answered 503) rather than queued for seconds.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::secret::Secret;

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HashParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashParams {
    /// OWASP's argon2id recommendation (19 MiB, 2 passes, 1 lane).
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl HashParams {
    /// Deliberately weak parameters for tests, where thousands of hashes must be cheap.
    pub fn insecure_for_tests() -> Self {
        Self {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn argon2(&self) -> Result<Argon2<'static>, PasswordError> {
        let p = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| PasswordError::Params(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, p))
    }

    /// Whether a stored PHC string was made with exactly these parameters and algorithm.
    fn matches(&self, phc: &PasswordHash<'_>) -> bool {
        let get = |k: &str| phc.params.get_decimal(k);
        phc.algorithm.as_str() == "argon2id"
            && phc.version == Some(0x13)
            && get("m") == Some(self.memory_kib)
            && get("t") == Some(self.iterations)
            && get("p") == Some(self.parallelism)
    }
}

/// What a local user's new password must be. Only length is required, as NIST SP 800-63B
/// recommends: composition rules ("a digit and a symbol") make passwords harder to remember,
/// not harder to guess. Directory users' passwords are the directory's business.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordPolicy {
    /// Fewest characters (Unicode scalar values, so "ü" is one) a new password may have.
    pub min_length: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self { min_length: 12 }
    }
}

/// The most characters a password may have: enough for any passphrase or generated secret,
/// and a bound on what reaches the hasher.
pub const MAX_PASSWORD_CHARS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordPolicyError {
    #[error(
        "the password is too short: {actual} characters, at least {min} characters are required"
    )]
    TooShort { min: usize, actual: usize },
    #[error("the password is too long: {actual} characters, at most {max} are allowed")]
    TooLong { max: usize, actual: usize },
    #[error("the password consists only of spaces")]
    Blank,
}

impl PasswordPolicy {
    /// Whether `password` may become a local user's password. Administration calls this when a
    /// user is created and when a password is changed.
    pub fn check(&self, password: &Secret) -> Result<(), PasswordPolicyError> {
        let text = password.expose();
        let actual = text.chars().count();
        if actual < self.min_length {
            return Err(PasswordPolicyError::TooShort {
                min: self.min_length,
                actual,
            });
        }
        if actual > MAX_PASSWORD_CHARS {
            return Err(PasswordPolicyError::TooLong {
                max: MAX_PASSWORD_CHARS,
                actual,
            });
        }
        if text.chars().all(char::is_whitespace) {
            return Err(PasswordPolicyError::Blank);
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("invalid hash parameters: {0}")]
    Params(String),
    #[error("hashing failed: {0}")]
    Hash(String),
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The queue is full: shed the request.
    #[error("password hashing queue is full")]
    Overloaded,
    /// The pool's threads are gone (shutdown).
    #[error("password hashing pool stopped")]
    Stopped,
    #[error(transparent)]
    Password(#[from] PasswordError),
}

/// The result of checking a password against a stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub ok: bool,
    /// Set when the password was right but the hash used other parameters: a fresh hash with
    /// the current ones, for the caller to store.
    pub rehash: Option<String>,
}

enum Job {
    Hash {
        queued: std::time::Instant,
        password: Secret,
        reply: oneshot::Sender<Result<String, PasswordError>>,
    },
    Verify {
        queued: std::time::Instant,
        phc: String,
        password: Secret,
        reply: oneshot::Sender<Result<Verified, PasswordError>>,
    },
}

impl Job {
    fn queued(&self) -> std::time::Instant {
        match self {
            Job::Hash { queued, .. } | Job::Verify { queued, .. } => *queued,
        }
    }

    fn abandoned(&self) -> bool {
        match self {
            Job::Hash { reply, .. } => reply.is_closed(),
            Job::Verify { reply, .. } => reply.is_closed(),
        }
    }
}

thread_local! {
    /// argon2's working memory (19 MiB with the default parameters), kept by each thread that
    /// hashes (the pool's threads) instead of allocated per hash: freed per hash, blocks that
    /// size stayed with the allocator's arenas and the process grew to hundreds of MB under
    /// load; reused, a hashing thread holds one block set while it keeps hashing, and gives it
    /// back after [`PoolOptions::keep_memory`] without a job.
    static WORKSPACE: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Bytes of working memory this thread holds.
fn workspace_bytes() -> usize {
    WORKSPACE.with_borrow(|w| w.capacity() * std::mem::size_of::<Block>())
}

/// Frees this thread's working memory: the process's resident set shrinks by it at once, the
/// memory being a mapping of its own (`heap::map_large_allocations_apart`, set up with the
/// pool).
fn release_workspace() {
    WORKSPACE.with_borrow_mut(|w| *w = Vec::new());
}

/// Runs argon2 into `out` in this thread's working memory.
fn compute(argon: &Argon2<'_>, password: &[u8], salt: &[u8], out: &mut [u8]) -> argon2::Result<()> {
    let need = argon.params().block_count();
    WORKSPACE.with(|w| {
        let mut blocks = w.borrow_mut();
        if blocks.len() < need {
            blocks.resize(need, Block::new());
        }
        argon.hash_password_into_with_memory(password, salt, out, &mut blocks[..need])
    })
}

/// Hashes with the current parameters; runs on whatever thread calls it (in the server, the
/// pool's threads).
pub fn hash_now(params: &HashParams, password: &str) -> Result<String, PasswordError> {
    let err = |e: &dyn std::fmt::Display| PasswordError::Hash(e.to_string());
    let salt = SaltString::generate(&mut OsRng);
    let argon = params.argon2()?;
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_buf)
        .map_err(|e| err(&e))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    compute(&argon, password.as_bytes(), salt_bytes, &mut out).map_err(|e| err(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params()).map_err(|e| err(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| err(&e))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` gives the hash in `phc`, computed with the algorithm and parameters
/// recorded there; anything unusable in it counts as a mismatch.
fn matches_phc(phc: &PasswordHash<'_>, password: &str) -> bool {
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(phc.algorithm) else {
        return false;
    };
    let version = match phc.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(phc) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params);
    let mut salt_buf = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    Output::init_with(expected.len(), |out| {
        compute(&argon, password.as_bytes(), salt_bytes, out)
            .map_err(|_| argon2::password_hash::Error::Password)
    })
    // `Output`'s equality is constant-time.
    .is_ok_and(|computed| computed == *expected)
}

/// A well-formed argon2id hash with these parameters that no password matches: a random salt
/// and random output. Verifying against it costs exactly what verifying a real hash costs, and
/// making it costs no hashing (the pool makes it at start, on the caller's thread).
pub fn unmatchable_hash(params: &HashParams) -> Result<String, PasswordError> {
    use argon2::password_hash::rand_core::RngCore as _;
    use argon2::password_hash::Output;
    // Checks the parameters the way hashing would.
    params.argon2()?;
    let salt = SaltString::generate(&mut OsRng);
    let mut out = [0u8; 32];
    OsRng.fill_bytes(&mut out);
    let out = Output::new(&out).map_err(|e| PasswordError::Hash(e.to_string()))?;
    let b64 = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(b)
    };
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.memory_kib,
        params.iterations,
        params.parallelism,
        salt.as_str(),
        b64(out.as_bytes())
    ))
}

/// Verifies `password` against `phc`; a malformed stored hash counts as a mismatch.
pub fn verify_now(
    params: &HashParams,
    phc: &str,
    password: &str,
) -> Result<Verified, PasswordError> {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return Ok(Verified {
            ok: false,
            rehash: None,
        });
    };
    // Verification uses the parameters recorded in the hash itself.
    let ok = matches_phc(&parsed, password);
    let rehash = if ok && !params.matches(&parsed) {
        Some(hash_now(params, password)?)
    } else {
        None
    };
    Ok(Verified { ok, rehash })
}

#[derive(Debug)]
struct Inner {
    tx: Sender<JobBox>,
    params: HashParams,
    threads: usize,
    capacity: usize,
    /// Jobs queued or running.
    in_flight: AtomicUsize,
    /// Jobs the pool's threads have finished (run or skipped as abandoned).
    completed: AtomicUsize,
    /// Working memory the pool's threads hold now, in bytes.
    workspace: AtomicUsize,
    /// A hash of a random password with the current parameters, checked for unknown users so
    /// that they cost the same as known ones.
    dummy: String,
}

struct JobBox(Job);
impl std::fmt::Debug for JobBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

/// A cloneable handle on the hashing pool.
#[derive(Debug, Clone)]
pub struct HashPool(Arc<Inner>);

impl HashPool {
    /// Starts `threads` workers (0 = one per core) with a queue of `queue` waiting jobs
    /// (0 = 32 per worker: about a second of waiting at the default parameters).
    pub fn start(params: HashParams, threads: usize, queue: usize) -> Result<Self, PasswordError> {
        Self::start_with(
            params,
            PoolOptions {
                threads,
                queue,
                ..PoolOptions::default()
            },
        )
    }

    /// [`HashPool::start`] with every option.
    pub fn start_with(params: HashParams, o: PoolOptions) -> Result<Self, PasswordError> {
        let PoolOptions {
            threads,
            queue,
            scheduling,
            keep_memory,
        } = o;
        let threads = if threads == 0 {
            thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        } else {
            threads
        };
        let capacity = if queue == 0 { threads * 32 } else { queue };
        // The threads' working memory must go back to the OS when they give it back.
        crate::heap::map_large_allocations_apart();
        let dummy = unmatchable_hash(&params)?;
        let (tx, rx) = bounded::<JobBox>(capacity);
        let inner = Arc::new(Inner {
            tx,
            params,
            threads,
            capacity,
            in_flight: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            workspace: AtomicUsize::new(0),
            dummy,
        });
        for i in 0..threads {
            let rx: Receiver<JobBox> = rx.clone();
            let weak = Arc::downgrade(&inner);
            thread::Builder::new()
                .name(format!("vedauth-hash-{i}"))
                .spawn(move || worker(rx, params, scheduling, keep_memory, weak))
                .map_err(|e| PasswordError::Hash(e.to_string()))?;
        }
        Ok(Self(inner))
    }

    pub fn params(&self) -> HashParams {
        self.0.params
    }
    pub fn threads(&self) -> usize {
        self.0.threads
    }
    pub fn capacity(&self) -> usize {
        self.0.capacity
    }
    /// Jobs waiting or running now.
    pub fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::Relaxed)
    }
    /// Whether a job submitted now would be refused: every thread busy and the queue full.
    /// A hint (the queue may drain a moment later); `submit` still decides.
    pub fn is_full(&self) -> bool {
        self.in_flight() >= self.0.capacity.saturating_add(self.0.threads)
    }
    /// Jobs finished by the pool's own threads since start.
    pub fn completed(&self) -> usize {
        self.0.completed.load(Ordering::Relaxed)
    }
    /// Bytes of argon2 working memory the pool's threads hold now.
    pub fn workspace_bytes(&self) -> usize {
        self.0.workspace.load(Ordering::Relaxed)
    }

    fn submit(&self, job: Job) -> Result<(), PoolError> {
        // Counted before it is queued: a worker may finish it before try_send returns.
        let depth = self
            .0
            .in_flight
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        match self.0.tx.try_send(JobBox(job)) {
            Ok(()) => {
                metrics::gauge!("vedauth_hash_queue_depth").set(depth as f64);
                Ok(())
            }
            Err(e) => {
                self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
                match e {
                    TrySendError::Full(_) => {
                        metrics::counter!("vedauth_hash_rejected_total").increment(1);
                        Err(PoolError::Overloaded)
                    }
                    TrySendError::Disconnected(_) => Err(PoolError::Stopped),
                }
            }
        }
    }

    pub async fn hash(&self, password: Secret) -> Result<String, PoolError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Hash {
            queued: std::time::Instant::now(),
            password,
            reply,
        })?;
        Ok(rx.await.map_err(|_| PoolError::Stopped)??)
    }

    pub async fn verify(&self, phc: &str, password: Secret) -> Result<Verified, PoolError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Verify {
            queued: std::time::Instant::now(),
            phc: phc.to_string(),
            password,
            reply,
        })?;
        Ok(rx.await.map_err(|_| PoolError::Stopped)??)
    }

    /// Spends the same work as checking a real user's password, and always fails.
    pub async fn verify_dummy(&self, password: Secret) -> Result<(), PoolError> {
        let dummy = self.0.dummy.clone();
        self.verify(&dummy, password).await.map(|_| ())
    }
}

/// How the hashing threads give way to request handling. A password check costs tens of
/// milliseconds of CPU while a verify or refresh costs tens of microseconds: when both want the
/// CPU, token traffic goes first and logins wait (and past the queue, are refused with 503).
/// When nothing else runs, hashing gets whole cores either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashScheduling {
    /// Linux's `SCHED_IDLE` policy: a request-serving thread that wakes takes the core from a
    /// hashing thread at once. (A positive nice value only lowers a thread's share: with
    /// Linux's EEVDF scheduler the hashing thread still finishes its time slice first, and a
    /// verify waits milliseconds at every wake-up.)
    #[default]
    Idle,
    /// Nice 10: a smaller share of the CPU, no preemption on wake-up.
    Nice,
}

/// The nice value of [`HashScheduling::Nice`] (the request-serving threads keep 0).
const HASH_NICE: i32 = 10;

/// The hashing pool's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolOptions {
    /// Hashing threads; 0 = one per core.
    pub threads: usize,
    /// Jobs that may wait for a thread; 0 = 32 per thread.
    pub queue: usize,
    pub scheduling: HashScheduling,
    /// How long a thread keeps its working memory after its last job; None = for its life.
    /// Logins come in bursts, token traffic steadily: a server that has nothing to hash need
    /// not hold the memory cost of every thread (38 MiB for two at the default parameters).
    /// Taking it back costs the next hash the page faults of mapping it again (about 15 ms at
    /// the default parameters, docs/BENCHMARKS.md).
    pub keep_memory: Option<Duration>,
}

/// Lowers the calling thread's priority as `how` says (on Linux both are per thread).
fn lower_priority(how: HashScheduling) {
    #[cfg(target_os = "linux")]
    let done = match how {
        HashScheduling::Idle => {
            use thread_priority::{
                set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
                ThreadPriority, ThreadSchedulePolicy,
            };
            set_thread_priority_and_policy(
                thread_native_id(),
                ThreadPriority::Min,
                ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
            )
            .map_err(|e| format!("{e:?}"))
        }
        HashScheduling::Nice => {
            rustix::process::setpriority_process(Some(rustix::thread::gettid()), HASH_NICE)
                .map_err(|e| e.to_string())
        }
    };
    #[cfg(target_os = "linux")]
    if let Err(e) = done {
        tracing::debug!(error = %e, "could not lower the hashing thread's priority");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = how;
}

/// Adds `now - before` bytes to the pool's working-memory count.
fn account_workspace(pool: &Inner, before: usize, now: usize) {
    let held = if now >= before {
        pool.workspace
            .fetch_add(now - before, Ordering::Relaxed)
            .saturating_add(now - before)
    } else {
        pool.workspace
            .fetch_sub(before - now, Ordering::Relaxed)
            .saturating_sub(before - now)
    };
    metrics::gauge!("vedauth_hash_memory_bytes").set(held as f64);
}

fn worker(
    rx: Receiver<JobBox>,
    params: HashParams,
    scheduling: HashScheduling,
    keep_memory: Option<Duration>,
    pool: std::sync::Weak<Inner>,
) {
    lower_priority(scheduling);
    // This thread's working memory as last counted in the pool.
    let mut held = 0;
    loop {
        // While the thread holds working memory, a wait longer than `keep_memory` gives it back.
        let next = match keep_memory.filter(|_| held > 0) {
            Some(keep) => match rx.recv_timeout(keep) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => {
                    release_workspace();
                    // What the thread holds now, measured (not assumed to be nothing).
                    let now = workspace_bytes();
                    if let Some(p) = pool.upgrade() {
                        account_workspace(&p, held, now);
                    }
                    held = now;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => None,
            },
            None => rx.recv().ok(),
        };
        let Some(JobBox(job)) = next else {
            return;
        };
        metrics::histogram!("vedauth_hash_wait_seconds")
            .record(job.queued().elapsed().as_secs_f64());
        // A client that gave up (disconnected, timed out) no longer needs its hash.
        let answer = (!job.abandoned()).then(|| match job {
            Job::Hash {
                password, reply, ..
            } => Answer::Hashed(reply, hash_now(&params, password.expose())),
            Job::Verify {
                phc,
                password,
                reply,
                ..
            } => Answer::Verified(reply, verify_now(&params, &phc, password.expose())),
        });
        // Counted before the answer goes, so that whoever has an answer sees its job counted
        // (the tests that count hashes read the counters right after an answer).
        let alive = match pool.upgrade() {
            Some(p) => {
                let now = workspace_bytes();
                if now != held {
                    account_workspace(&p, held, now);
                    held = now;
                }
                p.completed.fetch_add(1, Ordering::Relaxed);
                let depth = p
                    .in_flight
                    .fetch_sub(1, Ordering::Relaxed)
                    .saturating_sub(1);
                metrics::gauge!("vedauth_hash_queue_depth").set(depth as f64);
                true
            }
            None => false,
        };
        if let Some(a) = answer {
            a.send();
        }
        if !alive {
            return;
        }
    }
}

/// A finished job's result and where it goes.
enum Answer {
    Hashed(
        oneshot::Sender<Result<String, PasswordError>>,
        Result<String, PasswordError>,
    ),
    Verified(
        oneshot::Sender<Result<Verified, PasswordError>>,
        Result<Verified, PasswordError>,
    ),
}

impl Answer {
    /// A caller that gave up meanwhile is no one to tell.
    fn send(self) {
        match self {
            Answer::Hashed(reply, r) => {
                let _ = reply.send(r);
            }
            Answer::Verified(reply, r) => {
                let _ = reply.send(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusals' dummy hash is made without hashing, yet it is a real argon2id hash with
    /// the pool's parameters (so verifying against it costs a full hash) that nothing matches.
    #[test]
    fn the_unmatchable_hash_is_a_real_hash_with_the_parameters() {
        let p = HashParams {
            memory_kib: 256,
            iterations: 2,
            parallelism: 1,
        };
        let h = unmatchable_hash(&p).unwrap_or_default();
        let parsed = PasswordHash::new(&h).expect("parses");
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        assert!(p.matches(&parsed), "{h}");
        assert_eq!(parsed.hash.map(|o| o.len()), Some(32));
        assert_ne!(h, unmatchable_hash(&p).unwrap_or_default(), "random salt");
        // verify_now counts a malformed hash as a mismatch too; `rehash: None` after a
        // mismatch and the parse above show this one is well-formed and simply unmatched.
        for pw in ["", "password", &h] {
            assert!(!verify_now(&p, &h, pw).map(|v| v.ok).unwrap_or(true));
        }
        assert!(unmatchable_hash(&HashParams {
            memory_kib: 1,
            iterations: 0,
            parallelism: 0
        })
        .is_err());
    }

    /// Hashes made in reused working memory are the argon2 crate's own hashes: each side
    /// verifies the other's, across parameter sets of different memory sizes on one thread.
    #[test]
    fn hashes_from_reused_memory_match_the_crates_own() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        for p in [
            HashParams::insecure_for_tests(),
            HashParams {
                memory_kib: 256,
                iterations: 2,
                parallelism: 2,
            },
            HashParams::insecure_for_tests(),
        ] {
            let ours = hash_now(&p, "pässword").unwrap_or_default();
            let parsed = PasswordHash::new(&ours).expect("phc");
            assert!(p
                .argon2()
                .expect("params")
                .verify_password("pässword".as_bytes(), &parsed)
                .is_ok());
            let salt = SaltString::generate(&mut OsRng);
            let theirs = p
                .argon2()
                .expect("params")
                .hash_password("pässword".as_bytes(), &salt)
                .expect("hash")
                .to_string();
            assert!(verify_now(&p, &theirs, "pässword").expect("verify").ok);
            assert!(!verify_now(&p, &theirs, "password").expect("verify").ok);
        }
    }

    #[test]
    fn hash_and_verify_round_trip() {
        let p = HashParams::insecure_for_tests();
        let h = hash_now(&p, "correct horse").unwrap_or_default();
        assert!(h.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert_eq!(
            verify_now(&p, &h, "correct horse").ok(),
            Some(Verified {
                ok: true,
                rehash: None
            })
        );
        assert!(!verify_now(&p, &h, "wrong").map(|v| v.ok).unwrap_or(true));
        assert!(!verify_now(&p, "garbage", "x").map(|v| v.ok).unwrap_or(true));
    }

    #[test]
    fn outdated_parameters_produce_a_rehash() {
        let old = HashParams::insecure_for_tests();
        let new = HashParams {
            memory_kib: 128,
            ..old
        };
        let h = hash_now(&old, "pw").unwrap_or_default();
        let v = verify_now(&new, &h, "pw").ok();
        let rehash = v.and_then(|v| v.rehash).unwrap_or_default();
        assert!(rehash.starts_with("$argon2id$v=19$m=128,t=1,p=1$"));
        assert!(verify_now(&new, &rehash, "pw").is_ok_and(|v| v.ok && v.rehash.is_none()));
        // A wrong password never yields a rehash.
        assert!(verify_now(&new, &h, "nope").is_ok_and(|v| !v.ok && v.rehash.is_none()));
    }

    #[test]
    fn policy_requires_a_minimum_length() {
        let p = PasswordPolicy::default();
        assert_eq!(p.min_length, 12);
        assert_eq!(
            p.check(&Secret::new("short-pw")),
            Err(PasswordPolicyError::TooShort { min: 12, actual: 8 })
        );
        assert!(p.check(&Secret::new("twelve-chars")).is_ok());
        // Characters, not bytes: twelve umlauts are twelve characters.
        assert!(p.check(&Secret::new("ü".repeat(12))).is_ok());
        assert_eq!(
            p.check(&Secret::new("ü".repeat(11))),
            Err(PasswordPolicyError::TooShort {
                min: 12,
                actual: 11
            })
        );
        assert_eq!(
            p.check(&Secret::new(" ".repeat(20))),
            Err(PasswordPolicyError::Blank)
        );
        assert_eq!(
            p.check(&Secret::new("x".repeat(MAX_PASSWORD_CHARS + 1))),
            Err(PasswordPolicyError::TooLong {
                max: MAX_PASSWORD_CHARS,
                actual: MAX_PASSWORD_CHARS + 1
            })
        );
        let lax = PasswordPolicy { min_length: 4 };
        assert!(lax.check(&Secret::new("abcd")).is_ok());
        assert_eq!(
            PasswordPolicyError::TooShort { min: 12, actual: 8 }.to_string(),
            "the password is too short: 8 characters, at least 12 characters are required"
        );
    }

    /// A thread keeps its working memory while it has jobs, and gives it back once it has
    /// waited `keep_memory` for one; the next hash takes it again and hashes as before.
    #[tokio::test]
    async fn hashing_threads_give_their_memory_back_when_idle() {
        let params = HashParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let one = |keep_memory| PoolOptions {
            threads: 1,
            queue: 1,
            keep_memory,
            ..PoolOptions::default()
        };
        let (Ok(kept), Ok(given)) = (
            HashPool::start_with(params, one(None)),
            HashPool::start_with(params, one(Some(Duration::from_millis(20)))),
        ) else {
            panic!("pools did not start")
        };
        assert_eq!((kept.workspace_bytes(), given.workspace_bytes()), (0, 0));
        let phc = kept.hash(Secret::new("pw")).await;
        assert!(phc.is_ok());
        // Counted before the answer went; never given back without `keep_memory`.
        assert_eq!(kept.workspace_bytes(), 64 * 1024);
        for round in 0..2 {
            let phc = given.hash(Secret::new("pw")).await.unwrap_or_default();
            let again = given.verify(&phc, Secret::new("pw")).await;
            assert!(again.is_ok_and(|v| v.ok), "round {round}");
            // Bounded wait for the idle thread, not a timing assertion.
            let mut waited = 0;
            while given.workspace_bytes() != 0 && waited < 1000 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                waited += 1;
            }
            assert_eq!(given.workspace_bytes(), 0, "round {round}");
        }
        assert_eq!(kept.workspace_bytes(), 64 * 1024);
    }

    #[tokio::test]
    async fn pool_sheds_load_when_full() {
        // One worker, queue of one, and slow-ish parameters so jobs pile up.
        let params = HashParams {
            memory_kib: 8 * 1024,
            iterations: 3,
            parallelism: 1,
        };
        let pool = HashPool::start(params, 1, 1).ok();
        let Some(pool) = pool else {
            panic!("pool did not start")
        };
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let p = pool.clone();
            tasks.push(tokio::spawn(async move { p.hash(Secret::new("x")).await }));
        }
        let mut ok = 0;
        let mut shed = 0;
        for t in tasks {
            match t.await {
                Ok(Ok(_)) => ok += 1,
                Ok(Err(PoolError::Overloaded)) => shed += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(ok >= 1, "some jobs ran");
        assert!(shed >= 1, "some jobs were shed");
        assert_eq!(ok + shed, 16);
    }
}
