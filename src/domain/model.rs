//! The domain's records: what the server remembers. Plain data; the rules about them live in
//! `grants`, `admin` and `lockout`, and the storage ports (`ports.rs`) speak in these types.

use serde::{Deserialize, Serialize};

use super::words::{CanonicalScope, ClientId, GrantId, Identity, Role};
use crate::clock::UnixTime;
use crate::token::TokenDigest;

/// A grant validity: a number of seconds, or no expiry at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifetime {
    Never,
    Seconds(i64),
}

impl Lifetime {
    /// Storage form: seconds, with 0 meaning "never" (a zero-second grant is meaningless).
    pub fn to_db(self) -> i64 {
        match self {
            Lifetime::Never => 0,
            Lifetime::Seconds(s) => s,
        }
    }
    pub fn from_db(v: i64) -> Self {
        if v <= 0 {
            Lifetime::Never
        } else {
            Lifetime::Seconds(v)
        }
    }
    /// The moment a grant issued at `at` expires.
    pub fn expiry_from(self, at: UnixTime) -> Option<UnixTime> {
        match self {
            Lifetime::Never => None,
            Lifetime::Seconds(s) => Some(at.saturating_add(s)),
        }
    }
}

impl std::str::FromStr for Lifetime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("never") {
            return Ok(Lifetime::Never);
        }
        match s.parse::<i64>() {
            Ok(n) if n > 0 => Ok(Lifetime::Seconds(n)),
            _ => Err(format!(
                "'{s}' is not a number of seconds greater than 0 or 'never'"
            )),
        }
    }
}

impl std::fmt::Display for Lifetime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lifetime::Never => f.write_str("never"),
            Lifetime::Seconds(s) => write!(f, "{s}"),
        }
    }
}

/// A local user. The password is only ever held as an argon2id PHC string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Lower-case hyphenated UUID; the identity is `local:{id}`.
    pub id: String,
    pub name: String,
    pub full_name: Option<String>,
    pub email: Option<String>,
    pub password_hash: String,
    pub disabled: bool,
    pub created_at: UnixTime,
}

impl User {
    pub fn identity(&self) -> Identity {
        Identity::local(&self.id)
    }
}

/// An API integration. `client_id` is case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub client_id: ClientId,
    pub name: String,
    pub vendor: String,
    pub description: String,
    pub url: String,
    /// The scope the application says it requires; kept and returned, not enforced.
    pub scope: String,
    /// The most the application can grant; enforced at authorize time.
    pub max_scope: CanonicalScope,
    pub access_validity: Option<i64>,
    pub grant_validity: Option<Lifetime>,
    pub renewable: Option<bool>,
    pub unused_expiration: Option<i64>,
    pub created_at: UnixTime,
}

#[cfg(test)]
impl Application {
    /// An application with nothing set but its id (unit tests).
    pub fn bare(client_id: &str) -> Self {
        Self {
            client_id: client_id.into(),
            name: String::new(),
            vendor: String::new(),
            description: String::new(),
            url: String::new(),
            scope: String::new(),
            max_scope: CanonicalScope::default(),
            access_validity: None,
            grant_validity: None,
            renewable: None,
            unused_expiration: None,
            created_at: 0,
        }
    }
}

/// The secret of a confidential application (OAuth 2.0 client authentication), only ever held
/// as an argon2id PHC string. An application without one is a public client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSecret {
    pub client_id: ClientId,
    pub secret_hash: String,
    /// When this secret was set (a rotation replaces the row).
    pub created_at: UnixTime,
}

/// Who may obtain grants for an application, and with what limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub client_id: ClientId,
    /// The identity of a user or a group (resolved from a name when the rule was made), or
    /// `everyone`.
    pub trustee: Identity,
    pub description: String,
    pub max_scope: Option<CanonicalScope>,
    pub access_validity: Option<i64>,
    pub grant_validity: Option<Lifetime>,
    pub renewable: Option<bool>,
    pub created_at: UnixTime,
}

/// An OAuth role held by an identity, system-wide (`client_id` None) or on one application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAssignment {
    pub grantee: Identity,
    pub role: Role,
    pub client_id: Option<ClientId>,
}

/// A grant and its one live token pair (digests only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: GrantId,
    pub client_id: ClientId,
    pub identity: Identity,
    /// The trustee of the rule that admitted the grantee (a group, `everyone`, or the grantee).
    pub granted_to: Identity,
    pub scope: CanonicalScope,
    pub issued_at: UnixTime,
    /// None: the grant never expires.
    pub expires_at: Option<UnixTime>,
    pub renewable: bool,
    /// The access-token lifetime this grant's tokens get at each issue.
    pub access_validity: i64,
    pub access_digest: TokenDigest,
    pub access_issued_at: UnixTime,
    pub access_expires_at: UnixTime,
    pub refresh_digest: Option<TokenDigest>,
}

