//! Client secrets of confidential applications (the OAuth 2.0 face): generated here, shown to
//! the caller once, stored only as an argon2id hash made on the hashing pool.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use serde_json::{json, Map, Value};

use super::audited::{Change, Summary};
use super::policy::Need;
use super::{Admin, AdminError, AdminResult, Caller, Entity};
use crate::domain::{ClientSecret, StoreError};
use crate::secret::Secret;

/// A secret just set: the only moment its value exists outside the client.
#[derive(Debug, Clone)]
pub struct NewClientSecret {
    pub client_id: String,
    pub secret: Secret,
    pub created_at: i64,
    /// Whether it replaced an earlier secret (a rotation).
    pub rotated: bool,
}

impl Summary for NewClientSecret {
    // The value never reaches the audit trail; when it was set and whether it replaced one do.
    fn summarize(&self, d: &mut Map<String, Value>) {
        d.insert("rotated".into(), json!(self.rotated));
        d.insert("created_at".into(), json!(self.created_at));
    }
}

/// 32 bytes from the OS CSPRNG, URL-safe base64 without padding (43 characters): safe in a
/// Basic header, a form body and a shell, and far beyond guessing, which is why client
/// secrets have no lockout (a lockout would only let anyone lock a service client out).
fn generate() -> Secret {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    Secret::new(URL_SAFE_NO_PAD.encode(bytes))
}

impl Admin {
    /// Gives the application a new random secret, replacing any earlier one at once (the old
    /// secret stops working). The value is returned here and never again.
    pub async fn set_client_secret(
        &self,
        caller: &Caller,
        client_id: &str,
    ) -> AdminResult<NewClientSecret> {
        let detail = json!({"client_id": client_id});
        self.gate
            .run(caller, Change::SetClientSecret, detail, |w| async move {
                caller.check(Need::OwnApp(client_id))?;
                self.existing_app(client_id).await?;
                let secret = generate();
                let secret_hash = self.hasher.hash(secret.clone()).await?;
                let rotated = w.store().client_secret(client_id).await?.is_some();
                let created_at = self.clock.now();
                let row = ClientSecret {
                    client_id: client_id.into(),
                    secret_hash,
                    created_at,
                };
                match w.store().put_client_secret(&row).await {
                    Err(StoreError::Missing(_)) => Err(AdminError::NotFound(Entity::Application(
                        client_id.to_string(),
                    ))),
                    Err(e) => Err(e.into()),
                    Ok(()) => {
                        w.revocations.client_changed(client_id).await;
                        Ok(NewClientSecret {
                            client_id: client_id.to_string(),
                            secret,
                            created_at,
                            rotated,
                        })
                    }
                }
            })
            .await
    }

    /// Removes the application's secret: it becomes a public client again. Whether it had one.
    pub async fn remove_client_secret(
        &self,
        caller: &Caller,
        client_id: &str,
    ) -> AdminResult<bool> {
        let detail = json!({"client_id": client_id});
        self.gate
            .run(caller, Change::RemoveClientSecret, detail, |w| async move {
                caller.check(Need::OwnApp(client_id))?;
                self.existing_app(client_id).await?;
                let had = w.store().delete_client_secret(client_id).await?;
                w.revocations.client_changed(client_id).await;
                Ok(had)
            })
            .await
    }

    /// When the application's secret was set, if it has one (never the secret itself).
    pub async fn client_secret_set_at(
        &self,
        caller: &Caller,
        client_id: &str,
    ) -> AdminResult<Option<i64>> {
        caller.check(Need::ReadApp(client_id))?;
        self.existing_app(client_id).await?;
        Ok(self
            .reads
            .client_secret(client_id)
            .await?
            .map(|s| s.created_at))
    }
}
