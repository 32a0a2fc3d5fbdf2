//! The console's handlers: each reads the session, calls the administration core (or the
//! grant core, for sign-in and the device page) and renders a page, or redirects after a form
//! (POST, then 303 to a page: reloading never repeats an action).

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::{header, HeaderMap, StatusCode, Uri};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use super::session::{
    cookie, safe_next, same_token, session, set_cookie, Session, CONSOLE_CLIENT, CONSOLE_SCOPE,
    COOKIE, SIGNIN_COOKIE,
};
use super::views::*;
use super::{render, ConsoleError, Query};
use crate::admin::{AdminError, ApplicationInput, Caller, NewUser, Page, RuleInput};
use crate::domain::{Grant, Lifetime, Settings};
use crate::grants::{DeviceDecision, GrantError, GrantRequest, PasswordRequest};
use crate::http::common::{Client, MAX_BODY};
use crate::http::ApiState;
use crate::secret::Secret;
use crate::services::Services;
use crate::wire_time::iso8601;

pub(super) type Page_ = Result<Response, Response>;

pub(super) fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// Back to `path` with a notice (or an error) to show, signed with `key` (the session's CSRF
/// token, or the sign-in form's) so that a link made elsewhere cannot put words on our pages.
pub(super) fn back(key: &str, path: &str, result: Result<String, String>) -> Response {
    let sep = if path.contains('?') { '&' } else { '?' };
    let (k, v) = match result {
        Ok(m) => ("notice", m),
        Err(m) => ("error", m),
    };
    let sig = message_sig(key, k, &v);
    Redirect::to(&format!("{path}{sep}{k}={}&sig={sig}", enc(&v))).into_response()
}

