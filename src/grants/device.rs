//! The device authorization grant (RFC 8628; decisions.md §12): a device asks for a pair of
//! codes, a person approves or denies the user code on the console's `/device` page, and the
//! device polls `authorize/token` until it gets its tokens (the poll's admission is
//! `flows::device`). The codes: the device code is 32 random bytes (base64url), kept only as
//! its SHA-256; the user code is 8 letters of RFC 8628 §6.1's consonant alphabet.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::{Rng, RngCore};

use crate::audit::Event;
use crate::clock::UnixTime;
use crate::domain::{Application, CanonicalScope, ClientId, Identity, StoreError};
use crate::domain::{DeviceAuthorization, DeviceState};
use crate::identity::Principal;
use crate::scope::Scope;
use crate::secret::Secret;
use crate::token::TokenDigest;

use super::error::GrantError;
use super::policy::{matching_rule, scope_limit};
use super::Engine;

/// How long a request lives (decisions.md §12).
pub const DEVICE_EXPIRES_IN: i64 = 300;
/// The polling interval a device starts with.
pub const DEVICE_INTERVAL: i64 = 5;
/// What each `slow_down` adds to the interval (RFC 8628 §3.5).
pub const SLOW_DOWN_PENALTY: i64 = 5;
/// How long an expired or used request is kept, so that late polls hear `expired_token`
/// rather than `invalid_grant`.
pub const DEVICE_KEEP_AFTER_EXPIRY: i64 = 3600;
/// RFC 8628 §6.1: no vowels (no words), no look-alikes.
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Wrong user codes one person may enter per [`GUESS_WINDOW`] seconds (RFC 8628 §5.1).
pub const MAX_GUESSES: u32 = 10;
pub const GUESS_WINDOW: i64 = 600;

/// A device's request for codes, after body parsing; `None` = missing.
#[derive(Debug, Default, Clone)]
pub struct DeviceStart {
    pub client_id: Option<String>,
    pub scope: Option<String>,
    pub source: Option<IpAddr>,
}

/// What the device gets back: the codes and their timing.
#[derive(Debug, Clone)]
pub struct DeviceStarted {
    pub device_code: Secret,
    /// Shown to people as `XXXX-XXXX`.
    pub user_code: String,
    pub expires_in: i64,
    pub expires: UnixTime,
    pub interval: i64,
}

/// What the approval page shows about a pending request.
#[derive(Debug, Clone)]
pub struct DevicePending {
    /// `XXXX-XXXX`.
    pub user_code: String,
    pub client_id: ClientId,
    /// None when the application was removed since the request was made.
    pub application: Option<Application>,
    pub scope: CanonicalScope,
    pub expires_at: UnixTime,
}

/// The outcome of an approval that could not be granted, for the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceDecision {
    Approved,
    Denied,
}

/// `ABCDEFGH` → `ABCD-EFGH`.
pub fn show_user_code(code: &str) -> String {
    if code.len() == 8 && code.is_ascii() {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code.to_string()
    }
}

/// What a person typed, as stored: letters only, upper case; None unless 8 letters of the
/// alphabet remain (dashes and spaces are ignored, case too).
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == 8 && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b))).then_some(code)
}

fn new_user_code() -> String {
    let mut rng = OsRng;
    (0..8)
        .map(|_| char::from(USER_CODE_ALPHABET[rng.gen_range(0..USER_CODE_ALPHABET.len())]))
        .collect()
}

fn new_device_code() -> Secret {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    Secret::new(URL_SAFE_NO_PAD.encode(bytes))
}

/// Counts wrong user codes per person in fixed windows of the engine's clock. In-process: with
/// several nodes each counts its own (the codes' 20^8 space and 5-minute life keep a guesser
/// far from a hit either way).
#[derive(Debug, Default)]
pub struct GuessLimit {
    seen: Mutex<HashMap<String, (UnixTime, u32)>>,
}

impl GuessLimit {
    fn allowed(&self, who: &str, now: UnixTime) -> bool {
        let Ok(seen) = self.seen.lock() else {
            return false;
        };
        match seen.get(who) {
            Some((start, n)) if now < start + GUESS_WINDOW => *n < MAX_GUESSES,
            _ => true,
        }
    }

