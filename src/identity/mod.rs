//! Identity providers: who a username and a credential belong to.
//!
//! [`IdentityProvider`] is the port; `local` is the embedded user table, directory providers
//! (LDAP, Active Directory) plug in beside it. A login looks its name up once
//! ([`IdentityProvider::identify`] returns a [`Candidate`]) and checks the credential against
//! that same candidate ([`IdentityProvider::authenticate`]): one store read or one directory
//! search per login, and the identity the lockout counted is the one that was checked.
//! [`Identities`] resolves the username forms of docs/protocol.md §11 to the provider that decides,
//! keeps the lockout in front of every check, and makes every refusal cost the same.

pub mod certificate;
pub mod ldap;
pub mod local;
pub mod lookup;
pub mod names;

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::clock::UnixTime;
use crate::domain::StoreError;
use crate::domain::{Holder, HolderChange, Identity};
use crate::lockout::{Begin, Lockout, Outcome, Reservation};
use crate::password::{HashPool, PoolError};
use crate::secret::Secret;

/// A username as the caller wrote it, split into its form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Username {
    /// `local:name`
    Local(String),
    /// `LDAP+N:name` or `AD+N:name`: provider prefix (`LDAP+N`) and name.
    Prefixed { prefix: String, name: String },
    /// `DOMAIN\name`
    Domain { domain: String, name: String },
    /// `name@dns.domain`
    Upn { name: String, domain: String },
    /// A bare name: local users first, then each directory in order.
    Bare(String),
}

impl Username {
    pub fn parse(s: &str) -> Self {
        if let Some((prefix, name)) = s.split_once(':') {
            if prefix.eq_ignore_ascii_case("local") {
                return Username::Local(name.to_string());
            }
            let upper = prefix.to_ascii_uppercase();
            if (upper.starts_with("LDAP+") && prefix.len() > 5)
                || (upper.starts_with("AD+") && prefix.len() > 3)
            {
                return Username::Prefixed {
                    prefix: prefix.to_string(),
                    name: name.to_string(),
                };
            }
        }
        if let Some((domain, name)) = s.split_once('\\') {
            if !domain.is_empty() && !name.is_empty() {
                return Username::Domain {
                    domain: domain.to_string(),
                    name: name.to_string(),
                };
            }
        }
        if let Some((name, domain)) = s.rsplit_once('@') {
            if !name.is_empty() && domain.contains('.') {
                return Username::Upn {
                    name: name.to_string(),
                    domain: domain.to_string(),
                };
            }
        }
        Username::Bare(s.to_string())
    }
}

/// An authenticated (or resolved) identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// `local`, `LDAP+N`, `AD+N`.
    pub prefix: String,
    /// The provider's stable id: a braced UUID for local users, entryUUID, objectGUID hex.
    pub universal: String,
    pub name: String,
    pub full_name: String,
    /// Prefixed universals and prefixed names of the groups the identity belongs to.
    pub groups: Vec<String>,
    /// For a local user's password login: the stored hash the password was checked against.
    /// A grant made from the login is written only if the user still has it then (see
    /// [`IdentityProvider::holder`]).
    #[serde(skip)]
    pub checked_hash: Option<Secret>,
}

impl Principal {
    /// `prefix:universal`, the identity string of tokens and grants.
    pub fn prefixed_universal(&self) -> Identity {
        Identity::of(&self.prefix, &self.universal)
    }
    pub fn prefixed_name(&self) -> String {
        format!("{}:{}", self.prefix, self.name)
    }
}

/// Why a login failed. Callers answer all of these with one response; the cause is for the
/// audit log only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCause {
    UnknownUser,
    WrongPassword,
    Disabled,
    Locked,
    EmptyPassword,
    /// The name holds control or invisible characters: nobody can be called that.
    InvalidName,
}

impl From<HolderChange> for RejectCause {
    /// A login whose user changed before its grant was written is refused as it would be now.
    fn from(c: HolderChange) -> Self {
        match c {
            HolderChange::Gone => RejectCause::UnknownUser,
            HolderChange::Disabled => RejectCause::Disabled,
            HolderChange::NewPassword => RejectCause::WrongPassword,
        }
    }
}