/// The signature of a message on a redirect: a digest under the key, shortened.
pub(super) fn message_sig(key: &str, kind: &str, text: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in ["vedauth console message", key, kind, text] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// What a refusal of the administration core says to a person.
pub(super) fn said(e: &AdminError) -> String {
    match e {
        AdminError::Unavailable(_) => "The service is unavailable now; try again shortly.".into(),
        AdminError::NoRole | AdminError::Forbidden => {
            "Your role does not allow this action.".into()
        }
        other => other.to_string(),
    }
}

/// A POSTed form, checked: the session's CSRF token must be in it.
pub(super) fn form(s: &Session, body: &Bytes) -> Result<Query, ConsoleError> {
    if body.len() > MAX_BODY {
        return Err(ConsoleError::from(
            crate::http::common::CommonError::TooLarge,
        ));
    }
    let q = Query::parse(body);
    if !same_token(q.raw("csrf"), &s.csrf) {
        tracing::warn!(identity = %s.identity, "console form without a valid CSRF token refused");
        return Err(ConsoleError::bad_csrf());
    }
    Ok(q)
}

fn date(t: Option<i64>) -> String {
    match t {
        Some(t) => iso8601(t),
        None => "never".into(),
    }
}

// ---- sign-in and sign-out ----

pub async fn signin_page(uri: Uri, headers: HeaderMap) -> Response {
    let q = Query::of_uri(&uri);
    let pre = crate::token::nonce().replace(['-', '_'], "");
    // Messages of the last attempt are signed with the form token that attempt sent.
    let mut f = Frame::anonymous("Sign in")
        .with_messages(&q, cookie(&headers, SIGNIN_COOKIE).unwrap_or(""));
    if q.get("signed_out") == "1" {
        f.notice = "Signed out.".into();
    }
    let page = SigninPage {
        f,
        pre: pre.clone(),
        next: safe_next(q.opt("next").as_deref()),
    };
    let mut res = render(StatusCode::OK, &page);
    res.headers_mut()
        .append(header::SET_COOKIE, set_cookie(SIGNIN_COOKIE, Some(&pre)));
    res
}

pub async fn signin(
    State(app): State<ApiState>,
    Client(source): Client,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if body.len() > MAX_BODY {
        return ConsoleError::from(crate::http::common::CommonError::TooLarge).into_response();
    }
    let q = Query::parse(&body);
    // No session yet: the form's token must match the cookie the sign-in page set.
    let expected = cookie(&headers, SIGNIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !same_token(q.raw("csrf"), expected) {
        return ConsoleError::bad_csrf().into_response();
    }
    let next = safe_next(q.opt("next").as_deref());
    let again = |msg: &str| {
        back(
            expected,
            &format!("/console/signin?next={}", enc(&next)),
            Err(msg.into()),
        )
    };
    let req = PasswordRequest {
        client_id: Some(CONSOLE_CLIENT.into()),
        username: q.opt("username"),
        password: q.raw("password").filter(|p| !p.is_empty()).map(Secret::new),
        scope: Some(CONSOLE_SCOPE.into()),
        state: None,
        source: Some(source),
    };
    match app.services.token(GrantRequest::Password(req)).await {
        Ok(t) => {
            let mut res = Redirect::to(&next).into_response();
            let h = res.headers_mut();
            h.append(header::SET_COOKIE, set_cookie(COOKIE, Some(t.access_token.expose())));
            h.append(header::SET_COOKIE, set_cookie(SIGNIN_COOKIE, None));
            res
        }
        Err(GrantError::MissingCredentials) => again("Enter a user name and a password."),
        Err(GrantError::BadCredentials(_)) => again("The user name or password is not valid."),
        Err(GrantError::NotAdmitted) | Err(GrantError::ScopeNotAuthorized(_)) => again(
            "You may not sign in to the console: no rule of vedauth-admin admits you with the admin scope.",
        ),
        Err(GrantError::PasswordAuthDisabled) => again("Password sign-in is turned off."),
        Err(GrantError::UnknownClient(_)) => again("The console's application (vedauth-admin) is missing."),
        Err(_) => again("The service is unavailable now; try again shortly."),
    }
}

pub async fn signout(
    State(app): State<ApiState>,
    Client(source): Client,
    headers: HeaderMap,
    body: Bytes,
) -> Page_ {
    let s = session(&app, &headers, "/console").await?;
    form(&s, &body)?;
    // Sign-out is the grant's revocation: the cookie stops working everywhere at once.
    if let Err(e) = app.services.revoke(&s.token, Some(source)).await {
        tracing::warn!(error = %e, "console sign-out could not revoke the session grant");
        return Ok(back(
            &s.csrf,
            "/console",
            Err("Sign-out failed; try again.".into()),
        ));
    }
    let mut res = Redirect::to("/console/signin?signed_out=1").into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, set_cookie(COOKIE, None));
    Ok(res)
}

pub async fn home(State(app): State<ApiState>, headers: HeaderMap, uri: Uri) -> Page_ {
    let s = session(&app, &headers, "/console").await?;
    let q = Query::of_uri(&uri);
    Ok(render(
        StatusCode::OK,
        &HomePage {
            f: Frame::of(&s, "Console", "home").with_messages(&q, &s.csrf),
        },
    ))
}

// ---- the device page ----

pub async fn device_redirect(uri: Uri) -> Response {
    match uri.query() {
        Some(q) => Redirect::to(&format!("/console/device?{q}")).into_response(),
        None => Redirect::to("/console/device").into_response(),
    }
}

fn device_said(e: &GrantError) -> String {
    match e {
        GrantError::UnknownUserCode => "No pending request has this code. It may have expired, or been approved or denied already.".into(),
        GrantError::TooManyGuesses => "Too many wrong codes; wait ten minutes and try again.".into(),
        GrantError::NotAdmitted => "You are not allowed to use this application, so the request was denied.".into(),
        GrantError::ScopeNotAuthorized(_) => "You may not grant the scope this request asks for, so it was denied.".into(),
        GrantError::UnknownClient(_) => "The application no longer exists, so the request was denied.".into(),
        GrantError::BadCredentials(_) => "Your account is disabled or locked, so the request was denied.".into(),
        _ => "The service is unavailable now; try again shortly.".into(),
    }
}

pub async fn device_page(State(app): State<ApiState>, headers: HeaderMap, uri: Uri) -> Page_ {
    let here = match uri.query() {
        Some(q) => format!("/console/device?{q}"),
        None => "/console/device".into(),
    };
    let s = session(&app, &headers, &here).await?;
    let q = Query::of_uri(&uri);
    let mut f = Frame::of(&s, "Approve a device", "device").with_messages(&q, &s.csrf);
    let typed = q.get("user_code");
    let mut pending = None;
    if !typed.is_empty() {
        match app.services.pending_device(&typed, &s.identity).await {
            Ok(p) => {
                let (app_name, vendor, description) = match &p.application {
                    Some(a) => (a.name.clone(), a.vendor.clone(), a.description.clone()),
                    None => (p.client_id.to_string(), String::new(), String::new()),
                };
                pending = Some(PendingView {
                    user_code: p.user_code,
                    client_id: p.client_id.to_string(),
                    app_name,
                    vendor,
                    description,
                    scope: p.scope.to_string(),
                    expires: iso8601(p.expires_at),
                });
            }
            Err(e) => f.error = device_said(&e),
        }
    }
    Ok(render(StatusCode::OK, &DevicePage { f, typed, pending }))
}

pub async fn device_post(
    State(app): State<ApiState>,
    Client(source): Client,
    headers: HeaderMap,
    body: Bytes,
) -> Page_ {
    let s = session(&app, &headers, "/console/device").await?;
    let q = form(&s, &body)?;
    let code = q.get("user_code");
    let approve = match q.get("action").as_str() {
        "approve" => true,
        "deny" => false,
        _ => {
            return Err(
                ConsoleError::new(StatusCode::BAD_REQUEST, "Approve or deny?").into_response(),
            )
        }
    };
    let who = match app.services.principal(&s.identity).await {
        Ok(Some(p)) => p,
        _ => {
            return Ok(back(
                &s.csrf,
                "/console/device",
                Err("Your identity cannot be found now; try again.".into()),
            ))
        }
    };
    Ok(
        match app
            .services
            .decide_device(&code, &who, approve, Some(source))
            .await
        {
            Ok(DeviceDecision::Approved) => back(
                &s.csrf,
                "/console/device",
                Ok(format!("Approved {code}. Your device now gets its token.")),
            ),
            Ok(DeviceDecision::Denied) => {
                back(&s.csrf, "/console/device", Ok(format!("Denied {code}.")))
            }
            Err(e) => back(&s.csrf, "/console/device", Err(device_said(&e))),
        },
    )
}

// ---- integrations and rules ----

/// Grants and distinct people per application, from one listing.
fn tally(grants: &[Grant]) -> BTreeMap<String, (usize, BTreeSet<String>)> {
    let mut t: BTreeMap<String, (usize, BTreeSet<String>)> = BTreeMap::new();
    for g in grants {
        let e = t.entry(g.client_id.to_string()).or_default();
        e.0 += 1;
        e.1.insert(g.identity.to_string());
    }
    t
}

pub(super) fn refused(e: AdminError) -> Response {
    match e {
        AdminError::NoRole | AdminError::Forbidden => ConsoleError::forbidden().into_response(),
        other => ConsoleError::new(StatusCode::SERVICE_UNAVAILABLE, said(&other)).into_response(),
    }
}

pub async fn integrations(State(app): State<ApiState>, headers: HeaderMap, uri: Uri) -> Page_ {
    let s = session(&app, &headers, "/console/integrations").await?;
    if !s.administers() {
        return Err(ConsoleError::forbidden().into_response());
    }
    let admin = app.services.admin();
    let apps = admin.list_applications(&s.caller).await.map_err(refused)?;
    // Readers of everything count from one listing of all grants; an owner or maintainer
    // from the listing of each of their applications (few).
    let grants = if s.reads_all() {
        admin
            .grants(&s.caller, None, None, Page::default())
            .await
            .map_err(refused)?
    } else {
        let mut all = Vec::new();
        for a in &apps {
            all.extend(
                admin
                    .grants(&s.caller, None, Some(&a.client_id), Page::default())
                    .await
                    .map_err(refused)?,
            );
        }
        all
    };
    let t = tally(&grants);
    let rows = apps
        .into_iter()
        .map(|a| {
            let (n, people) = t
                .get(a.client_id.as_str())
                .map(|(n, p)| (*n, p.len()))
                .unwrap_or((0, 0));
            AppRow {
                client_id: a.client_id.to_string(),
                name: a.name,
                vendor: a.vendor,
                scope: a.max_scope.to_string(),
                grants: n,
                people,
            }
        })
        .collect();
    let q = Query::of_uri(&uri);
    Ok(render(
        StatusCode::OK,
        &IntegrationsPage {
            f: Frame::of(&s, "Integrations", "integrations").with_messages(&q, &s.csrf),
            rows,
        },
    ))
}

fn lifetimes(q: &Query) -> Result<(Option<i64>, Option<Lifetime>), String> {
    let access = match q.opt("access_validity") {
        None => None,
        Some(v) => Some(
            v.parse::<i64>()
                .map_err(|_| format!("Access token validity '{v}' is not a number of seconds"))?,
        ),
    };
    let grant = match q.opt("grant_validity") {
        None => None,
        Some(v) => Some(v.parse::<Lifetime>()?),
    };
    Ok((access, grant))
}

fn app_input(client_id: String, q: &Query) -> Result<ApplicationInput, String> {
    let (access_validity, grant_validity) = lifetimes(q)?;
    Ok(ApplicationInput {
        client_id,
        name: q.opt("name"),
        vendor: q.opt("vendor"),
        description: q.opt("description"),
        url: None,
        scope: q.opt("scope"),
        max_scope: None,
        access_validity,
        grant_validity,
        renewable: None,
        unused_expiration: None,
    })
}

pub async fn create_integration(
    State(app): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Page_ {
    let s = session(&app, &headers, "/console/integrations").await?;
    let q = form(&s, &body)?;
    let client_id = q.get("client_id");
    let input = match app_input(client_id.clone(), &q) {
        Ok(i) => i,
        Err(m) => return Ok(back(&s.csrf, "/console/integrations", Err(m))),
    };
    Ok(
        match app
            .services
            .admin()
            .create_application(&s.caller, input)
            .await
        {
            Ok(a) => back(
                &s.csrf,
                &format!("/console/integrations/{}", enc(&a.client_id)),
                Ok(format!(
                    "Created {}. Add a rule to say who may get tokens.",
                    a.client_id
                )),
            ),
            Err(e) => back(&s.csrf, "/console/integrations", Err(said(&e))),
        },
    )
}

pub async fn integration(
    State(app): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    Path(client_id): Path<String>,
) -> Page_ {
    let s = session(&app, &headers, uri.path()).await?;
    let admin = app.services.admin();
    let info = admin
        .get_application(&s.caller, &client_id)
        .await
        .map_err(refused)?;
    let a = info.app;
    let rules = admin
        .enumerate_rules(&s.caller, Some(&client_id), Page::default())
        .await
        .map_err(refused)?;
    let trustees: Vec<&str> = rules.iter().map(|r| r.trustee.as_str()).collect();
    let names = admin.names(&trustees).await;
    let (grant_count, people) = (info.grant_count as usize, info.user_count as usize);
    let rules = rules
        .iter()
        .map(|r| RuleRow {
            trustee: r.trustee.to_string(),
            name: names
                .get(r.trustee.as_str())
                .map(|n| n.name.clone())
                .unwrap_or_else(|| r.trustee.to_string()),
            max_scope: r
                .max_scope
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default(),
        })
        .collect();
    let manage = matches!(&s.caller, Caller::Identity { roles, .. } if roles.iter().any(|r| r.client_id.as_deref() == Some(client_id.as_str())))
        || s.is_admin();
    let q = Query::of_uri(&uri);
    Ok(render(
        StatusCode::OK,
        &IntegrationPage {
            f: Frame::of(&s, &a.name, "integrations").with_messages(&q, &s.csrf),
            client_id: a.client_id.to_string(),
            name: a.name.clone(),
            vendor: a.vendor.clone(),
            description: a.description.clone(),
            scope: a.max_scope.to_string(),
            access_validity: a.access_validity.map(|v| v.to_string()).unwrap_or_default(),
            grant_validity: a.grant_validity.map(|v| v.to_string()).unwrap_or_default(),
            rules,
            grant_count,
            people,
            can_manage: manage,
            can_delete: s.is_admin(),
        },
    ))
}

pub async fn update_integration(
    State(app): State<ApiState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
    body: Bytes,
) -> Page_ {
    let here = format!("/console/integrations/{}", enc(&client_id));
    let s = session(&app, &headers, &here).await?;
    let q = form(&s, &body)?;
    let input = match app_input(client_id, &q) {
        Ok(i) => i,
        Err(m) => return Ok(back(&s.csrf, &here, Err(m))),
    };
    Ok(
        match app
            .services
            .admin()
            .update_application(&s.caller, input)
            .await
        {
            Ok(_) => back(
                &s.csrf,
                &here,
                Ok(
                    "Saved. Existing grants keep their scope until they are renewed or revoked."
                        .into(),
                ),
            ),
            Err(e) => back(&s.csrf, &here, Err(said(&e))),
        },
    )
}

pub async fn delete_integration(
    State(app): State<ApiState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
    body: Bytes,
) -> Page_ {
    let here = format!("/console/integrations/{}", enc(&client_id));
    let s = session(&app, &headers, &here).await?;
    form(&s, &body)?;
    Ok(
        match app
            .services
            .admin()
            .delete_application(&s.caller, &client_id)
            .await
        {
            Ok(n) => back(
                &s.csrf,
                "/console/integrations",
                Ok(format!("Deleted {client_id}; {n} grants revoked.")),
            ),
            Err(e) => back(&s.csrf, &here, Err(said(&e))),
        },
    )
}

pub async fn add_rule(
    State(app): State<ApiState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
    body: Bytes,
) -> Page_ {
    let here = format!("/console/integrations/{}", enc(&client_id));
    let s = session(&app, &headers, &here).await?;
    let q = form(&s, &body)?;
    let input = RuleInput {
        client_id,
        trustee: q.get("trustee"),
        max_scope: q.opt("max_scope"),
        ..RuleInput::default()
    };
    let admin = app.services.admin();
    Ok(match admin.create_rule(&s.caller, input).await {
        Ok(r) => {
            let names = admin.names(&[r.trustee.as_str()]).await;
            let name = names
                .get(r.trustee.as_str())
                .map(|n| n.name.clone())
                .unwrap_or_else(|| r.trustee.to_string());
            back(
                &s.csrf,
                &here,
                Ok(format!(
                    "Rule added: {name} ({}) may get tokens.",
                    r.trustee
                )),
            )
        }
        Err(e) => back(&s.csrf, &here, Err(said(&e))),
    })
}

pub async fn delete_rule(
    State(app): State<ApiState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
    body: Bytes,
) -> Page_ {
    let here = format!("/console/integrations/{}", enc(&client_id));
    let s = session(&app, &headers, &here).await?;
    let q = form(&s, &body)?;
    let trustee = q.get("trustee");
    Ok(
        match app
            .services
            .admin()
            .delete_rules(&s.caller, Some(&client_id), Some(&trustee))
            .await
        {
            Ok(_) => back(
                &s.csrf,
                &here,
                Ok("Rule removed. Existing grants live on until revoked or expired.".into()),
            ),
            Err(e) => back(&s.csrf, &here, Err(said(&e))),
        },
    )
}

// ---- grants ----

/// The grants page's rows for a caller and filter: one listing of the grants and one naming
/// of their holders (one read of the local users, however many rows).
pub async fn grants_view(
    services: &Services,
    caller: &Caller,
    client_id: Option<&str>,
    identity: Option<&str>,
) -> Result<Vec<GrantRow>, AdminError> {
    let admin = services.admin();
    let identity = match identity {
        Some(i) => Some(admin.identity_of(i).await?),
        None => None,
    };
    let grants = admin
        .grants(caller, identity.as_deref(), client_id, Page::default())
        .await?;
    let ids: Vec<&str> = grants
        .iter()
        .map(|g| g.identity.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let names = admin.names(&ids).await;
    Ok(grants
        .iter()
        .rev()
        .map(|g| GrantRow {
            client_id: g.client_id.to_string(),
            identity: g.identity.to_string(),
            name: names
                .get(g.identity.as_str())
                .map(|n| n.name.clone())
                .unwrap_or_else(|| "(unknown)".into()),
            scope: g.scope.to_string(),
            issued: iso8601(g.issued_at),
            expires: date(g.expires_at),
        })
        .collect())
}

pub async fn grants(State(app): State<ApiState>, headers: HeaderMap, uri: Uri) -> Page_ {
    let here = match uri.query() {
        Some(q) => format!("/console/grants?{q}"),
        None => "/console/grants".into(),
    };
    let s = session(&app, &headers, &here).await?;
    if !s.reads_all() {
        return Err(ConsoleError::forbidden().into_response());
    }
    let q = Query::of_uri(&uri);
    let (client_id, identity) = (q.opt("client_id"), q.opt("identity"));
    let rows = grants_view(
        &app.services,
        &s.caller,
        client_id.as_deref(),
        identity.as_deref(),
    )
    .await
    .map_err(refused)?;
    let can_revoke = s.is_admin()
        || matches!(&s.caller, Caller::Identity { roles, .. } if roles.iter().any(|r| r.client_id.is_none() && r.role == crate::admin::Role::GrantAdmin));
    Ok(render(
        StatusCode::OK,
        &GrantsPage {
            f: Frame::of(&s, "Grants", "grants").with_messages(&q, &s.csrf),
            client_id: client_id.unwrap_or_default(),
            identity: identity.unwrap_or_default(),
            rows,
            can_revoke,
        },
    ))
}

pub async fn revoke(State(app): State<ApiState>, headers: HeaderMap, body: Bytes) -> Page_ {
    let s = session(&app, &headers, "/console/grants").await?;
    let q = form(&s, &body)?;
    let (client_id, identity) = (q.opt("client_id"), q.opt("identity"));
    Ok(
        match app
            .services
            .admin()
            .revoke_grants(&s.caller, identity.as_deref(), client_id.as_deref())
            .await
        {
            Ok(n) => back(
                &s.csrf,
                "/console/grants",
                Ok(format!("Revoked {n} grants.")),
            ),
            Err(e) => back(&s.csrf, "/console/grants", Err(said(&e))),
        },
    )
}

// ---- local users ----

pub async fn users(State(app): State<ApiState>, headers: HeaderMap, uri: Uri) -> Page_ {
    let s = session(&app, &headers, "/console/users").await?;
    let list = app
        .services
        .admin()
        .list_users(&s.caller)
        .await
        .map_err(refused)?;
    let rows = list
        .into_iter()
        .map(|u| UserRow {
            full_name: u.full_name.unwrap_or_default(),
            name: u.name,
            disabled: u.disabled,
        })
        .collect();
    let q = Query::of_uri(&uri);
    Ok(render(
        StatusCode::OK,
        &UsersPage {
            f: Frame::of(&s, "Local users", "users").with_messages(&q, &s.csrf),
            rows,
        },
    ))
}

pub async fn add_user(State(app): State<ApiState>, headers: HeaderMap, body: Bytes) -> Page_ {
    let s = session(&app, &headers, "/console/users").await?;
    let q = form(&s, &body)?;
    let new = NewUser {
        name: q.get("name"),
        password: Secret::new(q.raw("password").unwrap_or("")),
        full_name: q.opt("full_name"),
        email: None,
    };
    Ok(match app.services.admin().add_user(&s.caller, new).await {
        Ok(u) => back(&s.csrf, "/console/users", Ok(format!("Added {}.", u.name))),
        Err(e) => back(&s.csrf, "/console/users", Err(said(&e))),
    })
}

pub async fn user_action(State(app): State<ApiState>, headers: HeaderMap, body: Bytes) -> Page_ {
    let s = session(&app, &headers, "/console/users").await?;
    let q = form(&s, &body)?;
    let name = q.get("name");
    let admin = app.services.admin();
    let done = match q.get("action").as_str() {
        "disable" => admin
            .set_user_disabled(&s.caller, &name, true)
            .await
            .map(|n| format!("Disabled {name}; {n} grants revoked.")),
        "enable" => admin
            .set_user_disabled(&s.caller, &name, false)
            .await
            .map(|_| format!("Enabled {name}.")),
        "unlock" => admin.unlock_user(&s.caller, &name).await.map(|was| {
            if was {
                format!("Unlocked {name}.")
            } else {
                format!("{name} was not locked.")
            }
        }),
        "password" => admin
            .set_password(
                &s.caller,
                &name,
                Secret::new(q.raw("password").unwrap_or("")),
            )
            .await
            .map(|n| format!("New password set for {name}; {n} grants revoked.")),
        _ => {
            return Err(
                ConsoleError::new(StatusCode::BAD_REQUEST, "No such action.").into_response(),
            )
        }
    };
    Ok(back(&s.csrf, "/console/users", done.map_err(|e| said(&e))))
}

// ---- settings ----

fn switches(st: &Settings) -> Vec<Switch> {
    vec![
        Switch {
            key: "password",
            label: "User name and password (authorize/oauth)",
            on: st.authorize_by_password,
        },
        Switch {
            key: "refresh",
            label: "Refresh tokens (authorize/token)",
            on: st.refresh_endpoint_enabled,
        },
        Switch {
            key: "device",
            label: "Device authorization (authorize/device, approved on this console)",
            on: st.authorize_device,
        },
        Switch {
            key: "jwt",
            label: "JSON web token (authorize/jwt)",
            on: st.authorize_by_jwt,
        },
        Switch {
            key: "certificate",
            label: "Client certificate (authorize/certificate)",
            on: st.authorize_by_certificate,
        },
    ]
}

pub async fn settings(State(app): State<ApiState>, headers: HeaderMap, uri: Uri) -> Page_ {
    let s = session(&app, &headers, "/console/settings").await?;
    if !s.is_admin() {
        return Err(ConsoleError::forbidden().into_response());
    }
    let st = app
        .services
        .admin()
        .get_settings(&s.caller)
        .await
        .map_err(refused)?;
    let q = Query::of_uri(&uri);
    Ok(render(
        StatusCode::OK,
        &SettingsPage {
            f: Frame::of(&s, "Settings", "settings").with_messages(&q, &s.csrf),
            switches: switches(&st),
            access: st.default_access_token_validity,
            grant: st.default_grant_validity,
            refreshable: st.default_grant_refreshable,
        },
    ))
}

pub async fn save_settings(State(app): State<ApiState>, headers: HeaderMap, body: Bytes) -> Page_ {
    let s = session(&app, &headers, "/console/settings").await?;
    let q = form(&s, &body)?;
    let admin = app.services.admin();
    let mut st = admin.get_settings(&s.caller).await.map_err(refused)?;
    let on = |k: &str| q.get(k) == "on";
    st.authorize_by_password = on("password");
    st.refresh_endpoint_enabled = on("refresh");
    st.authorize_device = on("device");
    st.authorize_by_jwt = on("jwt");
    st.authorize_by_certificate = on("certificate");
    st.default_grant_refreshable = on("refreshable");
    for (key, field) in [
        ("access", &mut st.default_access_token_validity),
        ("grant", &mut st.default_grant_validity),
    ] {
        match q.get(key).parse::<i64>() {
            Ok(v) => *field = v,
            Err(_) => {
                return Ok(back(
                    &s.csrf,
                    "/console/settings",
                    Err(format!("'{}' is not a number of seconds.", q.get(key))),
                ))
            }
        }
    }
    Ok(match admin.set_settings(&s.caller, st).await {
        Ok(()) => back(&s.csrf, "/console/settings", Ok("Settings saved.".into())),
        Err(e) => back(&s.csrf, "/console/settings", Err(said(&e))),
    })
}

// ---- the audit trail ----

pub async fn audit(State(app): State<ApiState>, headers: HeaderMap, uri: Uri) -> Page_ {
    let s = session(&app, &headers, "/console/audit").await?;
    let q = Query::of_uri(&uri);
    let filter = q.get("q");
    let found = app
        .services
        .admin()
        .audit_trail(&s.caller, &filter, 500)
        .await
        .map_err(refused)?;
    Ok(render(
        StatusCode::OK,
        &AuditPage {
            f: Frame::of(&s, "Audit trail", "audit").with_messages(&q, &s.csrf),
            q: filter,
            off: found.is_none(),
            rows: found.unwrap_or_default(),
        },
    ))
}
