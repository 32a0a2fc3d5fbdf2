//! The use cases the faces call, and nothing else: the grant flows, verify and revoke, the
//! administration core, the identity behind a token, and readiness. The faces never reach the
//! store or the audit trail; this facade holds them privately.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::admin::Admin;
use crate::domain::Identity;
use crate::domain::{Grant, SharedStore};
use crate::grants::{
    ClientAuth, Engine, GrantError, GrantRequest, IssuedTokens, LiveGrant, TokenUse,
};
use crate::grants::{DeviceDecision, DevicePending, DeviceStart, DeviceStarted};
use crate::identity::{Identities, IdpError, Principal};
use crate::secret::Secret;

/// What `/readyz` reports.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// Whether the store answers (and can write, where it can tell); the reason if not.
    pub store: Result<(), String>,
    /// `sqlite` or `postgres`.
    pub store_kind: String,
    /// Each identity provider's prefix and health (None: nothing to ask, e.g. local users).
    pub providers: Vec<(String, Option<bool>)>,
}

impl Readiness {
    /// A node is ready when its store answers; a directory that is down only fails its own
    /// users, so it does not make the node unready.
    pub fn ready(&self) -> bool {
        self.store.is_ok()
    }
}

/// Cheap to clone; built once by the composition root.
#[derive(Debug, Clone)]
pub struct Services {
    engine: Engine,
    admin: Admin,
    identities: Arc<Identities>,
    /// For readiness only.
    store: SharedStore,
    tpp_version: Arc<str>,
}

impl Services {
    pub(crate) fn new(
        engine: Engine,
        admin: Admin,
        identities: Arc<Identities>,
        store: SharedStore,
        tpp_version: String,
    ) -> Self {
        Self {
            engine,
            admin,
            identities,
            store,
            tpp_version: tpp_version.into(),
        }
    }

    /// The engine's clock.
    pub fn now(&self) -> crate::clock::UnixTime {
        self.engine.now()
    }

    /// Tokens, for any grant flow.
    pub async fn token(&self, req: GrantRequest) -> Result<IssuedTokens, GrantError> {
        self.engine.token(req).await
    }

    /// The live grant behind an access token.
    pub async fn verify(&self, access_token: &str) -> Result<Arc<LiveGrant>, GrantError> {
        self.engine.verify(access_token).await
    }

    /// Revokes the grant behind an access token.
    pub async fn revoke(
        &self,
        access_token: &str,
        source: Option<IpAddr>,
    ) -> Result<Grant, GrantError> {
        self.engine.revoke(access_token, source).await
    }

    /// Client authentication (the OAuth 2.0 face): the application, if the secret (or, for a
    /// public client, its absence) is right.
    pub async fn authenticate_client(
        &self,
        client_id: &str,
        secret: Option<&Secret>,
        source: Option<IpAddr>,
    ) -> Result<Arc<ClientAuth>, GrantError> {
        self.engine
            .authenticate_client(client_id, secret, source)
            .await
    }

    /// The live grant behind an access or refresh token (introspection).
    pub async fn find_token(
        &self,
        token: &str,
        refresh_first: bool,
    ) -> Result<Option<(Arc<LiveGrant>, TokenUse)>, GrantError> {
        self.engine.find_token(token, refresh_first).await
    }

    /// Revokes the grant behind an access or refresh token of `client_id` (RFC 7009).
    pub async fn revoke_token(
        &self,
        token: &str,
        refresh_first: bool,
        client_id: &str,
        source: Option<IpAddr>,
    ) -> Result<bool, GrantError> {
        self.engine
            .revoke_token(token, refresh_first, client_id, source)
            .await
    }

    /// A device's request for codes (RFC 8628).
    pub async fn start_device(&self, req: DeviceStart) -> Result<DeviceStarted, GrantError> {
        self.engine.start_device(req).await
    }

    /// The pending device request behind a user code that `who` typed.
    pub async fn pending_device(
        &self,
        user_code: &str,
        who: &Identity,
    ) -> Result<DevicePending, GrantError> {
        self.engine.pending_device(user_code, who).await
    }

    /// Approves or denies a device request as `who` (signed in on the console).
    pub async fn decide_device(
        &self,
        user_code: &str,
        who: &Principal,
        approve: bool,
        source: Option<IpAddr>,
    ) -> Result<DeviceDecision, GrantError> {
        self.engine
            .decide_device(user_code, who, approve, source)
            .await
    }

    /// The administration core, as the API and the console call it.
    pub fn admin(&self) -> &Admin {
        &self.admin
    }

    /// The prefixed name of an identity for display, possibly a few seconds old (the verify
    /// cache's time-to-live); None if unknown or its provider does not answer.
    pub async fn display_name(&self, identity: &str) -> Option<Arc<str>> {
        self.engine.display_name(identity).await
    }

    /// The identity behind a prefixed universal, as its provider knows it now.
    pub async fn principal(&self, identity: &str) -> Result<Option<Principal>, IdpError> {
        self.identities.resolve(identity).await
    }

    /// The store's and the providers' state, within a few seconds.
    pub async fn readiness(&self) -> Readiness {
        let store = match tokio::time::timeout(Duration::from_secs(3), self.store.ready()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_string()),
        };
        Readiness {
            store,
            store_kind: self.store.kind().to_string(),
            providers: self.identities.health().await,
        }
    }

    /// The four-part version `/vedsdk/SystemStatus/Version` reports.
    pub fn tpp_version(&self) -> &str {
        &self.tpp_version
    }
}
