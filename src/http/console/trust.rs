//! The pages of what the JWT and certificate grants trust: the JWT mappings (read by Admin
//! and Auditor, changed by Admin) and the trusted certificate issuers (read by Admin,
//! GrantAdmin and Auditor, changed by Admin). The administration core checks the roles and
//! writes the audit trail; these pages only show what it allows.
//!
//! A refused create or edit shows the page again with what was typed (eight fields, or a PEM
//! bundle, are too much to type twice); a success redirects, as every other form does.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, Uri};

use super::pages::{back, enc, form, refused, said, Page_};
use super::session::{session, Session};
use super::views::{Frame, IssuerRow, IssuersPage, JwtMappingPage, JwtMappingsPage, MappingView};
use super::{render, ConsoleError, Query};
use crate::admin::{AdminError, Caller, Page};
use crate::domain::JwtMapping;
use crate::http::ApiState;
use crate::services::Services;
use crate::wire_time::iso8601;

const MAPPINGS: &str = "/console/jwt-mappings";
const ISSUERS: &str = "/console/issuers";

impl From<&JwtMapping> for MappingView {
    fn from(m: &JwtMapping) -> Self {
        Self {
            name: m.name.clone(),
            issuer_uri: m.issuer_uri.clone(),
            jwks_uri: m.jwks_uri.clone().unwrap_or_default(),
            purpose_field: m.purpose_field.clone(),
            purpose_match: m.purpose_match.clone(),
            id_field: m.id_field.clone(),
            id_match: m.id_match.clone(),
            grantee: m.grantee_prefixed_universal.clone().unwrap_or_default(),
        }
    }
}

impl MappingView {
    /// The create form's starting values: the claims most issuers use (as the CLI's defaults).
    fn defaults() -> Self {
        Self {
            purpose_field: "aud".into(),
            id_field: "sub".into(),
            ..Self::default()
        }
    }
}

/// The mapping a form describes; empty optional fields are absent (the core tidies them).
fn mapping_of(name: String, q: &Query) -> JwtMapping {
    JwtMapping {
        name,
        issuer_uri: q.get("issuer_uri"),
        jwks_uri: q.opt("jwks_uri"),
        purpose_field: q.get("purpose_field"),
        purpose_match: q.get("purpose_match"),
        id_field: q.get("id_field"),
        id_match: q.get("id_match"),
        grantee_prefixed_universal: q.opt("grantee"),
    }
}

