//! `/vedsdk/oauth/*`: the token-authentication administration API (docs/protocol.md §13).
//!
//! Translation only. A request is checked in this order: the operation's name (404), the
//! bearer token and its `admin` scope (401/403, before a byte of the body is read), the
//! caller's identity still existing and enabled (401), the body (at most [`MAX_BODY`], 413;
//! JSON, 400), then parsed into one typed [`AdminOp`] and run by [`crate::admin::Admin`]. The
//! domain's refusals become TPP result codes here ([`result_code`]).

use axum::body::Body as HttpBody;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{json, Map, Value};

use super::super::common::{json_response, MAX_BODY};
use super::super::ApiState;
use super::vedsdk::{authorize, Requirement};
use super::VedauthError;
use crate::admin::{
    Admin, AdminError, ApplicationInfo, ApplicationInput, Caller, Entity, Page, Role, RoleGrant,
    RuleInput,
};
use crate::domain::{Grant, JwtMapping, Lifetime, RoleAssignment, Rule, Settings};
use crate::identity::lookup::{Kind, Named};
use crate::scope::CATALOGUE;
use crate::wire_time::{dotnet_date, iso8601};

/// `Web_SDK_Authentication_OAuthResult` (docs/protocol.md §13): the `Result` of the envelope.
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
    JwtMappingNotFound = 21,
    JwtMappingAlreadyExists = 22,
    ScopeMismatch = 23,
}

/// The result code a refusal is reported with in the envelope (HTTP 200, `Success: false`);
/// None for the refusals that are HTTP errors instead (no role, a caller gone, unavailable).
pub fn result_code(e: &AdminError) -> Option<ResultCode> {
    use ResultCode as R;
    Some(match e {
        AdminError::NotFound(Entity::Application(_)) => R::ApplicationNotFound,
        AdminError::NotFound(Entity::Rule { .. }) => R::RuleNotFound,
        AdminError::NotFound(Entity::RoleAssignment { .. } | Entity::Issuer(_)) => R::Failure,
        AdminError::NotFound(Entity::JwtMapping(_)) => R::JwtMappingNotFound,
        AdminError::AlreadyExists(Entity::JwtMapping(_)) => R::JwtMappingAlreadyExists,
        AdminError::NotFound(Entity::Identity(_) | Entity::User(_)) => R::RemoteIdentityRequired,
        AdminError::AlreadyExists(Entity::Application(_)) => R::ApplicationAlreadyExists,
        AdminError::AlreadyExists(Entity::Rule { .. }) => R::RuleAlreadyExists,
        AdminError::AlreadyExists(_) => R::Failure,
        AdminError::Invalid { .. } => R::InvalidParameters,
        AdminError::InvalidScope { .. } => R::InvalidScope,
        AdminError::ScopeExceeds(_) => R::ScopeMismatch,
        AdminError::Forbidden => R::InsufficientPrivileges,
        AdminError::NoRole | AdminError::CallerGone | AdminError::Unavailable(_) => return None,
    })
}

/// Whether a `Configuration` names its trusted issuers (`CertificateConfiguration.AuthorizedIssuerDns`
/// present and not null).
fn cert_lists_issuers(cfg: &serde_json::Map<String, Value>) -> bool {
    cfg.get("CertificateConfiguration")
        .and_then(|c| c.get("AuthorizedIssuerDns"))
        .is_some_and(|v| !v.is_null())
}

/// Why a request was not run: malformed (HTTP 400) or refused by the domain.
#[derive(Debug)]
enum Reject {
    BadRequest(String),
    Domain(AdminError),
}

impl From<AdminError> for Reject {
    fn from(e: AdminError) -> Self {
        Reject::Domain(e)
    }
}

fn bad(msg: impl Into<String>) -> Reject {
    Reject::BadRequest(msg.into())
}

