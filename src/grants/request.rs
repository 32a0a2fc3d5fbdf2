//! What the faces hand the grant core, and what it hands back.

use std::net::IpAddr;
use std::sync::Arc;

use crate::certauth::{ForwardedError, PresentedChain};
use crate::clock::UnixTime;
use crate::domain::{Application, Grant, Settings};
use crate::domain::{CanonicalScope, ClientId, GrantId, Identity};
use crate::identity::Principal;
use crate::scope::Scope;
use crate::secret::Secret;
use crate::token::TokenDigest;

/// A request for tokens, one variant per flow. Each face parses its wire into one of these;
/// `Engine::token` admits it with the flow's own checks and hands the admission to `issue`.
#[derive(Debug, Clone)]
pub enum GrantRequest {
    /// Resource owner password (VEDauth `authorize/oauth`).
    Password(PasswordRequest),
    /// Refresh token (VEDauth `authorize/token`).
    Refresh(RefreshRequest),
    /// Client credentials (the OAuth 2.0 face): a confidential application on its own behalf.
    ClientCredentials(ClientCredentialsRequest),
    /// A device's poll with its device code (RFC 8628, on VEDauth `authorize/token`).
    Device(DeviceTokenRequest),
    /// A JWT from a trusted issuer (VEDauth `authorize/jwt`).
    Jwt(JwtRequest),
    /// Client certificate (VEDauth `authorize/certificate`).
    Certificate(CertificateRequest),
}

impl GrantRequest {
    /// The grant type's name, for metrics and logs.
    pub fn grant_type(&self) -> GrantType {
        match self {
            GrantRequest::Password(_) => GrantType::Password,
            GrantRequest::Refresh(_) => GrantType::Refresh,
            GrantRequest::ClientCredentials(_) => GrantType::ClientCredentials,
            GrantRequest::Device(_) => GrantType::Device,
            GrantRequest::Jwt(_) => GrantType::Jwt,
            GrantRequest::Certificate(_) => GrantType::Certificate,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    Password,
    Refresh,
    ClientCredentials,
    Device,
    Jwt,
    Certificate,
}

impl GrantType {
    /// RFC 6749's name for it (also the metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::Password => "password",
            GrantType::Refresh => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::Device => DEVICE_CODE_GRANT,
            GrantType::Jwt => "jwt",
            // Not an RFC 6749 grant type; the name the metrics and the audit trail use.
            GrantType::Certificate => "client_certificate",
        }
    }
}

/// A password-grant request after body parsing; `None` = missing (absent, null or "").
#[derive(Debug, Default, Clone)]
pub struct PasswordRequest {
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub scope: Option<String>,
    pub state: Option<String>,
    /// The client's address, for the audit trail.
    pub source: Option<IpAddr>,
}

/// RFC 8628's grant type name.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A device's poll; `None` = missing.
#[derive(Debug, Default, Clone)]
pub struct DeviceTokenRequest {
    pub client_id: Option<String>,
    pub device_code: Option<Secret>,
    pub source: Option<IpAddr>,
}

#[derive(Debug, Default, Clone)]
pub struct RefreshRequest {
    pub client_id: Option<String>,
    pub refresh_token: Option<Secret>,
    pub source: Option<IpAddr>,
}

/// A client-credentials request; the secret is checked by the flow (on the hashing pool).
#[derive(Debug, Default, Clone)]
pub struct ClientCredentialsRequest {
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// None: the application's whole scope.
    pub scope: Option<String>,
    pub source: Option<IpAddr>,
}

/// A JWT-grant request after body parsing; `None` = missing.
#[derive(Debug, Default, Clone)]
pub struct JwtRequest {
    pub client_id: Option<String>,
    /// The compact JWS (a bearer credential: never logged).
    pub jwt: Option<Secret>,
    pub scope: Option<String>,
    pub source: Option<IpAddr>,
}

/// A client that proved who it is: its application, and whether it has a secret (a
/// confidential client) or not (a public one, which only named itself).
#[derive(Debug, Clone)]
pub struct ClientAuth {
    /// Shared: a grant for the client takes it as it is.
    pub app: Arc<Application>,
    pub confidential: bool,
}

/// A certificate-grant request: the body's fields and the chain the connection presented (its
/// own TLS handshake, or a trusted proxy's header; an unreadable header is an error here, so
/// that the grant can audit it).
#[derive(Debug, Default, Clone)]
pub struct CertificateRequest {
    pub client_id: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub chain: Option<Result<PresentedChain, ForwardedError>>,
    pub source: Option<IpAddr>,
}

/// What a successful grant request hands back.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub expires: UnixTime,
    pub expires_in: i64,
    pub scope: CanonicalScope,
    pub identity: Identity,
    pub refresh_until: Option<UnixTime>,
    pub state: Option<String>,
    pub grant_id: GrantId,
    pub client_id: ClientId,
}

/// A request a flow has admitted: the credential was good. What it may get is decided by
/// `issue` alone.
#[derive(Debug)]
pub(crate) struct Admission {
    pub grant_type: GrantType,
    pub source: Option<IpAddr>,
    pub state: Option<String>,
    pub admitted: Admitted,
}

#[derive(Debug)]
pub(crate) enum Admitted {
    /// A new grant for an authenticated identity that asks for a scope.
    New {
        app: Arc<Application>,
        settings: Arc<Settings>,
        principal: Principal,
        scope: Scope,
        /// The name the identity was given as, for the audit trail.
        username: Option<String>,
    },
    /// A new grant for an application on its own behalf (client credentials): identity
    /// `client:<client_id>`, no rule, no refresh token.
    Client {
        app: Arc<Application>,
        settings: Arc<Settings>,
        scope: Scope,
    },
    /// The next token pair of an existing grant, in exchange for its refresh token.
    Rotate {
        grant: Box<Grant>,
        presented: TokenDigest,
        /// The presented refresh token itself: the key of the answer kept for the grace window.
        presented_token: Secret,
    },
    /// A rotated refresh token presented again within the grace window: the answer it got.
    Repeat {
        grant: Box<Grant>,
        pair: super::grace::Pair,
    },
}
