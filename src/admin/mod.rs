//! Administration of token authentication: applications, rules, grants, roles, the global
//! configuration and local users (docs/protocol.md §11–§13).
//!
//! One core for every face: the HTTP administration API and the command line both call
//! [`Admin`], and differ only in who the [`Caller`] is. The core speaks the domain's words
//! ([`AdminError`]); each face maps them to its wire (TPP result codes live in `api::admin`).
//!
//! Every change goes through one audited path (`audited::Gate`): the store's write methods are
//! reachable only inside it, so a change that is not audited cannot be written.

mod applications;
mod audited;
mod grants;
mod issuers;
mod jwt;
pub mod policy;
mod roles;
mod rules;
mod secrets;
mod settings;
mod trail;
mod users;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::audit::Audit;
use crate::clock::SharedClock;
use crate::domain::{CanonicalScope, Identity};
use crate::domain::{GrantFilter, Lifetime, SharedStore, StoreError};
use crate::grants::{Engine, GrantError};
use crate::identity::lookup::{Lookup, Named, ACCEPTED_FORMS};
use crate::identity::Identities;
use crate::password::{HashPool, PasswordPolicy};
use crate::scope::Scope;
use crate::token::TokenDigest;

pub use self::applications::{ApplicationInfo, ApplicationInput, Page};
pub use self::audited::Change;
pub use self::issuers::IssuerInfo;
pub use self::policy::{Caller, HeldRole, Role};
pub use self::roles::{RoleGrant, RoleInfo};
pub use self::rules::RuleInput;
pub use self::secrets::NewClientSecret;
pub use self::trail::TrailEntry;
pub use self::users::{validate_new_password, validate_new_user_name, NewUser, UserInfo};

/// The longest access-token or grant validity: 100 years of 365.25 days. Longer values would
/// only produce dates that clients cannot parse (year 10000 and beyond, saturated arithmetic).
pub const MAX_VALIDITY_SECS: i64 = 36_525 * 86_400;

/// What an operation addressed that does not exist, or already does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    Application(String),
    Rule {
        client_id: String,
        trustee: String,
    },
    RoleAssignment {
        grantee: String,
        role: i32,
    },
    User(String),
    /// A trustee or grantee as the caller wrote it.
    Identity(String),
    JwtMapping(String),
    /// A trusted certificate issuer, by fingerprint as the caller wrote it.
    Issuer(String),
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entity::Application(id) => write!(f, "Application '{id}'"),
            Entity::Rule { client_id, trustee } => {
                write!(f, "The rule for '{trustee}' on '{client_id}'")
            }
            Entity::RoleAssignment { grantee, role } => {
                write!(f, "The assignment of role {role} to '{grantee}'")
            }
            Entity::User(name) => write!(f, "User '{name}'"),
            Entity::Identity(who) => write!(f, "Identity '{who}'"),
            Entity::JwtMapping(name) => write!(f, "JWT mapping '{name}'"),
            Entity::Issuer(fp) => write!(f, "Trusted issuer '{fp}'"),
        }
    }
}

fn not_found_text(e: &Entity) -> String {
    match e {
        Entity::Identity(who) => {
            format!("Identity '{who}' is not known; name one as {ACCEPTED_FORMS}")
        }
        Entity::Rule { .. } => "Rule not found".to_string(),
        Entity::RoleAssignment { .. } => "No such role assignment".to_string(),
        other => format!("{other} not found"),
    }
}

