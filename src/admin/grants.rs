//! Grants: listing and revoking (docs/protocol.md §13).

use serde_json::json;

use super::audited::Change;
use super::policy::Need;
use super::{Admin, AdminError, AdminResult, Caller, Page};
use crate::domain::{ClientId, Identity};
use crate::domain::{Grant, GrantFilter};

impl Admin {
    /// Grants of an identity, of an application, of both, or (None, None) all of them.
    pub async fn grants(
        &self,
        caller: &Caller,
        identity: Option<&str>,
        client_id: Option<&str>,
        page: Page,
    ) -> AdminResult<Vec<Grant>> {
        match (identity, client_id) {
            (Some(i), _) => caller.check(Need::ReadIdentity(i))?,
            (None, Some(c)) => caller.check(Need::ReadApp(c))?,
            (None, None) => caller.check(Need::ReadAll)?,
        }
        let filter = GrantFilter {
            client_id: client_id.map(ClientId::from),
            identity: identity.map(Identity::from),
        };
        self.reads.page_grants(&filter, page.window()).await
    }

    /// Revokes the grants of an identity, of an application, or of both together; how many.
    pub async fn revoke_grants(
        &self,
        caller: &Caller,
        identity: Option<&str>,
        client_id: Option<&str>,
    ) -> AdminResult<usize> {
        let detail = json!({"identity": identity, "client_id": client_id});
        self.gate
            .run(caller, Change::RevokeGrants, detail, |w| async move {
                match (identity, client_id) {
                    (None, None) => {
                        return Err(AdminError::invalid(
                            "GranteePrefixedUniversal",
                            "GranteePrefixedUniversal or ApplicationId is required",
                        ))
                    }
                    (Some(i), None) => caller.check(Need::RevokeIdentity(i))?,
                    (None, Some(c)) => caller.check(Need::RevokeApp(c))?,
                    (Some(i), Some(c)) => caller
                        .check(Need::RevokeIdentity(i))
                        .or_else(|_| caller.check(Need::RevokeApp(c)))?,
                }
                if let Some(c) = client_id {
                    self.existing_app(c).await?;
                }
                Ok(w.revocations
                    .revoke_matching(&GrantFilter {
                        client_id: client_id.map(ClientId::from),
                        identity: identity.map(Identity::from),
                    })
                    .await?)
            })
            .await
    }

    /// Revokes every grant there is (the operator's `grant revoke --all`); how many.
    pub async fn revoke_all_grants(&self, caller: &Caller) -> AdminResult<usize> {
        self.gate
            .run(
                caller,
                Change::RevokeGrants,
                json!({"all": true}),
                |w| async move {
                    caller.check(Need::Admin)?;
                    Ok(w.revocations
                        .revoke_matching(&GrantFilter::default())
                        .await?)
                },
            )
            .await
    }
}
