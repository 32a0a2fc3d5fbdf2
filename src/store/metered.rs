//! A `Store` that measures every call (latency histogram, error counter) and hands it on.

use std::future::Future;
use std::time::Instant;

use async_trait::async_trait;

use super::*;
use crate::clock::UnixTime;
use crate::token::TokenDigest;

#[derive(Debug)]
pub struct MeteredStore {
    inner: SharedStore,
}

impl MeteredStore {
    pub fn wrap(inner: SharedStore) -> SharedStore {
        Arc::new(Self { inner })
    }
}

async fn timed<T>(op: &'static str, f: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    let start = Instant::now();
    let r = f.await;
    metrics::histogram!("vedauth_store_query_duration_seconds", "op" => op)
        .record(start.elapsed().as_secs_f64());
    if let Err(e) = &r {
        let kind = match e {
            StoreError::Conflict => "conflict",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::Backend(_) => "backend",
        };
        metrics::counter!("vedauth_store_errors_total", "op" => op, "kind" => kind).increment(1);
    }
    r
}

#[async_trait]
impl Store for MeteredStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn invalidations(&self) -> Option<tokio::sync::broadcast::Receiver<Invalidation>> {
        self.inner.invalidations()
    }

    async fn ping(&self) -> StoreResult<()> {
        timed("ping", self.inner.ping()).await
    }
    async fn close(&self) {
        self.inner.close().await
    }
    async fn counts(&self, now: UnixTime) -> StoreResult<Counts> {
        timed("counts", self.inner.counts(now)).await
    }
    async fn is_empty(&self) -> StoreResult<bool> {
        timed("is_empty", self.inner.is_empty()).await
    }
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        timed("create_user", self.inner.create_user(user)).await
    }
    async fn user_by_name(&self, name: &str) -> StoreResult<Option<User>> {
        timed("user_by_name", self.inner.user_by_name(name)).await
    }
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        timed("user_by_id", self.inner.user_by_id(id)).await
    }
    async fn list_users(&self) -> StoreResult<Vec<User>> {
        timed("list_users", self.inner.list_users()).await
    }
    async fn replace_password_hash(
        &self,
        id: &str,
        expected: Option<&str>,
        new_hash: &str,
    ) -> StoreResult<bool> {
        timed(
            "replace_password_hash",
            self.inner.replace_password_hash(id, expected, new_hash),
        )
        .await
    }
    async fn set_user_disabled(&self, id: &str, disabled: bool) -> StoreResult<bool> {
        timed(
            "set_user_disabled",
            self.inner.set_user_disabled(id, disabled),
        )
        .await
    }
    async fn delete_user(&self, id: &str) -> StoreResult<bool> {
        timed("delete_user", self.inner.delete_user(id)).await
    }
    async fn create_application(&self, app: &Application) -> StoreResult<()> {
        timed("create_application", self.inner.create_application(app)).await
    }
    async fn application(&self, client_id: &str) -> StoreResult<Option<Application>> {
        timed("application", self.inner.application(client_id)).await
    }
    async fn list_applications(&self) -> StoreResult<Vec<Application>> {
        timed("list_applications", self.inner.list_applications()).await
    }
    async fn update_application(&self, app: &Application) -> StoreResult<bool> {
        timed("update_application", self.inner.update_application(app)).await
    }
    async fn delete_application(&self, client_id: &str) -> StoreResult<Option<Vec<TokenDigest>>> {
        timed(
            "delete_application",
            self.inner.delete_application(client_id),
        )
        .await
    }
    async fn create_rule(&self, rule: &Rule) -> StoreResult<()> {
        timed("create_rule", self.inner.create_rule(rule)).await
    }
    async fn rules(&self, client_id: Option<&str>) -> StoreResult<Vec<Rule>> {
        timed("rules", self.inner.rules(client_id)).await
    }
    async fn update_rule(&self, rule: &Rule) -> StoreResult<bool> {
        timed("update_rule", self.inner.update_rule(rule)).await
    }
    async fn delete_rule(&self, client_id: &str, trustee: &str) -> StoreResult<bool> {
        timed("delete_rule", self.inner.delete_rule(client_id, trustee)).await
    }
    async fn add_role(&self, role: &RoleAssignment) -> StoreResult<()> {
        timed("add_role", self.inner.add_role(role)).await
    }
    async fn remove_role(
        &self,
        grantee: &str,
        role: i32,
        client_id: Option<&str>,
    ) -> StoreResult<u64> {
        timed(
            "remove_role",
            self.inner.remove_role(grantee, role, client_id),
        )
        .await
    }
    async fn roles(&self, grantee: Option<&str>) -> StoreResult<Vec<RoleAssignment>> {
        timed("roles", self.inner.roles(grantee)).await
    }
    async fn lockout(&self, identity: &str) -> StoreResult<Option<LockoutRecord>> {
        timed("lockout", self.inner.lockout(identity)).await
    }
    async fn put_lockout(
        &self,
        identity: &str,
        expected: Option<i64>,
        rec: &LockoutRecord,
    ) -> StoreResult<bool> {
        timed(
            "put_lockout",
            self.inner.put_lockout(identity, expected, rec),
        )
        .await
    }
    async fn delete_lockout(&self, identity: &str) -> StoreResult<bool> {
        timed("delete_lockout", self.inner.delete_lockout(identity)).await
    }
    async fn settings(&self) -> StoreResult<Settings> {
        timed("settings", self.inner.settings()).await
    }
    async fn put_settings(&self, settings: &Settings) -> StoreResult<()> {
        timed("put_settings", self.inner.put_settings(settings)).await
    }
    async fn insert_grant(&self, grant: &Grant) -> StoreResult<()> {
        timed("insert_grant", self.inner.insert_grant(grant)).await
    }
    async fn grant_by_access(&self, digest: &TokenDigest) -> StoreResult<Option<Grant>> {
        timed("grant_by_access", self.inner.grant_by_access(digest)).await
    }
    async fn grant_by_refresh(&self, digest: &TokenDigest) -> StoreResult<Option<Grant>> {
        timed("grant_by_refresh", self.inner.grant_by_refresh(digest)).await
    }
    async fn rotate_tokens(
        &self,
        grant_id: &str,
        old_refresh: &TokenDigest,
        new: &Rotation,
        now: UnixTime,
    ) -> StoreResult<bool> {
        timed(
            "rotate_tokens",
            self.inner.rotate_tokens(grant_id, old_refresh, new, now),
        )
        .await
    }
    async fn grant_by_retired_refresh(&self, digest: &TokenDigest) -> StoreResult<Option<String>> {
        timed(
            "grant_by_retired_refresh",
            self.inner.grant_by_retired_refresh(digest),
        )
        .await
    }
    async fn delete_grant(&self, grant_id: &str) -> StoreResult<Option<TokenDigest>> {
        timed("delete_grant", self.inner.delete_grant(grant_id)).await
    }
    async fn delete_grants(&self, filter: &GrantFilter) -> StoreResult<Vec<TokenDigest>> {
        timed("delete_grants", self.inner.delete_grants(filter)).await
    }
    async fn list_grants(&self, filter: &GrantFilter) -> StoreResult<Vec<Grant>> {
        timed("list_grants", self.inner.list_grants(filter)).await
    }
    async fn sweep_expired(&self, now: UnixTime, batch: u32) -> StoreResult<u64> {
        timed("sweep_expired", self.inner.sweep_expired(now, batch)).await
    }
    async fn announce_invalidation(&self, digests: &[TokenDigest]) -> StoreResult<()> {
        timed(
            "announce_invalidation",
            self.inner.announce_invalidation(digests),
        )
        .await
    }
}
