//! Administration of token authentication: applications, rules, grants, roles and the global
//! configuration (admin-api.md). The HTTP administration API and the command line both call
//! these operations, so they cannot disagree; they differ only in who the caller is.

use std::collections::BTreeSet;

use crate::app::App;
use crate::scope::Scope;
use crate::store::{
    Application, Grant, GrantFilter, Lifetime, RoleAssignment, Rule, Settings, StoreError,
};

/// `Web_SDK_Authentication_OAuthResult` (admin-api.md §2.5): the `Result` of the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultCode {
    Success = 0,
    Failure = 1,
    ApplicationNotFound = 2,
    GrantNotFound = 3,
    RuleNotFound = 4,
    DriverError = 5,
    InvalidParameters = 6,
    InsufficientPrivileges = 9,
    InvalidScope = 17,
    RemoteIdentityRequired = 18,
    ApplicationAlreadyExists = 19,
    RuleAlreadyExists = 20,
    ScopeMismatch = 23,
}

/// OAuth roles (admin-api.md §2.6).
pub mod role {
    pub const USER: i32 = 0;
    pub const AUDITOR: i32 = 1;
    pub const MAINTAINER: i32 = 2;
    pub const OWNER: i32 = 3;
    pub const MIXED_OWNER_MAINTAINER: i32 = 4;
    pub const GRANT_ADMIN: i32 = 5;
    pub const ADMIN: i32 = 6;
    pub fn assignable(r: i32) -> bool {
        matches!(r, AUDITOR | MAINTAINER | OWNER | GRANT_ADMIN | ADMIN)
    }
    pub fn per_application(r: i32) -> bool {
        matches!(r, MAINTAINER | OWNER)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AdminError {
    /// The call was understood but could not be done: HTTP 200 with `Success: false`.
    #[error("{1}")]
    Refused(ResultCode, String),
    /// The caller holds no role that allows the operation (HTTP 401 `insufficient_rights`).
    #[error("insufficient rights")]
    NoRole,
    /// The request is malformed or lacks what the operation cannot do without (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// The store cannot be reached (HTTP 503).
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError::Unavailable(e.to_string())
    }
}

fn refused(code: ResultCode, msg: impl Into<String>) -> AdminError {
    AdminError::Refused(code, msg.into())
}

pub type AdminResult<T> = Result<T, AdminError>;

/// Who is asking.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The operator at the command line: the store's owner, every right.
    Operator,
    /// An identity with a token holding the `admin` scope, and its role assignments.
    Identity {
        identity: String,
        roles: Vec<RoleAssignment>,
    },
}

/// What an operation needs of the caller.
#[derive(Debug, Clone, Copy)]
enum Need<'a> {
    /// Any identity (the implicit User role).
    Anyone,
    Admin,
    /// Admin, GrantAdmin or Auditor.
    ReadAll,
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
    fn system_roles(&self) -> BTreeSet<i32> {
        match self {
            Caller::Operator => [role::ADMIN].into(),
            Caller::Identity { roles, .. } => roles
                .iter()
                .filter(|r| r.client_id.is_none())
                .map(|r| r.role)
                .collect(),
        }
    }

    fn app_role(&self, client_id: &str, wanted: &[i32]) -> bool {
        match self {
            Caller::Operator => true,
            Caller::Identity { roles, .. } => roles
                .iter()
                .any(|r| r.client_id.as_deref() == Some(client_id) && wanted.contains(&r.role)),
        }
    }

    fn has_any_app_role(&self) -> bool {
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

    fn is(&self, identity: &str) -> bool {
        matches!(self, Caller::Identity { identity: me, .. } if me.eq_ignore_ascii_case(identity))
    }

    fn check(&self, need: Need<'_>) -> AdminResult<()> {
        use role::*;
        let sys = self.system_roles();
        let any_of = |rs: &[i32]| rs.iter().any(|r| sys.contains(r));
        let ok = match need {
            Need::Anyone => true,
            Need::Admin => any_of(&[ADMIN]),
            Need::ReadAll => any_of(&[ADMIN, GRANT_ADMIN, AUDITOR]),
            Need::ReadApp(c) => {
                any_of(&[ADMIN, GRANT_ADMIN, AUDITOR]) || self.app_role(c, &[OWNER, MAINTAINER])
            }
            Need::ManageApp(c) => any_of(&[ADMIN]) || self.app_role(c, &[OWNER, MAINTAINER]),
            Need::OwnApp(c) => any_of(&[ADMIN]) || self.app_role(c, &[OWNER]),
            Need::RevokeApp(c) => any_of(&[ADMIN, GRANT_ADMIN]) || self.app_role(c, &[OWNER]),
            Need::RevokeIdentity(i) => any_of(&[ADMIN, GRANT_ADMIN]) || self.is(i),
            Need::ReadIdentity(i) => any_of(&[ADMIN, GRANT_ADMIN, AUDITOR]) || self.is(i),
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
            Err(refused(
                ResultCode::InsufficientPrivileges,
                "The caller's role does not allow this operation",
            ))
        } else {
            Err(AdminError::NoRole)
        }
    }

    fn visible_apps(&self, apps: Vec<Application>) -> Vec<Application> {
        use role::*;
        let sys = self.system_roles();
        if [ADMIN, GRANT_ADMIN, AUDITOR]
            .iter()
            .any(|r| sys.contains(r))
        {
            return apps;
        }
        apps.into_iter()
            .filter(|a| self.app_role(&a.client_id, &[OWNER, MAINTAINER]))
            .collect()
    }
}

