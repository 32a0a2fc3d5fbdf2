//! The one error type of the HTTP layer. It renders the VEDauth JSON error
//! `{"error": ..., "error_description": ...}` with its status, headers and reason phrase.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

use crate::grants::GrantError;
use crate::jwt::JwtErrorClass;

use super::super::common::{json_response, CommonError};

pub const MALFORMED: &str = "The request is missing a required parameter or is otherwise malformed";
pub const INVALID_TOKEN: &str =
    "The access token provided is expired, revoked, malformed, or invalid for other reasons";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VedauthError {
    pub status: StatusCode,
    pub error: &'static str,
    /// A fixed text of ours, or one built with request data (which never goes in the status
    /// line: client input stays out of it).
    pub description: Cow<'static, str>,
    pub retry_after: Option<u64>,
    /// Adds `WWW-Authenticate: Bearer error="..."` (401 on bearer-protected endpoints).
    pub bearer_challenge: bool,
    /// For refusals: the cause in the audit trail's words, for the access log.
    pub cause: Option<&'static str>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    error_description: &'a str,
}

impl VedauthError {
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
            bearer_challenge: false,
            cause: None,
        }
    }
    pub fn malformed() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", MALFORMED)
    }
    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "The request body is too large",
        )
    }
    pub fn invalid_token() -> Self {
        Self {
            bearer_challenge: true,
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_token", INVALID_TOKEN)
        }
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
    /// 403 for a valid token that lacks the scope an endpoint needs.
    pub fn insufficient_scope(required: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("Grant rejected scope '{required}'. Call POST Authorize/OAuth with the correct scope and restriction. Update the header with the new token and retry."),
        )
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request", "No such endpoint")
    }
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "Method not allowed on this endpoint",
        )
    }
}

impl From<CommonError> for VedauthError {
    fn from(e: CommonError) -> Self {
        match e {
            CommonError::Malformed => Self::malformed(),
            CommonError::TooLarge => Self::too_large(),
            CommonError::RateLimited { retry_after } => Self {
                retry_after: Some(retry_after),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "slow_down",
                    "Too many requests; slow down and retry later",
                )
            },
            CommonError::NotFound => Self::not_found(),
            CommonError::MethodNotAllowed => Self::method_not_allowed(),
        }
    }
}