/// The local user a grant is for, as their login saw them. The store writes the grant only if,
/// when it writes it, the user is still there, enabled, and (after a password login) still has
/// the hash the password was checked against: a change that revoked the user's grants while
/// the login was under way then cannot leave this one behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub user_id: String,
    pub password_hash: Option<String>,
}

/// Why a grant for a [`Holder`] was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolderChange {
    Gone,
    Disabled,
    NewPassword,
}

impl HolderChange {
    /// What the stored user row, (disabled, password hash), says of the holder the login saw:
    /// None if it still holds.
    pub fn of(holder: &Holder, row: Option<&(bool, String)>) -> Option<Self> {
        match row {
            None => Some(Self::Gone),
            Some((true, _)) => Some(Self::Disabled),
            Some((false, hash)) if holder.password_hash.as_ref().is_some_and(|h| h != hash) => {
                Some(Self::NewPassword)
            }
            Some(_) => None,
        }
    }
}

impl Grant {
    pub fn grant_expired(&self, now: UnixTime) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
    pub fn access_valid(&self, now: UnixTime) -> bool {
        self.access_expires_at > now && !self.grant_expired(now)
    }
}

/// The global token-authentication configuration (docs/protocol.md §13). The fields vedauth acts
/// on are typed; the rest are kept as given and echoed back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Settings {
    pub default_access_token_validity: i64,
    pub default_grant_validity: i64,
    pub default_grant_refreshable: bool,
    pub unused_access_token_expiration: i64,
    pub refresh_endpoint_enabled: bool,
    pub authorize_by_password: bool,
    pub authorize_by_certificate: bool,
    pub authorize_by_integrated: bool,
    pub authorize_by_jwt: bool,
    pub authorize_device: bool,
    /// How the certificate grant reads an identity. `AuthorizedIssuerDns` is not kept here:
    /// the trusted issuers are their own aggregate, and the administration core fills it in.
    #[serde(deserialize_with = "lenient_certificate_configuration")]
    pub certificate_configuration: crate::certauth::CertificateConfiguration,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// A stored `CertificateConfiguration` that does not read (one kept verbatim by a release
/// that did not act on it) is taken as the default rather than failing every settings read;
/// setconfiguration checks what it is given strictly.
fn lenient_certificate_configuration<'de, D>(
    d: D,
) -> Result<crate::certauth::CertificateConfiguration, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let v = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(v).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "stored CertificateConfiguration unreadable; its defaults apply");
        Default::default()
    }))
}

/// 90 days, the vendor's default access-token validity.
pub const DEFAULT_ACCESS_VALIDITY: i64 = 90 * 86_400;
/// 365 days, the vendor's default grant validity.
pub const DEFAULT_GRANT_VALIDITY: i64 = 365 * 86_400;

impl Default for Settings {
    fn default() -> Self {
        Self {
            default_access_token_validity: DEFAULT_ACCESS_VALIDITY,
            default_grant_validity: DEFAULT_GRANT_VALIDITY,
            default_grant_refreshable: true,
            unused_access_token_expiration: 0,
            refresh_endpoint_enabled: true,
            authorize_by_password: true,
            authorize_by_certificate: false,
            authorize_by_integrated: false,
            authorize_by_jwt: false,
            authorize_device: false,
            certificate_configuration: Default::default(),
            other: serde_json::Map::new(),
        }
    }
}

/// The login-failure state of one identity, kept in the store so that every node shares it.
/// Changed only by compare-and-swap on `version` (see `Store::put_lockout`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockoutRecord {
    /// Failed logins counted in the current window.
    pub failures: u32,
    /// When the current counting window began.
    pub window_start: UnixTime,
    /// Password checks under way now (reserved but not yet reported).
    pub pending: u32,
    /// When the oldest reservation was made; stale reservations (a crashed node) expire.
    pub pending_since: UnixTime,
    /// Locked until this time (0 = not locked).
    pub locked_until: UnixTime,
    /// Bumped by every write.
    pub version: i64,
}

/// The lockout record of one identity, as `store copy` moves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutEntry {
    pub identity: String,
    pub record: LockoutRecord,
}

/// A refresh token a grant held before it was rotated: presented again, it betrays a stolen
/// token (reuse detection). Kept while its grant could still be alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredRefresh {
    pub digest: TokenDigest,
    pub grant_id: GrantId,
    /// The grant's expiry when the token was retired (None: the grant never expires).
    pub expires_at: Option<UnixTime>,
}