/// A scope string checked against the grammar, in canonical form; Result 17 otherwise.
pub fn canonical_scope(s: &str) -> AdminResult<String> {
    Scope::parse(s).map(|s| s.to_string()).map_err(|e| {
        refused(
            ResultCode::InvalidScope,
            format!("Scope '{}' is not valid", e.item()),
        )
    })
}

fn within(inner: &str, outer: &str) -> bool {
    match (Scope::parse(inner), Scope::parse(outer)) {
        (Ok(i), Ok(o)) => i.is_subset_of(&o),
        _ => false,
    }
}

/// Seconds, where the API allows a value: positive, or absent.
fn positive(v: Option<i64>, what: &str) -> AdminResult<Option<i64>> {
    match v {
        Some(n) if n <= 0 => Err(refused(
            ResultCode::InvalidParameters,
            format!("{what} must be a positive number of seconds"),
        )),
        other => Ok(other),
    }
}

/// What a caller gives to create or replace an application.
#[derive(Debug, Clone, Default)]
pub struct ApplicationInput {
    pub client_id: String,
    pub name: Option<String>,
    pub vendor: Option<String>,
    pub description: Option<String>,
    pub url: Option<String>,
    pub scope: Option<String>,
    pub max_scope: Option<String>,
    pub access_validity: Option<i64>,
    pub grant_validity: Option<Lifetime>,
    pub renewable: Option<bool>,
    pub unused_expiration: Option<i64>,
}

/// What a caller gives to create or replace a rule.
#[derive(Debug, Clone, Default)]
pub struct RuleInput {
    pub client_id: String,
    pub trustee: String,
    pub description: Option<String>,
    pub max_scope: Option<String>,
    pub access_validity: Option<i64>,
    pub grant_validity: Option<Lifetime>,
    pub renewable: Option<bool>,
}

/// Offset paging and ordering (admin-api.md §2.7).
#[derive(Debug, Clone, Copy, Default)]
pub struct Page {
    pub start: Option<usize>,
    pub count: Option<usize>,
    pub order_by: Option<i32>,
    pub descending: bool,
}

impl Page {
    fn apply<T>(&self, mut items: Vec<T>) -> Vec<T> {
        if self.descending {
            items.reverse();
        }
        let start = self.start.unwrap_or(0).min(items.len());
        let mut items = items.split_off(start);
        if let Some(c) = self.count {
            items.truncate(c);
        }
        items
    }
}

/// An application and its statistics.
#[derive(Debug, Clone)]
pub struct ApplicationInfo {
    pub app: Application,
    pub grant_count: u64,
    pub user_count: u64,
}

/// The caller's own role (GetRole).
#[derive(Debug, Clone, Default)]
pub struct RoleInfo {
    pub role: i32,
    pub permitted_applications: Vec<String>,
    pub owned_applications: Vec<(String, i32)>,
}