/// Declares the operations once: the typed [`AdminOp`], its payload-free [`OpKind`], the
/// wire name of each, and [`OPERATIONS`]. Parsing (`AdminOp::parse`) matches on every kind,
/// so an operation cannot be listed without being parsed, nor parsed without being listed.
macro_rules! operations {
    ($( $(#[$doc:meta])* $variant:ident $({ $($field:ident : $ty:ty),* $(,)? })? => $name:literal ),* $(,)?) => {
        /// One administration call, parsed.
        #[derive(Debug)]
        pub enum AdminOp {
            $( $(#[$doc])* $variant $({ $($field: $ty),* })? ),*
        }

        /// The operations by name only.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum OpKind {
            $( $variant ),*
        }

        /// Every operation served under `/vedsdk/oauth/`, lower-cased.
        pub const OPERATIONS: &[&str] = &[$( $name ),*];

        impl OpKind {
            pub const ALL: &'static [OpKind] = &[$( OpKind::$variant ),*];

            /// The path segment, lower-cased.
            pub fn name(self) -> &'static str {
                match self {
                    $( OpKind::$variant => $name ),*
                }
            }

            /// Case-insensitive, as the vendor's method names are.
            pub fn from_name(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|k| k.name().eq_ignore_ascii_case(s))
            }
        }

        impl AdminOp {
            pub fn kind(&self) -> OpKind {
                match self {
                    $( AdminOp::$variant { .. } => OpKind::$variant ),*
                }
            }
        }
    };
}

operations! {
    GrantRole { grant: RoleGrant } => "grantrole",
    RevokeRole { grantee: String, role: Role, client_id: Option<String> } => "revokerole",
    ListRoles { grantee: Option<String>, resolve: bool } => "listroles",
    GetRole => "getrole",
    GetConfiguration => "getconfiguration",
    /// The whole configuration: what is left out takes its default.
    SetConfiguration { settings: Settings, keep_issuers: bool } => "setconfiguration",
    CreateApplication { input: ApplicationInput } => "createapplication",
    EnumerateApplications { page: Page } => "enumerateapplications",
    GetApplications { ids: Vec<String>, filter: Option<String> } => "getapplications",
    GetApplication { client_id: String } => "getapplication",
    UpdateApplication { input: ApplicationInput } => "updateapplication",
    DeleteApplication { client_id: String } => "deleteapplication",
    GetScopes => "getscopes",
    /// Without a grantee: the caller's own grants.
    GetGrants { grantee: Option<String>, client_id: Option<String>, page: Page, resolve: bool } => "getgrants",
    EnumerateGrants { client_id: String, page: Page, resolve: bool } => "enumerategrants",
    RevokeGrants { grantee: Option<String>, client_id: Option<String> } => "revokegrants",
    GrantCount { client_id: String } => "grantcount",
    UserCount { client_id: String } => "usercount",
    CreateRule { input: RuleInput } => "createrule",
    GetRules {
        client_id: Option<String>,
        trustees: Vec<String>,
        max_scope: Option<String>,
        renewable: Option<bool>,
        no_expire: Option<bool>,
        resolve: bool,
    } => "getrules",
    EnumerateRules { client_id: Option<String>, page: Page, resolve: bool } => "enumeraterules",
    UpdateRule { input: RuleInput } => "updaterule",
    DeleteRule { client_id: String, trustee: String } => "deleterule",
    /// At least one of the two.
    DeleteRules { client_id: Option<String>, trustee: Option<String> } => "deleterules",
    /// vedauth's own: a new client secret for the OAuth 2.0 face, returned this once.
    SetClientSecret { client_id: String } => "setclientsecret",
    /// vedauth's own: the application becomes a public client again.
    RemoveClientSecret { client_id: String } => "removeclientsecret",
    CreateJwtMapping { mapping: JwtMapping } => "createjwtmapping",
    EnumerateJwtMappings { page: Page, resolve: bool } => "enumeratejwtmappings",
    GetJwtMappings { filter: Option<String>, issuers: Vec<String>, resolve: bool } => "getjwtmappings",
    GetJwtMapping { name: String, resolve: bool } => "getjwtmapping",
    /// Full replacement of the mapping its `Name` names.
    UpdateJwtMapping { mapping: JwtMapping } => "updatejwtmapping",
    DeleteJwtMapping { name: String } => "deletejwtmapping",
}

/// The request body: a JSON object (absent or `null` bodies count as `{}`).
struct Body(Map<String, Value>);

impl Body {
    fn parse(bytes: &[u8]) -> Result<Self, VedauthError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(Map::new()));
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(m)) => Ok(Body(m)),
            Ok(Value::Null) => Ok(Body(Map::new())),
            _ => Err(VedauthError::malformed()),
        }
    }

    fn get(&self, k: &str) -> Option<&Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }

    fn str(&self, k: &str) -> Result<Option<String>, Reject> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!("{k} must be a string"))),
        }
    }

    /// An integer; one beyond 64 bits is refused as out of range rather than malformed.
    fn i64(&self, k: &'static str) -> Result<Option<i64>, Reject> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64()),
            Some(Value::Number(n)) if n.is_u64() => Err(Reject::Domain(AdminError::Invalid {
                field: k,
                msg: format!("{k} {n} is out of range"),
            })),
            Some(_) => Err(bad(format!("{k} must be an integer"))),
        }
    }

    fn bool(&self, k: &str) -> Result<Option<bool>, Reject> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| bad(format!("{k} must be true or false"))),
        }
    }

    fn strs(&self, k: &str) -> Result<Vec<String>, Reject> {
        match self.get(k) {
            None => Ok(vec![]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad(format!("{k} must be an array of strings")))
                })
                .collect(),
            Some(_) => Err(bad(format!("{k} must be an array of strings"))),
        }
    }

    fn object(&self, k: &str) -> Result<Body, Reject> {
        match self.get(k) {
            Some(Value::Object(m)) => Ok(Body(m.clone())),
            None => Err(bad(format!("{k} is required"))),
            Some(_) => Err(bad(format!("{k} must be an object"))),
        }
    }

    fn page(&self) -> Result<Page, Reject> {
        let nonneg = |k: &'static str| -> Result<Option<usize>, Reject> {
            match self.i64(k)? {
                None => Ok(None),
                Some(n) => usize::try_from(n)
                    .map(Some)
                    .map_err(|_| bad(format!("{k} must not be negative"))),
            }
        };
        let order_by = match self.i64("OrderBy")? {
            None => None,
            Some(n) => Some(i32::try_from(n).map_err(|_| {
                Reject::Domain(AdminError::Invalid {
                    field: "OrderBy",
                    msg: format!("OrderBy {n} is out of range"),
                })
            })?),
        };
        Ok(Page {
            start: nonneg("Start")?,
            count: nonneg("Count")?,
            order_by,
            descending: self.bool("Descending")?.unwrap_or(false),
        })
    }

    fn role(&self) -> Result<Role, Reject> {
        let n = self.i64("Role")?.ok_or_else(|| bad("Role is required"))?;
        Ok(Role::try_from(n).map_err(AdminError::from)?)
    }

    /// `GrantValidity`: absent/null = the default, 0 or less = never, else seconds.
    fn lifetime(&self, k: &'static str) -> Result<Option<Lifetime>, Reject> {
        Ok(self.i64(k)?.map(Lifetime::from_db))
    }

    fn resolve_identities(&self) -> Result<bool, Reject> {
        Ok(self.bool("ResolveIdentities")?.unwrap_or(false))
    }

    fn application(&self, id_key: &str) -> Result<ApplicationInput, Reject> {
        Ok(ApplicationInput {
            client_id: self.str(id_key)?.unwrap_or_default(),
            name: self.str("Name")?,
            vendor: self.str("Vendor")?,
            description: self.str("Description")?,
            url: self.str("Url")?,
            scope: self.str("Scope")?,
            max_scope: self.str("MaximumScope")?,
            access_validity: self.i64("AccessValidity")?,
            grant_validity: self.lifetime("GrantValidity")?,
            renewable: self.bool("Renewable")?,
            unused_expiration: self.i64("UnusedExpiration")?,
        })
    }

    fn rule(&self) -> Result<RuleInput, Reject> {
        Ok(RuleInput {
            client_id: self.str("ApplicationId")?.unwrap_or_default(),
            trustee: self.str("TrusteePrefixedUniversal")?.unwrap_or_default(),
            description: self.str("Description")?,
            max_scope: self.str("MaximumScope")?,
            access_validity: self.i64("AccessValidity")?,
            grant_validity: self.lifetime("GrantValidity")?,
            renewable: self.bool("Renewable")?,
        })
    }

    /// A JWT mapping (admin-api.md §3.4). Missing required fields are refused by the
    /// mapping's checks, with their name. The 26.2 documentation spells `JwksUri` `JWKSUrii`.
    fn jwt_mapping(&self) -> Result<JwtMapping, Reject> {
        let text = |k: &str| -> Result<String, Reject> { Ok(self.str(k)?.unwrap_or_default()) };
        Ok(JwtMapping {
            name: text("Name")?,
            issuer_uri: text("IssuerUri")?,
            jwks_uri: match self.str("JwksUri")? {
                Some(u) => Some(u),
                None => self.str("JWKSUrii")?,
            },
            purpose_field: text("PurposeField")?,
            purpose_match: text("PurposeMatch")?,
            id_field: text("IdField")?,
            id_match: text("IdMatch")?,
            grantee_prefixed_universal: self.str("GranteePrefixedUniversal")?,
        })
    }

    /// A field the operation cannot do without: refused with InvalidParameters when absent.
    fn required(&self, k: &'static str) -> Result<String, Reject> {
        self.str(k)?.ok_or_else(|| {
            Reject::Domain(AdminError::Invalid {
                field: k,
                msg: format!("{k} is required"),
            })
        })
    }
}

