//! `/vedauth/...`: authorize, refresh, verify, revoke, isAuthServer.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::Serialize;

use super::super::common::{
    bearer, device_response, json_bytes, json_rendered, json_response, no_store, Client,
    CommonError, Params, PresentedCert,
};
use super::super::ApiState;
use super::error::reason_phrase;
use super::VedauthError;
use crate::domain::Grant;
use crate::grants::{
    CertificateRequest, GrantError, GrantRequest, IssuedTokens, JwtRequest, PasswordRequest,
    RefreshRequest,
};
use crate::grants::{DeviceStart, DeviceTokenRequest, Rendering, DEVICE_CODE_GRANT};
use crate::wire_time::{DotnetDate, Iso8601};

/// The success body of authorize and refresh; field order as docs/protocol.md §5.
#[derive(Serialize)]
struct TokenBody<'a> {
    access_token: &'a str,
    refresh_token: Option<&'a str>,
    expires_in: i64,
    expires: i64,
    token_type: &'static str,
    scope: &'a str,
    identity: &'a str,
    refresh_until: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a str>,
}

fn token_response(t: &IssuedTokens) -> Response {
    no_store(json_response(
        StatusCode::OK,
        &TokenBody {
            access_token: t.access_token.expose(),
            refresh_token: t.refresh_token.as_ref().map(|r| r.expose()),
            expires_in: t.expires_in,
            expires: t.expires,
            token_type: "Bearer",
            scope: &t.scope,
            identity: &t.identity,
            refresh_until: t.refresh_until,
            state: t.state.as_deref(),
        },
    ))
}

pub async fn authorize_oauth(
    State(app): State<ApiState>,
    Client(source): Client,
    params: Result<Params, CommonError>,
) -> Result<Response, VedauthError> {
    let p = params?;
    p.require_strings(&["client_id", "username", "password", "scope", "state"])?;
    let req = PasswordRequest {
        client_id: p.get("client_id"),
        username: p.get("username"),
        password: p.secret("password"),
        scope: p.get("scope"),
        state: p.get("state"),
        source: Some(source),
    };
    let issued = app.services.token(GrantRequest::Password(req)).await?;
    Ok(token_response(&issued))
}

/// The client-certificate grant: the body names the application and scope, the connection (or
/// a trusted proxy) the certificate.
pub async fn authorize_certificate(
    State(app): State<ApiState>,
    Client(source): Client,
    PresentedCert(chain): PresentedCert,
    params: Result<Params, CommonError>,
) -> Result<Response, VedauthError> {
    let p = params?;
    p.require_strings(&["client_id", "scope", "state"])?;
    let req = CertificateRequest {
        client_id: p.get("client_id"),
        scope: p.get("scope"),
        state: p.get("state"),
        chain,
        source: Some(source),
    };
    let issued = app.services.token(GrantRequest::Certificate(req)).await?;
    Ok(token_response(&issued))
}

/// Windows Integrated authentication (NTLM/Kerberos) is not offered: the fixed answer of
/// decisions.md §12, whatever the request holds.
pub async fn authorize_integrated() -> VedauthError {
    VedauthError::new(
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
        "Windows Integrated authentication not enabled",
    )
}

pub async fn authorize_token(
    State(app): State<ApiState>,
    Client(source): Client,
    params: Result<Params, CommonError>,
) -> Result<Response, VedauthError> {
    let p = params?;
    p.require_strings(&["client_id", "refresh_token", "grant_type", "device_code"])?;
    // A device's poll names its grant type (RFC 8628 §3.4); anything else is a refresh, as
    // TPP's clients send none.
    if p.get("grant_type").as_deref() == Some(DEVICE_CODE_GRANT) {
        let req = DeviceTokenRequest {
            client_id: p.get("client_id"),
            device_code: p.secret("device_code"),
            source: Some(source),
        };
        let issued = app.services.token(GrantRequest::Device(req)).await?;
        return Ok(token_response(&issued));
    }
    let req = RefreshRequest {
        client_id: p.get("client_id"),
        refresh_token: p.secret("refresh_token"),
        source: Some(source),
    };
    let issued = app.services.token(GrantRequest::Refresh(req)).await?;
    Ok(token_response(&issued))
}

pub async fn authorize_device(
    State(app): State<ApiState>,
    Client(source): Client,
    uri: http::Uri,
    headers: HeaderMap,
    params: Result<Params, CommonError>,
) -> Result<Response, VedauthError> {
    let p = params?;
    p.require_strings(&["client_id", "scope"])?;
    let started = app
        .services
        .start_device(DeviceStart {
            client_id: p.get("client_id"),
            scope: p.get("scope"),
            source: Some(source),
        })
        .await?;
    let uri = verification_uri(&uri, &headers, app.tls);
    Ok(device_response(&started, uri))
}

