//! The one path by which administration changes anything.
//!
//! [`Reads`] is the store without its write methods; [`Writes`] (the store's writes and the
//! engine's revocations) exists only inside [`Gate::run`], which records every change in the
//! audit trail. Operations in the sibling modules cannot reach the fields that hold them, so
//! a change that escapes the audit trail does not compile.

use std::future::Future;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{AdminError, AdminResult, Caller, Revocations};
use crate::audit::{Audit, Event};
use crate::domain::{
    Application, ClientId, Grant, GrantCounts, GrantFilter, IssuerRecord, JwtMapping,
    RoleAssignment, Rule, Settings, SharedStore, Store, User, Window,
};

/// Every kind of change, named as the audit trail names it (the event's `cause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    CreateApplication,
    UpdateApplication,
    DeleteApplication,
    CreateRule,
    UpdateRule,
    DeleteRules,
    RevokeGrants,
    GrantRole,
    RevokeRole,
    SetConfiguration,
    AddUser,
    ChangePassword,
    DisableUser,
    EnableUser,
    RemoveUser,
    UnlockUser,
    SetClientSecret,
    RemoveClientSecret,
    CreateJwtMapping,
    UpdateJwtMapping,
    DeleteJwtMapping,
    AddIssuers,
    RemoveIssuer,
}

impl Change {
    pub fn name(self) -> &'static str {
        match self {
            Change::CreateApplication => "create_application",
            Change::UpdateApplication => "update_application",
            Change::DeleteApplication => "delete_application",
            Change::CreateRule => "create_rule",
            Change::UpdateRule => "update_rule",
            Change::DeleteRules => "delete_rule",
            Change::RevokeGrants => "revoke_grants",
            Change::GrantRole => "grant_role",
            Change::RevokeRole => "revoke_role",
            Change::SetConfiguration => "set_configuration",
            Change::AddUser => "add_user",
            Change::ChangePassword => "change_password",
            Change::DisableUser => "disable_user",
            Change::EnableUser => "enable_user",
            Change::RemoveUser => "remove_user",
            Change::UnlockUser => "unlock",
            Change::SetClientSecret => "set_client_secret",
            Change::RemoveClientSecret => "remove_client_secret",
            Change::CreateJwtMapping => "create_jwt_mapping",
            Change::UpdateJwtMapping => "update_jwt_mapping",
            Change::DeleteJwtMapping => "delete_jwt_mapping",
            Change::AddIssuers => "add_trusted_issuers",
            Change::RemoveIssuer => "remove_trusted_issuer",
        }
    }

    /// Whether the change can touch what the grant core keeps in memory: the settings, an
    /// application, or a rule (removing a user removes the rules naming it).
    fn touches_policy(self) -> bool {
        matches!(
            self,
            Change::CreateApplication
                | Change::UpdateApplication
                | Change::DeleteApplication
                | Change::CreateRule
                | Change::UpdateRule
                | Change::DeleteRules
                | Change::SetConfiguration
                | Change::RemoveUser
        )
    }
}

/// What a finished change adds to its audit record (counts, the identity a name resolved to).
pub(super) trait Summary {
    fn summarize(&self, _detail: &mut Map<String, Value>) {}
}

impl Summary for () {}

impl Summary for bool {
    fn summarize(&self, d: &mut Map<String, Value>) {
        d.insert("changed".into(), json!(self));
    }
}

impl Summary for usize {
    fn summarize(&self, d: &mut Map<String, Value>) {
        d.insert("count".into(), json!(self));
    }
}

impl Summary for u64 {
    fn summarize(&self, d: &mut Map<String, Value>) {
        d.insert("count".into(), json!(self));
    }
}

impl Summary for Application {
    fn summarize(&self, d: &mut Map<String, Value>) {
        d.insert("client_id".into(), json!(self.client_id));
        d.insert("scope".into(), json!(self.max_scope));
    }
}