/// The administration operations, over one `App`.
#[derive(Debug, Clone, Copy)]
pub struct Admin<'a> {
    app: &'a App,
}

impl<'a> Admin<'a> {
    pub fn new(app: &'a App) -> Self {
        Self { app }
    }

    /// Records an administration change in the audit trail.
    fn audit(&self, caller: &Caller, op: &str, detail: serde_json::Value) -> AdminResult<()> {
        self.app
            .audit
            .record(&crate::audit::Event {
                event: "admin_change",
                cause: Some(op),
                identity: Some(caller.name()),
                detail: Some(detail),
                ..Default::default()
            })
            .map_err(|e| AdminError::Unavailable(e.to_string()))
    }

    /// The caller behind an identity, with its role assignments from the store.
    pub async fn caller(&self, identity: &str) -> AdminResult<Caller> {
        let roles = self.app.store.roles(Some(identity)).await?;
        Ok(Caller::Identity {
            identity: identity.to_string(),
            roles,
        })
    }

    async fn existing_app(&self, client_id: &str) -> AdminResult<Application> {
        self.app.store.application(client_id).await?.ok_or_else(|| {
            refused(
                ResultCode::ApplicationNotFound,
                format!("Application '{client_id}' not found"),
            )
        })
    }

    /// An identity a rule or role may name: `everyone` (rules only), a local user by name or
    /// universal, or an identity of a configured directory provider.
    async fn check_identity(&self, who: &str, allow_everyone: bool) -> AdminResult<()> {
        if allow_everyone && who.eq_ignore_ascii_case("everyone") {
            return Ok(());
        }
        let unknown = || {
            refused(
                ResultCode::RemoteIdentityRequired,
                format!("Identity '{who}' is not known"),
            )
        };
        let Some((prefix, rest)) = who.split_once(':') else {
            return Err(unknown());
        };
        if prefix.eq_ignore_ascii_case("local") {
            let exists = if rest.starts_with('{') {
                self.app
                    .engine
                    .identities()
                    .resolve(who)
                    .await
                    .map_err(|e| AdminError::Unavailable(e.to_string()))?
                    .is_some()
            } else {
                self.app.store.user_by_name(rest).await?.is_some()
            };
            return if exists { Ok(()) } else { Err(unknown()) };
        }
        if self.app.engine.identities().knows_prefix(prefix) && !rest.is_empty() {
            Ok(())
        } else {
            Err(unknown())
        }
    }

    // --- Applications -------------------------------------------------------------------

    fn build_application(
        &self,
        input: ApplicationInput,
        created_at: i64,
    ) -> AdminResult<Application> {
        if input.client_id.trim().is_empty() {
            return Err(refused(
                ResultCode::InvalidParameters,
                "ApplicationId is required",
            ));
        }
        let max_scope = match (&input.max_scope, &input.scope) {
            (Some(m), _) => canonical_scope(m)?,
            (None, Some(s)) => canonical_scope(s)?,
            (None, None) => {
                return Err(refused(
                    ResultCode::InvalidParameters,
                    "Scope or MaximumScope is required",
                ))
            }
        };
        let scope = match &input.scope {
            Some(s) => canonical_scope(s)?,
            None => max_scope.clone(),
        };
        if !within(&scope, &max_scope) {
            return Err(refused(
                ResultCode::ScopeMismatch,
                "Scope is not within MaximumScope",
            ));
        }
        Ok(Application {
            name: input.name.unwrap_or_else(|| input.client_id.clone()),
            client_id: input.client_id,
            vendor: input.vendor.unwrap_or_default(),
            description: input.description.unwrap_or_default(),
            url: input.url.unwrap_or_default(),
            scope,
            max_scope,
            access_validity: positive(input.access_validity, "AccessValidity")?,
            grant_validity: input.grant_validity,
            renewable: input.renewable,
            unused_expiration: input.unused_expiration,
            created_at,
        })
    }

