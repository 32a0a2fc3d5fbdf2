//! Who may do what: the OAuth roles of docs/protocol.md §13 and the check every operation makes
//! first.

use std::collections::BTreeSet;

use super::{AdminError, AdminResult};
use crate::domain::{Application, RoleAssignment};

pub use crate::domain::Role;

/// How administration names roles.
impl Role {
    /// The command line's name for the role.
    pub fn name(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Auditor => "auditor",
            Role::Maintainer => "maintainer",
            Role::Owner => "owner",
            Role::MixedOwnerMaintainer => "owner-maintainer",
            Role::GrantAdmin => "grant-admin",
            Role::Admin => "admin",
        }
    }

    /// A role by name (`grant-admin`, `GrantAdmin`, `grant_admin`) or number.
    pub fn parse(s: &str) -> AdminResult<Role> {
        let folded = s.to_ascii_lowercase().replace(['-', '_'], "");
        if let Some(r) = Role::ALL
            .iter()
            .find(|r| r.name().replace('-', "") == folded)
        {
            return Ok(*r);
        }
        match s.trim().parse::<i64>() {
            Ok(n) => Role::try_from(n).map_err(|e| AdminError::invalid("Role", e.to_string())),
            Err(_) => Err(AdminError::invalid(
                "Role",
                format!(
                    "unknown role '{s}' (auditor, maintainer, owner, grant-admin, admin or 1-6)"
                ),
            )),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A role an identity holds: system-wide, or on one application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRole {
    pub role: Role,
    pub client_id: Option<String>,
}

/// Who is asking.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The operator at the command line: the store's owner, every right.
    Operator,
    /// An identity with a token holding the `admin` scope, and its role assignments.
    Identity {
        identity: String,
        roles: Vec<HeldRole>,
    },
}

/// What an operation needs of the caller.
#[derive(Debug, Clone, Copy)]
pub(super) enum Need<'a> {
    /// Any identity (the implicit User role).
    Anyone,
    Admin,
    /// Admin, GrantAdmin or Auditor.
    ReadAll,
    /// Admin or Auditor (reading JWT mappings).
    AdminOrAuditor,
    /// Admin, GrantAdmin, Auditor, or Owner/Maintainer of this application.
    ReadApp(&'a str),
    /// Admin, or Owner/Maintainer of this application.
    ManageApp(&'a str),
    /// Admin, or Owner of this application.
    OwnApp(&'a str),
    /// Admin, GrantAdmin, or Owner of this application.
    RevokeApp(&'a str),
    /// Admin or GrantAdmin, or the caller's own identity.
    RevokeIdentity(&'a str),
    /// Admin, GrantAdmin, Auditor, or the caller's own identity.
    ReadIdentity(&'a str),
}

impl Caller {
    /// An identity's caller from its stored assignments (the store refuses a number that is no
    /// role when it reads the row).
    pub fn with_assignments(identity: &str, roles: &[RoleAssignment]) -> Self {
        let roles = roles
            .iter()
            .map(|r| HeldRole {
                role: r.role,
                client_id: r.client_id.as_ref().map(|c| c.to_string()),
            })
            .collect();
        Caller::Identity {
            identity: identity.to_string(),
            roles,
        }
    }

    fn system_roles(&self) -> BTreeSet<Role> {
        match self {
            Caller::Operator => [Role::Admin].into(),
            Caller::Identity { roles, .. } => roles
                .iter()
                .filter(|r| r.client_id.is_none())
                .map(|r| r.role)
                .collect(),
        }
    }

    fn app_role(&self, client_id: &str, wanted: &[Role]) -> bool {
        match self {
            Caller::Operator => true,
            Caller::Identity { roles, .. } => roles
                .iter()
                .any(|r| r.client_id.as_deref() == Some(client_id) && wanted.contains(&r.role)),
        }
    }

    pub(super) fn has_any_app_role(&self) -> bool {
        match self {
            Caller::Operator => true,
            Caller::Identity { roles, .. } => roles.iter().any(|r| r.client_id.is_some()),
        }
    }

    /// How the audit trail names the caller.
    pub fn name(&self) -> &str {
        match self {
            Caller::Operator => "operator (command line)",
            Caller::Identity { identity, .. } => identity,
        }
    }

    /// The caller's own identity; None for the operator.
    pub fn identity(&self) -> Option<&str> {
        match self {
            Caller::Operator => None,
            Caller::Identity { identity, .. } => Some(identity),
        }
    }

    fn is(&self, identity: &str) -> bool {
        matches!(self, Caller::Identity { identity: me, .. } if me.eq_ignore_ascii_case(identity))
    }

    /// The applications the caller owns (Owner role on them).
    pub(super) fn owned(&self) -> BTreeSet<String> {
        match self {
            Caller::Operator => BTreeSet::new(),
            Caller::Identity { roles, .. } => roles
                .iter()
                .filter(|r| r.role == Role::Owner)
                .filter_map(|r| r.client_id.clone())
                .collect(),
        }
    }

    pub(super) fn check(&self, need: Need<'_>) -> AdminResult<()> {
        use Role::*;
        let sys = self.system_roles();
        let any_of = |rs: &[Role]| rs.iter().any(|r| sys.contains(r));
        let ok = match need {
            Need::Anyone => true,
            Need::Admin => any_of(&[Admin]),
            Need::ReadAll => any_of(&[Admin, GrantAdmin, Auditor]),
            Need::AdminOrAuditor => any_of(&[Admin, Auditor]),
            Need::ReadApp(c) => {
                any_of(&[Admin, GrantAdmin, Auditor]) || self.app_role(c, &[Owner, Maintainer])
            }
            Need::ManageApp(c) => any_of(&[Admin]) || self.app_role(c, &[Owner, Maintainer]),
            Need::OwnApp(c) => any_of(&[Admin]) || self.app_role(c, &[Owner]),
            Need::RevokeApp(c) => any_of(&[Admin, GrantAdmin]) || self.app_role(c, &[Owner]),
            Need::RevokeIdentity(i) => any_of(&[Admin, GrantAdmin]) || self.is(i),
            Need::ReadIdentity(i) => any_of(&[Admin, GrantAdmin, Auditor]) || self.is(i),
        };
        if ok {
            return Ok(());
        }
        // A role holder addressing an application that is not theirs is refused in the
        // envelope; a caller with no applicable role at all gets 401.
        let app_scoped = matches!(
            need,
            Need::ReadApp(_) | Need::ManageApp(_) | Need::OwnApp(_) | Need::RevokeApp(_)
        );
        if !sys.is_empty() || (app_scoped && self.has_any_app_role()) {
            Err(AdminError::Forbidden)
        } else {
            Err(AdminError::NoRole)
        }
    }

    pub(super) fn visible_apps(&self, apps: Vec<Application>) -> Vec<Application> {
        let sys = self.system_roles();
        if [Role::Admin, Role::GrantAdmin, Role::Auditor]
            .iter()
            .any(|r| sys.contains(r))
        {
            return apps;
        }
        apps.into_iter()
            .filter(|a| self.app_role(&a.client_id, &[Role::Owner, Role::Maintainer]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(roles: &[(Role, Option<&str>)]) -> Caller {
        Caller::Identity {
            identity: "local:{me}".into(),
            roles: roles
                .iter()
                .map(|(r, c)| HeldRole {
                    role: *r,
                    client_id: c.map(str::to_string),
                })
                .collect(),
        }
    }

    #[test]
    fn role_checks() {
        let nobody = caller(&[]);
        assert!(matches!(nobody.check(Need::Admin), Err(AdminError::NoRole)));
        assert!(nobody.check(Need::Anyone).is_ok());
        assert!(nobody.check(Need::RevokeIdentity("local:{me}")).is_ok());
        assert!(matches!(
            nobody.check(Need::RevokeIdentity("local:{other}")),
            Err(AdminError::NoRole)
        ));
        let auditor = caller(&[(Role::Auditor, None)]);
        assert!(auditor.check(Need::ReadAll).is_ok());
        assert!(matches!(
            auditor.check(Need::Admin),
            Err(AdminError::Forbidden)
        ));
        let owner = caller(&[(Role::Owner, Some("a"))]);
        assert!(owner.check(Need::OwnApp("a")).is_ok());
        assert!(owner.check(Need::ManageApp("a")).is_ok());
        assert!(matches!(
            owner.check(Need::OwnApp("b")),
            Err(AdminError::Forbidden)
        ));
        let maintainer = caller(&[(Role::Maintainer, Some("a"))]);
        assert!(maintainer.check(Need::ManageApp("a")).is_ok());
        assert!(maintainer.check(Need::OwnApp("a")).is_err());
        assert!(Caller::Operator.check(Need::Admin).is_ok());
    }

    #[test]
    fn role_numbers_are_checked_not_truncated() {
        for r in Role::ALL {
            assert_eq!(Role::try_from(i64::from(r.code())).ok(), Some(r));
            assert_eq!(Role::parse(r.name()).ok(), Some(r));
        }
        // 2^32 + 1 and 2^32 + 6 would be Auditor and Admin as an i32.
        for n in [4_294_967_297, 4_294_967_302, -1, 7, i64::MAX, i64::MIN] {
            assert!(
                matches!(
                    Role::try_from(n).map_err(AdminError::from),
                    Err(AdminError::Invalid { field: "Role", .. })
                ),
                "{n}"
            );
        }
        assert_eq!(Role::parse("GrantAdmin").ok(), Some(Role::GrantAdmin));
        assert_eq!(Role::parse("grant_admin").ok(), Some(Role::GrantAdmin));
        assert_eq!(Role::parse("6").ok(), Some(Role::Admin));
        assert!(Role::parse("4294967302").is_err());
        assert!(Role::parse("boss").is_err());
    }
}