impl AdminOp {
    fn parse(kind: OpKind, b: &Body) -> Result<Self, Reject> {
        Ok(match kind {
            OpKind::GrantRole => AdminOp::GrantRole {
                grant: RoleGrant {
                    grantee: b.required("GranteePrefixedUniversal")?,
                    role: b.role()?,
                    client_id: b.str("ApplicationId")?,
                },
            },
            OpKind::RevokeRole => AdminOp::RevokeRole {
                role: b.role()?,
                grantee: b.required("GranteePrefixedUniversal")?,
                client_id: b.str("ApplicationId")?,
            },
            OpKind::ListRoles => AdminOp::ListRoles {
                grantee: b.str("GranteePrefixedUniversal")?,
                resolve: b.resolve_identities()?,
            },
            OpKind::GetRole => AdminOp::GetRole,
            OpKind::GetConfiguration => AdminOp::GetConfiguration,
            OpKind::SetConfiguration => {
                let cfg = b.object("Configuration")?;
                // Checked strictly here (a stored one is read leniently): an unknown
                // SourceField is the caller's mistake, named in the answer.
                let cert = match cfg.0.get("CertificateConfiguration") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(
                        serde_json::from_value::<crate::certauth::CertificateConfiguration>(
                            v.clone(),
                        )
                        .map_err(|e| bad(format!("Configuration.CertificateConfiguration: {e}")))?,
                    ),
                };
                // Without a list of issuers, the trusted issuers stay as they are: a client
                // that does not know them must not drop them all by leaving them out.
                let keep_issuers = !cert_lists_issuers(&cfg.0);
                let mut settings: Settings = serde_json::from_value(Value::Object(cfg.0))
                    .map_err(|e| bad(format!("Configuration: {e}")))?;
                if let Some(c) = cert {
                    settings.certificate_configuration = c;
                }
                AdminOp::SetConfiguration {
                    settings,
                    keep_issuers,
                }
            }
            OpKind::CreateApplication => AdminOp::CreateApplication {
                input: b.application("ApplicationId")?,
            },
            OpKind::EnumerateApplications => AdminOp::EnumerateApplications { page: b.page()? },
            OpKind::GetApplications => AdminOp::GetApplications {
                ids: b.strs("ApplicationIds")?,
                filter: b.str("Filter")?,
            },
            OpKind::GetApplication => AdminOp::GetApplication {
                client_id: b.required("ApplicationId")?,
            },
            OpKind::UpdateApplication => AdminOp::UpdateApplication {
                input: b.object("Application")?.application("ID")?,
            },
            OpKind::DeleteApplication => AdminOp::DeleteApplication {
                client_id: b.required("ApplicationId")?,
            },
            OpKind::GetScopes => AdminOp::GetScopes,
            OpKind::GetGrants => AdminOp::GetGrants {
                grantee: b.str("GranteePrefixedUniversal")?,
                client_id: b.str("ApplicationId")?,
                page: b.page()?,
                resolve: b.resolve_identities()?,
            },
            OpKind::EnumerateGrants => AdminOp::EnumerateGrants {
                client_id: b.required("ApplicationId")?,
                page: b.page()?,
                resolve: b.resolve_identities()?,
            },
            OpKind::RevokeGrants => {
                let (grantee, client_id) =
                    (b.str("GranteePrefixedUniversal")?, b.str("ApplicationId")?);
                if grantee.is_none() && client_id.is_none() {
                    return Err(bad("GranteePrefixedUniversal or ApplicationId is required"));
                }
                AdminOp::RevokeGrants { grantee, client_id }
            }
            OpKind::GrantCount => AdminOp::GrantCount {
                client_id: b.required("ApplicationId")?,
            },
            OpKind::UserCount => AdminOp::UserCount {
                client_id: b.required("ApplicationId")?,
            },
            OpKind::CreateRule => AdminOp::CreateRule { input: b.rule()? },
            OpKind::GetRules => {
                let mut trustees = b.strs("TrusteePrefixedUniversals")?;
                trustees.extend(b.str("TrusteePrefixedUniversal")?);
                AdminOp::GetRules {
                    client_id: b.str("ApplicationId")?,
                    trustees,
                    max_scope: b.str("MaximumScope")?,
                    renewable: b.bool("Renewable")?,
                    no_expire: b.bool("NoExpire")?,
                    resolve: b.resolve_identities()?,
                }
            }
            OpKind::EnumerateRules => AdminOp::EnumerateRules {
                client_id: b.str("ApplicationId")?,
                page: b.page()?,
                resolve: b.resolve_identities()?,
            },
            OpKind::UpdateRule => AdminOp::UpdateRule {
                input: b.object("Rule")?.rule()?,
            },
            OpKind::DeleteRule => AdminOp::DeleteRule {
                client_id: b.required("ApplicationId")?,
                trustee: b.required("TrusteePrefixedUniversal")?,
            },
            OpKind::DeleteRules => {
                let (client_id, trustee) =
                    (b.str("ApplicationId")?, b.str("TrusteePrefixedUniversal")?);
                if client_id.is_none() && trustee.is_none() {
                    return Err(bad("ApplicationId or TrusteePrefixedUniversal is required"));
                }
                AdminOp::DeleteRules { client_id, trustee }
            }
            OpKind::SetClientSecret => AdminOp::SetClientSecret {
                client_id: b.required("ApplicationId")?,
            },
            OpKind::RemoveClientSecret => AdminOp::RemoveClientSecret {
                client_id: b.required("ApplicationId")?,
            },
            OpKind::CreateJwtMapping => AdminOp::CreateJwtMapping {
                mapping: b.jwt_mapping()?,
            },
            OpKind::EnumerateJwtMappings => AdminOp::EnumerateJwtMappings {
                page: b.page()?,
                resolve: b.resolve_identities()?,
            },
            OpKind::GetJwtMappings => AdminOp::GetJwtMappings {
                filter: b.str("Filter")?,
                issuers: b.strs("IssuerUris")?,
                resolve: b.resolve_identities()?,
            },
            OpKind::GetJwtMapping => AdminOp::GetJwtMapping {
                name: b.required("Name")?,
                resolve: b.resolve_identities()?,
            },
            OpKind::UpdateJwtMapping => AdminOp::UpdateJwtMapping {
                mapping: b.object("JwtMapping")?.jwt_mapping()?,
            },
            OpKind::DeleteJwtMapping => AdminOp::DeleteJwtMapping {
                name: b.required("Name")?,
            },
        })
    }
}