impl Summary for Rule {
    fn summarize(&self, d: &mut Map<String, Value>) {
        d.insert("client_id".into(), json!(self.client_id));
        d.insert("trustee".into(), json!(self.trustee));
        d.insert("max_scope".into(), json!(self.max_scope));
    }
}

impl Summary for Vec<Rule> {
    fn summarize(&self, d: &mut Map<String, Value>) {
        let rules: Vec<Value> = self
            .iter()
            .map(|r| json!({"client_id": r.client_id, "trustee": r.trustee}))
            .collect();
        d.insert("rules".into(), Value::Array(rules));
    }
}

impl Summary for RoleAssignment {
    fn summarize(&self, d: &mut Map<String, Value>) {
        d.insert("grantee".into(), json!(self.grantee));
        d.insert("role".into(), json!(self.role));
        d.insert("client_id".into(), json!(self.client_id));
    }
}

impl Summary for super::UserInfo {
    fn summarize(&self, d: &mut Map<String, Value>) {
        d.insert("user".into(), json!(self.name));
        d.insert("identity".into(), json!(self.identity));
    }
}

impl Summary for super::users::Removal {
    fn summarize(&self, d: &mut Map<String, Value>) {
        d.insert("grants_revoked".into(), json!(self.grants));
        d.insert("rules_removed".into(), json!(self.rules));
        d.insert("roles_removed".into(), json!(self.roles));
    }
}

impl Summary for JwtMapping {
    fn summarize(&self, d: &mut Map<String, Value>) {
        d.insert("mapping".into(), json!(self.name));
        d.insert("issuer".into(), json!(self.issuer_uri));
    }
}

/// Read access to the store, for everything that only looks.
#[derive(Debug, Clone)]
pub(super) struct Reads(SharedStore);

impl Reads {
    pub(super) fn new(store: SharedStore) -> Self {
        Self(store)
    }
    pub(super) async fn user_by_name(&self, name: &str) -> AdminResult<Option<User>> {
        Ok(self.0.user_by_name(name).await?)
    }
    pub(super) async fn user_by_id(&self, id: &str) -> AdminResult<Option<User>> {
        Ok(self.0.user_by_id(id).await?)
    }
    pub(super) async fn list_users(&self) -> AdminResult<Vec<User>> {
        Ok(self.0.list_users().await?)
    }
    pub(super) async fn application(&self, client_id: &str) -> AdminResult<Option<Application>> {
        Ok(self.0.application(client_id).await?)
    }
    pub(super) async fn list_applications(&self) -> AdminResult<Vec<Application>> {
        Ok(self.0.list_applications().await?)
    }
    pub(super) async fn rules(&self, client_id: Option<&str>) -> AdminResult<Vec<Rule>> {
        Ok(self.0.rules(client_id).await?)
    }
    pub(super) async fn roles(&self, grantee: Option<&str>) -> AdminResult<Vec<RoleAssignment>> {
        Ok(self.0.roles(grantee).await?)
    }
    pub(super) async fn settings(&self) -> AdminResult<Settings> {
        Ok(self.0.settings().await?)
    }
    pub(super) async fn page_grants(
        &self,
        filter: &GrantFilter,
        window: Window,
    ) -> AdminResult<Vec<Grant>> {
        Ok(self.0.page_grants(filter, window).await?)
    }
    pub(super) async fn grant_counts(
        &self,
        client_ids: &[ClientId],
    ) -> AdminResult<Vec<(ClientId, GrantCounts)>> {
        Ok(self.0.grant_counts(client_ids).await?)
    }
    pub(super) async fn client_secret(
        &self,
        client_id: &str,
    ) -> AdminResult<Option<crate::domain::ClientSecret>> {
        Ok(self.0.client_secret(client_id).await?)
    }
    pub(super) async fn jwt_mapping(&self, name: &str) -> AdminResult<Option<JwtMapping>> {
        Ok(self.0.jwt_mapping(name).await?)
    }
    pub(super) async fn list_jwt_mappings(&self) -> AdminResult<Vec<JwtMapping>> {
        Ok(self.0.list_jwt_mappings().await?)
    }
    pub(super) async fn list_issuers(&self) -> AdminResult<Vec<IssuerRecord>> {
        Ok(self.0.list_issuers().await?)
    }
}

