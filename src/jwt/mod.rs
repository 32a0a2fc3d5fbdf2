//! The JWT bearer grant's core (decisions.md §12; docs/jwt.md): mappings and settings, the
//! per-issuer key cache, and the verification of a token down to the identity it names.
//!
//! The grant flow calls [`JwtVerifier::verify`] with the request's `jwt` and the clock's `now`,
//! resolves the returned identity, records the token with a [`ReplayGuard`] and issues. Nothing
//! here reads the clock or the store.
//!
//! ```text
//! parse ─▶ iss trusted? ─▶ alg allowed? ─▶ keys (cache/fetch) ─▶ signature ─▶ exp/nbf/iat
//!       ─▶ mappings of the issuer in Name order: purpose, IdMatch ─▶ JwtAccepted
//! ```

mod bench;
mod cache;
mod fetch;
pub mod jws;
mod model;
mod replay;

use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};

pub use bench::{JwtBench, Rate, BENCH_ALGORITHMS};
pub use cache::IssuerKeyStatus;
pub use fetch::{FetchSetupError, FetchTrust};
pub use jws::Algorithm;
pub use model::{
    check_issuer_agreement, CacheConfiguration, IdentitySource, JwtConfigError, JwtConfiguration,
    JwtMapping, KeySource, MappingError, MappingSet, MAX_PATTERN_LEN, SETTINGS_KEY,
};
pub use replay::{MemoryReplayGuard, ReplayError, ReplayGuard, ReplayKey};

use crate::clock::UnixTime;
use cache::{KeyCache, KeyView};
use fetch::Fetcher;
use jws::{clip, SignatureFailure};

/// Why a token was refused. The text is the real reason, for the audit trail and the log; the
/// client sees only the documented wording of [`JwtError::class`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not a compact JWS with JSON header and claims (checked before anything is trusted).
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("issuer not trusted: {0}")]
    IssuerNotTrusted(String),
    #[error("algorithm not allowed: {0}")]
    AlgorithmNotAllowed(String),
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// Signed, but a required claim is missing or of the wrong type.
    #[error("invalid claims: {0}")]
    InvalidClaims(String),
    #[error("expired at {exp} (now {now}, clock skew {skew} s)")]
    Expired {
        exp: UnixTime,
        now: UnixTime,
        skew: i64,
    },
    #[error("not yet valid: {0}")]
    NotYetValid(String),
    #[error("no JWT mapping accepts the token: {0}")]
    NoMappingAccepts(String),
    /// The issuer's keys could not be had (the grant answers 503: retrying may work).
    #[error("keys of {issuer} unreachable: {reason}")]
    KeysUnreachable { issuer: String, reason: String },
}

/// How the grant answers a refusal (decisions.md §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtErrorClass {
    /// 400 `invalid_request`.
    Malformed,
    /// 401 `invalid_grant` "JWT is not valid".
    NotValid,
    /// 401 `invalid_grant` "No JWT mapping accepts this token".
    NoMapping,
    /// 503 `temporarily_unavailable`.
    Unavailable,
}

impl JwtErrorClass {
    /// The client's text: the same on every face (only the status and `error` differ).
    pub fn description(self) -> &'static str {
        match self {
            JwtErrorClass::Malformed => "JWT is malformed",
            JwtErrorClass::NotValid => "JWT is not valid",
            JwtErrorClass::NoMapping => "No JWT mapping accepts this token",
            JwtErrorClass::Unavailable => "The JWT issuer's keys cannot be had now; retry shortly",
        }
    }
}