fn lifetime_json(l: Option<Lifetime>) -> Value {
    match l {
        None => Value::Null,
        Some(l) => json!(l.to_db()),
    }
}

fn app_json(i: &ApplicationInfo) -> Value {
    let a = &i.app;
    json!({
        "ID": a.client_id,
        "Name": a.name,
        "Description": a.description,
        "Vendor": a.vendor,
        "Url": a.url,
        "Scope": a.scope,
        "MaximumScope": a.max_scope,
        "AccessValidity": a.access_validity,
        "GrantValidity": lifetime_json(a.grant_validity),
        "Renewable": a.renewable,
        "GrantCount": i.grant_count,
        "UserCount": i.user_count,
        "UnusedExpiration": a.unused_expiration,
    })
}

fn rule_json(r: &Rule) -> Value {
    json!({
        "ApplicationId": r.client_id,
        "TrusteePrefixedUniversal": r.trustee,
        "Description": r.description,
        "MaximumScope": r.max_scope,
        "AccessValidity": r.access_validity,
        "GrantValidity": lifetime_json(r.grant_validity),
        "Renewable": r.renewable,
    })
}

/// A grant as the admin API shows it. Only digests are stored, so the tokens are `null`.
fn grant_json(g: &Grant) -> Value {
    json!({
        "Scope": g.scope,
        "AccessToken": null,
        "ValidFor": g.access_expires_at - g.access_issued_at,
        "RefreshToken": null,
        "AccessIssuedOn": dotnet_date(g.access_issued_at),
        "AccessIssuedOnUnixTime": g.access_issued_at,
        "AccessIssuedOnISO8601": iso8601(g.access_issued_at),
        "Expires": g.expires_at.map(dotnet_date),
        "ExpiresUnixTime": g.expires_at.unwrap_or(0),
        "ExpiresISO8601": g.expires_at.map(iso8601),
        "GrantIssuedOn": dotnet_date(g.issued_at),
        "GrantIssuedOnUnixTime": g.issued_at,
        "GrantIssuedOnISO8601": iso8601(g.issued_at),
        "Application": g.client_id,
        "GranteePrefixedUniversal": g.identity,
        "GrantedToPrefixedUniversal": g.granted_to,
    })
}

