//! The ports the domain needs from the outside, one per aggregate, and the invalidation feed.
//!
//! A domain service takes the narrow port it uses (`Lockout` needs `LockoutStore`, the local
//! identity provider `UserStore`); only the composition root holds the whole [`Store`]. The
//! implementations live in `crate::store` (SQLite and PostgreSQL), and one conformance suite
//! (`tests/it/store_suite.rs`) runs against each.
//!
//! No port method has a default body: a store that forgets one does not compile.

use std::sync::Arc;

use async_trait::async_trait;

use super::model::*;
use super::words::{ClientId, Identity, Role};
use crate::clock::UnixTime;
use crate::token::TokenDigest;

/// The cause behind a store error, kept for logs (`{:#}` / `source()`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row with the same key exists (user name, client_id, rule pair).
    #[error("already exists")]
    Conflict,
    /// The row refers to one that does not exist (a rule for a missing application).
    #[error("no such {0}")]
    Missing(&'static str),
    /// The database cannot serve now; the caller answers 503 and tries later.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// A row that violates the schema's own invariants.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("store error: {0}")]
    Backend(#[source] BoxError),
}

impl StoreError {
    /// `Unavailable` with a message of our own (no underlying error).
    pub fn unavailable(msg: impl Into<String>) -> Self {
        Self::Unavailable(msg.into().into())
    }
    /// `Backend` with a message of our own.
    pub fn backend(msg: impl Into<String>) -> Self {
        Self::Backend(msg.into().into())
    }
    /// A short name of the kind, for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Conflict => "conflict",
            StoreError::Missing(_) => "missing",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::Backend(_) => "backend",
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What the composition root holds.
pub type SharedStore = Arc<dyn Store>;

/// Rows an import wrote, and rows it skipped because the destination had their key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub copied: u64,
    pub skipped: u64,
}

/// Local users.
#[async_trait]
pub trait UserStore: Send + Sync {
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    /// Case-insensitive lookup by name.
    async fn user_by_name(&self, name: &str) -> StoreResult<Option<User>>;
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>>;
    /// Every user, ordered by name (case-insensitively).
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// Replaces the hash only if it is still `expected` (a concurrent `passwd` wins over a rehash).
    async fn replace_password_hash(
        &self,
        id: &str,
        expected: Option<&str>,
        new_hash: &str,
    ) -> StoreResult<bool>;
    async fn set_user_disabled(&self, id: &str, disabled: bool) -> StoreResult<bool>;
    async fn delete_user(&self, id: &str) -> StoreResult<bool>;
    /// Writes the users in one transaction; a user whose id or name exists is skipped.
    async fn import_users(&self, users: &[User]) -> StoreResult<Tally>;
}

/// Applications and the rules that say who may obtain grants for them.
#[async_trait]
pub trait ApplicationStore: Send + Sync {
    async fn create_application(&self, app: &Application) -> StoreResult<()>;
    async fn application(&self, client_id: &str) -> StoreResult<Option<Application>>;
    /// Every application, ordered by client_id.
    async fn list_applications(&self) -> StoreResult<Vec<Application>>;
    /// Full replacement of an existing application; false if there is none.
    async fn update_application(&self, app: &Application) -> StoreResult<bool>;
    /// Deletes the application, its rules, the roles held on it and its grants, in one
    /// transaction. Returns the access-token digests of the grants it removed (so caches can
    /// forget them), or None if there was no such application.
    async fn delete_application(&self, client_id: &str) -> StoreResult<Option<Vec<TokenDigest>>>;
    /// `Missing("application")` if the rule's application does not exist.
    async fn create_rule(&self, rule: &Rule) -> StoreResult<()>;
    /// The rules of one application (by trustee), or every rule (by client_id, trustee).
    async fn rules(&self, client_id: Option<&str>) -> StoreResult<Vec<Rule>>;
    async fn update_rule(&self, rule: &Rule) -> StoreResult<bool>;
    async fn delete_rule(&self, client_id: &str, trustee: &str) -> StoreResult<bool>;
    /// Writes applications, then rules, in one transaction; existing keys are skipped.
    async fn import_applications(
        &self,
        apps: &[Application],
        rules: &[Rule],
    ) -> StoreResult<(Tally, Tally)>;
}

/// The secrets of confidential applications (at most one per application; removed with it).
#[async_trait]
pub trait ClientSecretStore: Send + Sync {
    /// Sets or replaces the application's secret; `Missing("application")` if there is none.
    async fn put_client_secret(&self, secret: &ClientSecret) -> StoreResult<()>;
    async fn client_secret(&self, client_id: &str) -> StoreResult<Option<ClientSecret>>;
    /// False if the application had no secret.
    async fn delete_client_secret(&self, client_id: &str) -> StoreResult<bool>;
    /// Every secret, by client_id.
    async fn list_client_secrets(&self) -> StoreResult<Vec<ClientSecret>>;
    /// Writes the secrets in one transaction; existing keys are skipped.
    async fn import_client_secrets(&self, secrets: &[ClientSecret]) -> StoreResult<Tally>;
}

/// OAuth roles (docs/protocol.md §13).
#[async_trait]
pub trait RoleStore: Send + Sync {
    /// Adds a role assignment; `Conflict` if it exists.
    async fn add_role(&self, role: &RoleAssignment) -> StoreResult<()>;
    /// Removes assignments of `role` to `grantee`: on one application, or (None) on every one.
    async fn remove_role(
        &self,
        grantee: &str,
        role: Role,
        client_id: Option<&str>,
    ) -> StoreResult<u64>;
    /// Every assignment, or those of one grantee (by grantee, role, client_id).
    async fn roles(&self, grantee: Option<&str>) -> StoreResult<Vec<RoleAssignment>>;
    async fn import_roles(&self, roles: &[RoleAssignment]) -> StoreResult<Tally>;
}

/// Login failures and lockout, per identity.
#[async_trait]
pub trait LockoutStore: Send + Sync {
    async fn lockout(&self, identity: &str) -> StoreResult<Option<LockoutRecord>>;
    /// Compare-and-swap: writes `rec` (with `version` = expected + 1) only if the stored record
    /// still has version `expected` (None: only if there is no record). True if written.
    async fn put_lockout(
        &self,
        identity: &str,
        expected: Option<i64>,
        rec: &LockoutRecord,
    ) -> StoreResult<bool>;
    async fn delete_lockout(&self, identity: &str) -> StoreResult<bool>;
    /// Every record, by identity.
    async fn list_lockouts(&self) -> StoreResult<Vec<LockoutEntry>>;
    /// Writes the records as they are (versions included); existing identities are skipped.
    async fn import_lockouts(&self, entries: &[LockoutEntry]) -> StoreResult<Tally>;
}

/// Global settings: one document, replaced whole.
#[async_trait]
pub trait SettingsStore: Send + Sync {
    async fn settings(&self) -> StoreResult<Settings>;
    async fn put_settings(&self, settings: &Settings) -> StoreResult<()>;
}

/// The CAs trusted to issue client certificates.
#[async_trait]
pub trait IssuerStore: Send + Sync {
    /// Adds an issuer; false (and nothing written) if its fingerprint is there already.
    async fn add_issuer(&self, issuer: &IssuerRecord) -> StoreResult<bool>;
    /// Removes an issuer by fingerprint; false if there was none.
    async fn remove_issuer(&self, fingerprint: &str) -> StoreResult<bool>;
    /// Every issuer, by fingerprint.
    async fn list_issuers(&self) -> StoreResult<Vec<IssuerRecord>>;
    /// Writes the issuers in one transaction; existing fingerprints are skipped.
    async fn import_issuers(&self, issuers: &[IssuerRecord]) -> StoreResult<Tally>;
}

/// Grants, their live token pair, and the refresh tokens they held before.
#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Writes a grant; for a holder, only if they are as the login saw them when it is written
    /// (see [`Holder`]). Ok(None) once written; Ok(Some(change)) if the holder changed and
    /// nothing was written.
    async fn insert_grant_for(
        &self,
        grant: &Grant,
        holder: Option<&Holder>,
    ) -> StoreResult<Option<HolderChange>>;
    /// Writes a grant that no user's state conditions.
    async fn insert_grant(&self, grant: &Grant) -> StoreResult<()> {
        self.insert_grant_for(grant, None).await.map(|_| ())
    }
    async fn grant_by_access(&self, digest: &TokenDigest) -> StoreResult<Option<Grant>>;
    async fn grant_by_refresh(&self, digest: &TokenDigest) -> StoreResult<Option<Grant>>;
    /// Compare-and-swap: installs the new token pair only if the grant's refresh token is still
    /// `old_refresh`, and retires `old_refresh` with it. Exactly one of several concurrent
    /// callers with the same token gets true.
    async fn rotate_tokens(
        &self,
        grant_id: &str,
        old_refresh: &TokenDigest,
        new: &Rotation,
        now: UnixTime,
    ) -> StoreResult<bool>;
    /// The grant that once held this (since rotated) refresh token, for reuse detection.
    async fn grant_by_retired_refresh(&self, digest: &TokenDigest) -> StoreResult<Option<String>>;
    /// Deletes one grant; returns its access digest if it existed.
    async fn delete_grant(&self, grant_id: &str) -> StoreResult<Option<TokenDigest>>;
    /// Deletes every grant matching the filter; returns their access digests.
    async fn delete_grants(&self, filter: &GrantFilter) -> StoreResult<Vec<TokenDigest>>;
    /// Grants matching the filter, by issue time, then id.
    async fn list_grants(&self, filter: &GrantFilter) -> StoreResult<Vec<Grant>>;
    /// One window of `list_grants`' order (reversed when descending), cut by the store.
    async fn page_grants(&self, filter: &GrantFilter, window: Window) -> StoreResult<Vec<Grant>>;
    /// The grant counts of each of these applications, in one query (an application without
    /// grants is absent from the answer).
    async fn grant_counts(
        &self,
        client_ids: &[ClientId],
    ) -> StoreResult<Vec<(ClientId, GrantCounts)>>;
    /// Keeps the sealed answer of a refresh for the grace window (an existing one is replaced).
    async fn put_successor(&self, successor: &Successor) -> StoreResult<()>;
    /// The sealed answer kept for a replaced refresh token, if still before its `until`.
    async fn successor(
        &self,
        digest: &TokenDigest,
        now: UnixTime,
    ) -> StoreResult<Option<Successor>>;
    /// Every retired refresh digest, by digest.
    async fn list_retired_refresh(&self) -> StoreResult<Vec<RetiredRefresh>>;
    /// Removes up to `batch` grants that can no longer be used at `now` (grant expired, or access
    /// token expired with no refresh token), and retired refresh digests past their grant.
    /// Returns how many grants it removed; callers loop until it returns less than `batch`.
    async fn sweep_expired(&self, now: UnixTime, batch: u32) -> StoreResult<u64>;
    /// Writes grants, then retired digests, in one transaction; existing keys are skipped.
    async fn import_grants(
        &self,
        grants: &[Grant],
        retired: &[RetiredRefresh],
    ) -> StoreResult<(Tally, Tally)>;
}