impl From<GrantError> for VedauthError {
    fn from(e: GrantError) -> Self {
        use GrantError::*;
        use StatusCode as S;
        let cause = e.cause();
        let err = match e {
            MissingClientId => Self::new(
                S::BAD_REQUEST,
                "invalid_request",
                "Application identifier is missing",
            ),
            MissingCredentials => Self::new(
                S::BAD_REQUEST,
                "invalid_request",
                "Missing username or password",
            ),
            MissingRefreshToken => {
                Self::new(S::BAD_REQUEST, "invalid_request", "Missing refresh token")
            }
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
            InvalidScope(item) => Self::new(
                S::BAD_REQUEST,
                "invalid_scope",
                format!("Failed to issue grant: scope '{item}' is not valid"),
            ),
            UnknownClient(id) => Self::new(
                S::BAD_REQUEST,
                "invalid_client",
                format!("Failed to issue grant: application '{id}' is not registered"),
            ),
            // Only the OAuth 2.0 face authenticates clients; answered in this face's terms should
            // one ever reach it.
            ClientAuthFailed | PublicClient => Self::new(
                S::UNAUTHORIZED,
                "invalid_client",
                "Client authentication failed",
            ),
            BadCredentials(_) => Self::new(
                S::UNAUTHORIZED,
                "invalid_grant",
                "Username/password combination not valid",
            ),
            NotAdmitted => Self::new(
                S::UNAUTHORIZED,
                "invalid_grant",
                "Failed to issue grant: user is not allowed to use this application",
            ),
            ScopeNotAuthorized(_) => Self::new(
                S::FORBIDDEN,
                "invalid_scope",
                "Failed to issue grant: User is not authorized for the requested scope",
            ),
            ClientMismatch => Self::new(
                S::BAD_REQUEST,
                "invalid_grant",
                "The client_id value being requested with the refresh token does not match the client_id of the access token making the call",
            ),
            InvalidGrant => Self::new(
                S::BAD_REQUEST,
                "invalid_grant",
                "Grant has been revoked, has expired, or the refresh token is invalid",
            ),
            InvalidToken => Self::invalid_token(),
            MissingDeviceCode => Self::new(S::BAD_REQUEST, "invalid_request", "Missing device code"),
            DeviceAuthDisabled => Self::new(
                S::BAD_REQUEST,
                "unauthorized_client",
                "Device authentication not enabled",
            ),
            // RFC 8628 §3.5: every poll refusal is a 400.
            AuthorizationPending => Self::new(
                S::BAD_REQUEST,
                "authorization_pending",
                "The request has not been approved yet",
            ),
            SlowDown => Self::new(
                S::BAD_REQUEST,
                "slow_down",
                "Polling too fast; wait 5 seconds longer between requests",
            ),
            DeviceAccessDenied => {
                Self::new(S::BAD_REQUEST, "access_denied", "The request was denied")
            }
            DeviceCodeExpired => {
                Self::new(S::BAD_REQUEST, "expired_token", "The device code has expired")
            }
            DeviceCodeInvalid => Self::new(
                S::BAD_REQUEST,
                "invalid_grant",
                "The device code is invalid, already used, or was issued to another client",
            ),
            // Only the console meets these; an API answer is still an answer.
            UnknownUserCode => Self::new(
                S::BAD_REQUEST,
                "invalid_grant",
                "No pending request has this user code",
            ),
            TooManyGuesses => Self::new(
                S::TOO_MANY_REQUESTS,
                "slow_down",
                "Too many wrong user codes; try again later",
            ),
            JwtAuthDisabled => Self::new(
                S::BAD_REQUEST,
                "unauthorized_client",
                "JWT authentication not enabled",
            ),
            MissingJwt => Self::new(S::BAD_REQUEST, "invalid_request", "Missing jwt"),
            JwtRefused { class, .. } => match class {
                JwtErrorClass::Malformed => {
                    Self::new(S::BAD_REQUEST, "invalid_request", class.description())
                }
                JwtErrorClass::NotValid | JwtErrorClass::NoMapping => {
                    Self::new(S::UNAUTHORIZED, "invalid_grant", class.description())
                }
                JwtErrorClass::Unavailable => Self::unavailable(5, class.description()),
            },
            Overloaded => Self::unavailable(1, "The server is busy; retry shortly"),
            Unavailable(detail) => {
                tracing::warn!(%detail, "request failed: backend unavailable");
                Self::unavailable(5, "The service is temporarily unavailable; retry shortly")
            }
        };
        Self { cause, ..err }
    }
}

/// A reason phrase for HTTP/1.1 status lines, if `s` can be one (visible ASCII and spaces).
pub fn reason_phrase(s: &str) -> Option<hyper::ext::ReasonPhrase> {
    if s.len() > 200 {
        return None;
    }
    hyper::ext::ReasonPhrase::try_from(s.as_bytes().to_vec()).ok()
}

impl IntoResponse for VedauthError {
    fn into_response(self) -> Response {
        let mut res = json_response(
            self.status,
            &Body {
                error: self.error,
                error_description: &self.description,
            },
        );
        let h = res.headers_mut();
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.bearer_challenge {
            if let Ok(v) = HeaderValue::from_str(&format!("Bearer error=\"{}\"", self.error)) {
                h.insert(header::WWW_AUTHENTICATE, v);
            }
        }
        // Real TPP puts the description in the status line; clients print it. Only our own
        // fixed texts go there: a description carrying request data (a scope item, a client id)
        // stays in the body.
        if let Cow::Borrowed(text) = self.description {
            if let Some(p) = reason_phrase(text) {
                res.extensions_mut().insert(p);
            }
        }
        if let Some(cause) = self.cause {
            res.extensions_mut()
                .insert(crate::telemetry::Refusal(cause));
        }
        res
    }
}