    pub async fn create_application(
        &self,
        caller: &Caller,
        input: ApplicationInput,
    ) -> AdminResult<Application> {
        caller.check(Need::Admin)?;
        let app = self.build_application(input, self.app.clock.now())?;
        match self.app.store.create_application(&app).await {
            Err(StoreError::Conflict) => Err(refused(
                ResultCode::ApplicationAlreadyExists,
                format!("Application '{}' already exists", app.client_id),
            )),
            Err(e) => Err(e.into()),
            Ok(()) => {
                self.audit(
                    caller,
                    "create_application",
                    serde_json::json!({"client_id": app.client_id, "scope": app.max_scope}),
                )?;
                Ok(app)
            }
        }
    }

    /// Full replacement: what the input leaves out takes its default.
    pub async fn update_application(
        &self,
        caller: &Caller,
        input: ApplicationInput,
    ) -> AdminResult<Application> {
        caller.check(Need::ManageApp(&input.client_id))?;
        let old = self.existing_app(&input.client_id).await?;
        let app = self.build_application(input, old.created_at)?;
        if !self.app.store.update_application(&app).await? {
            return Err(refused(
                ResultCode::ApplicationNotFound,
                "Application not found",
            ));
        }
        self.audit(
            caller,
            "update_application",
            serde_json::json!({"client_id": app.client_id, "scope": app.max_scope}),
        )?;
        Ok(app)
    }

    /// Deletes the application, its rules and roles, and revokes its grants.
    pub async fn delete_application(&self, caller: &Caller, client_id: &str) -> AdminResult<usize> {
        caller.check(Need::OwnApp(client_id))?;
        let gone = self
            .app
            .store
            .delete_application(client_id)
            .await?
            .ok_or_else(|| {
                refused(
                    ResultCode::ApplicationNotFound,
                    format!("Application '{client_id}' not found"),
                )
            })?;
        self.app.engine.invalidate(&gone).await;
        tracing::info!(
            client_id,
            grants_revoked = gone.len(),
            "application deleted"
        );
        Ok(gone.len())
    }

    async fn info(&self, app: Application) -> AdminResult<ApplicationInfo> {
        let grants = self
            .app
            .store
            .list_grants(&GrantFilter {
                client_id: Some(app.client_id.clone()),
                identity: None,
            })
            .await?;
        let users: BTreeSet<&str> = grants.iter().map(|g| g.identity.as_str()).collect();
        Ok(ApplicationInfo {
            grant_count: grants.len() as u64,
            user_count: users.len() as u64,
            app,
        })
    }

    pub async fn get_application(
        &self,
        caller: &Caller,
        client_id: &str,
    ) -> AdminResult<ApplicationInfo> {
        caller.check(Need::ReadApp(client_id))?;
        let app = self.existing_app(client_id).await?;
        self.info(app).await
    }

    pub async fn enumerate_applications(
        &self,
        caller: &Caller,
        page: Page,
    ) -> AdminResult<Vec<ApplicationInfo>> {
        if !caller.has_any_app_role() {
            caller.check(Need::ReadAll)?;
        }
        let mut apps = caller.visible_apps(self.app.store.list_applications().await?);
        match page.order_by.unwrap_or(0) {
            1 => apps.sort_by_key(|a| a.name.to_lowercase()),
            2 => apps.sort_by_key(|a| a.vendor.to_lowercase()),
            3 => apps.sort_by_key(|a| a.access_validity),
            4 => apps.sort_by_key(|a| a.grant_validity.map(Lifetime::to_db)),
            _ => {}
        }
        let mut out = Vec::new();
        for a in page.apply(apps) {
            out.push(self.info(a).await?);
        }
        Ok(out)
    }

    /// GetApplications: by ids and/or a case-insensitive substring of id, name, vendor or
    /// description.
    pub async fn search_applications(
        &self,
        caller: &Caller,
        ids: &[String],
        filter: Option<&str>,
    ) -> AdminResult<Vec<ApplicationInfo>> {
        if !caller.has_any_app_role() {
            caller.check(Need::ReadAll)?;
        }
        let needle = filter.map(str::to_lowercase);
        let apps = caller
            .visible_apps(self.app.store.list_applications().await?)
            .into_iter()
            .filter(|a| ids.is_empty() || ids.iter().any(|i| i == &a.client_id))
            .filter(|a| {
                needle.as_deref().is_none_or(|n| {
                    [&a.client_id, &a.name, &a.vendor, &a.description]
                        .iter()
                        .any(|f| f.to_lowercase().contains(n))
                })
            })
            .collect::<Vec<_>>();
        let mut out = Vec::new();
        for a in apps {
            out.push(self.info(a).await?);
        }
        Ok(out)
    }