/// Device authorization requests (RFC 8628). Short-lived: not an [`Aggregate`] (`store copy`
/// leaves them behind; a copy is made with the server stopped, longer than their 5 minutes).
#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// `Conflict` if the user code (or the digest) is taken; the caller draws another.
    async fn insert_device(&self, d: &DeviceAuthorization) -> StoreResult<()>;
    async fn device_by_digest(
        &self,
        digest: &TokenDigest,
    ) -> StoreResult<Option<DeviceAuthorization>>;
    /// By the 8 letters, upper case, no dash.
    async fn device_by_user_code(
        &self,
        user_code: &str,
    ) -> StoreResult<Option<DeviceAuthorization>>;
    /// Compare-and-swap from pending to approved (by `identity`) or denied (None). True if it
    /// was still pending.
    async fn decide_device(
        &self,
        digest: &TokenDigest,
        approved_by: Option<&Identity>,
    ) -> StoreResult<bool>;
    /// Records a poll at `now` if the previous one was at least the interval ago (true);
    /// otherwise raises the interval by `penalty` seconds, records the poll and answers false.
    async fn poll_device(
        &self,
        digest: &TokenDigest,
        now: UnixTime,
        penalty: i64,
    ) -> StoreResult<bool>;
    /// Compare-and-swap from approved to used: exactly one poll gets the tokens.
    async fn consume_device(&self, digest: &TokenDigest) -> StoreResult<bool>;
    /// Deletes requests that expired before `before`; how many.
    async fn sweep_devices(&self, before: UnixTime) -> StoreResult<u64>;
}

