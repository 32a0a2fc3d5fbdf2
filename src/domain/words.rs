//! The domain's words as types: an application's client id, an identity, a grant id, a role, a
//! canonical scope. Each reads as the text it stands for (`Deref<Target = str>`, `Display`),
//! so rendering costs nothing, while a function that takes a `ClientId` cannot be handed an
//! identity by mistake.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

use crate::scope::{Scope, ScopeError};

/// A text-backed domain word: the conversions and comparisons every one of them has.
macro_rules! text_word {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_string())
            }
        }

        impl From<$name> for String {
            fn from(w: $name) -> String {
                w.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

text_word!(
    /// An application's (API integration's) `client_id`, case-sensitive.
    ClientId
);

text_word!(
    /// A grant's id (a UUID).
    GrantId
);

text_word!(
    /// An identity: `prefix:universal` (`local:{uuid}`, `LDAP+N:<entryUUID>`,
    /// `AD+N:<objectGUID hex>`, `client:<client_id>`), or, in a rule, `everyone`.
    Identity
);

impl GrantId {
    /// A new, random one.
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}

/// The trustee that admits every identity.
pub const EVERYONE: &str = "everyone";

impl Identity {
    /// A local user's identity, from the user's id (a lower-case UUID).
    pub fn local(user_id: &str) -> Self {
        Self(format!("local:{{{user_id}}}"))
    }

    /// Joins a provider prefix and a universal.
    pub fn of(prefix: &str, universal: &str) -> Self {
        Self(format!("{prefix}:{universal}"))
    }

    /// The trustee `everyone`.
    pub fn everyone() -> Self {
        Self(EVERYONE.to_string())
    }

    pub fn is_everyone(&self) -> bool {
        self.0.eq_ignore_ascii_case(EVERYONE)
    }

    /// `local`, `LDAP+N`, `AD+N`, ...; empty for `everyone`.
    pub fn prefix(&self) -> &str {
        self.0.split_once(':').map_or("", |(p, _)| p)
    }

    /// What follows the prefix: the provider's stable id.
    pub fn universal(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, u)| u)
    }

    /// Parses `prefix:universal` (or `everyone`); None for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case(EVERYONE) {
            return Some(Self::everyone());
        }
        match s.split_once(':') {
            Some((p, u)) if !p.is_empty() && !u.is_empty() => Some(Self(s.to_string())),
            _ => None,
        }
    }
}

/// A scope in its canonical form (lower case, sorted, `;` and `,`), as grants, applications and
/// rules keep it: made only from a parsed [`Scope`], so it always parses back to itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct CanonicalScope(String);

impl CanonicalScope {
    pub fn of(scope: &Scope) -> Self {
        Self(scope.to_string())
    }

    /// Parses any accepted spelling into the canonical form.
    pub fn parse(input: &str) -> Result<Self, ScopeError> {
        Scope::parse(input).map(|s| Self::of(&s))
    }

    /// A value the store wrote from a canonical scope (it is not parsed again on every read).
    pub fn from_stored(text: String) -> Self {
        Self(text)
    }

    /// The scope it names (an unreadable stored value names nothing, which refuses).
    pub fn scope(&self) -> Scope {
        Scope::parse(&self.0).unwrap_or_default()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl Deref for CanonicalScope {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CanonicalScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&Scope> for CanonicalScope {
    fn from(s: &Scope) -> Self {
        Self::of(s)
    }
}

impl PartialEq<str> for CanonicalScope {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for CanonicalScope {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// An OAuth role (numbered as on the wire, docs/protocol.md §13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Implicit for every identity; sees only what is about itself.
    User = 0,
    Auditor = 1,
    Maintainer = 2,
    Owner = 3,
    /// Reported for an identity that is Owner of some applications and Maintainer of others.
    MixedOwnerMaintainer = 4,
    GrantAdmin = 5,
    Admin = 6,
}

/// A number that is no role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a role (0 to 6)")]
pub struct NotARole(pub i64);

impl Role {
    pub const ALL: [Role; 7] = [
        Role::User,
        Role::Auditor,
        Role::Maintainer,
        Role::Owner,
        Role::MixedOwnerMaintainer,
        Role::GrantAdmin,
        Role::Admin,
    ];

    /// The wire number.
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// Roles that can be given (User and MixedOwnerMaintainer are only ever implied).
    pub fn assignable(self) -> bool {
        matches!(
            self,
            Role::Auditor | Role::Maintainer | Role::Owner | Role::GrantAdmin | Role::Admin
        )
    }

    /// Roles held on one application rather than system-wide.
    pub fn per_application(self) -> bool {
        matches!(self, Role::Maintainer | Role::Owner)
    }
}

/// On the wire and in the store, a role is its number.
impl Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(self.code())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        Role::try_from(n).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<i64> for Role {
    type Error = NotARole;
    /// Out-of-range numbers are refused, never truncated.
    fn try_from(n: i64) -> Result<Self, NotARole> {
        Role::ALL
            .into_iter()
            .find(|r| i64::from(r.code()) == n)
            .ok_or(NotARole(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_split_into_prefix_and_universal() {
        let id = Identity::local("0d6e");
        assert_eq!(id, "local:{0d6e}");
        assert_eq!(id.prefix(), "local");
        assert_eq!(id.universal(), "{0d6e}");
        assert_eq!(
            Identity::parse("AD+corp:00ff").map(|i| i.prefix().to_string()),
            Some("AD+corp".into())
        );
        assert!(Identity::parse("nobody").is_none());
        assert!(Identity::parse(":x").is_none());
        assert!(Identity::parse("EVERYONE").is_some_and(|i| i.is_everyone()));
    }

    #[test]
    fn canonical_scopes_parse_back_to_themselves() {
        let s = CanonicalScope::parse(" Certificate:Revoke,manage ; admin ").unwrap_or_default();
        assert_eq!(s, "admin;certificate:manage,revoke");
        assert_eq!(CanonicalScope::parse(&s).ok().as_ref(), Some(&s));
        assert!(CanonicalScope::parse("nonsense").is_err());
    }

    #[test]
    fn role_numbers_out_of_range_are_refused() {
        assert_eq!(Role::try_from(6), Ok(Role::Admin));
        assert_eq!(Role::try_from(4_294_967_302), Err(NotARole(4_294_967_302)));
        assert_eq!(Role::try_from(-1), Err(NotARole(-1)));
    }
}
