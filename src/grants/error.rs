//! The grant core's failures, in the domain's words (each face maps them to its wire).

use crate::domain::StoreError;
use crate::identity::{IdpError, RejectCause};

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
            MissingClientId | MissingCredentials | MissingRefreshToken => "malformed",
            PasswordAuthDisabled | RefreshDisabled | CertificateAuthDisabled => "flow_disabled",
            Certificate { cause, .. } => cause,
            InvalidScope(_) => "invalid_scope",
            UnknownClient(_) => "unknown_client",
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