/// The console's approval page as the device's user reaches this server: the host the device
/// used (it reached us by that name), on the console's `/device` path.
fn verification_uri(uri: &http::Uri, headers: &HeaderMap, tls: bool) -> String {
    // HTTP/2 carries the host in the URI (`:authority`), HTTP/1.1 in `Host`.
    let host = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{host}/device")
}

/// `authorize/jwt`: `{client_id, jwt, scope}` (next-ring.md §A.2).
pub async fn authorize_jwt(
    State(app): State<ApiState>,
    Client(source): Client,
    params: Result<Params, CommonError>,
) -> Result<Response, VedauthError> {
    let p = params?;
    p.require_strings(&["client_id", "jwt", "scope"])?;
    let req = JwtRequest {
        client_id: p.get("client_id"),
        jwt: p.secret("jwt"),
        scope: p.get("scope"),
        source: Some(source),
    };
    let issued = app.services.token(GrantRequest::Jwt(req)).await?;
    Ok(token_response(&issued))
}

/// The 13 fields of docs/protocol.md §8, in the observed order; borrowed from the grant, so a
/// verify allocates nothing but the body it writes.
#[derive(Serialize)]
pub struct VerifyBody<'a> {
    access_issued_on: DotnetDate,
    #[serde(rename = "access_issued_on_ISO8601")]
    access_issued_on_iso8601: Iso8601,
    access_issued_on_unix_time: i64,
    application: &'a str,
    expires: Option<DotnetDate>,
    #[serde(rename = "expires_ISO8601")]
    expires_iso8601: Option<Iso8601>,
    expires_unix_time: i64,
    grant_issued_on: DotnetDate,
    #[serde(rename = "grant_issued_on_ISO8601")]
    grant_issued_on_iso8601: Iso8601,
    grant_issued_on_unix_time: i64,
    identity: &'a str,
    scope: &'a str,
    valid_for: i64,
}

impl<'a> VerifyBody<'a> {
    pub fn of(g: &'a Grant) -> Self {
        Self {
            access_issued_on: DotnetDate(g.access_issued_at),
            access_issued_on_iso8601: Iso8601(g.access_issued_at),
            access_issued_on_unix_time: g.access_issued_at,
            application: &g.client_id,
            expires: g.expires_at.map(DotnetDate),
            expires_iso8601: g.expires_at.map(Iso8601),
            expires_unix_time: g.expires_at.unwrap_or(0),
            grant_issued_on: DotnetDate(g.issued_at),
            grant_issued_on_iso8601: Iso8601(g.issued_at),
            grant_issued_on_unix_time: g.issued_at,
            identity: &g.identity,
            scope: &g.scope,
            valid_for: g.access_expires_at - g.access_issued_at,
        }
    }
}

/// Checked when compiled; saves building the phrase on every verify.
const TOKEN_IS_VALID: hyper::ext::ReasonPhrase =
    hyper::ext::ReasonPhrase::from_static(b"Token is valid");

/// Takes the request whole: a `HeaderMap` argument would be a copy of every header.
pub async fn verify(
    State(app): State<ApiState>,
    req: axum::extract::Request,
) -> Result<Response, VedauthError> {
    let token = bearer(req.headers()).ok_or_else(VedauthError::invalid_token)?;
    let grant = app.services.verify(token).await?;
    // Rendered once per cached grant: a resource server verifies the same token many times.
    let body = grant
        .rendered(Rendering::VerifyBody, |g| {
            Some(json_bytes(&VerifyBody::of(g)))
        })
        .unwrap_or_default();
    let mut res = json_rendered(StatusCode::OK, body);
    res.extensions_mut().insert(TOKEN_IS_VALID);
    Ok(no_store(res))
}

pub async fn revoke(
    State(app): State<ApiState>,
    Client(source): Client,
    headers: HeaderMap,
) -> Result<Response, VedauthError> {
    let not_found = || VedauthError::new(StatusCode::ACCEPTED, "invalid_token", "Token not found");
    let Some(token) = bearer(&headers) else {
        return Err(not_found());
    };
    match app.services.revoke(token, Some(source)).await {
        Ok(grant) => {
            let mut res = json_response(StatusCode::OK, &serde_json::json!({}));
            let msg = format!(
                "Grant for identity {} with scope {} has been revoked",
                grant.identity, grant.scope
            );
            if let Some(p) = reason_phrase(&msg) {
                res.extensions_mut().insert(p);
            }
            Ok(res)
        }
        Err(GrantError::InvalidToken) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

pub async fn is_auth_server() -> Response {
    let mut res = json_response(StatusCode::ACCEPTED, &serde_json::json!({}));
    if let Some(p) = reason_phrase("Venafi Authentication Server") {
        res.extensions_mut().insert(p);
    }
    res.into_response()
}