#[derive(Debug)]
pub enum AuthOutcome {
    Authenticated(Principal),
    Rejected(RejectCause),
    /// Nobody took the name. `Identities` answers `Rejected(UnknownUser)` instead; kept for
    /// callers that match on it.
    NotMine,
}

#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    #[error("password hashing is overloaded")]
    Overloaded,
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for IdpError {
    fn from(e: StoreError) -> Self {
        IdpError::Unavailable(e.to_string())
    }
}

impl From<PoolError> for IdpError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Overloaded => IdpError::Overloaded,
            other => IdpError::Unavailable(other.to_string()),
        }
    }
}

/// What a caller presents to prove who they are. Passwords today; client certificates and
/// JWT assertions will be variants of their own, which providers opt into with
/// [`IdentityProvider::accepts`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Credential {
    Password(Secret),
}

impl Credential {
    /// The secret that equal-cost refusals spend a dummy hash on.
    fn secret(&self) -> &Secret {
        match self {
            Credential::Password(s) => s,
        }
    }
}

/// Who a name belongs to, looked up once before any credential is checked: the provider's own
/// record of it (a user row, a directory entry), handed back to the same provider's
/// `authenticate`.
pub struct Candidate {
    identity: Option<Identity>,
    handle: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The handle may hold a password hash: never printed.
        f.debug_struct("Candidate")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Candidate {
    /// `identity` is the prefixed universal the lockout counts against, when the provider can
    /// name it before the check (None: the check will refuse, e.g. an ambiguous name).
    pub fn new<T: Any + Send + Sync>(identity: Option<Identity>, handle: T) -> Self {
        Self {
            identity,
            handle: Box::new(handle),
        }
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// The provider's record back; an error if the candidate came from another provider.
    pub fn into_handle<T: Any>(self) -> Result<T, IdpError> {
        self.handle.downcast::<T>().map(|b| *b).map_err(|_| {
            IdpError::Unavailable("a login candidate reached the wrong provider".into())
        })
    }
}

#[derive(Debug)]
pub enum Identify {
    /// The provider knows the name.
    Found(Candidate),
    /// The provider does not know the name; the next one may.
    Unknown,
}

/// The result of a login attempt, with what the audit trail needs.
#[derive(Debug)]
pub struct Attempt {
    pub outcome: AuthOutcome,
    /// The identity the name belongs to, when one was found.
    pub identity: Option<Identity>,
    /// Set when this attempt's failure locked the identity.
    pub locked_until: Option<UnixTime>,
}

#[async_trait]
pub trait IdentityProvider: Send + Sync + std::fmt::Debug {
    /// `local`, `LDAP+N` or `AD+N`.
    fn prefix(&self) -> &str;
    /// Whether `DOMAIN\name` or `name@domain` forms address this provider.
    fn claims_domain(&self, _domain: &str) -> bool {
        false
    }
    /// Whether this provider checks passwords with the local argon2id hash. Others (directories)
    /// get a dummy hash after a refusal, so that a wrong password costs what an unknown user
    /// costs.
    fn hashes_locally(&self) -> bool {
        false
    }
    /// Whether this provider can check this kind of credential; others are skipped.
    fn accepts(&self, credential: &Credential) -> bool;
    /// Whether the provider's backend answers: None when it has none to ask (local users).
    async fn health(&self) -> Option<bool> {
        None
    }
    /// Looks a name (already stripped of any prefix or domain) up, once, without checking a
    /// credential.
    async fn identify(&self, name: &str) -> Result<Identify, IdpError>;
    /// Checks the credential against the candidate `identify` returned.
    async fn authenticate(
        &self,
        candidate: Candidate,
        credential: &Credential,
    ) -> Result<AuthOutcome, IdpError>;
    /// The identity behind a prefixed universal, if this provider has it.
    async fn resolve(&self, universal: &str) -> Result<Option<Principal>, IdpError>;
    /// The user or group a name or a universal stands for, without any password: rules and
    /// roles are made with it (see `lookup`). A provider that cannot tell says `Unsupported`.
    async fn lookup(&self, _query: lookup::Query<'_>) -> Result<lookup::Lookup, IdpError> {
        Ok(lookup::Lookup::Unsupported)
    }
    /// The user a grant for this identity is written for, as the login saw them: the store
    /// writes the grant only if they still are (see [`Holder`]). A change to a user that
    /// revokes their grants (disabled, removed, a new password) may land while a login of
    /// theirs is between reading the user and storing its grant; the revocation would miss
    /// that grant. A provider whose state vedauth does not keep (a directory) says None.
    fn holder(&self, _principal: &Principal) -> Option<Holder> {
        None
    }
    /// The user a client certificate's value names (see `certificate`), without a password. A
    /// provider that keeps no such attribute answers `NotFound`.
    async fn by_certificate(
        &self,
        _field: certificate::CertField,
        _value: &str,
    ) -> Result<certificate::CertMatch, IdpError> {
        Ok(certificate::CertMatch::NotFound)
    }
}

/// Every configured provider, local first, and the lockout that guards them all.
#[derive(Debug, Clone)]
pub struct Identities {
    providers: Vec<Arc<dyn IdentityProvider>>,
    pool: HashPool,
    lockout: Option<Lockout>,
}

impl Identities {
    pub fn new(
        providers: Vec<Arc<dyn IdentityProvider>>,
        pool: HashPool,
        lockout: Option<Lockout>,
    ) -> Self {
        Self {
            providers,
            pool,
            lockout,
        }
    }

    /// Each provider's prefix and health, for `/readyz` and the metrics.
    pub async fn health(&self) -> Vec<(String, Option<bool>)> {
        let mut out = Vec::new();
        for p in &self.providers {
            let h = p.health().await;
            if let Some(up) = h {
                metrics::gauge!("vedauth_directory_up", "provider" => p.prefix().to_string())
                    .set(if up { 1.0 } else { 0.0 });
            }
            out.push((p.prefix().to_string(), h));
        }
        out
    }

    /// True when every provider checks passwords on the hashing pool and the pool is full:
    /// any attempt would be refused there anyway, so it can be refused before the store is
    /// read. (With a directory configured, a login may need no local hash at all.)
    pub fn must_shed(&self) -> bool {
        let shed = self.providers.iter().all(|p| p.hashes_locally()) && self.pool.is_full();
        if shed {
            metrics::counter!("vedauth_hash_rejected_total").increment(1);
        }
        shed
    }

    pub fn lockout(&self) -> Option<&Lockout> {
        self.lockout.as_ref()
    }

    /// A refusal by a provider that does not hash locally costs a dummy hash, like every other
    /// refusal.
    async fn equalize(
        &self,
        p: &Arc<dyn IdentityProvider>,
        outcome: &AuthOutcome,
        credential: &Credential,
    ) -> Result<(), IdpError> {
        if !p.hashes_locally() && matches!(outcome, AuthOutcome::Rejected(_)) {
            self.pool.verify_dummy(credential.secret().clone()).await?;
        }
        Ok(())
    }

    /// The lockout's turn for `key`: a reservation, or the refusal to give (after the same
    /// hashing work as a check). `Ok(Err(()))` means "locked".
    async fn reserve(
        &self,
        key: &str,
        credential: &Credential,
    ) -> Result<Result<Option<Reservation>, ()>, IdpError> {
        let Some(lockout) = &self.lockout else {
            return Ok(Ok(None));
        };
        match lockout.begin(key).await? {
            Begin::Allowed(r) => Ok(Ok(Some(r))),
            Begin::Locked { .. } => {
                // Same cost as a real check, so that a locked account does not answer faster.
                self.pool.verify_dummy(credential.secret().clone()).await?;
                Ok(Err(()))
            }
            // Too many checks of this key under way for too long: "retry", not a verdict.
            Begin::Busy => Err(IdpError::Overloaded),
        }
    }

    /// Checks the credential against a provider's candidate, behind the lockout.
    async fn check(
        &self,
        p: &Arc<dyn IdentityProvider>,
        candidate: Candidate,
        name: &str,
        credential: &Credential,
    ) -> Result<Attempt, IdpError> {
        let identity = candidate.identity().cloned();
        // A candidate without an identity (an ambiguous directory name) is counted under the
        // name, like an unknown one, so that it costs the same store work.
        let key = identity
            .as_ref()
            .map_or_else(|| unknown_name_key(name), |i| i.to_string());
        let reservation = match self.reserve(&key, credential).await? {
            Ok(r) => r,
            Err(()) => {
                return Ok(Attempt {
                    outcome: AuthOutcome::Rejected(if identity.is_some() {
                        RejectCause::Locked
                    } else {
                        RejectCause::UnknownUser
                    }),
                    identity,
                    locked_until: None,
                })
            }
        };
        let result = p.authenticate(candidate, credential).await;
        let verdict = match &result {
            Ok(AuthOutcome::Authenticated(_)) => Outcome::Success,
            Ok(AuthOutcome::Rejected(_)) if identity.is_none() => Outcome::Failure,
            Ok(AuthOutcome::Rejected(RejectCause::WrongPassword)) => Outcome::Failure,
            _ => Outcome::Neutral,
        };
        let locked_until = match reservation {
            Some(r) => r.end(verdict).await?,
            None => None,
        };
        if let (None, Some(lockout)) = (&identity, &self.lockout) {
            lockout.forget_when_idle(&key);
        }
        let outcome = result?;
        self.equalize(p, &outcome, credential).await?;
        let identity = identity.or_else(|| match &outcome {
            AuthOutcome::Authenticated(pr) => Some(pr.prefixed_universal()),
            _ => None,
        });
        Ok(Attempt {
            outcome,
            // Only an identity's own lock is worth an audit event, not a name's.
            locked_until: locked_until.filter(|_| identity.is_some()),
            identity,
        })
    }

    /// Refuses a name nobody knows, after the work a known name's wrong password costs: the
    /// same lockout bookkeeping (under a digest of the name) and the same hash. So a name's
    /// existence shows neither in the time of its first refusals nor in when it starts being
    /// refused without a check.
    async fn refuse_unknown(
        &self,
        name: &str,
        cause: RejectCause,
        credential: &Credential,
    ) -> Result<Attempt, IdpError> {
        let key = unknown_name_key(name);
        let reservation = match self.reserve(&key, credential).await? {
            Ok(r) => r,
            Err(()) => return Ok(rejected(cause)),
        };
        self.pool.verify_dummy(credential.secret().clone()).await?;
        if let (Some(r), Some(lockout)) = (reservation, &self.lockout) {
            r.end(Outcome::Failure).await?;
            lockout.forget_when_idle(&key);
        }
        Ok(rejected(cause))
    }

    /// Whether a provider answers to this prefix (`local`, `LDAP+N`, `AD+N`).
    pub fn knows_prefix(&self, prefix: &str) -> bool {
        self.by_prefix(prefix).is_some()
    }

    fn by_prefix(&self, prefix: &str) -> Option<&Arc<dyn IdentityProvider>> {
        self.providers
            .iter()
            .find(|p| p.prefix().eq_ignore_ascii_case(prefix))
    }

    /// A password login: see [`Identities::authenticate_with`].
    pub async fn authenticate(
        &self,
        username: &str,
        password: &Secret,
    ) -> Result<Attempt, IdpError> {
        self.authenticate_with(username, &Credential::Password(password.clone()))
            .await
    }

    /// Resolves the username form to providers, looks the name up once and checks the
    /// credential. An empty password never reaches a provider (many directories treat it as an
    /// anonymous bind that succeeds).
    pub async fn authenticate_with(
        &self,
        username: &str,
        credential: &Credential,
    ) -> Result<Attempt, IdpError> {
        let Credential::Password(password) = credential;
        if password.is_empty() || username.is_empty() {
            self.pool.verify_dummy(password.clone()).await?;
            return Ok(rejected(RejectCause::EmptyPassword));
        }
        // Fullwidth letters, padding, NFD: the name as it is stored. A name with control or
        // invisible characters is nobody's, and is refused like an unknown one.
        let prepared = match names::prepare_login_name(username) {
            Ok(p) => p,
            Err(_) => {
                return self
                    .refuse_unknown(username, RejectCause::InvalidName, credential)
                    .await
            }
        };
        let (candidates, name): (Vec<&Arc<dyn IdentityProvider>>, String) =
            match Username::parse(&prepared) {
                Username::Local(n) => (self.by_prefix("local").into_iter().collect(), n),
                Username::Prefixed { prefix, name } => {
                    (self.by_prefix(&prefix).into_iter().collect(), name)
                }
                Username::Domain { domain, name } => (
                    self.providers
                        .iter()
                        .filter(|p| p.claims_domain(&domain))
                        .collect(),
                    name,
                ),
                Username::Upn { name, domain } => {
                    let dir: Vec<_> = self
                        .providers
                        .iter()
                        .filter(|p| p.claims_domain(&domain))
                        .collect();
                    if dir.is_empty() {
                        // Not a directory's UPN: a local user may well be called "a@b.c".
                        (self.providers.iter().collect(), prepared.clone())
                    } else {
                        (dir, name)
                    }
                }
                Username::Bare(n) => (self.providers.iter().collect(), n),
            };
        if name.is_empty() {
            self.pool.verify_dummy(password.clone()).await?;
            return Ok(rejected(RejectCause::EmptyPassword));
        }
        for p in candidates.into_iter().filter(|p| p.accepts(credential)) {
            if let Identify::Found(candidate) = p.identify(&name).await? {
                return self.check(p, candidate, &name, credential).await;
            }
        }
        self.refuse_unknown(&name, RejectCause::UnknownUser, credential)
            .await
    }

    /// Checks a client secret against its stored argon2id hash on the hashing pool. With no
    /// stored hash (unknown or public client) it spends the same work and fails, so that the
    /// answer's timing does not tell which.
    pub async fn check_secret(&self, phc: Option<&str>, secret: &Secret) -> Result<bool, IdpError> {
        match phc {
            Some(phc) => Ok(self.pool.verify(phc, secret.clone()).await?.ok),
            None => {
                self.pool.verify_dummy(secret.clone()).await?;
                Ok(false)
            }
        }
    }

    /// The holder a grant for this principal is written for (see
    /// [`IdentityProvider::holder`]).
    pub fn holder(&self, principal: &Principal) -> Option<Holder> {
        self.by_prefix(&principal.prefix)?.holder(principal)
    }

    /// The identity behind a prefixed universal (`local:{uuid}`, `AD+N:hex`).
    pub async fn resolve(&self, prefixed_universal: &str) -> Result<Option<Principal>, IdpError> {
        let Some((prefix, universal)) = prefixed_universal.split_once(':') else {
            return Ok(None);
        };
        match self.by_prefix(prefix) {
            Some(p) => p.resolve(universal).await,
            None => Ok(None),
        }
    }
}

fn rejected(cause: RejectCause) -> Attempt {
    Attempt {
        outcome: AuthOutcome::Rejected(cause),
        identity: None,
        locked_until: None,
    }
}

/// The lockout key of a name no provider knows: a digest, so that what people type into the
/// name field (passwords, now and then) is not kept in the store as typed. Case-folded, so
/// that `Nobody` and `nobody` share one budget as a known user's spellings do.
pub fn unknown_name_key(name: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"vedauth unknown login name\0");
    h.update(name.to_lowercase().as_bytes());
    format!("name:{}", hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_forms() {
        assert_eq!(Username::parse("admin"), Username::Bare("admin".into()));
        assert_eq!(
            Username::parse("local:admin"),
            Username::Local("admin".into())
        );
        assert_eq!(
            Username::parse("LOCAL:admin"),
            Username::Local("admin".into())
        );
        assert_eq!(
            Username::parse("LDAP+ODSEE:Admin"),
            Username::Prefixed {
                prefix: "LDAP+ODSEE".into(),
                name: "Admin".into()
            }
        );
        assert_eq!(
            Username::parse("AD+venqa:Administrator"),
            Username::Prefixed {
                prefix: "AD+venqa".into(),
                name: "Administrator".into()
            }
        );
        assert_eq!(
            Username::parse("venqa\\Administrator"),
            Username::Domain {
                domain: "venqa".into(),
                name: "Administrator".into()
            }
        );
        assert_eq!(
            Username::parse("administrator@venqa.example"),
            Username::Upn {
                name: "administrator".into(),
                domain: "venqa.example".into()
            }
        );
        assert_eq!(Username::parse("a@b"), Username::Bare("a@b".into()));
        assert_eq!(Username::parse("AD+:x"), Username::Bare("AD+:x".into()));
    }
}
