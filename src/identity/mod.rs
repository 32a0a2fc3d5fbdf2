//! Identity providers: who a username and password belong to.
//!
//! [`IdentityProvider`] is the port; `local` is the embedded user table, directory providers
//! (LDAP, Active Directory) plug in beside it. [`Identities`] resolves the username forms of
//! decisions.md §8 to the provider that decides.

pub mod ldap;
pub mod local;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::clock::UnixTime;
use crate::lockout::{Begin, Lockout, Outcome};
use crate::password::{HashPool, PoolError};
use crate::secret::Secret;
use crate::store::StoreError;

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
}

impl Principal {
    /// `prefix:universal`, the identity string of tokens and grants.
    pub fn prefixed_universal(&self) -> String {
        format!("{}:{}", self.prefix, self.universal)
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
}

#[derive(Debug)]
pub enum AuthOutcome {
    Authenticated(Principal),
    Rejected(RejectCause),
    /// This provider does not know the name; the next one may.
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

/// Who a name belongs to, found before any password is checked (so that lockout can refuse
/// without checking it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identify {
    /// The provider knows the name: this is the identity's prefixed universal.
    Known(String),
    /// The provider does not know the name.
    Unknown,
    /// The provider cannot tell without the password; no lockout applies before the check.
    Unsupported,
}

/// The result of a login attempt, with what the audit trail needs.
#[derive(Debug)]
pub struct Attempt {
    pub outcome: AuthOutcome,
    /// The identity the name belongs to, when one was found.
    pub identity: Option<String>,
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
    /// Whether the provider's backend answers: None when it has none to ask (local users).
    async fn health(&self) -> Option<bool> {
        None
    }
    /// The identity behind a name, without checking a password (for lockout).
    async fn identify(&self, _name: &str) -> Result<Identify, IdpError> {
        Ok(Identify::Unsupported)
    }
    /// Checks a name (already stripped of any prefix or domain) and password.
    async fn authenticate(&self, name: &str, password: &Secret) -> Result<AuthOutcome, IdpError>;
    /// The identity behind a prefixed universal, if this provider has it.
    async fn resolve(&self, universal: &str) -> Result<Option<Principal>, IdpError>;
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
        password: &Secret,
    ) -> Result<(), IdpError> {
        if !p.hashes_locally() && matches!(outcome, AuthOutcome::Rejected(_)) {
            self.pool.verify_dummy(password.clone()).await?;
        }
        Ok(())
    }

    /// One provider's attempt, behind the lockout when the provider can name the identity
    /// before the password check.
    async fn attempt(
        &self,
        p: &Arc<dyn IdentityProvider>,
        name: &str,
        password: &Secret,
    ) -> Result<Attempt, IdpError> {
        let identity = match (&self.lockout, p.identify(name).await?) {
            (_, Identify::Unknown) => {
                return Ok(Attempt {
                    outcome: AuthOutcome::NotMine,
                    identity: None,
                    locked_until: None,
                })
            }
            (Some(l), Identify::Known(id)) => Some((l, id)),
            _ => None,
        };
        let Some((lockout, id)) = identity else {
            let outcome = p.authenticate(name, password).await?;
            self.equalize(p, &outcome, password).await?;
            return Ok(Attempt {
                identity: match &outcome {
                    AuthOutcome::Authenticated(pr) => Some(pr.prefixed_universal()),
                    _ => None,
                },
                outcome,
                locked_until: None,
            });
        };
        let reservation = match lockout.begin(&id).await? {
            Begin::Allowed(r) => r,
            Begin::Locked { .. } => {
                // Same cost as a real check, so that a locked account does not answer faster.
                self.pool.verify_dummy(password.clone()).await?;
                return Ok(Attempt {
                    outcome: AuthOutcome::Rejected(RejectCause::Locked),
                    identity: Some(id),
                    locked_until: None,
                });
            }
            // Too many checks of this identity under way for too long: "retry", not a verdict.
            Begin::Busy => return Err(IdpError::Overloaded),
        };
        let result = p.authenticate(name, password).await;
        let verdict = match &result {
            Ok(AuthOutcome::Authenticated(_)) => Outcome::Success,
            Ok(AuthOutcome::Rejected(RejectCause::WrongPassword)) => Outcome::Failure,
            _ => Outcome::Neutral,
        };
        let locked_until = reservation.end(verdict).await?;
        let outcome = result?;
        self.equalize(p, &outcome, password).await?;
        Ok(Attempt {
            outcome,
            identity: Some(id),
            locked_until,
        })
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

    /// Resolves the username form to providers and authenticates. An empty password never
    /// reaches a provider (many directories treat it as an anonymous bind that succeeds).
    pub async fn authenticate(
        &self,
        username: &str,
        password: &Secret,
    ) -> Result<Attempt, IdpError> {
        let (candidates, name): (Vec<&Arc<dyn IdentityProvider>>, String) =
            match Username::parse(username) {
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
                        (self.providers.iter().collect(), username.to_string())
                    } else {
                        (dir, name)
                    }
                }
                Username::Bare(n) => (self.providers.iter().collect(), n),
            };
        let rejected = |cause| Attempt {
            outcome: AuthOutcome::Rejected(cause),
            identity: None,
            locked_until: None,
        };
        if password.is_empty() || name.is_empty() {
            self.pool.verify_dummy(password.clone()).await?;
            return Ok(rejected(RejectCause::EmptyPassword));
        }
        for p in candidates {
            let attempt = self.attempt(p, &name, password).await?;
            if !matches!(attempt.outcome, AuthOutcome::NotMine) {
                return Ok(attempt);
            }
        }
        // Nobody knows the name: spend the same hashing work as a real check.
        self.pool.verify_dummy(password.clone()).await?;
        Ok(rejected(RejectCause::UnknownUser))
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
