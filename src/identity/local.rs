//! Local users, kept in the store with argon2id hashes.

use std::sync::Arc;

use async_trait::async_trait;

use super::certificate::{CertField, CertMatch};
use super::lookup::{Kind, Lookup, Named, Query};
use super::names::normalize_user_name;
use super::{
    AuthOutcome, Candidate, Credential, Identify, IdentityProvider, IdpError, Principal,
    RejectCause,
};
use crate::domain::{Holder, SharedStore, StoreResult, User};
use crate::password::HashPool;
use crate::secret::Secret;

/// What the local provider needs of the store. A narrow port rather than the whole `Store`:
/// the provider depends on three operations, and a test can count them.
#[async_trait]
pub trait UserSource: Send + Sync + std::fmt::Debug {
    /// Case-insensitive lookup by name.
    async fn user_by_name(&self, name: &str) -> StoreResult<Option<User>>;
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>>;
    /// Replaces the hash only if it is still `expected`.
    async fn replace_password_hash(
        &self,
        id: &str,
        expected: Option<&str>,
        new_hash: &str,
    ) -> StoreResult<bool>;
}

#[async_trait]
impl UserSource for SharedStore {
    async fn user_by_name(&self, name: &str) -> StoreResult<Option<User>> {
        self.as_ref().user_by_name(name).await
    }
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        self.as_ref().user_by_id(id).await
    }
    async fn replace_password_hash(
        &self,
        id: &str,
        expected: Option<&str>,
        new_hash: &str,
    ) -> StoreResult<bool> {
        self.as_ref()
            .replace_password_hash(id, expected, new_hash)
            .await
    }
}

#[derive(Debug, Clone)]
pub struct LocalProvider {
    users: Arc<dyn UserSource>,
    pool: HashPool,
}

impl LocalProvider {
    pub fn new(store: SharedStore, pool: HashPool) -> Self {
        Self::with_users(Arc::new(store), pool)
    }

    pub fn with_users(users: Arc<dyn UserSource>, pool: HashPool) -> Self {
        Self { users, pool }
    }
}

/// A local user's id from the universal part of their identity (`{uuid}`, braces optional).
pub fn user_id(universal: &str) -> &str {
    universal.trim_start_matches('{').trim_end_matches('}')
}

pub fn principal_of(u: &User) -> Principal {
    Principal {
        prefix: "local".into(),
        universal: format!("{{{}}}", u.id),
        name: u.name.clone(),
        full_name: u.full_name.clone().unwrap_or_else(|| u.name.clone()),
        groups: Vec::new(),
        checked_hash: None,
    }
}

#[async_trait]
impl IdentityProvider for LocalProvider {
    fn prefix(&self) -> &str {
        "local"
    }

    fn hashes_locally(&self) -> bool {
        true
    }

    fn accepts(&self, credential: &Credential) -> bool {
        matches!(credential, Credential::Password(_))
    }

    /// One read of the user, by the name's canonical form. A name that has none (created
    /// before names were normalised) is looked up as typed, so that such users can still log in.
    async fn identify(&self, name: &str) -> Result<Identify, IdpError> {
        let key = normalize_user_name(name).unwrap_or_else(|_| name.to_string());
        Ok(match self.users.user_by_name(&key).await? {
            Some(u) => Identify::Found(Candidate::new(Some(u.identity()), u)),
            None => Identify::Unknown,
        })
    }

    async fn authenticate(
        &self,
        candidate: Candidate,
        credential: &Credential,
    ) -> Result<AuthOutcome, IdpError> {
        let Credential::Password(password) = credential;
        let user: User = candidate.into_handle()?;
        // The hash is checked even for a disabled user, so that the answer costs the same.
        let verified = self
            .pool
            .verify(&user.password_hash, password.clone())
            .await?;
        if !verified.ok {
            return Ok(AuthOutcome::Rejected(RejectCause::WrongPassword));
        }
        if user.disabled {
            return Ok(AuthOutcome::Rejected(RejectCause::Disabled));
        }
        let mut checked = user.password_hash.clone();
        if let Some(new_hash) = verified.rehash {
            // Only if nobody changed the password meanwhile; losing this race is harmless.
            match self
                .users
                .replace_password_hash(&user.id, Some(&user.password_hash), &new_hash)
                .await
            {
                Ok(true) => checked = new_hash,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "could not store the upgraded password hash"),
            }
        }
        Ok(AuthOutcome::Authenticated(Principal {
            checked_hash: Some(Secret::new(checked)),
            ..principal_of(&user)
        }))
    }

    /// The user by id and, after a password login, the hash the password was checked against.
    fn holder(&self, principal: &Principal) -> Option<Holder> {
        Some(Holder {
            user_id: user_id(&principal.universal).to_string(),
            password_hash: principal
                .checked_hash
                .as_ref()
                .map(|h| h.expose().to_string()),
        })
    }

    async fn resolve(&self, universal: &str) -> Result<Option<Principal>, IdpError> {
        Ok(self
            .users
            .user_by_id(user_id(universal))
            .await?
            .as_ref()
            .map(principal_of))
    }

    /// A certificate's CN names a local user (the vendor's console says as much: "for local
    /// identities, always specify CN"); local users have no UPN, and their e-mail addresses
    /// are not unique, so the other fields are left to the directories.
    async fn by_certificate(&self, field: CertField, value: &str) -> Result<CertMatch, IdpError> {
        if field != CertField::Cn {
            return Ok(CertMatch::NotFound);
        }
        let key = normalize_user_name(value).unwrap_or_else(|_| value.to_string());
        Ok(match self.users.user_by_name(&key).await? {
            Some(u) if u.disabled => CertMatch::Disabled(u.identity()),
            Some(u) => CertMatch::Found(principal_of(&u)),
            None => CertMatch::NotFound,
        })
    }

    async fn lookup(&self, query: Query<'_>) -> Result<Lookup, IdpError> {
        let user = match query {
            // Names are stored in their normalised form; one that does not normalise may be a
            // user made before names were normalised, looked up as typed.
            Query::Name(name) => {
                let n = normalize_user_name(name).unwrap_or_else(|_| name.to_string());
                self.users.user_by_name(&n).await?
            }
            // Only the braced form is a universal: `{uuid}`, in either case.
            Query::Universal(u) => match u.strip_prefix('{').and_then(|u| u.strip_suffix('}')) {
                Some(id) => self.users.user_by_id(&id.to_ascii_lowercase()).await?,
                None => None,
            },
        };
        Ok(match user {
            Some(u) => Lookup::Found(Named {
                identity: u.identity(),
                name: format!("local:{}", u.name),
                full_name: u.full_name.clone().unwrap_or_else(|| u.name.clone()),
                kind: Kind::User,
            }),
            None => Lookup::NotFound,
        })
    }
}