/// Why an administration operation did not happen, in the domain's words.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{}", not_found_text(.0))]
    NotFound(Entity),
    #[error("{0} already exists")]
    AlreadyExists(Entity),
    /// A value the operation cannot take.
    #[error("{msg}")]
    Invalid { field: &'static str, msg: String },
    /// A scope that does not parse; `item` is the offending part.
    #[error("Scope '{item}' is not valid")]
    InvalidScope { field: &'static str, item: String },
    /// A scope beyond the one it must stay within.
    #[error("{0}")]
    ScopeExceeds(String),
    /// The caller holds a role, but not one that allows this (on this application).
    #[error("The caller's role does not allow this operation")]
    Forbidden,
    /// The caller holds no role that allows the operation.
    #[error("insufficient rights")]
    NoRole,
    /// The caller's identity was removed or disabled since its token was issued.
    #[error("the caller no longer exists or is disabled")]
    CallerGone,
    /// The store, a directory or the audit trail cannot be used now; retry later.
    #[error("temporarily unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A number that is no role is an invalid `Role`.
impl From<crate::domain::NotARole> for AdminError {
    fn from(e: crate::domain::NotARole) -> Self {
        AdminError::invalid("Role", e.to_string())
    }
}

impl AdminError {
    fn invalid(field: &'static str, msg: impl Into<String>) -> Self {
        AdminError::Invalid {
            field,
            msg: msg.into(),
        }
    }
    fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        AdminError::Unavailable(Box::new(e))
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError::unavailable(e)
    }
}

impl From<crate::identity::IdpError> for AdminError {
    fn from(e: crate::identity::IdpError) -> Self {
        AdminError::unavailable(e)
    }
}

impl From<GrantError> for AdminError {
    fn from(e: GrantError) -> Self {
        AdminError::unavailable(e)
    }
}

impl From<crate::password::PoolError> for AdminError {
    fn from(e: crate::password::PoolError) -> Self {
        AdminError::unavailable(e)
    }
}

impl From<crate::audit::AuditError> for AdminError {
    fn from(e: crate::audit::AuditError) -> Self {
        AdminError::unavailable(e)
    }
}

pub type AdminResult<T> = Result<T, AdminError>;

/// Revocation as the administration needs it: the grant engine, which also keeps its verify
/// caches (and those of other nodes) in step.
#[async_trait]
pub trait Revocations: Send + Sync + std::fmt::Debug {
    /// Revokes every grant the filter matches; how many.
    async fn revoke_matching(&self, filter: &GrantFilter) -> Result<usize, GrantError>;
    /// Forgets access tokens whose grants the store has already deleted.
    async fn forget(&self, digests: &[TokenDigest]);
    /// An application or its secret changed: cached authentications of the client (here and
    /// on the other nodes) stop counting.
    async fn client_changed(&self, client_id: &str);
    /// Settings, an application or a rule changed: what the grant core keeps of them (here
    /// and on the other nodes) is read again.
    async fn policy_changed(&self);
}

#[async_trait]
impl Revocations for Engine {
    async fn revoke_matching(&self, filter: &GrantFilter) -> Result<usize, GrantError> {
        Engine::revoke_matching(self, filter).await
    }
    async fn forget(&self, digests: &[TokenDigest]) {
        self.invalidate(digests).await
    }
    async fn client_changed(&self, client_id: &str) {
        Engine::client_changed(self, client_id).await
    }
    async fn policy_changed(&self) {
        Engine::policy_changed(self).await
    }
}

/// What the administration works with; the composition root supplies them.
#[derive(Debug, Clone)]
pub struct Ports {
    pub store: SharedStore,
    pub identities: Arc<Identities>,
    pub audit: Arc<Audit>,
    pub clock: SharedClock,
    pub revocations: Arc<dyn Revocations>,
    /// Hashes new passwords (off the async runtime).
    pub hasher: HashPool,
    /// What a new local password must be.
    pub password_policy: PasswordPolicy,
}

/// The administration operations. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Admin {
    reads: audited::Reads,
    gate: audited::Gate,
    identities: Arc<Identities>,
    clock: SharedClock,
    hasher: HashPool,
    password_policy: PasswordPolicy,
}

impl Admin {
    pub fn new(ports: impl Into<Ports>) -> Self {
        let p = ports.into();
        Self {
            reads: audited::Reads::new(p.store.clone()),
            gate: audited::Gate::new(p.store, p.revocations, p.audit),
            identities: p.identities,
            clock: p.clock,
            hasher: p.hasher,
            password_policy: p.password_policy,
        }
    }

    /// The caller behind a verified token's identity, with its role assignments. A local
    /// identity that was removed or disabled since the token was issued is refused here, on
    /// every call: a token outlives neither in the administration API. A directory identity
    /// must still be found in its directory.
    pub async fn caller(&self, identity: &str) -> AdminResult<Caller> {
        let exists = match identity.split_once(':') {
            Some((prefix, universal)) if prefix.eq_ignore_ascii_case("local") => {
                let id = crate::identity::local::user_id(universal);
                self.reads
                    .user_by_id(id)
                    .await?
                    .is_some_and(|u| !u.disabled)
            }
            _ => self.identities.name_of(identity).await?.is_some(),
        };
        if !exists {
            return Err(AdminError::CallerGone);
        }
        let roles = self.reads.roles(Some(identity)).await?;
        Ok(Caller::with_assignments(identity, &roles))
    }

    /// The identity `text` names (docs/protocol.md §11), for a rule (where `everyone` is allowed)
    /// or a role. Unknown names are refused with the accepted forms.
    async fn resolve(&self, text: &str, allow_everyone: bool) -> AdminResult<Identity> {
        let text = text.trim();
        if allow_everyone && text.eq_ignore_ascii_case("everyone") {
            return Ok(Identity::everyone());
        }
        match self.identities.find(text).await? {
            Lookup::Found(n) => Ok(n.identity),
            Lookup::Ambiguous => Err(AdminError::invalid(
                "Identity",
                format!("'{text}' names more than one directory entry; give its universal"),
            )),
            Lookup::NotFound | Lookup::Unsupported => {
                Err(AdminError::NotFound(Entity::Identity(text.to_string())))
            }
        }
    }