fn jwt_mapping_json(m: &JwtMapping) -> Value {
    json!({
        "Name": m.name,
        "IssuerUri": m.issuer_uri,
        "JwksUri": m.jwks_uri(),
        "PurposeField": m.purpose_field,
        "PurposeMatch": m.purpose_match,
        "IdField": m.id_field,
        "IdMatch": m.id_match,
        "GranteePrefixedUniversal": m.grantee(),
    })
}

/// Mappings, with `IdentityEntries` for their fixed grantees when asked.
async fn jwt_mappings_reply(
    admin: &Admin,
    key: &str,
    mappings: &[JwtMapping],
    resolve: bool,
) -> Result<Map<String, Value>, AdminError> {
    let body = match key {
        "JwtMapping" => mappings
            .first()
            .map(jwt_mapping_json)
            .unwrap_or(Value::Null),
        _ => Value::Array(mappings.iter().map(jwt_mapping_json).collect()),
    };
    if !resolve {
        return Ok(one(key, body));
    }
    // A grantee may be a name: shown by the identity it names now.
    let mut ids = Vec::new();
    for g in mappings.iter().filter_map(JwtMapping::grantee) {
        if let Ok(id) = admin.identity_of(g).await {
            ids.push(id.to_string());
        }
    }
    let ids = ids.iter().map(String::as_str).collect();
    Ok(with_identities(admin, one(key, body), true, ids).await)
}

fn role_json(r: &RoleAssignment) -> Value {
    json!({"Role": r.role, "Grantee": r.grantee, "ApplicationId": r.client_id})
}

/// An identity as `Identity/Self` shows one (docs/protocol.md §13).
fn identity_entry(n: &Named) -> Value {
    let full_name = if n.prefix().eq_ignore_ascii_case("local") {
        format!("\\VED\\Identity\\{}", n.bare_name())
    } else {
        n.full_name.clone()
    };
    json!({
        "FullName": full_name,
        "Name": n.bare_name(),
        "Prefix": n.prefix(),
        "PrefixedName": n.name,
        "PrefixedUniversal": n.identity,
        // TPP identity types: 1 user, 2 security group.
        "Type": match n.kind { Kind::User => 1, Kind::Group => 2 },
        "Universal": n.universal(),
    })
}

fn one(key: &str, v: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(key.into(), v);
    m
}

/// Adds `IdentityEntries` (the current names of the identities listed) when asked.
async fn with_identities(
    admin: &Admin,
    mut m: Map<String, Value>,
    resolve: bool,
    ids: Vec<&str>,
) -> Map<String, Value> {
    if resolve {
        let names = admin.names(&ids).await;
        m.insert(
            "IdentityEntries".into(),
            Value::Array(names.values().map(identity_entry).collect()),
        );
    }
    m
}

