//! The persistence port. Everything the server remembers goes through [`Store`]; the HTTP layer
//! and the domain never see SQL. One implementation per backend, one conformance suite
//! (`tests/it/store_suite.rs`) for all of them.

pub mod metered;
mod model;
pub mod postgres;
mod rows;
pub mod sqlite;

use async_trait::async_trait;
use std::sync::Arc;

pub use model::*;

use crate::clock::UnixTime;
use crate::token::TokenDigest;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row with the same key exists (user name, client_id, rule pair).
    #[error("already exists")]
    Conflict,
    /// The database cannot be reached now; the caller answers 503 and tries later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A row that violates the schema's own invariants.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("store error: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;
pub type SharedStore = Arc<dyn Store>;

/// Which grants a listing or a bulk revocation addresses. Empty filter = all.
#[derive(Debug, Clone, Default)]
pub struct GrantFilter {
    pub client_id: Option<String>,
    pub identity: Option<String>,
}

/// What a refresh writes: the grant's new token pair.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub access_digest: TokenDigest,
    pub access_issued_at: UnixTime,
    pub access_expires_at: UnixTime,
    pub refresh_digest: Option<TokenDigest>,
}

/// What the invalidation feed of a shared store carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation {
    /// This access token stopped being valid (revoked or rotated) on some node.
    Token(TokenDigest),
    /// Announcements may have been missed (the feed reconnected): drop everything cached.
    All,
}

/// Row counts, for `status` and the admin API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub users: u64,
    pub applications: u64,
    pub grants: u64,
}

#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// A short human description ("sqlite:/path", "postgres://host/db") without secrets.
    fn describe(&self) -> String;
    async fn ping(&self) -> StoreResult<()>;
    /// Finishes queued writes and releases the backend's connections; the store answers
    /// nothing after it. Called once, when the server stops.
    async fn close(&self) {}
    async fn counts(&self, now: UnixTime) -> StoreResult<Counts>;
    /// Whether the store has neither users nor applications (a first start). Backends answer
    /// without reading the tables, which start-up would otherwise do on every start.
    async fn is_empty(&self) -> StoreResult<bool> {
        Ok(self.list_users().await?.is_empty() && self.list_applications().await?.is_empty())
    }

    // Local users.
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    /// Case-insensitive lookup by name.
    async fn user_by_name(&self, name: &str) -> StoreResult<Option<User>>;
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>>;
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

    // Applications and rules.
    async fn create_application(&self, app: &Application) -> StoreResult<()>;
    async fn application(&self, client_id: &str) -> StoreResult<Option<Application>>;
    async fn list_applications(&self) -> StoreResult<Vec<Application>>;
    /// Full replacement of an existing application; false if there is none.
    async fn update_application(&self, app: &Application) -> StoreResult<bool>;
    /// Deletes the application, its rules and its grants, in one transaction. Returns the
    /// access-token digests of the grants it removed (so caches can forget them), or None if
    /// there was no such application.
    async fn delete_application(&self, client_id: &str) -> StoreResult<Option<Vec<TokenDigest>>>;
    async fn create_rule(&self, rule: &Rule) -> StoreResult<()>;
    async fn rules(&self, client_id: Option<&str>) -> StoreResult<Vec<Rule>>;
    async fn update_rule(&self, rule: &Rule) -> StoreResult<bool>;
    async fn delete_rule(&self, client_id: &str, trustee: &str) -> StoreResult<bool>;

    // OAuth roles (admin-api.md §2.6).
    /// Adds a role assignment; `Conflict` if it exists.
    async fn add_role(&self, role: &RoleAssignment) -> StoreResult<()>;
    /// Removes assignments of `role` to `grantee`: on one application, or (None) on every one.
    async fn remove_role(
        &self,
        grantee: &str,
        role: i32,
        client_id: Option<&str>,
    ) -> StoreResult<u64>;
    /// Every assignment, or those of one grantee.
    async fn roles(&self, grantee: Option<&str>) -> StoreResult<Vec<RoleAssignment>>;

    // Login failures and lockout, per identity.
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

    // Global settings: one document, replaced whole.
    async fn settings(&self) -> StoreResult<Settings>;
    async fn put_settings(&self, settings: &Settings) -> StoreResult<()>;

    // Grants.
    async fn insert_grant(&self, grant: &Grant) -> StoreResult<()>;
    async fn grant_by_access(&self, digest: &TokenDigest) -> StoreResult<Option<Grant>>;
    async fn grant_by_refresh(&self, digest: &TokenDigest) -> StoreResult<Option<Grant>>;
    /// Compare-and-swap: installs the new token pair only if the grant's refresh token is still
    /// `old_refresh`. Exactly one of several concurrent callers with the same token gets true.
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
    async fn list_grants(&self, filter: &GrantFilter) -> StoreResult<Vec<Grant>>;
    /// Removes up to `batch` grants that can no longer be used at `now` (grant expired, or access
    /// token expired with no refresh token), and retired refresh digests past their grant.
    /// Returns how many grants it removed; callers loop until it returns less than `batch`.
    async fn sweep_expired(&self, now: UnixTime, batch: u32) -> StoreResult<u64>;

    /// Tells every node sharing this store that these access tokens stopped being valid
    /// (revoked or rotated), so that their verify caches drop them. A store that only one
    /// process serves has nobody to tell.
    async fn announce_invalidation(&self, _digests: &[TokenDigest]) -> StoreResult<()> {
        Ok(())
    }

    /// The digests any node announced, as they arrive; None if this store has no such feed.
    fn invalidations(&self) -> Option<tokio::sync::broadcast::Receiver<Invalidation>> {
        None
    }
}
