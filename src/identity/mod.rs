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

#[async_trait]
pub trait IdentityProvider: Send + Sync + std::fmt::Debug {
    /// `local`, `LDAP+N` or `AD+N`.
    fn prefix(&self) -> &str;
    /// Whether `DOMAIN\name` or `name@domain` forms address this provider.
    fn claims_domain(&self, _domain: &str) -> bool {
        false
    }
    /// Checks a name (already stripped of any prefix or domain) and password.
    async fn authenticate(&self, name: &str, password: &Secret) -> Result<AuthOutcome, IdpError>;
    /// The identity behind a prefixed universal, if this provider has it.
    async fn resolve(&self, universal: &str) -> Result<Option<Principal>, IdpError>;
}

/// Every configured provider, local first.
#[derive(Debug, Clone)]
pub struct Identities {
    providers: Vec<Arc<dyn IdentityProvider>>,
    pool: HashPool,
}

impl Identities {
    pub fn new(providers: Vec<Arc<dyn IdentityProvider>>, pool: HashPool) -> Self {
        Self { providers, pool }
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
    ) -> Result<AuthOutcome, IdpError> {
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
        if password.is_empty() || name.is_empty() {
            self.pool.verify_dummy(password.clone()).await?;
            return Ok(AuthOutcome::Rejected(RejectCause::EmptyPassword));
        }
        for p in candidates {
            match p.authenticate(&name, password).await? {
                AuthOutcome::NotMine => continue,
                decided => return Ok(decided),
            }
        }
        // Nobody knows the name: spend the same hashing work as a real check.
        self.pool.verify_dummy(password.clone()).await?;
        Ok(AuthOutcome::Rejected(RejectCause::UnknownUser))
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