/// JWT mappings (admin-api.md §4.6) and the JWTs the JWT grant has accepted (so that none
/// is accepted twice, on any node sharing the store).
#[async_trait]
pub trait JwtStore: Send + Sync {
    /// `Conflict` if a mapping of that name exists.
    async fn create_jwt_mapping(&self, mapping: &JwtMapping) -> StoreResult<()>;
    async fn jwt_mapping(&self, name: &str) -> StoreResult<Option<JwtMapping>>;
    /// Every mapping, by name (ordinal).
    async fn list_jwt_mappings(&self) -> StoreResult<Vec<JwtMapping>>;
    /// Full replacement of the mapping of that name; false if there is none.
    async fn update_jwt_mapping(&self, mapping: &JwtMapping) -> StoreResult<bool>;
    async fn delete_jwt_mapping(&self, name: &str) -> StoreResult<bool>;
    /// Records a JWT as used until `used_until`, unless it is recorded already with a
    /// `used_until` after `now`: true if recorded (first use), false if that is a replay. Atomic:
    /// of concurrent calls with one digest, exactly one gets true.
    async fn record_jwt_use(&self, use_: &JwtUse, now: UnixTime) -> StoreResult<bool>;
    /// Every recorded use, by digest.
    async fn list_jwt_uses(&self) -> StoreResult<Vec<JwtUse>>;
    /// Deletes up to `batch` uses that ended by `now`; returns how many.
    async fn sweep_jwt_uses(&self, now: UnixTime, batch: u32) -> StoreResult<u64>;
    /// Writes mappings, then uses, in one transaction; existing keys are skipped.
    async fn import_jwt(
        &self,
        mappings: &[JwtMapping],
        uses: &[JwtUse],
    ) -> StoreResult<(Tally, Tally)>;
}