impl JwtError {
    /// The audit trail's word for the cause.
    pub fn audit_word(&self) -> &'static str {
        match self {
            JwtError::Malformed(_) => "malformed",
            JwtError::IssuerNotTrusted(_) => "issuer_not_trusted",
            JwtError::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            JwtError::BadSignature(_) => "bad_signature",
            JwtError::InvalidClaims(_) => "invalid_claims",
            JwtError::Expired { .. } => "expired",
            JwtError::NotYetValid(_) => "not_yet_valid",
            JwtError::NoMappingAccepts(_) => "no_mapping",
            JwtError::KeysUnreachable { .. } => "keys_unreachable",
        }
    }

    pub fn class(&self) -> JwtErrorClass {
        match self {
            JwtError::Malformed(_) => JwtErrorClass::Malformed,
            JwtError::NoMappingAccepts(_) => JwtErrorClass::NoMapping,
            JwtError::KeysUnreachable { .. } => JwtErrorClass::Unavailable,
            JwtError::IssuerNotTrusted(_)
            | JwtError::AlgorithmNotAllowed(_)
            | JwtError::BadSignature(_)
            | JwtError::InvalidClaims(_)
            | JwtError::Expired { .. }
            | JwtError::NotYetValid(_) => JwtErrorClass::NotValid,
        }
    }
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtAccepted {
    /// The `Name` of the mapping that accepted it.
    pub mapping: String,
    /// A name or a prefixed universal, as the mapping gave it: the caller resolves it.
    pub identity: String,
    pub identity_source: IdentitySource,
    pub issuer: String,
    /// `sub`, when it is a string (for the audit trail).
    pub subject: Option<String>,
    pub jti: Option<String>,
    pub exp: UnixTime,
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// What the replay guard records.
    pub replay_key: ReplayKey,
    /// Until when the token would be accepted (`exp` + clock skew): the replay record's life.
    pub replay_until: UnixTime,
}

/// The JWT grant's verifier: the mappings and settings in force and the key cache. Shared by
/// all requests (`Arc`); [`JwtVerifier::set_mappings`] and
/// [`JwtVerifier::set_configuration`] swap in new ones without disturbing requests in flight.
#[derive(Debug)]
pub struct JwtVerifier {
    config: RwLock<Arc<JwtConfiguration>>,
    mappings: RwLock<Arc<MappingSet>>,
    cache: KeyCache,
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// A NumericDate claim (RFC 7519 §2): a JSON number, fractions dropped.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, JwtError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.floor() as i64)
            })
            .map(Some)
            .ok_or_else(|| JwtError::InvalidClaims(format!("{name} is out of range"))),
        Some(_) => Err(JwtError::InvalidClaims(format!("{name} is not a number"))),
    }
}

fn string_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, JwtError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwtError::InvalidClaims(format!("{name} is not a string"))),
    }
}

impl JwtVerifier {
    /// A verifier with the given settings and mappings, fetching keys over HTTPS with `trust`.
    pub fn new(
        config: JwtConfiguration,
        mappings: MappingSet,
        trust: &FetchTrust,
    ) -> Result<Self, FetchSetupError> {
        let fetcher = Fetcher::new(trust)?;
        Ok(Self {
            cache: KeyCache::new(fetcher, &config.cache_configuration),
            config: RwLock::new(Arc::new(config)),
            mappings: RwLock::new(Arc::new(mappings)),
        })
    }

    pub fn configuration(&self) -> Arc<JwtConfiguration> {
        read(&self.config)
    }

    /// New settings (validated). Cached keys stay; the new bounds apply from the next token.
    pub fn set_configuration(&self, config: JwtConfiguration) -> Result<(), JwtConfigError> {
        config.validate()?;
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        Ok(())
    }

    pub fn mappings(&self) -> Arc<MappingSet> {
        read(&self.mappings)
    }

    /// New mappings. The keys of issuers still trusted with the same key source are kept;
    /// the others are forgotten.
    pub fn set_mappings(&self, mappings: MappingSet) {
        let keep: Vec<(&str, &KeySource)> = mappings.issuers().collect();
        self.cache.retain(&keep);
        drop(keep);
        *self.mappings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(mappings);
    }

    /// Verifies a token (see the module's doc for the order of the checks). May fetch the
    /// issuer's keys; `now` is the caller's clock.
    pub async fn verify(&self, jwt: &str, now: UnixTime) -> Result<JwtAccepted, JwtError> {
        let config = self.configuration();
        let mappings = self.mappings();
        let (token, alg, issuer) = Self::pre_checks(jwt, &mappings)?;
        let group = mappings
            .for_issuer(&issuer)
            .ok_or_else(|| JwtError::IssuerNotTrusted(clip(&issuer)))?;
        let view = self
            .cache
            .keys(
                &issuer,
                &group.source,
                token.kid.as_deref(),
                now,
                &config.cache_configuration,
            )
            .await
            .map_err(|reason| JwtError::KeysUnreachable {
                issuer: issuer.clone(),
                reason,
            })?;
        Self::finish(&token, alg, &issuer, view, &mappings, &config, now)
    }