/// The status of a page shown again with a refusal on it.
fn status_of(e: &AdminError) -> StatusCode {
    match e {
        AdminError::NoRole | AdminError::Forbidden => StatusCode::FORBIDDEN,
        AdminError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

// ---- JWT mappings ----

/// The mappings page's rows: one listing, whatever their number.
pub async fn jwt_mappings_view(
    services: &Services,
    caller: &Caller,
) -> Result<Vec<MappingView>, AdminError> {
    let all = services
        .admin()
        .enumerate_jwt_mappings(caller, Page::default())
        .await?;
    Ok(all.iter().map(MappingView::from).collect())
}

async fn mappings_page(
    app: &ApiState,
    s: &Session,
    q: &Query,
    new: MappingView,
    refusal: Option<&AdminError>,
) -> Page_ {
    let rows = jwt_mappings_view(&app.services, &s.caller)
        .await
        .map_err(refused)?;
    let mut f = Frame::of(s, "JWT mappings", "jwt").with_messages(q, &s.csrf);
    let status = match refusal {
        Some(e) => {
            f.error = said(e);
            status_of(e)
        }
        None => StatusCode::OK,
    };
    Ok(render(status, &JwtMappingsPage { f, rows, new }))
}

pub async fn jwt_mappings(State(app): State<ApiState>, headers: HeaderMap, uri: Uri) -> Page_ {
    let s = session(&app, &headers, MAPPINGS).await?;
    let q = Query::of_uri(&uri);
    mappings_page(&app, &s, &q, MappingView::defaults(), None).await
}

pub async fn create_jwt_mapping(
    State(app): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Page_ {
    let s = session(&app, &headers, MAPPINGS).await?;
    let q = form(&s, &body)?;
    let m = mapping_of(q.get("name"), &q);
    let typed = MappingView::from(&m);
    match app.services.admin().create_jwt_mapping(&s.caller, m).await {
        Ok(m) => Ok(back(
            &s.csrf,
            MAPPINGS,
            Ok(format!(
                "Created the JWT mapping {}: tokens of {} are accepted while the JWT grant is on (Settings) and a rule admits their identity.",
                m.name, m.issuer_uri
            )),
        )),
        Err(e) => mappings_page(&app, &s, &Query::default(), typed, Some(&e)).await,
    }
}

fn mapping_page(s: &Session, q: &Query, m: MappingView, refusal: Option<&AdminError>) -> Response {
    let mut f = Frame::of(s, &format!("JWT mapping {}", m.name), "jwt").with_messages(q, &s.csrf);
    let status = match refusal {
        Some(e) => {
            f.error = said(e);
            status_of(e)
        }
        None => StatusCode::OK,
    };
    render(status, &JwtMappingPage { f, m })
}

pub async fn jwt_mapping(
    State(app): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
) -> Page_ {
    let s = session(&app, &headers, uri.path()).await?;
    match app.services.admin().get_jwt_mapping(&s.caller, &name).await {
        Ok(m) => Ok(mapping_page(
            &s,
            &Query::of_uri(&uri),
            MappingView::from(&m),
            None,
        )),
        Err(e @ AdminError::NotFound(_)) => {
            Err(ConsoleError::new(StatusCode::NOT_FOUND, said(&e)).into_response())
        }
        Err(e) => Err(refused(e)),
    }
}

pub async fn update_jwt_mapping(
    State(app): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Page_ {
    let here = format!("{MAPPINGS}/{}", enc(&name));
    let s = session(&app, &headers, &here).await?;
    let q = form(&s, &body)?;
    // The name is the mapping's key: the address says which one, the form cannot rename it.
    let m = mapping_of(name, &q);
    let typed = MappingView::from(&m);
    match app.services.admin().update_jwt_mapping(&s.caller, m).await {
        Ok(()) => Ok(back(
            &s.csrf,
            MAPPINGS,
            Ok(format!("Saved the JWT mapping {}.", typed.name)),
        )),
        Err(e) => Ok(mapping_page(&s, &Query::default(), typed, Some(&e))),
    }
}

pub async fn delete_jwt_mapping(
    State(app): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Page_ {
    let s = session(&app, &headers, MAPPINGS).await?;
    form(&s, &body)?;
    Ok(
        match app.services.admin().delete_jwt_mapping(&s.caller, &name).await {
            Ok(()) => back(
                &s.csrf,
                MAPPINGS,
                Ok(format!(
                    "Deleted the JWT mapping {name}. Grants it gave live on until revoked or expired."
                )),
            ),
            Err(e) => back(&s.csrf, MAPPINGS, Err(said(&e))),
        },
    )
}

// ---- trusted certificate issuers ----

/// The issuers page's rows: one listing, whatever their number; `now` marks the expired.
pub async fn issuers_view(
    services: &Services,
    caller: &Caller,
) -> Result<Vec<IssuerRow>, AdminError> {
    let now = services.now();
    let all = services.admin().list_issuers(caller).await?;
    Ok(all
        .into_iter()
        .map(|i| IssuerRow {
            expired: i.not_after <= now,
            not_before: iso8601(i.not_before),
            not_after: iso8601(i.not_after),
            added: iso8601(i.added_at),
            fingerprint: i.fingerprint,
            subject: i.subject,
        })
        .collect())
}

async fn issuers_page(
    app: &ApiState,
    s: &Session,
    q: &Query,
    pem: String,
    refusal: Option<&AdminError>,
) -> Page_ {
    let rows = issuers_view(&app.services, &s.caller)
        .await
        .map_err(refused)?;
    let mut f = Frame::of(s, "Trusted certificate issuers", "issuers").with_messages(q, &s.csrf);
    let status = match refusal {
        Some(e) => {
            f.error = said(e);
            status_of(e)
        }
        None => StatusCode::OK,
    };
    Ok(render(status, &IssuersPage { f, rows, pem }))
}

pub async fn issuers(State(app): State<ApiState>, headers: HeaderMap, uri: Uri) -> Page_ {
    let s = session(&app, &headers, ISSUERS).await?;
    issuers_page(&app, &s, &Query::of_uri(&uri), String::new(), None).await
}

pub async fn add_issuers(State(app): State<ApiState>, headers: HeaderMap, body: Bytes) -> Page_ {
    let s = session(&app, &headers, ISSUERS).await?;
    let q = form(&s, &body)?;
    let pem = q.raw("pem").unwrap_or("").to_string();
    match app.services.admin().add_issuers(&s.caller, &pem).await {
        Ok(added) => {
            let (new, old): (Vec<_>, Vec<_>) = added.iter().partition(|i| i.added.unwrap_or(true));
            let mut text = match new.len() {
                0 => "No new issuer.".to_string(),
                n => format!(
                    "Now trusted ({n}): {}.",
                    new.iter()
                        .map(|i| i.subject.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            };
            if !old.is_empty() {
                text.push_str(&format!(" Already trusted: {}.", old.len()));
            }
            Ok(back(&s.csrf, ISSUERS, Ok(text)))
        }
        Err(e) => issuers_page(&app, &s, &Query::default(), pem, Some(&e)).await,
    }
}

pub async fn remove_issuer(State(app): State<ApiState>, headers: HeaderMap, body: Bytes) -> Page_ {
    let s = session(&app, &headers, ISSUERS).await?;
    let q = form(&s, &body)?;
    let fingerprint = q.get("fingerprint");
    Ok(
        match app
            .services
            .admin()
            .remove_issuer(&s.caller, &fingerprint)
            .await
        {
            Ok(()) => back(
                &s.csrf,
                ISSUERS,
                Ok(format!(
                    "No longer trusted: {fingerprint}. Tokens already issued on its certificates live on until revoked or expired."
                )),
            ),
            Err(e) => back(&s.csrf, ISSUERS, Err(said(&e))),
        },
    )
}