    /// How an existing rule or role names `text`: the identity it resolves to, or the text as
    /// given when it resolves to nobody (the universal of a removed user, a row from before
    /// rules named identities).
    async fn key_of(&self, text: &str) -> AdminResult<Identity> {
        match self.resolve(text, true).await {
            Ok(identity) => Ok(identity),
            Err(AdminError::NotFound(_)) | Err(AdminError::Invalid { .. }) => {
                Ok(Identity::from(text.trim()))
            }
            Err(e) => Err(e),
        }
    }

    /// The identity `text` names (any name form), or `text` itself when it names nobody now
    /// (the universal of a removed user): for filtering grants and roles by who holds them.
    pub async fn identity_of(&self, text: &str) -> AdminResult<Identity> {
        self.key_of(text).await
    }

    /// The current names of identities, for listings. An identity no provider knows (or whose
    /// directory does not answer now) is left out; listings still show the identity itself.
    pub async fn names(&self, identities: &[&str]) -> BTreeMap<String, Named> {
        let mut out = BTreeMap::new();
        // Many local identities (a listing of grants) are named from one read of the users,
        // not one read each.
        let local = |id: &str| {
            id.get(..6)
                .is_some_and(|p| p.eq_ignore_ascii_case("local:"))
        };
        let batched = identities.iter().filter(|id| local(id)).count() > 1;
        if batched {
            match self.reads.list_users().await {
                Ok(users) => {
                    let wanted: std::collections::BTreeSet<&str> =
                        identities.iter().copied().filter(|id| local(id)).collect();
                    for u in users {
                        let identity = u.identity();
                        if wanted.contains(identity.as_str()) {
                            out.insert(
                                identity.to_string(),
                                Named {
                                    identity,
                                    name: format!("local:{}", u.name),
                                    full_name: u
                                        .full_name
                                        .clone()
                                        .unwrap_or_else(|| u.name.clone()),
                                    kind: crate::identity::lookup::Kind::User,
                                },
                            );
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot list users to name identities"),
            }
        }
        for &id in identities {
            // Local identities the one read did not find are removed users: left nameless.
            if id.eq_ignore_ascii_case("everyone") || out.contains_key(id) || (batched && local(id))
            {
                continue;
            }
            match self.identities.name_of(id).await {
                Ok(Some(n)) => {
                    out.insert(id.to_string(), n);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(identity = id, error = %e, "cannot name an identity"),
            }
        }
        out
    }
}

/// A scope string checked against the grammar, in canonical form.
pub fn canonical_scope(field: &'static str, s: &str) -> AdminResult<CanonicalScope> {
    CanonicalScope::parse(s).map_err(|e| AdminError::InvalidScope {
        field,
        item: e.item().to_string(),
    })
}

fn within(inner: &str, outer: &str) -> bool {
    match (Scope::parse(inner), Scope::parse(outer)) {
        (Ok(i), Ok(o)) => i.is_subset_of(&o),
        _ => false,
    }
}

fn too_long(field: &'static str) -> AdminError {
    AdminError::invalid(
        field,
        format!("{field} must be a number of seconds from 1 to {MAX_VALIDITY_SECS} (100 years)"),
    )
}

/// A validity in seconds where one may be given: absent, or 1 to [`MAX_VALIDITY_SECS`].
pub fn validity(field: &'static str, v: Option<i64>) -> AdminResult<Option<i64>> {
    match v {
        Some(n) if !(1..=MAX_VALIDITY_SECS).contains(&n) => Err(too_long(field)),
        other => Ok(other),
    }
}

/// A grant validity: absent, never, or 1 to [`MAX_VALIDITY_SECS`] seconds.
pub fn grant_validity(field: &'static str, v: Option<Lifetime>) -> AdminResult<Option<Lifetime>> {
    match v {
        Some(Lifetime::Seconds(n)) if !(1..=MAX_VALIDITY_SECS).contains(&n) => Err(too_long(field)),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validities_are_bounded() {
        assert!(validity("AccessValidity", None).is_ok());
        assert!(validity("AccessValidity", Some(MAX_VALIDITY_SECS)).is_ok());
        for bad in [0, -1, MAX_VALIDITY_SECS + 1, i64::MAX, i64::MIN] {
            assert!(
                matches!(
                    validity("AccessValidity", Some(bad)),
                    Err(AdminError::Invalid {
                        field: "AccessValidity",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        assert!(grant_validity("GrantValidity", Some(Lifetime::Never)).is_ok());
        assert!(grant_validity("GrantValidity", Some(Lifetime::Seconds(i64::MAX))).is_err());
        // The bound is a date clients can still parse.
        let far = time::OffsetDateTime::from_unix_timestamp(4_102_444_800 + MAX_VALIDITY_SECS);
        assert!(far.is_ok_and(|d| d.year() < 10_000));
    }

    #[test]
    fn unknown_identities_name_the_accepted_forms() {
        let e = AdminError::NotFound(Entity::Identity("nobody".into()));
        let text = e.to_string();
        assert!(text.contains("'nobody'") && text.contains("everyone") && text.contains("local:"));
    }
}