    // --- Rules --------------------------------------------------------------------------

    async fn build_rule(&self, input: RuleInput, created_at: i64) -> AdminResult<Rule> {
        if input.client_id.is_empty() || input.trustee.is_empty() {
            return Err(refused(
                ResultCode::InvalidParameters,
                "ApplicationId and TrusteePrefixedUniversal are required",
            ));
        }
        let app = self.existing_app(&input.client_id).await?;
        self.check_identity(&input.trustee, true).await?;
        let max_scope = input
            .max_scope
            .as_deref()
            .map(canonical_scope)
            .transpose()?;
        if let Some(m) = &max_scope {
            if !within(m, &app.max_scope) {
                return Err(refused(
                    ResultCode::ScopeMismatch,
                    format!(
                        "MaximumScope '{m}' is not within the application's scope '{}'",
                        app.max_scope
                    ),
                ));
            }
        }
        Ok(Rule {
            client_id: input.client_id,
            trustee: input.trustee,
            description: input.description.unwrap_or_default(),
            max_scope,
            access_validity: positive(input.access_validity, "AccessValidity")?,
            grant_validity: input.grant_validity,
            renewable: input.renewable,
            created_at,
        })
    }

    pub async fn create_rule(&self, caller: &Caller, input: RuleInput) -> AdminResult<Rule> {
        caller.check(Need::OwnApp(&input.client_id))?;
        let rule = self.build_rule(input, self.app.clock.now()).await?;
        match self.app.store.create_rule(&rule).await {
            Err(StoreError::Conflict) => Err(refused(
                ResultCode::RuleAlreadyExists,
                format!(
                    "A rule for '{}' on '{}' already exists",
                    rule.trustee, rule.client_id
                ),
            )),
            Err(e) => Err(e.into()),
            Ok(()) => {
                self.audit(caller, "create_rule", serde_json::json!({"client_id": rule.client_id, "trustee": rule.trustee, "max_scope": rule.max_scope}))?;
                Ok(rule)
            }
        }
    }

    /// Full replacement of the rule named by (application, trustee).
    pub async fn update_rule(&self, caller: &Caller, input: RuleInput) -> AdminResult<Rule> {
        caller.check(Need::OwnApp(&input.client_id))?;
        let existing = self.app.store.rules(Some(&input.client_id)).await?;
        let Some(old) = existing.iter().find(|r| r.trustee == input.trustee) else {
            return Err(refused(ResultCode::RuleNotFound, "Rule not found"));
        };
        let rule = self.build_rule(input, old.created_at).await?;
        if !self.app.store.update_rule(&rule).await? {
            return Err(refused(ResultCode::RuleNotFound, "Rule not found"));
        }
        self.audit(caller, "update_rule", serde_json::json!({"client_id": rule.client_id, "trustee": rule.trustee, "max_scope": rule.max_scope}))?;
        Ok(rule)
    }

    /// Deletes rules of an application, of a trustee, or the one rule of both. Existing grants
    /// live on (decisions.md §9).
    pub async fn delete_rules(
        &self,
        caller: &Caller,
        client_id: Option<&str>,
        trustee: Option<&str>,
    ) -> AdminResult<usize> {
        let targets: Vec<Rule> = match (client_id, trustee) {
            (None, None) => {
                return Err(AdminError::BadRequest(
                    "ApplicationId or TrusteePrefixedUniversal is required".into(),
                ))
            }
            (Some(c), _) => {
                caller.check(Need::OwnApp(c))?;
                self.app.store.rules(Some(c)).await?
            }
            (None, Some(_)) => {
                caller.check(Need::Admin)?;
                self.app.store.rules(None).await?
            }
        };
        let targets: Vec<Rule> = targets
            .into_iter()
            .filter(|r| trustee.is_none_or(|t| r.trustee == t))
            .collect();
        if targets.is_empty() {
            return Err(refused(ResultCode::RuleNotFound, "Rule not found"));
        }
        let mut n = 0;
        for r in &targets {
            if self.app.store.delete_rule(&r.client_id, &r.trustee).await? {
                n += 1;
                self.audit(
                    caller,
                    "delete_rule",
                    serde_json::json!({"client_id": r.client_id, "trustee": r.trustee}),
                )?;
            }
        }
        Ok(n)
    }