/// What a change may write with. Only [`Gate::run`] hands one out.
#[derive(Debug, Clone)]
pub(super) struct Writes {
    pub(super) store: SharedStore,
    pub(super) revocations: Arc<dyn Revocations>,
}

impl Writes {
    pub(super) fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
}

/// Runs changes and records each in the audit trail.
#[derive(Debug, Clone)]
pub(super) struct Gate {
    writes: Writes,
    audit: Arc<Audit>,
}

impl Gate {
    pub(super) fn new(
        store: SharedStore,
        revocations: Arc<dyn Revocations>,
        audit: Arc<Audit>,
    ) -> Self {
        Self {
            writes: Writes { store, revocations },
            audit,
        }
    }

    /// The trail's file, for reading it back (None: off or standard output).
    pub(super) fn trail_path(&self) -> Option<std::path::PathBuf> {
        self.audit.path().map(std::path::Path::to_path_buf)
    }

    /// Runs one change for `caller` and audits its outcome: `admin_change` (with `detail` and
    /// what the change reports) when done, `admin_refused` when refused. A refusal because the
    /// store is unavailable is not audited (nothing was decided). With a trail that fails
    /// closed, an unwritable trail makes a done change answer "unavailable"; the change is
    /// then logged here, so that it is never silent.
    pub(super) async fn run<T, F, Fut>(
        &self,
        caller: &Caller,
        change: Change,
        detail: Value,
        work: F,
    ) -> AdminResult<T>
    where
        T: Summary,
        F: FnOnce(Writes) -> Fut,
        Fut: Future<Output = AdminResult<T>>,
    {
        let mut detail = match detail {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => Map::from_iter([("value".to_string(), other)]),
        };
        let result = work(self.writes.clone()).await;
        // Announced whatever the outcome: a change that failed half-way (the store went away
        // between two writes) may have written something. Refusals before any write cost one
        // needless reread.
        if change.touches_policy() {
            self.writes.revocations.policy_changed().await;
        }
        match &result {
            Ok(done) => {
                done.summarize(&mut detail);
                if let Err(e) = self.record(caller, change, "admin_change", detail.clone()) {
                    let detail = Value::Object(detail);
                    tracing::error!(
                        change = change.name(),
                        by = caller.name(),
                        %detail,
                        error = %e,
                        "administration change done but not audited"
                    );
                    return Err(AdminError::from(e));
                }
            }
            Err(AdminError::Unavailable(_)) => {}
            Err(refusal) => {
                detail.insert("reason".into(), json!(refusal.to_string()));
                if let Err(e) = self.record(caller, change, "admin_refused", detail) {
                    tracing::error!(change = change.name(), error = %e, "refused administration change not audited");
                }
            }
        }
        result
    }

    fn record(
        &self,
        caller: &Caller,
        change: Change,
        event: &'static str,
        mut detail: Map<String, Value>,
    ) -> Result<(), crate::audit::AuditError> {
        if change == Change::UnlockUser && event == "admin_change" {
            // The lockout's own pair of events: `lockout` and `unlock`, both about the identity.
            let subject = detail
                .remove("identity")
                .and_then(|v| v.as_str().map(str::to_string));
            detail.insert("by".into(), json!(caller.name()));
            return self.audit.record(&Event {
                event: "unlock",
                identity: subject.as_deref(),
                detail: Some(Value::Object(detail)),
                ..Default::default()
            });
        }
        self.audit.record(&Event {
            event,
            cause: Some(change.name()),
            identity: Some(caller.name()),
            detail: Some(Value::Object(detail)),
            ..Default::default()
        })
    }
}