/// Messaging, not persistence: how processes sharing a store tell each other that access
/// tokens stopped being valid, so that their verify caches drop them.
#[async_trait]
pub trait InvalidationFeed: Send + Sync {
    /// Tells the other processes on this store that these access tokens were revoked or
    /// rotated. A store with nobody to tell does nothing.
    async fn announce_invalidation(&self, digests: &[TokenDigest]) -> StoreResult<()>;
    /// The announcements of other processes, as they arrive; None if this store has no feed
    /// (or no async runtime to follow it on). The first call starts following.
    fn invalidations(&self) -> Option<tokio::sync::broadcast::Receiver<Invalidation>>;
}

/// The aggregates, in the order a copy writes them (applications before the rules, roles and
/// grants that name them). `store copy` walks [`Aggregate::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Users,
    Applications,
    ClientSecrets,
    Roles,
    Lockout,
    Settings,
    Grants,
    Jwt,
    Issuers,
}

impl Aggregate {
    pub const ALL: [Aggregate; 9] = [
        Aggregate::Users,
        Aggregate::Applications,
        Aggregate::ClientSecrets,
        Aggregate::Roles,
        Aggregate::Lockout,
        Aggregate::Settings,
        Aggregate::Grants,
        Aggregate::Jwt,
        Aggregate::Issuers,
    ];
}

/// Everything one aggregate holds, as [`Store::export`] reads it and [`Store::import`] writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Dump {
    Users(Vec<User>),
    Applications {
        apps: Vec<Application>,
        rules: Vec<Rule>,
    },
    ClientSecrets(Vec<ClientSecret>),
    Roles(Vec<RoleAssignment>),
    Lockout(Vec<LockoutEntry>),
    Settings(Settings),
    Grants {
        grants: Vec<Grant>,
        retired: Vec<RetiredRefresh>,
    },
    Jwt {
        mappings: Vec<JwtMapping>,
        uses: Vec<JwtUse>,
    },
    Issuers(Vec<IssuerRecord>),
}

/// The kinds of rows a dump holds, for counting what an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    Users,
    Applications,
    Rules,
    ClientSecrets,
    Roles,
    Lockout,
    Settings,
    Grants,
    RetiredRefresh,
    JwtMappings,
    JwtUses,
    Issuers,
}

