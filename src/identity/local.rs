//! Local users, kept in the store with argon2id hashes.

use async_trait::async_trait;

use super::lookup::{Kind, Lookup, Named, Query};
use super::{AuthOutcome, Identify, IdentityProvider, IdpError, Principal, RejectCause};
use crate::password::HashPool;
use crate::secret::Secret;
use crate::store::{SharedStore, User};

#[derive(Debug, Clone)]
pub struct LocalProvider {
    store: SharedStore,
    pool: HashPool,
}

impl LocalProvider {
    pub fn new(store: SharedStore, pool: HashPool) -> Self {
        Self { store, pool }
    }
}

pub fn principal_of(u: &User) -> Principal {
    Principal {
        prefix: "local".into(),
        universal: format!("{{{}}}", u.id),
        name: u.name.clone(),
        full_name: u.full_name.clone().unwrap_or_else(|| u.name.clone()),
        groups: Vec::new(),
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

    async fn identify(&self, name: &str) -> Result<Identify, IdpError> {
        Ok(match self.store.user_by_name(name).await? {
            Some(u) => Identify::Known(u.identity()),
            None => Identify::Unknown,
        })
    }

    async fn authenticate(&self, name: &str, password: &Secret) -> Result<AuthOutcome, IdpError> {
        let Some(user) = self.store.user_by_name(name).await? else {
            return Ok(AuthOutcome::NotMine);
        };
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
        if let Some(new_hash) = verified.rehash {
            // Only if nobody changed the password meanwhile; losing this race is harmless.
            if let Err(e) = self
                .store
                .replace_password_hash(&user.id, Some(&user.password_hash), &new_hash)
                .await
            {
                tracing::warn!(error = %e, "could not store the upgraded password hash");
            }
        }
        Ok(AuthOutcome::Authenticated(principal_of(&user)))
    }

    async fn resolve(&self, universal: &str) -> Result<Option<Principal>, IdpError> {
        let id = universal.trim_start_matches('{').trim_end_matches('}');
        Ok(self.store.user_by_id(id).await?.as_ref().map(principal_of))
    }

    async fn lookup(&self, query: Query<'_>) -> Result<Lookup, IdpError> {
        let user = match query {
            Query::Name(name) => self.store.user_by_name(name).await?,
            // Only the braced form is a universal: `{uuid}`, in either case.
            Query::Universal(u) => match u.strip_prefix('{').and_then(|u| u.strip_suffix('}')) {
                Some(id) => self.store.user_by_id(&id.to_ascii_lowercase()).await?,
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
