//! The grant core's failures, in the domain's words (each face maps them to its wire).

use crate::domain::StoreError;
use crate::identity::{IdpError, RejectCause};
use crate::jwt::JwtErrorClass;

/// The failures of the grant flows (protocol.md: authorize, refresh, verify, revoke).
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("client_id missing")]
    MissingClientId,
    #[error("username or password missing")]
    MissingCredentials,
    #[error("refresh_token missing")]
    MissingRefreshToken,
    #[error("password authentication disabled")]
    PasswordAuthDisabled,
    #[error("refresh endpoint disabled")]
    RefreshDisabled,
    #[error("certificate authentication disabled")]
    CertificateAuthDisabled,
    /// The certificate grant's refusal: what the client is told, and the audit trail's cause.
    #[error("certificate refused: {cause}")]
    Certificate {
        refusal: crate::certauth::Refusal,
        cause: &'static str,
    },
    #[error("invalid scope {0:?}")]
    InvalidScope(String),
    #[error("application {0:?} not registered")]
    UnknownClient(String),
    /// Client authentication failed (wrong, missing or unexpected secret).
    #[error("client authentication failed")]
    ClientAuthFailed,
    /// A grant type only confidential clients (with a secret) may use.
    #[error("client has no secret")]
    PublicClient,
    #[error("login rejected: {0:?}")]
    BadCredentials(RejectCause),
    #[error("no rule admits the identity")]
    NotAdmitted,
    #[error("scope not authorized: exceeds the {0:?}'s maximum")]
    ScopeNotAuthorized(ScopeLimit),
    #[error("client_id does not match the grant")]
    ClientMismatch,
    #[error("refresh token invalid, grant revoked or expired")]
    InvalidGrant,
    #[error("token invalid")]
    InvalidToken,
    #[error("device_code missing")]
    MissingDeviceCode,
    #[error("device authentication disabled")]
    DeviceAuthDisabled,
    #[error("device request not yet approved")]
    AuthorizationPending,
    #[error("device polled faster than its interval")]
    SlowDown,
    #[error("device request denied")]
    DeviceAccessDenied,
    #[error("device code expired")]
    DeviceCodeExpired,
    #[error("device code unknown, used or another client's")]
    DeviceCodeInvalid,
    #[error("no pending device request has this user code")]
    UnknownUserCode,
    #[error("too many wrong user codes")]
    TooManyGuesses,
    #[error("JWT authentication disabled")]
    JwtAuthDisabled,
    #[error("jwt missing")]
    MissingJwt,
    /// A JWT refused (the audit trail has the reason); `class` says how to answer.
    #[error("JWT refused: {cause}")]
    JwtRefused {
        class: JwtErrorClass,
        cause: &'static str,
    },
    #[error("overloaded")]
    Overloaded,
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// What kept a requested scope from being granted: the application's scope or the maximum of the
/// rule that admitted the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeLimit {
    Application,
    Rule,
}

impl ScopeLimit {
    /// The audit trail's word for it (and the access log's).
    pub fn cause(self) -> &'static str {
        match self {
            ScopeLimit::Application => "scope_exceeds_application",
            ScopeLimit::Rule => "scope_exceeds_rule",
        }
    }
}

/// A login refusal's cause in the audit trail's words.
pub fn reject_word(cause: RejectCause) -> &'static str {
    match cause {
        RejectCause::UnknownUser => "unknown_user",
        RejectCause::WrongPassword => "wrong_password",
        RejectCause::Disabled => "disabled",
        RejectCause::Locked => "locked",
        RejectCause::EmptyPassword => "empty_password",
        RejectCause::InvalidName => "invalid_name",
    }
}

impl GrantError {
    /// For refusals: the cause in the audit trail's words, for the access log. None for errors
    /// that are not a refusal of the caller (overload, an unavailable store).
    pub fn cause(&self) -> Option<&'static str> {
        use GrantError::*;
        Some(match self {
            MissingClientId | MissingCredentials | MissingRefreshToken | MissingDeviceCode
            | MissingJwt => "malformed",
            PasswordAuthDisabled
            | RefreshDisabled
            | DeviceAuthDisabled
            | JwtAuthDisabled
            | CertificateAuthDisabled => "flow_disabled",
            Certificate { cause, .. } => cause,
            JwtRefused {
                class: JwtErrorClass::Unavailable,
                ..
            } => return None,
            JwtRefused { cause, .. } => cause,
            AuthorizationPending => "authorization_pending",
            SlowDown => "slow_down",
            DeviceAccessDenied => "access_denied",
            DeviceCodeExpired => "expired_token",
            DeviceCodeInvalid => "invalid_device_code",
            UnknownUserCode => "unknown_user_code",
            TooManyGuesses => "too_many_user_code_guesses",
            InvalidScope(_) => "invalid_scope",
            UnknownClient(_) => "unknown_client",
            ClientAuthFailed => "client_auth_failed",
            PublicClient => "public_client",
            BadCredentials(c) => reject_word(*c),
            NotAdmitted => "not_admitted",
            ScopeNotAuthorized(limit) => limit.cause(),
            ClientMismatch => "client_mismatch",
            InvalidGrant => "invalid_grant",
            InvalidToken => "invalid_token",
            Overloaded | Unavailable(_) => return None,
        })
    }
}

impl From<crate::audit::AuditError> for GrantError {
    fn from(e: crate::audit::AuditError) -> Self {
        GrantError::Unavailable(e.to_string())
    }
}

/// A requested scope that does not parse, quoting the part the caller got wrong.
impl From<crate::scope::ScopeError> for GrantError {
    fn from(e: crate::scope::ScopeError) -> Self {
        GrantError::InvalidScope(e.item().to_string())
    }
}

impl From<StoreError> for GrantError {
    fn from(e: StoreError) -> Self {
        GrantError::Unavailable(e.to_string())
    }
}

impl From<IdpError> for GrantError {
    fn from(e: IdpError) -> Self {
        match e {
            IdpError::Overloaded => GrantError::Overloaded,
            IdpError::Unavailable(m) => GrantError::Unavailable(m),
        }
    }
}