/// Runs one operation.
async fn run(
    admin: &Admin,
    caller: &Caller,
    op: AdminOp,
) -> Result<Map<String, Value>, AdminError> {
    let empty = Map::new;
    Ok(match op {
        AdminOp::GrantRole { grant } => {
            admin.grant_role(caller, grant).await?;
            empty()
        }
        AdminOp::RevokeRole {
            grantee,
            role,
            client_id,
        } => {
            admin
                .revoke_role(caller, &grantee, role, client_id.as_deref())
                .await?;
            empty()
        }
        AdminOp::ListRoles { grantee, resolve } => {
            let roles = admin.list_roles(caller, grantee.as_deref()).await?;
            let m = one("Roles", Value::Array(roles.iter().map(role_json).collect()));
            let ids = roles.iter().map(|r| r.grantee.as_str()).collect();
            with_identities(admin, m, resolve, ids).await
        }
        AdminOp::GetRole => {
            let r = admin.get_role(caller).await?;
            let mut obj = json!({"Role": r.role.code()});
            if !r.owned_applications.is_empty() {
                obj["PermittedApplications"] = json!(r.permitted_applications);
                obj["OwnedApplications"] = Value::Array(
                    r.owned_applications
                        .iter()
                        .map(|(c, role)| json!({"ApplicationId": c, "Role": role.code()}))
                        .collect(),
                );
            }
            one("Role", obj)
        }
        AdminOp::GetConfiguration => {
            let s = admin.get_settings(caller).await?;
            one(
                "Configuration",
                serde_json::to_value(s).map_err(|e| AdminError::Unavailable(Box::new(e)))?,
            )
        }
        AdminOp::SetConfiguration {
            mut settings,
            keep_issuers,
        } => {
            if keep_issuers {
                settings.certificate_configuration.authorized_issuer_dns = admin
                    .get_settings(caller)
                    .await?
                    .certificate_configuration
                    .authorized_issuer_dns;
            }
            admin.set_settings(caller, settings).await?;
            empty()
        }
        AdminOp::CreateApplication { input } => {
            let a = admin.create_application(caller, input).await?;
            one(
                "Application",
                app_json(&ApplicationInfo {
                    app: a,
                    grant_count: 0,
                    user_count: 0,
                }),
            )
        }
        AdminOp::EnumerateApplications { page } => {
            let apps = admin.enumerate_applications(caller, page).await?;
            one(
                "Applications",
                Value::Array(apps.iter().map(app_json).collect()),
            )
        }
        AdminOp::GetApplications { ids, filter } => {
            let apps = admin
                .search_applications(caller, &ids, filter.as_deref())
                .await?;
            one(
                "Applications",
                Value::Array(apps.iter().map(app_json).collect()),
            )
        }
        AdminOp::GetApplication { client_id } => {
            let info = admin.get_application(caller, &client_id).await?;
            let mut m = one("Application", app_json(&info));
            // The vendor contract names this array; the docs and pyVenafi the object.
            m.insert("Applications".into(), json!([app_json(&info)]));
            m
        }
        AdminOp::UpdateApplication { input } => {
            admin.update_application(caller, input).await?;
            empty()
        }
        AdminOp::DeleteApplication { client_id } => {
            admin.delete_application(caller, &client_id).await?;
            empty()
        }
        AdminOp::GetScopes => {
            let scopes: Vec<Value> = CATALOGUE
                .iter()
                .map(|(n, p)| json!({"Scope": n, "RestrictionList": p}))
                .collect();
            one("Scopes", Value::Array(scopes))
        }
        AdminOp::GetGrants {
            grantee,
            client_id,
            page,
            resolve,
        } => {
            let who = grantee.or_else(|| caller.identity().map(str::to_string));
            let grants = admin
                .grants(caller, who.as_deref(), client_id.as_deref(), page)
                .await?;
            grants_reply(admin, &grants, resolve).await
        }
        AdminOp::EnumerateGrants {
            client_id,
            page,
            resolve,
        } => {
            let grants = admin.grants(caller, None, Some(&client_id), page).await?;
            grants_reply(admin, &grants, resolve).await
        }
        AdminOp::RevokeGrants { grantee, client_id } => {
            admin
                .revoke_grants(caller, grantee.as_deref(), client_id.as_deref())
                .await?;
            empty()
        }
        AdminOp::GrantCount { client_id } => {
            let i = admin.counts(caller, &client_id).await?;
            one("Count", json!(i.grant_count))
        }
        AdminOp::UserCount { client_id } => {
            let i = admin.counts(caller, &client_id).await?;
            one("Count", json!(i.user_count))
        }
        AdminOp::CreateRule { input } => {
            let r = admin.create_rule(caller, input).await?;
            one("Rule", rule_json(&r))
        }
        AdminOp::GetRules {
            client_id,
            trustees,
            max_scope,
            renewable,
            no_expire,
            resolve,
        } => {
            let rules = admin
                .find_rules(
                    caller,
                    client_id.as_deref(),
                    &trustees,
                    max_scope.as_deref(),
                    renewable,
                    no_expire,
                )
                .await?;
            rules_reply(admin, &rules, resolve).await
        }
        AdminOp::EnumerateRules {
            client_id,
            page,
            resolve,
        } => {
            let rules = admin
                .enumerate_rules(caller, client_id.as_deref(), page)
                .await?;
            rules_reply(admin, &rules, resolve).await
        }
        AdminOp::UpdateRule { input } => {
            admin.update_rule(caller, input).await?;
            empty()
        }
        AdminOp::DeleteRule { client_id, trustee } => {
            admin
                .delete_rules(caller, Some(&client_id), Some(&trustee))
                .await?;
            empty()
        }
        AdminOp::DeleteRules { client_id, trustee } => {
            admin
                .delete_rules(caller, client_id.as_deref(), trustee.as_deref())
                .await?;
            empty()
        }
        AdminOp::SetClientSecret { client_id } => {
            let s = admin.set_client_secret(caller, &client_id).await?;
            let mut m = one("ClientSecret", json!(s.secret.expose()));
            m.insert("ApplicationId".into(), json!(s.client_id));
            m.insert("Rotated".into(), json!(s.rotated));
            m
        }
        AdminOp::RemoveClientSecret { client_id } => {
            let had = admin.remove_client_secret(caller, &client_id).await?;
            one("Removed", json!(had))
        }
        AdminOp::CreateJwtMapping { mapping } => {
            let m = admin.create_jwt_mapping(caller, mapping).await?;
            one("JwtMapping", jwt_mapping_json(&m))
        }
        AdminOp::EnumerateJwtMappings { page, resolve } => {
            let ms = admin.enumerate_jwt_mappings(caller, page).await?;
            jwt_mappings_reply(admin, "JwtMappings", &ms, resolve).await?
        }
        AdminOp::GetJwtMappings {
            filter,
            issuers,
            resolve,
        } => {
            let ms = admin
                .find_jwt_mappings(caller, filter.as_deref(), &issuers)
                .await?;
            jwt_mappings_reply(admin, "JwtMappings", &ms, resolve).await?
        }
        AdminOp::GetJwtMapping { name, resolve } => {
            let m = admin.get_jwt_mapping(caller, &name).await?;
            jwt_mappings_reply(admin, "JwtMapping", &[m], resolve).await?
        }
        AdminOp::UpdateJwtMapping { mapping } => {
            admin.update_jwt_mapping(caller, mapping).await?;
            empty()
        }
        AdminOp::DeleteJwtMapping { name } => {
            admin.delete_jwt_mapping(caller, &name).await?;
            empty()
        }
    })
}