impl Dump {
    /// Whether the dump holds no row. Settings always count as holding something.
    pub fn is_empty(&self) -> bool {
        match self {
            Dump::Users(v) => v.is_empty(),
            Dump::Applications { apps, rules } => apps.is_empty() && rules.is_empty(),
            Dump::ClientSecrets(v) => v.is_empty(),
            Dump::Roles(v) => v.is_empty(),
            Dump::Lockout(v) => v.is_empty(),
            Dump::Settings(_) => false,
            Dump::Grants { grants, retired } => grants.is_empty() && retired.is_empty(),
            Dump::Jwt { mappings, uses } => mappings.is_empty() && uses.is_empty(),
            Dump::Issuers(v) => v.is_empty(),
        }
    }
}

/// The whole store: every port, plus what only the composition root needs.
#[async_trait]
pub trait Store:
    UserStore
    + ApplicationStore
    + ClientSecretStore
    + RoleStore
    + LockoutStore
    + SettingsStore
    + GrantStore
    + DeviceStore
    + JwtStore
    + IssuerStore
    + InvalidationFeed
    + Send
    + Sync
    + std::fmt::Debug
{
    /// A short human description ("sqlite:/path", "postgres://user@host:port/db") without
    /// secrets.
    fn describe(&self) -> String;
    /// Which backend: "sqlite" or "postgres".
    fn kind(&self) -> &'static str;
    /// Whether the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// Whether the store can serve: it answers, it can write (a SQLite store whose last
    /// commit failed for a full disk or an I/O error, or a PostgreSQL standby, cannot), and
    /// no corruption was met. For `/readyz`.
    async fn ready(&self) -> StoreResult<()>;
    /// Finishes queued writes and releases the backend's connections; the store answers
    /// nothing after it. Called once, when the server stops.
    async fn close(&self);
    async fn counts(&self, now: UnixTime) -> StoreResult<Counts>;
    /// Whether the store has neither users nor applications (a first start).
    async fn is_empty(&self) -> StoreResult<bool>;

    /// Reads one aggregate whole.
    async fn export(&self, what: Aggregate) -> StoreResult<Dump> {
        Ok(match what {
            Aggregate::Users => Dump::Users(self.list_users().await?),
            Aggregate::Applications => Dump::Applications {
                apps: self.list_applications().await?,
                rules: self.rules(None).await?,
            },
            Aggregate::ClientSecrets => Dump::ClientSecrets(self.list_client_secrets().await?),
            Aggregate::Roles => Dump::Roles(self.roles(None).await?),
            Aggregate::Lockout => Dump::Lockout(self.list_lockouts().await?),
            Aggregate::Settings => Dump::Settings(self.settings().await?),
            Aggregate::Grants => Dump::Grants {
                grants: self.list_grants(&GrantFilter::default()).await?,
                retired: self.list_retired_refresh().await?,
            },
            Aggregate::Jwt => Dump::Jwt {
                mappings: self.list_jwt_mappings().await?,
                uses: self.list_jwt_uses().await?,
            },
            Aggregate::Issuers => Dump::Issuers(self.list_issuers().await?),
        })
    }

    /// Writes one aggregate's rows; rows whose key exists are skipped (settings replace).
    async fn import(&self, dump: &Dump) -> StoreResult<Vec<(Rows, Tally)>> {
        Ok(match dump {
            Dump::Users(v) => vec![(Rows::Users, self.import_users(v).await?)],
            Dump::Applications { apps, rules } => {
                let (a, r) = self.import_applications(apps, rules).await?;
                vec![(Rows::Applications, a), (Rows::Rules, r)]
            }
            Dump::ClientSecrets(v) => {
                vec![(Rows::ClientSecrets, self.import_client_secrets(v).await?)]
            }
            Dump::Roles(v) => vec![(Rows::Roles, self.import_roles(v).await?)],
            Dump::Lockout(v) => vec![(Rows::Lockout, self.import_lockouts(v).await?)],
            Dump::Settings(s) => {
                self.put_settings(s).await?;
                vec![(
                    Rows::Settings,
                    Tally {
                        copied: 1,
                        skipped: 0,
                    },
                )]
            }
            Dump::Grants { grants, retired } => {
                let (g, r) = self.import_grants(grants, retired).await?;
                vec![(Rows::Grants, g), (Rows::RetiredRefresh, r)]
            }
            Dump::Jwt { mappings, uses } => {
                let (m, u) = self.import_jwt(mappings, uses).await?;
                vec![(Rows::JwtMappings, m), (Rows::JwtUses, u)]
            }
            Dump::Issuers(v) => vec![(Rows::Issuers, self.import_issuers(v).await?)],
        })
    }
}