    /// GetRules: rules matching all of the given criteria.
    pub async fn find_rules(
        &self,
        caller: &Caller,
        client_id: Option<&str>,
        trustees: &[String],
        max_scope: Option<&str>,
        renewable: Option<bool>,
        no_expire: Option<bool>,
    ) -> AdminResult<Vec<Rule>> {
        match client_id {
            Some(c) => caller.check(Need::ReadApp(c))?,
            None => caller.check(Need::ReadAll)?,
        }
        let wanted_scope = max_scope.map(canonical_scope).transpose()?;
        Ok(self
            .app
            .store
            .rules(client_id)
            .await?
            .into_iter()
            .filter(|r| trustees.is_empty() || trustees.iter().any(|t| t == &r.trustee))
            .filter(|r| wanted_scope.is_none() || r.max_scope == wanted_scope)
            .filter(|r| renewable.is_none_or(|x| r.renewable == Some(x)))
            .filter(|r| no_expire.is_none_or(|x| (r.grant_validity == Some(Lifetime::Never)) == x))
            .collect())
    }

    pub async fn enumerate_rules(
        &self,
        caller: &Caller,
        client_id: Option<&str>,
        page: Page,
    ) -> AdminResult<Vec<Rule>> {
        let rules = self
            .find_rules(caller, client_id, &[], None, None, None)
            .await?;
        Ok(page.apply(rules))
    }