/// Which grants a listing or a bulk revocation addresses. Empty filter = all.
#[derive(Debug, Clone, Default)]
pub struct GrantFilter {
    pub client_id: Option<ClientId>,
    pub identity: Option<Identity>,
}

/// Which part of an ordered listing to read: the store skips and limits, so a page costs what
/// it holds, not the whole table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub offset: u64,
    /// None = to the end.
    pub limit: Option<u64>,
    /// Newest first instead of oldest first.
    pub descending: bool,
}

/// How many grants an application has, and how many distinct identities hold them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrantCounts {
    pub grants: u64,
    pub identities: u64,
}

/// The answer of a refresh, kept sealed for the refresh grace window: only the refresh token it
/// replaced opens it (see `grants::grace`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Successor {
    /// The digest of the refresh token that was replaced.
    pub digest: TokenDigest,
    pub grant_id: GrantId,
    pub sealed: Vec<u8>,
    /// Kept until then.
    pub until: UnixTime,
}

/// What a refresh writes: the grant's new token pair.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub access_digest: TokenDigest,
    pub access_issued_at: UnixTime,
    pub access_expires_at: UnixTime,
    pub refresh_digest: Option<TokenDigest>,
}

/// What the invalidation feed carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation {
    /// This access token stopped being valid (revoked or rotated) in some other process.
    Token(TokenDigest),
    /// Announcements may have been missed (the feed reconnected): drop everything cached.
    All,
}

/// A CA certificate trusted to issue client certificates (the certificate grant,
/// docs/certificate-auth.md), kept as PEM and named by the SHA-256 fingerprint of its DER form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerRecord {
    /// 64 lower-case hex digits.
    pub fingerprint: String,
    /// The subject DN, for people.
    pub subject: String,
    /// One `CERTIFICATE` PEM section.
    pub pem: String,
    pub added_at: UnixTime,
}

/// Row counts, for `status` and the admin API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub users: u64,
    pub applications: u64,
    pub grants: u64,
}

/// Where a device authorization request stands (RFC 8628).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceState {
    /// Waiting for a person to approve or deny it.
    Pending,
    /// Approved by this identity; the next poll gets the tokens.
    Approved(Identity),
    Denied,
    /// The tokens were handed out: the code is spent.
    Used,
}

impl DeviceState {
    /// The storage word.
    pub fn word(&self) -> &'static str {
        match self {
            DeviceState::Pending => "pending",
            DeviceState::Approved(_) => "approved",
            DeviceState::Denied => "denied",
            DeviceState::Used => "used",
        }
    }
}

/// A device authorization request (decisions.md §12): the device code is held only as its
/// SHA-256, the user code as the 8 letters people type (no dash, upper case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuthorization {
    pub digest: TokenDigest,
    pub user_code: String,
    pub client_id: ClientId,
    pub scope: CanonicalScope,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    /// Seconds the client must wait between polls (raised by each `slow_down`).
    pub interval: i64,
    pub last_poll: Option<UnixTime>,
    pub state: DeviceState,
}

impl DeviceAuthorization {
    pub fn expired(&self, now: UnixTime) -> bool {
        self.expires_at <= now
    }
}

/// A JWT mapping (admin-api.md §3.4): which issuer's tokens the JWT grant trusts, which of them
/// it accepts and whom they name. Its checks and compiled form live in `crate::jwt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JwtMapping {
    /// Unique (exact, case-sensitive); mappings of one issuer are tried in `Name` order
    /// (ordinal, byte by byte).
    pub name: String,
    /// Compared exactly with the token's `iss`.
    pub issuer_uri: String,
    /// Where the issuer's JWK Set lives; absent or empty: OIDC discovery on `IssuerUri`.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// The claim that states the token's purpose (usually `aud`).
    pub purpose_field: String,
    /// The value `PurposeField` must have (or, for an array claim, contain).
    pub purpose_match: String,
    /// The claim that names the token's owner (usually `sub`).
    pub id_field: String,
    /// A regular expression that must match the whole `IdField` value.
    pub id_match: String,
    /// A fixed identity (a name or a prefixed universal) instead of `IdMatch`'s first group.
    #[serde(default)]
    pub grantee_prefixed_universal: Option<String>,
}

/// A JWT the JWT grant accepted, remembered so that it cannot be presented again while it is
/// still acceptable (its `exp` plus the clock skew).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtUse {
    /// SHA-256 over the issuer and the `jti` (or the signature): no token text is kept.
    pub digest: TokenDigest,
    pub used_until: UnixTime,
}