    /// As [`JwtVerifier::verify`], but with the keys already cached only: never fetches, never
    /// waits. The benchmark's hook; also a dry run that touches no network.
    pub fn verify_cached(&self, jwt: &str, now: UnixTime) -> Result<JwtAccepted, JwtError> {
        let config = self.configuration();
        let mappings = self.mappings();
        let (token, alg, issuer) = Self::pre_checks(jwt, &mappings)?;
        let group = mappings
            .for_issuer(&issuer)
            .ok_or_else(|| JwtError::IssuerNotTrusted(clip(&issuer)))?;
        let view = self
            .cache
            .cached(&issuer, &group.source, now, &config.cache_configuration)
            .map_err(|reason| JwtError::KeysUnreachable {
                issuer: issuer.clone(),
                reason,
            })?;
        Self::finish(&token, alg, &issuer, view, &mappings, &config, now)
    }

    /// Parse, trusted issuer, allowed algorithm: everything before the keys are needed.
    fn pre_checks<'t>(
        jwt: &'t str,
        mappings: &MappingSet,
    ) -> Result<(jws::Jws<'t>, Algorithm, String), JwtError> {
        let token = jws::parse(jwt)?;
        let issuer = match token.claims.get("iss") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(JwtError::IssuerNotTrusted("iss is not a string".into())),
            None => return Err(JwtError::IssuerNotTrusted("the token has no iss".into())),
        };
        if mappings.for_issuer(&issuer).is_none() {
            return Err(JwtError::IssuerNotTrusted(clip(&issuer)));
        }
        let alg = Algorithm::from_header(&token.alg)?;
        Ok((token, alg, issuer))
    }

    fn finish(
        token: &jws::Jws<'_>,
        alg: Algorithm,
        issuer: &str,
        view: KeyView,
        mappings: &MappingSet,
        config: &JwtConfiguration,
        now: UnixTime,
    ) -> Result<JwtAccepted, JwtError> {
        if let Err(f) = token.verify_with(alg, &view.keys) {
            return Err(match (f, view.refresh_failed) {
                // The key may be in the set we could not fetch: the client may retry.
                (
                    SignatureFailure::UnknownKid(_) | SignatureFailure::NoKeyForAlgorithm(_),
                    Some(reason),
                ) => JwtError::KeysUnreachable {
                    issuer: issuer.to_string(),
                    reason,
                },
                (SignatureFailure::UnknownKid(kid), None) => JwtError::BadSignature(format!(
                    "no key with kid {:?} in the issuer's key set",
                    clip(&kid)
                )),
                (SignatureFailure::NoKeyForAlgorithm(a), None) => JwtError::BadSignature(format!(
                    "the token has no kid and the issuer has no key for {a}"
                )),
                (SignatureFailure::KeyDoesNotFit { kid, alg, key }, _) => {
                    JwtError::AlgorithmNotAllowed(format!(
                        "alg {alg} does not match key {:?} ({key})",
                        clip(&kid)
                    ))
                }
                (SignatureFailure::Mismatch, _) => {
                    JwtError::BadSignature(format!("the {alg} signature does not verify"))
                }
            });
        }

        let skew = i64::from(config.clock_skew);
        let claims = &token.claims;
        let exp = numeric_date(claims, "exp")?
            .ok_or_else(|| JwtError::InvalidClaims("no exp claim (required)".into()))?;
        if now >= exp.saturating_add(skew) {
            return Err(JwtError::Expired { exp, now, skew });
        }
        if let Some(nbf) = numeric_date(claims, "nbf")? {
            if nbf > now.saturating_add(skew) {
                return Err(JwtError::NotYetValid(format!(
                    "nbf {nbf} is after now {now} + clock skew {skew} s"
                )));
            }
        }
        if let Some(iat) = numeric_date(claims, "iat")? {
            if iat > now.saturating_add(skew) {
                return Err(JwtError::NotYetValid(format!(
                    "issued in the future: iat {iat} is after now {now} + clock skew {skew} s"
                )));
            }
        }
        let jti = string_claim(claims, "jti")?;

        let Some(group) = mappings.for_issuer(issuer) else {
            return Err(JwtError::IssuerNotTrusted(clip(issuer)));
        };
        let mut refusals = Vec::new();
        for m in &group.mappings {
            match m.accept(claims) {
                Ok((identity, identity_source)) => {
                    let signature_b64 = token.signature_b64();
                    return Ok(JwtAccepted {
                        mapping: m.mapping.name.clone(),
                        identity,
                        identity_source,
                        issuer: issuer.to_string(),
                        subject: claims
                            .get("sub")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        replay_key: ReplayKey::new(issuer, jti.as_deref(), signature_b64),
                        jti,
                        exp,
                        alg,
                        kid: token.kid.clone(),
                        replay_until: exp.saturating_add(skew),
                    });
                }
                Err(why) => refusals.push(format!("{}: {why}", clip(&m.mapping.name))),
            }
        }
        Err(JwtError::NoMappingAccepts(refusals.join("; ")))
    }

    /// Fetches the keys of every trusted issuer that has none or whose keys are due, at most
    /// DegreeOfParallelism at once. For the periodic pass (AutoRefresh) and for warming the
    /// cache at start. Returns each issuer's key count or failure.
    pub async fn refresh_all(&self, now: UnixTime) -> Vec<(String, Result<usize, String>)> {
        let config = self.configuration();
        let mappings = self.mappings();
        let jobs = mappings.issuers().map(|(issuer, source)| {
            let c = &config.cache_configuration;
            async move {
                (
                    issuer.to_string(),
                    self.cache.refresh(issuer, source, now, c).await,
                )
            }
        });
        // The cache's semaphore bounds the parallelism.
        futures_util::future::join_all(jobs).await
    }

    /// What the cache holds, per issuer.
    pub fn key_status(&self) -> Vec<IssuerKeyStatus> {
        self.cache.status()
    }

    /// Puts a JWK Set in the cache for `issuer` as if just fetched. For the benchmark and for
    /// tests; the grant never needs it.
    pub fn preload_keys(&self, issuer: &str, jwks: &[u8], now: UnixTime) -> Result<(), String> {
        let mappings = self.mappings();
        let group = mappings
            .for_issuer(issuer)
            .ok_or_else(|| format!("issuer {issuer:?} has no mapping"))?;
        let keys = jws::KeySet::from_json(jwks)?;
        let config = self.configuration();
        self.cache.preload(
            issuer,
            &group.source,
            keys,
            now,
            &config.cache_configuration,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_word_and_answer() {
        let cases = [
            (
                JwtError::Malformed(String::new()),
                "malformed",
                JwtErrorClass::Malformed,
            ),
            (
                JwtError::IssuerNotTrusted(String::new()),
                "issuer_not_trusted",
                JwtErrorClass::NotValid,
            ),
            (
                JwtError::AlgorithmNotAllowed(String::new()),
                "algorithm_not_allowed",
                JwtErrorClass::NotValid,
            ),
            (
                JwtError::BadSignature(String::new()),
                "bad_signature",
                JwtErrorClass::NotValid,
            ),
            (
                JwtError::InvalidClaims(String::new()),
                "invalid_claims",
                JwtErrorClass::NotValid,
            ),
            (
                JwtError::Expired {
                    exp: 1,
                    now: 2,
                    skew: 0,
                },
                "expired",
                JwtErrorClass::NotValid,
            ),
            (
                JwtError::NotYetValid(String::new()),
                "not_yet_valid",
                JwtErrorClass::NotValid,
            ),
            (
                JwtError::NoMappingAccepts(String::new()),
                "no_mapping",
                JwtErrorClass::NoMapping,
            ),
            (
                JwtError::KeysUnreachable {
                    issuer: String::new(),
                    reason: String::new(),
                },
                "keys_unreachable",
                JwtErrorClass::Unavailable,
            ),
        ];
        for (e, word, class) in cases {
            assert_eq!(e.audit_word(), word);
            assert_eq!(e.class(), class, "{word}");
        }
    }
}
