//! `/vedsdk/oauth/*`: the token-authentication administration API (admin-api.md §2, §4.1–4.5).
//! Translation only: the operations live in [`crate::admin`], shared with the command line.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

use super::vedsdk::{authorize, Requirement};
use super::{dotnet_date, iso8601, json_response, ApiError, ApiState, MAX_BODY};
use crate::admin::{
    Admin, AdminError, ApplicationInfo, ApplicationInput, Caller, Page, ResultCode, RuleInput,
};
use crate::scope::CATALOGUE;
use crate::store::{Grant, Lifetime, RoleAssignment, Rule, Settings};

/// The request body: a JSON object (absent or `null` bodies count as `{}`).
struct Body(Map<String, Value>);

fn bad(msg: impl Into<String>) -> AdminError {
    AdminError::BadRequest(msg.into())
}

impl Body {
    fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(Map::new()));
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(m)) => Ok(Body(m)),
            Ok(Value::Null) => Ok(Body(Map::new())),
            _ => Err(ApiError::malformed()),
        }
    }

    fn get(&self, k: &str) -> Option<&Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }

    fn str(&self, k: &str) -> Result<Option<String>, AdminError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!("{k} must be a string"))),
        }
    }

    fn i64(&self, k: &str) -> Result<Option<i64>, AdminError> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| bad(format!("{k} must be an integer"))),
        }
    }

    fn bool(&self, k: &str) -> Result<Option<bool>, AdminError> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| bad(format!("{k} must be true or false"))),
        }
    }

    fn strs(&self, k: &str) -> Result<Vec<String>, AdminError> {
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

    fn object(&self, k: &str) -> Result<Body, AdminError> {
        match self.get(k) {
            Some(Value::Object(m)) => Ok(Body(m.clone())),
            None => Err(bad(format!("{k} is required"))),
            Some(_) => Err(bad(format!("{k} must be an object"))),
        }
    }

    fn page(&self) -> Result<Page, AdminError> {
        let nonneg = |k: &str| -> Result<Option<usize>, AdminError> {
            match self.i64(k)? {
                None => Ok(None),
                Some(n) if n >= 0 => Ok(Some(n as usize)),
                Some(_) => Err(bad(format!("{k} must not be negative"))),
            }
        };
        Ok(Page {
            start: nonneg("Start")?,
            count: nonneg("Count")?,
            order_by: self.i64("OrderBy")?.map(|v| v as i32),
            descending: self.bool("Descending")?.unwrap_or(false),
        })
    }

    /// `GrantValidity`: absent/null = the default, 0 or less = never, else seconds.
    fn lifetime(&self, k: &str) -> Result<Option<Lifetime>, AdminError> {
        Ok(self.i64(k)?.map(Lifetime::from_db))
    }

    fn application(&self, id_key: &str) -> Result<ApplicationInput, AdminError> {
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

    fn rule(&self) -> Result<RuleInput, AdminError> {
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

    fn required(&self, k: &str) -> Result<String, AdminError> {
        self.str(k)?.ok_or_else(|| {
            AdminError::Refused(ResultCode::InvalidParameters, format!("{k} is required"))
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

fn role_json(r: &RoleAssignment) -> Value {
    json!({"Role": r.role, "Grantee": r.grantee, "ApplicationId": r.client_id})
}

fn one(key: &str, v: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(key.into(), v);
    m
}

/// Runs one operation by its (lower-cased) name.
async fn run(
    admin: Admin<'_>,
    caller: &Caller,
    op: &str,
    b: &Body,
) -> Result<Map<String, Value>, AdminError> {
    let empty = Map::new;
    Ok(match op {
        "grantrole" => {
            let role = b.i64("Role")?.ok_or_else(|| bad("Role is required"))?;
            admin
                .grant_role(
                    caller,
                    RoleAssignment {
                        grantee: b.required("GranteePrefixedUniversal")?,
                        role: role as i32,
                        client_id: b.str("ApplicationId")?,
                    },
                )
                .await?;
            empty()
        }
        "revokerole" => {
            let role = b.i64("Role")?.ok_or_else(|| bad("Role is required"))?;
            admin
                .revoke_role(
                    caller,
                    &b.required("GranteePrefixedUniversal")?,
                    role as i32,
                    b.str("ApplicationId")?.as_deref(),
                )
                .await?;
            empty()
        }
        "listroles" => {
            let roles = admin
                .list_roles(caller, b.str("GranteePrefixedUniversal")?.as_deref())
                .await?;
            one("Roles", Value::Array(roles.iter().map(role_json).collect()))
        }
        "getrole" => {
            let r = admin.get_role(caller).await?;
            let mut obj = json!({"Role": r.role});
            if !r.owned_applications.is_empty() {
                obj["PermittedApplications"] = json!(r.permitted_applications);
                obj["OwnedApplications"] = Value::Array(
                    r.owned_applications
                        .iter()
                        .map(|(c, role)| json!({"ApplicationId": c, "Role": role}))
                        .collect(),
                );
            }
            one("Role", obj)
        }
        "getconfiguration" => {
            let s = admin.get_settings(caller).await?;
            one("Configuration", serde_json::to_value(s).unwrap_or_default())
        }
        "setconfiguration" => {
            let cfg = b.object("Configuration")?;
            let settings: Settings = serde_json::from_value(Value::Object(cfg.0))
                .map_err(|e| bad(format!("Configuration: {e}")))?;
            admin.set_settings(caller, settings).await?;
            empty()
        }
        "createapplication" => {
            let a = admin
                .create_application(caller, b.application("ApplicationId")?)
                .await?;
            one(
                "Application",
                app_json(&ApplicationInfo {
                    app: a,
                    grant_count: 0,
                    user_count: 0,
                }),
            )
        }
        "enumerateapplications" => {
            let apps = admin.enumerate_applications(caller, b.page()?).await?;
            one(
                "Applications",
                Value::Array(apps.iter().map(app_json).collect()),
            )
        }
        "getapplications" => {
            let apps = admin
                .search_applications(
                    caller,
                    &b.strs("ApplicationIds")?,
                    b.str("Filter")?.as_deref(),
                )
                .await?;
            one(
                "Applications",
                Value::Array(apps.iter().map(app_json).collect()),
            )
        }
        "getapplication" => {
            let info = admin
                .get_application(caller, &b.required("ApplicationId")?)
                .await?;
            let mut m = one("Application", app_json(&info));
            // The vendor contract names this array; the docs and pyVenafi the object.
            m.insert("Applications".into(), json!([app_json(&info)]));
            m
        }
        "updateapplication" => {
            admin
                .update_application(caller, b.object("Application")?.application("ID")?)
                .await?;
            empty()
        }
        "deleteapplication" => {
            admin
                .delete_application(caller, &b.required("ApplicationId")?)
                .await?;
            empty()
        }
        "getscopes" => {
            let scopes: Vec<Value> = CATALOGUE
                .iter()
                .map(|(n, p)| json!({"Scope": n, "RestrictionList": p}))
                .collect();
            one("Scopes", Value::Array(scopes))
        }
        "getgrants" => {
            let me = match caller {
                Caller::Identity { identity, .. } => Some(identity.clone()),
                Caller::Operator => None,
            };
            let who = b.str("GranteePrefixedUniversal")?.or(me);
            let grants = admin
                .grants(
                    caller,
                    who.as_deref(),
                    b.str("ApplicationId")?.as_deref(),
                    b.page()?,
                )
                .await?;
            one(
                "Grants",
                Value::Array(grants.iter().map(grant_json).collect()),
            )
        }
        "enumerategrants" => {
            let app = b.required("ApplicationId")?;
            let grants = admin.grants(caller, None, Some(&app), b.page()?).await?;
            one(
                "Grants",
                Value::Array(grants.iter().map(grant_json).collect()),
            )
        }
        "revokegrants" => {
            admin
                .revoke_grants(
                    caller,
                    b.str("GranteePrefixedUniversal")?.as_deref(),
                    b.str("ApplicationId")?.as_deref(),
                )
                .await?;
            empty()
        }
        "grantcount" => {
            let i = admin.counts(caller, &b.required("ApplicationId")?).await?;
            one("Count", json!(i.grant_count))
        }
        "usercount" => {
            let i = admin.counts(caller, &b.required("ApplicationId")?).await?;
            one("Count", json!(i.user_count))
        }
        "createrule" => {
            let r = admin.create_rule(caller, b.rule()?).await?;
            one("Rule", rule_json(&r))
        }
        "getrules" => {
            let mut trustees = b.strs("TrusteePrefixedUniversals")?;
            trustees.extend(b.str("TrusteePrefixedUniversal")?);
            let rules = admin
                .find_rules(
                    caller,
                    b.str("ApplicationId")?.as_deref(),
                    &trustees,
                    b.str("MaximumScope")?.as_deref(),
                    b.bool("Renewable")?,
                    b.bool("NoExpire")?,
                )
                .await?;
            one("Rules", Value::Array(rules.iter().map(rule_json).collect()))
        }
        "enumeraterules" => {
            let rules = admin
                .enumerate_rules(caller, b.str("ApplicationId")?.as_deref(), b.page()?)
                .await?;
            one("Rules", Value::Array(rules.iter().map(rule_json).collect()))
        }
        "updaterule" => {
            admin.update_rule(caller, b.object("Rule")?.rule()?).await?;
            empty()
        }
        "deleterule" => {
            let app = b.required("ApplicationId")?;
            let trustee = b.required("TrusteePrefixedUniversal")?;
            admin
                .delete_rules(caller, Some(&app), Some(&trustee))
                .await?;
            empty()
        }
        "deleterules" => {
            admin
                .delete_rules(
                    caller,
                    b.str("ApplicationId")?.as_deref(),
                    b.str("TrusteePrefixedUniversal")?.as_deref(),
                )
                .await?;
            empty()
        }
        _ => return Err(AdminError::BadRequest(String::new())),
    })
}

/// Every operation served under `/vedsdk/oauth/`, lower-cased.
pub const OPERATIONS: &[&str] = &[
    "grantrole",
    "revokerole",
    "listroles",
    "getrole",
    "getconfiguration",
    "setconfiguration",
    "createapplication",
    "enumerateapplications",
    "getapplications",
    "getapplication",
    "updateapplication",
    "deleteapplication",
    "getscopes",
    "getgrants",
    "enumerategrants",
    "revokegrants",
    "grantcount",
    "usercount",
    "createrule",
    "getrules",
    "enumeraterules",
    "updaterule",
    "deleterule",
    "deleterules",
];

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
        Err(AdminError::Refused(code, msg)) => json_response(
            StatusCode::OK,
            &json!({"Success": false, "Result": code as i32, "Error": msg}),
        ),
        Err(AdminError::NoRole) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "insufficient_rights",
            "The underlying user account does not have sufficient permissions for this request",
        )
        .into_response(),
        Err(AdminError::BadRequest(msg)) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            if msg.is_empty() {
                super::error::MALFORMED.to_string()
            } else {
                msg
            },
        )
        .into_response(),
        Err(AdminError::Unavailable(detail)) => {
            tracing::warn!(%detail, "administration call failed: store unavailable");
            ApiError::unavailable(5, "The service is temporarily unavailable; retry shortly")
                .into_response()
        }
    }
}

pub async fn dispatch(
    State(app): State<ApiState>,
    Path(op): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let op = op.to_ascii_lowercase();
    if !OPERATIONS.contains(&op.as_str()) {
        return Err(ApiError::not_found());
    }
    if body.len() > MAX_BODY {
        return Err(ApiError::too_large());
    }
    // Layer 1: a token with the admin scope (any privilege).
    let grant = authorize(&app, &headers, Requirement::Scope("admin", None)).await?;
    let body = Body::parse(&body)?;
    let admin = Admin::new(&app);
    // Layer 2: the caller's OAuth role, checked by each operation.
    let result = match admin.caller(&grant.identity).await {
        Ok(caller) => run(admin, &caller, &op, &body).await,
        Err(e) => Err(e),
    };
    Ok(envelope(result))
}
