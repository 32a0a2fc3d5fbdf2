//! The pages, as askama templates (`templates/console/`, compiled into the binary and
//! HTML-escaped by default): what each page shows, already in words.

use askama::Template;

use super::session::Session;

/// What every page's frame shows: the title, where we are, who is signed in and what they may
/// see, the CSRF token for its forms, and a notice or error from the last action.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    pub title: String,
    pub here: &'static str,
    pub signed_in: bool,
    pub who: String,
    pub csrf: String,
    pub is_admin: bool,
    pub reads_all: bool,
    pub administers: bool,
    pub reads_jwt: bool,
    pub notice: String,
    pub error: String,
}

impl Frame {
    pub fn of(s: &Session, title: &str, here: &'static str) -> Self {
        Self {
            title: title.to_string(),
            here,
            signed_in: true,
            who: s.name.clone(),
            csrf: s.csrf.clone(),
            is_admin: s.is_admin(),
            reads_all: s.reads_all(),
            administers: s.administers(),
            reads_jwt: s.reads_jwt_mappings(),
            ..Self::default()
        }
    }
    pub fn anonymous(title: &str) -> Self {
        Self {
            title: title.to_string(),
            ..Self::default()
        }
    }
    /// The notice or error a redirect of ours carried (`?notice=`, `?error=`, with its
    /// signature under `key`); anything else in the address is not shown.
    pub fn with_messages(mut self, q: &super::Query, key: &str) -> Self {
        let sig = q.get("sig");
        for (k, slot) in [("notice", &mut self.notice), ("error", &mut self.error)] {
            let v = q.raw(k).unwrap_or("");
            if !v.is_empty()
                && !key.is_empty()
                && super::session::same_token(Some(&sig), &super::pages::message_sig(key, k, v))
            {
                *slot = v.to_string();
            }
        }
        self
    }
}

#[derive(Template)]
#[template(path = "console/signin.html")]
pub struct SigninPage {
    pub f: Frame,
    pub pre: String,
    pub next: String,
}

#[derive(Template)]
#[template(path = "console/home.html")]
pub struct HomePage {
    pub f: Frame,
}

#[derive(Template)]
#[template(path = "console/error.html")]
pub struct ErrorPage {
    pub f: Frame,
}

#[derive(Debug, Clone)]
pub struct PendingView {
    pub user_code: String,
    pub client_id: String,
    pub app_name: String,
    pub vendor: String,
    pub description: String,
    pub scope: String,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "console/device.html")]
pub struct DevicePage {
    pub f: Frame,
    pub typed: String,
    pub pending: Option<PendingView>,
}

#[derive(Debug, Clone)]
pub struct AppRow {
    pub client_id: String,
    pub name: String,
    pub vendor: String,
    pub scope: String,
    pub grants: usize,
    pub people: usize,
}

#[derive(Template)]
#[template(path = "console/integrations.html")]
pub struct IntegrationsPage {
    pub f: Frame,
    pub rows: Vec<AppRow>,
}

#[derive(Debug, Clone)]
pub struct RuleRow {
    pub trustee: String,
    pub name: String,
    pub max_scope: String,
}

#[derive(Template)]
#[template(path = "console/integration.html")]
pub struct IntegrationPage {
    pub f: Frame,
    pub client_id: String,
    pub name: String,
    pub vendor: String,
    pub description: String,
    pub scope: String,
    pub access_validity: String,
    pub grant_validity: String,
    pub rules: Vec<RuleRow>,
    pub grant_count: usize,
    pub people: usize,
    pub can_manage: bool,
    pub can_delete: bool,
}

#[derive(Debug, Clone)]
pub struct GrantRow {
    pub client_id: String,
    pub identity: String,
    pub name: String,
    pub scope: String,
    pub issued: String,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "console/grants.html")]
pub struct GrantsPage {
    pub f: Frame,
    pub client_id: String,
    pub identity: String,
    pub rows: Vec<GrantRow>,
    pub can_revoke: bool,
}

#[derive(Debug, Clone)]
pub struct UserRow {
    pub name: String,
    pub full_name: String,
    pub disabled: bool,
}

#[derive(Template)]
#[template(path = "console/users.html")]
pub struct UsersPage {
    pub f: Frame,
    pub rows: Vec<UserRow>,
}

#[derive(Debug, Clone)]
pub struct Switch {
    pub key: &'static str,
    pub label: &'static str,
    pub on: bool,
}

#[derive(Template)]
#[template(path = "console/settings.html")]
pub struct SettingsPage {
    pub f: Frame,
    pub switches: Vec<Switch>,
    pub access: i64,
    pub grant: i64,
    pub refreshable: bool,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
pub struct AuditPage {
    pub f: Frame,
    pub q: String,
    pub off: bool,
    pub rows: Vec<crate::admin::TrailEntry>,
}

/// A JWT mapping as the pages show and edit it (empty strings for absent fields).
#[derive(Debug, Clone, Default)]
pub struct MappingView {
    pub name: String,
    pub issuer_uri: String,
    pub jwks_uri: String,
    pub purpose_field: String,
    pub purpose_match: String,
    pub id_field: String,
    pub id_match: String,
    pub grantee: String,
}

#[derive(Template)]
#[template(path = "console/jwt_mappings.html")]
pub struct JwtMappingsPage {
    pub f: Frame,
    pub rows: Vec<MappingView>,
    /// The create form's values: the defaults, or what was typed when it was refused.
    pub new: MappingView,
}

#[derive(Template)]
#[template(path = "console/jwt_mapping.html")]
pub struct JwtMappingPage {
    pub f: Frame,
    pub m: MappingView,
}

#[derive(Debug, Clone)]
pub struct IssuerRow {
    pub fingerprint: String,
    pub subject: String,
    pub not_before: String,
    pub not_after: String,
    pub expired: bool,
    pub added: String,
}

#[derive(Template)]
#[template(path = "console/issuers.html")]
pub struct IssuersPage {
    pub f: Frame,
    pub rows: Vec<IssuerRow>,
    /// The PEM typed when it was refused, to correct rather than paste again.
    pub pem: String,
}