async fn grants_reply(admin: &Admin, grants: &[Grant], resolve: bool) -> Map<String, Value> {
    let m = one(
        "Grants",
        Value::Array(grants.iter().map(grant_json).collect()),
    );
    let ids = grants
        .iter()
        .flat_map(|g| [g.identity.as_str(), g.granted_to.as_str()])
        .collect();
    with_identities(admin, m, resolve, ids).await
}

async fn rules_reply(admin: &Admin, rules: &[Rule], resolve: bool) -> Map<String, Value> {
    let m = one("Rules", Value::Array(rules.iter().map(rule_json).collect()));
    let ids = rules.iter().map(|r| r.trustee.as_str()).collect();
    with_identities(admin, m, resolve, ids).await
}

fn envelope(result: Result<Map<String, Value>, AdminError>) -> Response {
    match result {
        Ok(payload) => {
            let mut m = Map::new();
            m.insert("Success".into(), json!(true));
            m.insert("Result".into(), json!(ResultCode::Success as i32));
            m.insert("Error".into(), Value::Null);
            m.extend(payload);
            json_response(StatusCode::OK, &m)
        }
        Err(e) => refusal(e),
    }
}

fn refusal(e: AdminError) -> Response {
    if let Some(code) = result_code(&e) {
        return json_response(
            StatusCode::OK,
            &json!({"Success": false, "Result": code as i32, "Error": e.to_string()}),
        );
    }
    match e {
        AdminError::CallerGone => VedauthError::invalid_token().into_response(),
        AdminError::Unavailable(source) => {
            tracing::warn!(error = %source, "administration call failed: unavailable");
            VedauthError::unavailable(5, "The service is temporarily unavailable; retry shortly")
                .into_response()
        }
        // NoRole, and anything a future variant leaves unmapped: no rights.
        _ => VedauthError::new(
            StatusCode::UNAUTHORIZED,
            "insufficient_rights",
            "The underlying user account does not have sufficient permissions for this request",
        )
        .into_response(),
    }
}

/// The body, at most [`MAX_BODY`] bytes: 413 beyond (refused before reading when the
/// declared length already says so).
async fn read_body(headers: &HeaderMap, body: HttpBody) -> Result<Vec<u8>, VedauthError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(VedauthError::too_large());
    }
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(VedauthError::too_large()),
        Err(_) => Err(VedauthError::malformed()),
    }
}