    // --- Grants -------------------------------------------------------------------------

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
        let grants = self
            .app
            .store
            .list_grants(&GrantFilter {
                client_id: client_id.map(str::to_string),
                identity: identity.map(str::to_string),
            })
            .await?;
        Ok(page.apply(grants))
    }

    /// Revokes the grants of an identity, of an application, or of both together.
    pub async fn revoke_grants(
        &self,
        caller: &Caller,
        identity: Option<&str>,
        client_id: Option<&str>,
    ) -> AdminResult<usize> {
        match (identity, client_id) {
            (None, None) => {
                return Err(AdminError::BadRequest(
                    "GranteePrefixedUniversal or ApplicationId is required".into(),
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
        let n = self
            .app
            .engine
            .revoke_matching(&GrantFilter {
                client_id: client_id.map(str::to_string),
                identity: identity.map(str::to_string),
            })
            .await
            .map_err(|e| AdminError::Unavailable(e.to_string()))?;
        self.audit(
            caller,
            "revoke_grants",
            serde_json::json!({"identity": identity, "client_id": client_id, "count": n}),
        )?;
        Ok(n)
    }

    pub async fn counts(&self, caller: &Caller, client_id: &str) -> AdminResult<ApplicationInfo> {
        caller.check(Need::ReadApp(client_id))?;
        let app = self.existing_app(client_id).await?;
        self.info(app).await
    }

    // --- Roles --------------------------------------------------------------------------

    pub async fn grant_role(&self, caller: &Caller, r: RoleAssignment) -> AdminResult<()> {
        if !role::assignable(r.role) {
            return Err(refused(
                ResultCode::InvalidParameters,
                format!("Role {} cannot be assigned", r.role),
            ));
        }
        let r = self.normalize_role(r)?;
        match &r.client_id {
            Some(c) => {
                caller.check(Need::OwnApp(c))?;
                self.existing_app(c).await?;
            }
            None => caller.check(Need::Admin)?,
        }
        self.check_identity(&r.grantee, false).await?;
        match self.app.store.add_role(&r).await {
            // Granting a role already held is not an error.
            Err(StoreError::Conflict) | Ok(()) => {}
            Err(e) => return Err(e.into()),
        }
        self.audit(
            caller,
            "grant_role",
            serde_json::json!({"grantee": r.grantee, "role": r.role, "client_id": r.client_id}),
        )
    }

    fn normalize_role(&self, mut r: RoleAssignment) -> AdminResult<RoleAssignment> {
        if role::per_application(r.role) {
            if r.client_id.as_deref().is_none_or(str::is_empty) {
                return Err(refused(
                    ResultCode::InvalidParameters,
                    "ApplicationId is required for the Owner and Maintainer roles",
                ));
            }
        } else {
            r.client_id = None;
        }
        Ok(r)
    }

    pub async fn revoke_role(
        &self,
        caller: &Caller,
        grantee: &str,
        role_id: i32,
        client_id: Option<&str>,
    ) -> AdminResult<u64> {
        match client_id {
            Some(c) if role::per_application(role_id) => caller.check(Need::OwnApp(c))?,
            _ => caller.check(Need::Admin)?,
        }
        let scope = if role::per_application(role_id) {
            client_id
        } else {
            None
        };
        let n = self.app.store.remove_role(grantee, role_id, scope).await?;
        if n == 0 {
            return Err(refused(ResultCode::Failure, "No such role assignment"));
        }
        self.audit(
            caller,
            "revoke_role",
            serde_json::json!({"grantee": grantee, "role": role_id, "client_id": scope}),
        )?;
        Ok(n)
    }

    pub async fn list_roles(
        &self,
        caller: &Caller,
        grantee: Option<&str>,
    ) -> AdminResult<Vec<RoleAssignment>> {
        let all = self.app.store.roles(grantee).await?;
        if caller.check(Need::ReadAll).is_ok() {
            return Ok(all);
        }
        // An Owner sees the roles on its own applications, and nothing else.
        let owned: BTreeSet<String> = match caller {
            Caller::Operator => BTreeSet::new(),
            Caller::Identity { roles, .. } => roles
                .iter()
                .filter(|r| r.role == role::OWNER)
                .filter_map(|r| r.client_id.clone())
                .collect(),
        };
        if owned.is_empty() {
            caller.check(Need::ReadAll)?;
        }
        Ok(all
            .into_iter()
            .filter(|r| r.client_id.as_ref().is_some_and(|c| owned.contains(c)))
            .collect())
    }

    pub async fn get_role(&self, caller: &Caller) -> AdminResult<RoleInfo> {
        let Caller::Identity { roles, .. } = caller else {
            return Ok(RoleInfo {
                role: role::ADMIN,
                ..RoleInfo::default()
            });
        };
        let system = roles
            .iter()
            .filter(|r| r.client_id.is_none())
            .map(|r| r.role)
            .max();
        if let Some(r) = system {
            return Ok(RoleInfo {
                role: r,
                ..RoleInfo::default()
            });
        }
        let per_app: Vec<(String, i32)> = roles
            .iter()
            .filter_map(|r| r.client_id.clone().map(|c| (c, r.role)))
            .collect();
        let kinds: BTreeSet<i32> = per_app.iter().map(|(_, r)| *r).collect();
        let role = match (
            kinds.contains(&role::OWNER),
            kinds.contains(&role::MAINTAINER),
        ) {
            (true, true) => role::MIXED_OWNER_MAINTAINER,
            (true, false) => role::OWNER,
            (false, true) => role::MAINTAINER,
            (false, false) => role::USER,
        };
        Ok(RoleInfo {
            role,
            permitted_applications: per_app.iter().map(|(c, _)| c.clone()).collect(),
            owned_applications: per_app,
        })
    }

    // --- Global configuration -----------------------------------------------------------

    pub async fn get_settings(&self, caller: &Caller) -> AdminResult<Settings> {
        caller.check(Need::Anyone)?;
        Ok(self.app.store.settings().await?)
    }

    /// Replaces the whole configuration (absent fields take their defaults).
    pub async fn set_settings(&self, caller: &Caller, s: Settings) -> AdminResult<()> {
        caller.check(Need::Admin)?;
        if s.default_access_token_validity <= 0 || s.default_grant_validity < 0 {
            return Err(refused(
                ResultCode::InvalidParameters,
                "DefaultAccessTokenValidity must be positive and DefaultGrantValidity not negative",
            ));
        }
        self.app.store.put_settings(&s).await?;
        self.audit(
            caller,
            "set_configuration",
            serde_json::to_value(&s).unwrap_or_default(),
        )?;
        Ok(())
    }

    // --- Users (command line) -----------------------------------------------------------

    /// Disables or enables a local user; disabling revokes the user's grants.
    pub async fn set_user_disabled(
        &self,
        caller: &Caller,
        name: &str,
        disabled: bool,
    ) -> AdminResult<usize> {
        caller.check(Need::Admin)?;
        let user = self.app.store.user_by_name(name).await?.ok_or_else(|| {
            refused(
                ResultCode::RemoteIdentityRequired,
                format!("No user named '{name}'"),
            )
        })?;
        self.app.store.set_user_disabled(&user.id, disabled).await?;
        let op = if disabled {
            "disable_user"
        } else {
            "enable_user"
        };
        self.audit(
            caller,
            op,
            serde_json::json!({"user": name, "identity": user.identity()}),
        )?;
        if !disabled {
            return Ok(0);
        }
        self.app
            .engine
            .revoke_matching(&GrantFilter {
                identity: Some(user.identity()),
                client_id: None,
            })
            .await
            .map_err(|e| AdminError::Unavailable(e.to_string()))
    }

    /// The lockout state of an identity (failures counted, locked until).
    pub async fn lock_state(&self, identity: &str) -> AdminResult<Option<crate::lockout::State>> {
        match self.app.engine.identities().lockout() {
            Some(l) => Ok(Some(l.state(identity).await?)),
            None => Ok(None),
        }
    }

    /// Ends a lockout early and forgets counted failures.
    pub async fn unlock(&self, caller: &Caller, identity: &str) -> AdminResult<bool> {
        caller.check(Need::Admin)?;
        let Some(l) = self.app.engine.identities().lockout() else {
            return Ok(false);
        };
        let was = l.unlock(identity).await?;
        self.app
            .audit
            .record(&crate::audit::Event {
                event: "unlock",
                identity: Some(identity),
                detail: Some(serde_json::json!({"by": caller.name(), "had_state": was})),
                ..Default::default()
            })
            .map_err(|e| AdminError::Unavailable(e.to_string()))?;
        Ok(was)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(roles: &[(i32, Option<&str>)]) -> Caller {
        Caller::Identity {
            identity: "local:{me}".into(),
            roles: roles
                .iter()
                .map(|(r, c)| RoleAssignment {
                    grantee: "local:{me}".into(),
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
        let auditor = caller(&[(role::AUDITOR, None)]);
        assert!(auditor.check(Need::ReadAll).is_ok());
        assert!(matches!(
            auditor.check(Need::Admin),
            Err(AdminError::Refused(ResultCode::InsufficientPrivileges, _))
        ));
        let owner = caller(&[(role::OWNER, Some("a"))]);
        assert!(owner.check(Need::OwnApp("a")).is_ok());
        assert!(owner.check(Need::ManageApp("a")).is_ok());
        assert!(matches!(
            owner.check(Need::OwnApp("b")),
            Err(AdminError::Refused(ResultCode::InsufficientPrivileges, _))
        ));
        let maintainer = caller(&[(role::MAINTAINER, Some("a"))]);
        assert!(maintainer.check(Need::ManageApp("a")).is_ok());
        assert!(maintainer.check(Need::OwnApp("a")).is_err());
        assert!(Caller::Operator.check(Need::Admin).is_ok());
    }

    #[test]
    fn paging() {
        let p = Page {
            start: Some(1),
            count: Some(2),
            order_by: None,
            descending: false,
        };
        assert_eq!(p.apply(vec![1, 2, 3, 4]), vec![2, 3]);
        let d = Page {
            descending: true,
            ..Page::default()
        };
        assert_eq!(d.apply(vec![1, 2, 3]), vec![3, 2, 1]);
        let far = Page {
            start: Some(10),
            ..Page::default()
        };
        assert_eq!(far.apply(vec![1, 2]), Vec::<i32>::new());
    }
}
