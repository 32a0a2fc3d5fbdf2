//! OAuth roles: who administers what (docs/protocol.md §13). A role names its grantee by
//! identity (docs/protocol.md §11).

use std::collections::BTreeSet;

use serde_json::json;

use super::audited::Change;
use super::policy::Need;
use super::{Admin, AdminError, AdminResult, Caller, Entity, Role};
use crate::domain::ClientId;
use crate::domain::{RoleAssignment, StoreError};

/// A role to give: the grantee in any name form.
#[derive(Debug, Clone)]
pub struct RoleGrant {
    pub grantee: String,
    pub role: Role,
    /// The application, for the per-application roles (Owner, Maintainer).
    pub client_id: Option<String>,
}

/// The caller's own role (GetRole).
#[derive(Debug, Clone)]
pub struct RoleInfo {
    pub role: Role,
    pub permitted_applications: Vec<String>,
    pub owned_applications: Vec<(String, Role)>,
}

impl Admin {
    pub async fn grant_role(&self, caller: &Caller, r: RoleGrant) -> AdminResult<RoleAssignment> {
        let detail = json!({"grantee_given": r.grantee, "role": r.role.code()});
        self.gate
            .run(caller, Change::GrantRole, detail, |w| async move {
                if !r.role.assignable() {
                    return Err(AdminError::invalid(
                        "Role",
                        format!("Role {} cannot be assigned", r.role.code()),
                    ));
                }
                let client_id = if r.role.per_application() {
                    match r.client_id.filter(|c| !c.is_empty()) {
                        Some(c) => Some(c),
                        None => {
                            return Err(AdminError::invalid(
                                "ApplicationId",
                                "ApplicationId is required for the Owner and Maintainer roles",
                            ))
                        }
                    }
                } else {
                    None
                };
                match &client_id {
                    Some(c) => {
                        caller.check(Need::OwnApp(c))?;
                        self.existing_app(c).await?;
                    }
                    None => caller.check(Need::Admin)?,
                }
                let assignment = RoleAssignment {
                    grantee: self.resolve(&r.grantee, false).await?,
                    role: r.role,
                    client_id: client_id.map(ClientId::from),
                };
                match w.store().add_role(&assignment).await {
                    // Granting a role already held is not an error.
                    Err(StoreError::Conflict) | Ok(()) => Ok(assignment),
                    Err(e) => Err(e.into()),
                }
            })
            .await
    }

    /// Takes a role away: on one application, or (without one) on all; how many assignments.
    pub async fn revoke_role(
        &self,
        caller: &Caller,
        grantee: &str,
        role: Role,
        client_id: Option<&str>,
    ) -> AdminResult<u64> {
        let detail = json!({"grantee_given": grantee, "role": role.code(), "client_id": client_id});
        self.gate
            .run(caller, Change::RevokeRole, detail, |w| async move {
                match client_id {
                    Some(c) if role.per_application() => caller.check(Need::OwnApp(c))?,
                    _ => caller.check(Need::Admin)?,
                }
                let on = if role.per_application() {
                    client_id
                } else {
                    None
                };
                let key = self.key_of(grantee).await?;
                let n = w.store().remove_role(&key, role, on).await?;
                if n == 0 {
                    return Err(AdminError::NotFound(Entity::RoleAssignment {
                        grantee: key.into_string(),
                        role: role.code(),
                    }));
                }
                Ok(n)
            })
            .await
    }

    /// Role assignments, of everyone or of one grantee (any name form).
    pub async fn list_roles(
        &self,
        caller: &Caller,
        grantee: Option<&str>,
    ) -> AdminResult<Vec<RoleAssignment>> {
        let key = match grantee {
            Some(g) => Some(self.key_of(g).await?),
            None => None,
        };
        let all = self.reads.roles(key.as_deref()).await?;
        if caller.check(Need::ReadAll).is_ok() {
            return Ok(all);
        }
        // An Owner sees the roles on its own applications, and nothing else.
        let owned: BTreeSet<String> = caller.owned();
        if owned.is_empty() {
            caller.check(Need::ReadAll)?;
        }
        Ok(all
            .into_iter()
            .filter(|r| {
                r.client_id
                    .as_ref()
                    .is_some_and(|c| owned.contains(c.as_str()))
            })
            .collect())
    }

    pub async fn get_role(&self, caller: &Caller) -> AdminResult<RoleInfo> {
        let Caller::Identity { roles, .. } = caller else {
            return Ok(RoleInfo {
                role: Role::Admin,
                permitted_applications: Vec::new(),
                owned_applications: Vec::new(),
            });
        };
        let system = roles
            .iter()
            .filter(|r| r.client_id.is_none())
            .map(|r| r.role)
            .max();
        if let Some(role) = system {
            return Ok(RoleInfo {
                role,
                permitted_applications: Vec::new(),
                owned_applications: Vec::new(),
            });
        }
        let per_app: Vec<(String, Role)> = roles
            .iter()
            .filter_map(|r| r.client_id.clone().map(|c| (c, r.role)))
            .collect();
        let kinds: BTreeSet<Role> = per_app.iter().map(|(_, r)| *r).collect();
        let role = match (
            kinds.contains(&Role::Owner),
            kinds.contains(&Role::Maintainer),
        ) {
            (true, true) => Role::MixedOwnerMaintainer,
            (true, false) => Role::Owner,
            (false, true) => Role::Maintainer,
            (false, false) => Role::User,
        };
        Ok(RoleInfo {
            role,
            permitted_applications: per_app.iter().map(|(c, _)| c.clone()).collect(),
            owned_applications: per_app,
        })
    }
}
