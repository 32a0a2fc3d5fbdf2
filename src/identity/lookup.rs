//! Names to identities and back, for rules and roles (docs/protocol.md §11).
//!
//! A rule or role assignment is stored with the identity it names (`local:{uuid}`,
//! `LDAP+N:<entryUUID>`, `AD+N:<guid>`, a directory group's universal), never with a name: a
//! name can be given to someone else later, an identity cannot. So a name is resolved once,
//! when the rule or role is made, with [`Identities::find`]; listings turn identities back into
//! current names with [`Identities::name_of`]. No password is involved and no lockout applies.

use super::{Identities, IdentityProvider, IdpError, Username};
use crate::domain::Identity;

/// The forms a trustee or grantee may take, for the hint of an "unknown identity" refusal.
pub const ACCEPTED_FORMS: &str = "everyone (rules only), a user name (local users first, then each directory), local:NAME, local:{UUID}, PREFIX:NAME or PREFIX:UNIVERSAL of a configured directory (a user or a group, e.g. LDAP+N:ops), DOMAIN\\name, or name@dns.domain";

/// Whether an identity is a person or a group of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

/// An identity and its current name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// The prefixed universal: what rules, roles and grants store.
    pub identity: Identity,
    /// The prefixed name (`local:alice`, `LDAP+N:ops`).
    pub name: String,
    /// A longer name: a local user's full name, a directory entry's DN.
    pub full_name: String,
    pub kind: Kind,
}

impl Named {
    /// The name without its provider prefix.
    pub fn bare_name(&self) -> &str {
        self.name
            .split_once(':')
            .map_or(self.name.as_str(), |(_, n)| n)
    }
    /// The provider prefix (`local`, `LDAP+N`).
    pub fn prefix(&self) -> &str {
        self.identity.split_once(':').map_or("", |(p, _)| p)
    }
    /// The universal without its provider prefix.
    pub fn universal(&self) -> &str {
        self.identity
            .split_once(':')
            .map_or(self.identity.as_str(), |(_, u)| u)
    }
}

/// What a provider is asked: a name (stripped of any prefix or domain) or a universal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query<'a> {
    Name(&'a str),
    Universal(&'a str),
}

/// A provider's answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(Named),
    NotFound,
    /// The name matches more than one entry; no rule can be made from it.
    Ambiguous,
    /// The provider cannot look identities up without a password.
    Unsupported,
}

impl Identities {
    /// The user or group `text` names, in any username form of docs/protocol.md §11 or as a
    /// prefixed universal. `Ambiguous` when a directory has several entries of that name.
    pub async fn find(&self, text: &str) -> Result<Lookup, IdpError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Lookup::NotFound);
        }
        match Username::parse(text) {
            Username::Local(n) => self.ask(self.by_prefix("local"), &n).await,
            Username::Prefixed { prefix, name } => self.ask(self.by_prefix(&prefix), &name).await,
            Username::Domain { domain, name } => {
                self.first(
                    self.providers.iter().filter(|p| p.claims_domain(&domain)),
                    &name,
                )
                .await
            }
            Username::Upn { name, domain } => {
                let claimed: Vec<_> = self
                    .providers
                    .iter()
                    .filter(|p| p.claims_domain(&domain))
                    .collect();
                if claimed.is_empty() {
                    // Not a directory's UPN: a local user may be called "a@b.c".
                    self.first(self.providers.iter(), text).await
                } else {
                    self.first(claimed.into_iter(), &name).await
                }
            }
            Username::Bare(n) => self.first(self.providers.iter(), &n).await,
        }
    }

    /// The identity and current name behind a prefixed universal; None if no provider has it
    /// (a removed user, an entry deleted from the directory, a provider no longer configured).
    pub async fn name_of(&self, prefixed_universal: &str) -> Result<Option<Named>, IdpError> {
        let Some((prefix, universal)) = prefixed_universal.split_once(':') else {
            return Ok(None);
        };
        let Some(p) = self.by_prefix(prefix) else {
            return Ok(None);
        };
        Ok(match p.lookup(Query::Universal(universal)).await? {
            Lookup::Found(n) => Some(n),
            Lookup::NotFound | Lookup::Ambiguous => None,
            // A provider without lookups can still resolve its users.
            Lookup::Unsupported => p.resolve(universal).await?.map(|pr| Named {
                identity: pr.prefixed_universal(),
                name: pr.prefixed_name(),
                full_name: pr.full_name,
                kind: Kind::User,
            }),
        })
    }

    /// One provider, by name and then (a prefixed form may carry a universal) by universal.
    async fn ask(
        &self,
        provider: Option<&std::sync::Arc<dyn IdentityProvider>>,
        name: &str,
    ) -> Result<Lookup, IdpError> {
        let Some(p) = provider else {
            return Ok(Lookup::NotFound);
        };
        match p.lookup(Query::Name(name)).await? {
            Lookup::NotFound => match p.lookup(Query::Universal(name)).await? {
                Lookup::Unsupported => Ok(Lookup::NotFound),
                other => Ok(other),
            },
            other => Ok(other),
        }
    }

    /// The first provider that knows the name decides, as at login (docs/protocol.md §11).
    async fn first<'a>(
        &self,
        providers: impl Iterator<Item = &'a std::sync::Arc<dyn IdentityProvider>>,
        name: &str,
    ) -> Result<Lookup, IdpError> {
        for p in providers {
            match p.lookup(Query::Name(name)).await? {
                Lookup::NotFound | Lookup::Unsupported => continue,
                decided => return Ok(decided),
            }
        }
        Ok(Lookup::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_parts() {
        let n = Named {
            identity: "LDAP+T:abc".into(),
            name: "LDAP+T:ops".into(),
            full_name: "cn=ops,ou=groups,dc=example".into(),
            kind: Kind::Group,
        };
        assert_eq!(n.bare_name(), "ops");
        assert_eq!(n.prefix(), "LDAP+T");
        assert_eq!(n.universal(), "abc");
    }
}