pub async fn dispatch(
    State(app): State<ApiState>,
    op: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: HttpBody,
) -> Result<Response, VedauthError> {
    // A name that does not decode (`%ff`) is no operation either.
    let kind = op
        .ok()
        .and_then(|Path(op)| OpKind::from_name(&op))
        .ok_or_else(VedauthError::not_found)?;
    // Layer 1: a token with the admin scope (any privilege), before any of the body is read.
    let grant = authorize(&app, &headers, Requirement::Scope("admin", None)).await?;
    let admin = app.services.admin();
    // The token's identity must still exist and be enabled, whatever the caches say.
    let caller = match admin.caller(&grant.identity).await {
        Ok(c) => c,
        Err(e) => return Ok(refusal(e)),
    };
    let body = Body::parse(&read_body(&headers, body).await?)?;
    let op = match AdminOp::parse(kind, &body) {
        Ok(op) => op,
        Err(Reject::BadRequest(msg)) => {
            return Err(VedauthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                msg,
            ))
        }
        Err(Reject::Domain(e)) => return Ok(refusal(e)),
    };
    // Layer 2: the caller's OAuth role, checked by each operation.
    let shows_secret = op.kind() == OpKind::SetClientSecret;
    let res = envelope(run(admin, &caller, op).await);
    // A new client secret is in this answer: nothing in between may keep it.
    Ok(if shows_secret {
        super::super::common::no_store(res)
    } else {
        res
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_a_unique_lower_case_name() {
        assert_eq!(OPERATIONS.len(), OpKind::ALL.len());
        assert_eq!(OPERATIONS.len(), 32);
        let mut seen = std::collections::BTreeSet::new();
        for k in OpKind::ALL {
            let n = k.name();
            assert_eq!(n, n.to_ascii_lowercase());
            assert!(seen.insert(n), "{n} twice");
            assert_eq!(OpKind::from_name(&n.to_ascii_uppercase()), Some(*k));
        }
        assert_eq!(OpKind::from_name("nosuchop"), None);
    }

    #[test]
    fn bodies_parse_into_typed_operations() {
        let b = |v: Value| match v {
            Value::Object(m) => Body(m),
            _ => Body(Map::new()),
        };
        // Operations without required fields parse from an empty body, as themselves.
        for k in [
            OpKind::ListRoles,
            OpKind::GetRole,
            OpKind::GetConfiguration,
            OpKind::EnumerateApplications,
            OpKind::GetApplications,
            OpKind::GetScopes,
            OpKind::GetGrants,
            OpKind::CreateApplication,
            OpKind::CreateRule,
            OpKind::GetRules,
            OpKind::EnumerateRules,
        ] {
            let op = AdminOp::parse(k, &b(json!({})));
            assert_eq!(op.map(|o| o.kind()).ok(), Some(k), "{k:?}");
        }
        let op = AdminOp::parse(
            OpKind::GrantRole,
            &b(json!({"GranteePrefixedUniversal": "x", "Role": 4_294_967_297_i64})),
        );
        assert!(matches!(
            op,
            Err(Reject::Domain(AdminError::Invalid { field: "Role", .. }))
        ));
        let op = AdminOp::parse(
            OpKind::GrantRole,
            &b(json!({"GranteePrefixedUniversal": "x", "Role": u64::MAX})),
        );
        assert!(matches!(
            op,
            Err(Reject::Domain(AdminError::Invalid { .. }))
        ));
        let op = AdminOp::parse(OpKind::RevokeGrants, &b(json!({})));
        assert!(matches!(op, Err(Reject::BadRequest(_))));
        let op = AdminOp::parse(OpKind::GetApplication, &b(json!({})));
        assert!(matches!(
            op,
            Err(Reject::Domain(AdminError::Invalid {
                field: "ApplicationId",
                ..
            }))
        ));
        let op = AdminOp::parse(
            OpKind::EnumerateApplications,
            &b(json!({"OrderBy": 4_294_967_297_i64})),
        );
        assert!(matches!(op, Err(Reject::Domain(_))));
    }

    #[tokio::test]
    async fn bodies_are_cut_at_the_limit_whatever_they_declare() {
        let none = HeaderMap::new();
        let fits = read_body(&none, HttpBody::from(vec![b' '; MAX_BODY])).await;
        assert_eq!(fits.map(|b| b.len()).ok(), Some(MAX_BODY));
        // No Content-Length (a chunked body): the reader stops at the limit.
        let over = read_body(&none, HttpBody::from(vec![b' '; MAX_BODY + 1])).await;
        assert_eq!(
            over.err().map(|e| e.status),
            Some(StatusCode::PAYLOAD_TOO_LARGE)
        );
        // A declared length over the limit is refused before anything is read.
        let mut declared = HeaderMap::new();
        declared.insert(
            header::CONTENT_LENGTH,
            http::HeaderValue::from(MAX_BODY + 1),
        );
        let r = read_body(&declared, HttpBody::empty()).await;
        assert_eq!(
            r.err().map(|e| e.status),
            Some(StatusCode::PAYLOAD_TOO_LARGE)
        );
    }

    #[test]
    fn domain_refusals_map_to_result_codes() {
        use crate::admin::Entity as E;
        let cases = [
            (AdminError::NotFound(E::Application("a".into())), Some(2)),
            (
                AdminError::NotFound(E::Rule {
                    client_id: "a".into(),
                    trustee: "b".into(),
                }),
                Some(4),
            ),
            (AdminError::NotFound(E::Identity("x".into())), Some(18)),
            (
                AdminError::AlreadyExists(E::Application("a".into())),
                Some(19),
            ),
            (
                AdminError::Invalid {
                    field: "Role",
                    msg: String::new(),
                },
                Some(6),
            ),
            (AdminError::Forbidden, Some(9)),
            (AdminError::NotFound(E::JwtMapping("m".into())), Some(21)),
            (
                AdminError::AlreadyExists(E::JwtMapping("m".into())),
                Some(22),
            ),
            (AdminError::NoRole, None),
            (AdminError::CallerGone, None),
        ];
        for (e, code) in cases {
            assert_eq!(result_code(&e).map(|c| c as i32), code, "{e:?}");
        }
    }
}
