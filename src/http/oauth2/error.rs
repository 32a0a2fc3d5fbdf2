//! The OAuth 2.0 face's error: RFC 6749 §5.2 (token endpoint), RFC 7009 and RFC 7662 share it.
//! `{"error": ..., "error_description": ...}` with `Cache-Control: no-store`; `invalid_client`
//! always carries `WWW-Authenticate: Basic realm="vedauth"` (RFC 6749 §5.2 asks for it when the
//! client tried Basic; sending it always tells every client which scheme to use).

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

use super::super::common::{json_response, no_store, CommonError};
use crate::grants::GrantError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: Cow<'static, str>,
    pub retry_after: Option<u64>,
    /// For refusals: the cause in the audit trail's words, for the access log.
    pub cause: Option<&'static str>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    error_description: &'a str,
}

impl OAuthError {
    pub fn new(
        status: StatusCode,
        error: &'static str,
        description: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            retry_after: None,
            cause: None,
        }
    }
    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }
    pub fn invalid_client() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        )
    }
    pub fn unsupported_grant_type(grant_type: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("Grant type '{grant_type}' is not supported here"),
        )
    }
    pub fn unavailable(retry_after: u64, description: &'static str) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                description,
            )
        }
    }
}

impl From<CommonError> for OAuthError {
    fn from(e: CommonError) -> Self {
        match e {
            CommonError::Malformed => Self::invalid_request(
                "The request is missing a required parameter or is otherwise malformed",
            ),
            CommonError::TooLarge => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "The request body is too large",
            ),
            CommonError::RateLimited { retry_after } => Self {
                retry_after: Some(retry_after),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "temporarily_unavailable",
                    "Too many requests; slow down and retry later",
                )
            },
            CommonError::NotFound => {
                Self::new(StatusCode::NOT_FOUND, "invalid_request", "No such endpoint")
            }
            CommonError::MethodNotAllowed => Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "Method not allowed on this endpoint",
            ),
        }
    }
}

/// The grant core's refusals in RFC 6749 §5.2's terms: bad user credentials are a 400
/// `invalid_grant` here (the VEDauth face answers 401), a failed client authentication a 401
/// `invalid_client`.
impl From<GrantError> for OAuthError {
    fn from(e: GrantError) -> Self {
        use GrantError::*;
        use StatusCode as S;
        let cause = e.cause();
        let err = match e {
            MissingClientId | UnknownClient(_) | ClientAuthFailed => Self::invalid_client(),
            MissingCredentials => Self::invalid_request("username and password are required"),
            MissingRefreshToken => Self::invalid_request("refresh_token is required"),
            PasswordAuthDisabled => Self::new(
                S::BAD_REQUEST,
                "unauthorized_client",
                "Username/Password authentication not enabled",
            ),
            RefreshDisabled => Self::new(
                S::BAD_REQUEST,
                "unauthorized_client",
                "Refresh token authentication not enabled",
            ),
            PublicClient => Self::new(
                S::BAD_REQUEST,
                "unauthorized_client",
                "client_credentials needs an application with a client secret",
            ),
            InvalidScope(item) => Self::new(
                S::BAD_REQUEST,
                "invalid_scope",
                format!("Scope '{item}' is not valid"),
            ),
            BadCredentials(_) => Self::new(
                S::BAD_REQUEST,
                "invalid_grant",
                "Username/password combination not valid",
            ),
            NotAdmitted => Self::new(
                S::BAD_REQUEST,
                "invalid_grant",
                "The user is not allowed to use this application",
            ),
            ScopeNotAuthorized(_) => Self::new(
                S::BAD_REQUEST,
                "invalid_scope",
                "The requested scope exceeds what may be granted",
            ),
            ClientMismatch => Self::new(
                S::BAD_REQUEST,
                "invalid_grant",
                "The refresh token was issued to another client",
            ),
            InvalidGrant => Self::new(
                S::BAD_REQUEST,
                "invalid_grant",
                "Grant has been revoked, has expired, or the refresh token is invalid",
            ),
            InvalidToken => Self::new(
                S::UNAUTHORIZED,
                "invalid_token",
                "The access token provided is expired, revoked, malformed, or invalid for other reasons",
            ),
            // The certificate grant is not served on this face; its refusals keep their text.
            CertificateAuthDisabled => Self::new(
                S::BAD_REQUEST,
                "unauthorized_client",
                "Certificate authentication not enabled",
            ),
            Certificate { refusal, .. } => Self::new(
                S::from_u16(refusal.status()).unwrap_or(S::UNAUTHORIZED),
                refusal.error(),
                refusal.description(),
            ),
            // RFC 7523 §3.1's answers for an assertion.
            JwtAuthDisabled => Self::new(
                S::BAD_REQUEST,
                "unauthorized_client",
                "JWT authentication not enabled",
            ),
            MissingJwt => Self::invalid_request("assertion is required"),
            // RFC 7523 §3.1: every refused assertion is `invalid_grant`.
            JwtRefused { class, .. } => match class {
                crate::jwt::JwtErrorClass::Unavailable => {
                    Self::unavailable(5, class.description())
                }
                _ => Self::new(S::BAD_REQUEST, "invalid_grant", class.description()),
            },
            // RFC 8628 §3.5's answers to a device's poll.
            MissingDeviceCode => Self::invalid_request("device_code is required"),
            DeviceAuthDisabled => Self::new(
                S::BAD_REQUEST,
                "unauthorized_client",
                "Device authentication not enabled",
            ),
            AuthorizationPending => Self::new(
                S::BAD_REQUEST,
                "authorization_pending",
                "The user has not yet approved the request",
            ),
            SlowDown => Self::new(S::BAD_REQUEST, "slow_down", "Polling too fast; slow down"),
            DeviceAccessDenied => {
                Self::new(S::BAD_REQUEST, "access_denied", "The user denied the request")
            }
            DeviceCodeExpired => {
                Self::new(S::BAD_REQUEST, "expired_token", "The device code has expired")
            }
            DeviceCodeInvalid => Self::new(
                S::BAD_REQUEST,
                "invalid_grant",
                "The device code is unknown, used, or another client's",
            ),
            UnknownUserCode | TooManyGuesses => Self::new(
                S::BAD_REQUEST,
                "invalid_request",
                "The user code is not valid",
            ),
            Overloaded => Self::unavailable(1, "The server is busy; retry shortly"),
            Unavailable(detail) => {
                tracing::warn!(%detail, "request failed: backend unavailable");
                Self::unavailable(5, "The service is temporarily unavailable; retry shortly")
            }
        };
        Self { cause, ..err }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut res = no_store(json_response(
            self.status,
            &Body {
                error: self.error,
                error_description: &self.description,
            },
        ));
        let h = res.headers_mut();
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.error == "invalid_client" {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"vedauth\""),
            );
        }
        if self.error == "invalid_token" {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"vedauth\", error=\"invalid_token\""),
            );
        }
        if let Some(cause) = self.cause {
            res.extensions_mut()
                .insert(crate::telemetry::Refusal(cause));
        }
        res
    }
}