    fn wrong(&self, who: &str, now: UnixTime) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        // Bounded: old windows go when the map grows.
        if seen.len() > 10_000 {
            seen.retain(|_, (start, _)| now < *start + GUESS_WINDOW);
        }
        let e = seen.entry(who.to_string()).or_insert((now, 0));
        if now >= e.0 + GUESS_WINDOW {
            *e = (now, 0);
        }
        e.1 += 1;
    }
}

impl Engine {
    /// `POST /vedauth/authorize/device`: checks the request (decisions.md §4 rows 1–2, the
    /// switch, rows 5–6) and stores a new pair of codes.
    pub async fn start_device(&self, req: DeviceStart) -> Result<DeviceStarted, GrantError> {
        let client_id = req.client_id.ok_or(GrantError::MissingClientId)?;
        let settings = self.settings().await?;
        if !settings.authorize_device {
            return Err(GrantError::DeviceAuthDisabled);
        }
        let scope = Scope::parse(req.scope.as_deref().unwrap_or(""))?;
        if self.application(&client_id).await?.is_none() {
            return Err(GrantError::UnknownClient(client_id));
        }
        let now = self.now();
        let device_code = new_device_code();
        let digest = TokenDigest::of(device_code.expose());
        // A user code already in use is drawn again; a handful of tries is plenty while few
        // of the 20^8 codes are live.
        for _ in 0..8 {
            let d = DeviceAuthorization {
                digest,
                user_code: new_user_code(),
                client_id: ClientId::from(client_id.as_str()),
                scope: CanonicalScope::of(&scope),
                created_at: now,
                expires_at: now + DEVICE_EXPIRES_IN,
                interval: DEVICE_INTERVAL,
                last_poll: None,
                state: DeviceState::Pending,
            };
            self.audit.record(&Event {
                event: "device_authorization_started",
                client_id: Some(&client_id),
                source: req.source,
                detail: Some(serde_json::json!({
                    "scope": d.scope,
                    "user_code": show_user_code(&d.user_code),
                    "device_digest": digest.to_hex(),
                })),
                ..Event::default()
            })?;
            match self.store.insert_device(&d).await {
                Ok(()) => {
                    return Ok(DeviceStarted {
                        device_code,
                        user_code: show_user_code(&d.user_code),
                        expires_in: DEVICE_EXPIRES_IN,
                        expires: d.expires_at,
                        interval: DEVICE_INTERVAL,
                    })
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(GrantError::Unavailable(
            "no free user code found; try again".into(),
        ))
    }

    /// The pending request behind a user code, for the approval page. Wrong codes count
    /// against `who` (RFC 8628 §5.1); past the limit every code is refused for a while.
    pub async fn pending_device(
        &self,
        typed: &str,
        who: &Identity,
    ) -> Result<DevicePending, GrantError> {
        let d = self.live_device(typed, who).await?;
        let application = self.application(&d.client_id).await?;
        Ok(DevicePending {
            user_code: show_user_code(&d.user_code),
            client_id: d.client_id,
            application: application.map(Arc::unwrap_or_clone),
            scope: d.scope,
            expires_at: d.expires_at,
        })
    }

    async fn live_device(
        &self,
        typed: &str,
        who: &Identity,
    ) -> Result<DeviceAuthorization, GrantError> {
        let now = self.now();
        if !self.device_guesses.allowed(who, now) {
            return Err(GrantError::TooManyGuesses);
        }
        let found = match normalize_user_code(typed) {
            Some(code) => self.store.device_by_user_code(&code).await?,
            None => None,
        };
        match found {
            Some(d) if d.state == DeviceState::Pending && !d.expired(now) => Ok(d),
            _ => {
                self.device_guesses.wrong(who, now);
                Err(GrantError::UnknownUserCode)
            }
        }
    }

    /// Approves (for `who`, checking decisions.md §4 rows 6–9 for them) or denies the request
    /// behind a user code. An approval the rules refuse denies the request and returns the
    /// refusal, for the page to show; the device then hears `access_denied`.
    pub async fn decide_device(
        &self,
        typed: &str,
        who: &Principal,
        approve: bool,
        source: Option<IpAddr>,
    ) -> Result<DeviceDecision, GrantError> {
        let identity = who.prefixed_universal();
        let d = self.live_device(typed, &identity).await?;
        let refusal = if !approve {
            None
        } else if !self.still_allowed(&identity).await? {
            Some(GrantError::BadCredentials(
                crate::identity::RejectCause::Disabled,
            ))
        } else {
            self.device_refusal(&d, who).await?
        };
        let approved = approve && refusal.is_none();
        self.audit.record(&Event {
            event: if approved {
                "device_approved"
            } else {
                "device_denied"
            },
            cause: refusal.as_ref().and_then(GrantError::cause),
            identity: Some(&identity),
            client_id: Some(&d.client_id),
            source,
            detail: Some(serde_json::json!({
                "scope": d.scope,
                "user_code": show_user_code(&d.user_code),
                "device_digest": d.digest.to_hex(),
            })),
            ..Event::default()
        })?;
        let decided = self
            .store
            .decide_device(&d.digest, approved.then_some(&identity))
            .await?;
        if !decided {
            // Decided by someone else in between.
            return Err(GrantError::UnknownUserCode);
        }
        match refusal {
            Some(e) => Err(e),
            None if approved => Ok(DeviceDecision::Approved),
            None => Ok(DeviceDecision::Denied),
        }
    }

    /// What keeps `who` from the request's grant (decisions.md §4 rows 6–9), if anything.
    async fn device_refusal(
        &self,
        d: &DeviceAuthorization,
        who: &Principal,
    ) -> Result<Option<GrantError>, GrantError> {
        let Some(app) = self.application(&d.client_id).await? else {
            return Ok(Some(GrantError::UnknownClient(d.client_id.to_string())));
        };
        let scope = match Scope::parse(&d.scope) {
            Ok(s) => s,
            Err(e) => return Ok(Some(e.into())),
        };
        let rules = self.rules(&d.client_id).await?;
        let Some(rule) = matching_rule(&rules, who) else {
            return Ok(Some(GrantError::NotAdmitted));
        };
        Ok(scope_limit(&scope, &app, rule).map(|(limit, _)| GrantError::ScopeNotAuthorized(limit)))
    }

    /// Whether `identity` may still get tokens: a local user that was disabled or removed, or an
    /// identity locked out, may not (decisions.md §12: the lockout of a disabled or locked
    /// identity applies to every grant).
    pub(crate) async fn still_allowed(&self, identity: &str) -> Result<bool, GrantError> {
        if let Some((prefix, universal)) = identity.split_once(':') {
            if prefix.eq_ignore_ascii_case("local") {
                let id = crate::identity::local::user_id(universal);
                let enabled = matches!(self.store.user_by_id(id).await?, Some(u) if !u.disabled);
                if !enabled {
                    return Ok(false);
                }
            }
        }
        if let Some(lockout) = self.identities.lockout() {
            if lockout.state(identity).await?.locked_until.is_some() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Removes device requests long past their expiry.
    pub(crate) async fn sweep_devices(&self) -> Result<u64, GrantError> {
        Ok(self
            .store
            .sweep_devices(self.now() - DEVICE_KEEP_AFTER_EXPIRY)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_eight_consonants_and_typed_forms_normalize() {
        for _ in 0..100 {
            let c = new_user_code();
            assert_eq!(c.len(), 8);
            assert!(c.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)), "{c}");
            assert_eq!(normalize_user_code(&show_user_code(&c)), Some(c.clone()));
            assert_eq!(
                normalize_user_code(&show_user_code(&c).to_lowercase()),
                Some(c)
            );
        }
        assert_eq!(show_user_code("BCDFGHJK"), "BCDF-GHJK");
        assert_eq!(normalize_user_code("bcdf ghjk"), Some("BCDFGHJK".into()));
        // Vowels and digits are not in the alphabet; lengths other than 8 are no code.
        assert_eq!(normalize_user_code("ABCD-EFGH"), None);
        assert_eq!(normalize_user_code("BCDF-GHJ1"), None);
        assert_eq!(normalize_user_code("BCDF-GHJ"), None);
        assert_eq!(normalize_user_code("BCDF-GHJKL"), None);
    }

    #[test]
    fn device_codes_are_32_random_bytes() {
        let a = new_device_code();
        let b = new_device_code();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(a.expose()).map(|v| v.len()).ok(),
            Some(32)
        );
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn wrong_guesses_are_limited_per_person_and_window() {
        let g = GuessLimit::default();
        for _ in 0..MAX_GUESSES {
            assert!(g.allowed("me", 100));
            g.wrong("me", 100);
        }
        assert!(!g.allowed("me", 100));
        assert!(g.allowed("someone else", 100));
        assert!(!g.allowed("me", 100 + GUESS_WINDOW - 1));
        assert!(g.allowed("me", 100 + GUESS_WINDOW));
    }
}
