//! JWT mappings (admin-api.md §4.6): which issuers the JWT grant trusts and how their tokens
//! name identities. Changes are Admin's; reads Admin's and Auditor's.

use serde_json::json;

use super::audited::Change;
use super::policy::Need;
use super::{Admin, AdminError, AdminResult, Caller, Entity, Page};
use crate::domain::JwtMapping;
use crate::jwt::{check_issuer_agreement, JwtConfiguration, MappingError};

fn invalid(e: MappingError) -> AdminError {
    let field = match &e {
        MappingError::Invalid { field, .. } => field,
        MappingError::JwksUriDisagrees { .. } => "JwksUri",
        MappingError::Duplicate(_) => "Name",
    };
    AdminError::invalid(field, e.to_string())
}

/// Empty optional fields mean absent.
fn tidy(mut m: JwtMapping) -> JwtMapping {
    for v in [&mut m.jwks_uri, &mut m.grantee_prefixed_universal] {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            *v = None;
        }
    }
    m
}

impl Admin {
    /// Checks a mapping against the current settings (`NoHttps`), the other mappings of its
    /// issuer (one key source per issuer), and, when it names a fixed grantee, that the
    /// grantee is known now (it is resolved again at every grant, so a renamed user follows).
    async fn check_jwt_mapping(&self, m: &JwtMapping) -> AdminResult<()> {
        let config = JwtConfiguration::from_settings(&self.reads.settings().await?);
        m.validate(&config.cache_configuration).map_err(invalid)?;
        let existing = self.reads.list_jwt_mappings().await?;
        check_issuer_agreement(m, &existing).map_err(invalid)?;
        if let Some(g) = m.grantee() {
            self.resolve(g, false).await?;
        }
        Ok(())
    }

    pub async fn create_jwt_mapping(
        &self,
        caller: &Caller,
        mapping: JwtMapping,
    ) -> AdminResult<JwtMapping> {
        let m = tidy(mapping);
        let detail = json!({"mapping": m.name, "issuer": m.issuer_uri});
        self.gate
            .run(caller, Change::CreateJwtMapping, detail, |w| async move {
                caller.check(Need::Admin)?;
                self.check_jwt_mapping(&m).await?;
                match w.store().create_jwt_mapping(&m).await {
                    Ok(()) => Ok(m),
                    Err(crate::domain::StoreError::Conflict) => Err(AdminError::AlreadyExists(
                        Entity::JwtMapping(m.name.clone()),
                    )),
                    Err(e) => Err(e.into()),
                }
            })
            .await
    }

    pub async fn get_jwt_mapping(&self, caller: &Caller, name: &str) -> AdminResult<JwtMapping> {
        caller.check(Need::AdminOrAuditor)?;
        self.reads
            .jwt_mapping(name)
            .await?
            .ok_or_else(|| AdminError::NotFound(Entity::JwtMapping(name.to_string())))
    }

    /// Every mapping, by name (ordinal), paged.
    pub async fn enumerate_jwt_mappings(
        &self,
        caller: &Caller,
        page: Page,
    ) -> AdminResult<Vec<JwtMapping>> {
        caller.check(Need::AdminOrAuditor)?;
        Ok(page.apply(self.reads.list_jwt_mappings().await?))
    }

    /// GetJwtMappings: those of the given issuers (all when none are given) whose name,
    /// issuer, JWKS URI or grantee contains `filter` (case-insensitively).
    pub async fn find_jwt_mappings(
        &self,
        caller: &Caller,
        filter: Option<&str>,
        issuers: &[String],
    ) -> AdminResult<Vec<JwtMapping>> {
        caller.check(Need::AdminOrAuditor)?;
        let needle = filter.map(str::to_lowercase);
        Ok(self
            .reads
            .list_jwt_mappings()
            .await?
            .into_iter()
            .filter(|m| issuers.is_empty() || issuers.contains(&m.issuer_uri))
            .filter(|m| {
                needle.as_deref().is_none_or(|n| {
                    [
                        Some(m.name.as_str()),
                        Some(m.issuer_uri.as_str()),
                        m.jwks_uri(),
                        m.grantee(),
                    ]
                    .into_iter()
                    .flatten()
                    .any(|f| f.to_lowercase().contains(n))
                })
            })
            .collect())
    }

    /// Full replacement of the mapping named `mapping.name`.
    pub async fn update_jwt_mapping(
        &self,
        caller: &Caller,
        mapping: JwtMapping,
    ) -> AdminResult<()> {
        let m = tidy(mapping);
        let detail = json!({"mapping": m.name, "issuer": m.issuer_uri});
        self.gate
            .run(caller, Change::UpdateJwtMapping, detail, |w| async move {
                caller.check(Need::Admin)?;
                if self.reads.jwt_mapping(&m.name).await?.is_none() {
                    return Err(AdminError::NotFound(Entity::JwtMapping(m.name.clone())));
                }
                self.check_jwt_mapping(&m).await?;
                if !w.store().update_jwt_mapping(&m).await? {
                    return Err(AdminError::NotFound(Entity::JwtMapping(m.name.clone())));
                }
                Ok(())
            })
            .await
    }

    pub async fn delete_jwt_mapping(&self, caller: &Caller, name: &str) -> AdminResult<()> {
        self.gate
            .run(
                caller,
                Change::DeleteJwtMapping,
                json!({"mapping": name}),
                |w| async move {
                    caller.check(Need::Admin)?;
                    if !w.store().delete_jwt_mapping(name).await? {
                        return Err(AdminError::NotFound(Entity::JwtMapping(name.to_string())));
                    }
                    Ok(())
                },
            )
            .await
    }
}
