//! `POST /oauth2/token` (RFC 6749 §4.3, §4.4, §6; RFC 8628 §3.4; RFC 7523 §2.1): client
//! authentication, then the grant pipeline with the grant type's request.

use axum::extract::State;
use axum::response::Response;
use http::StatusCode;
use serde::Serialize;

use super::super::common::{device_response, json_response, no_store, Client, Posted};
use super::super::ApiState;
use super::client::presented;
use super::{rfc_scope, tpp_scope, OAuthError};
use crate::grants::{
    ClientCredentialsRequest, DeviceStart, DeviceTokenRequest, GrantRequest, IssuedTokens,
    JwtRequest, PasswordRequest, RefreshRequest, DEVICE_CODE_GRANT,
};

/// RFC 6749 §5.1, with vedauth's extras after the standard keys.
#[derive(Serialize)]
struct TokenBody<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    scope: String,
    /// The scope in TPP's canonical form, as the VEDauth face reports it.
    vedauth_scope: &'a str,
    expires: i64,
    identity: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_until: Option<i64>,
}

fn token_response(t: &IssuedTokens) -> Response {
    no_store(json_response(
        StatusCode::OK,
        &TokenBody {
            access_token: t.access_token.expose(),
            token_type: "Bearer",
            expires_in: t.expires_in,
            refresh_token: t.refresh_token.as_ref().map(|r| r.expose()),
            scope: rfc_scope(&t.scope),
            vedauth_scope: &t.scope,
            expires: t.expires,
            identity: &t.identity,
            refresh_until: t.refresh_until,
        },
    ))
}

/// RFC 7523 §2.1's grant type: a JWT from a trusted issuer, through the JWT grant's mappings.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The grant types of this endpoint, in the metadata document's order.
pub const GRANT_TYPES: &[&str] = &[
    "password",
    "refresh_token",
    "client_credentials",
    DEVICE_CODE_GRANT,
    JWT_BEARER_GRANT,
];

/// RFC 6749 lets the server require a scope; TPP grants always name theirs.
fn required(scope: Option<String>) -> Result<String, OAuthError> {
    scope.ok_or_else(|| {
        OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "scope is required",
        )
    })
}

pub async fn token(
    State(app): State<ApiState>,
    Client(source): Client,
    Posted { headers, params }: Posted,
) -> Result<Response, OAuthError> {
    let p = params?;
    p.require_strings(&[
        "grant_type",
        "client_id",
        "client_secret",
        "username",
        "password",
        "scope",
        "refresh_token",
        "device_code",
        "assertion",
    ])?;
    let grant_type = p
        .get("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    if !GRANT_TYPES.contains(&grant_type.as_str()) {
        return Err(OAuthError::unsupported_grant_type(&grant_type));
    }
    let client = presented(&headers, &p)?;
    let scope = p.get("scope").map(|s| tpp_scope(&s));
    let req = match grant_type.as_str() {
        "client_credentials" => GrantRequest::ClientCredentials(ClientCredentialsRequest {
            client_id: Some(client.client_id.into_owned()),
            client_secret: client.secret,
            scope,
            source: Some(source),
        }),
        other => {
            // The client proves itself first; the grant's own credential comes after.
            app.services
                .authenticate_client(&client.client_id, client.secret.as_ref(), Some(source))
                .await?;
            if other == "password" {
                GrantRequest::Password(PasswordRequest {
                    client_id: Some(client.client_id.into_owned()),
                    username: p.get("username"),
                    password: p.secret("password"),
                    scope: Some(required(scope)?),
                    state: None,
                    source: Some(source),
                })
            } else if other == JWT_BEARER_GRANT {
                // The assertion is checked (and used up) only after the client proved itself,
                // so a client with a wrong secret cannot burn another's JWT.
                GrantRequest::Jwt(JwtRequest {
                    client_id: Some(client.client_id.into_owned()),
                    jwt: p.secret("assertion"),
                    scope: Some(required(scope)?),
                    source: Some(source),
                })
            } else if other == DEVICE_CODE_GRANT {
                GrantRequest::Device(DeviceTokenRequest {
                    client_id: Some(client.client_id.into_owned()),
                    device_code: p.secret("device_code"),
                    source: Some(source),
                })
            } else {
                GrantRequest::Refresh(RefreshRequest {
                    client_id: Some(client.client_id.into_owned()),
                    refresh_token: p.secret("refresh_token"),
                    source: Some(source),
                })
            }
        }
    };
    let issued = app.services.token(req).await?;
    Ok(token_response(&issued))
}

/// `POST /oauth2/device_authorization` (RFC 8628 §3.1): the client authenticates as on the token
/// endpoint; the user approves at `<issuer>/device`.
pub async fn device_authorization(
    State(app): State<ApiState>,
    Client(source): Client,
    Posted { headers, params }: Posted,
) -> Result<Response, OAuthError> {
    let p = params?;
    p.require_strings(&["client_id", "client_secret", "scope"])?;
    let client = presented(&headers, &p)?;
    app.services
        .authenticate_client(&client.client_id, client.secret.as_ref(), Some(source))
        .await?;
    let started = app
        .services
        .start_device(DeviceStart {
            client_id: Some(client.client_id.into_owned()),
            scope: p.get("scope").map(|s| tpp_scope(&s)),
            source: Some(source),
        })
        .await?;
    let uri = format!("{}/device", app.issuer.trim_end_matches('/'));
    Ok(device_response(&started, uri))
}
