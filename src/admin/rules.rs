//! Rules: who may obtain grants for an application, and with what limits (docs/protocol.md §13).
//! A rule names its trustee by identity (docs/protocol.md §11).

use serde_json::json;

use super::audited::Change;
use super::policy::Need;
use super::{
    canonical_scope, grant_validity, validity, within, Admin, AdminError, AdminResult, Caller,
    Entity,
};
use crate::domain::Identity;
use crate::domain::{Application, Lifetime, Rule, StoreError};

/// What a caller gives to create or replace a rule. The trustee may be any name form; the
/// rule stores the identity it resolves to.
#[derive(Debug, Clone, Default)]
pub struct RuleInput {
    pub client_id: String,
    pub trustee: String,
    pub description: Option<String>,
    pub max_scope: Option<String>,
    pub access_validity: Option<i64>,
    pub grant_validity: Option<Lifetime>,
    pub renewable: Option<bool>,
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

impl Admin {
    /// The rule `input` describes for `app`, its trustee resolved to `trustee`.
    fn build_rule(
        app: &Application,
        input: RuleInput,
        trustee: Identity,
        created_at: i64,
    ) -> AdminResult<Rule> {
        let max_scope = input
            .max_scope
            .as_deref()
            .map(|s| canonical_scope("MaximumScope", s))
            .transpose()?;
        if let Some(m) = &max_scope {
            if !within(m, &app.max_scope) {
                return Err(AdminError::ScopeExceeds(format!(
                    "MaximumScope '{m}' is not within the application's scope '{}'",
                    app.max_scope
                )));
            }
        }
        Ok(Rule {
            client_id: input.client_id.into(),
            trustee,
            description: input.description.unwrap_or_default(),
            max_scope,
            access_validity: validity("AccessValidity", input.access_validity)?,
            grant_validity: grant_validity("GrantValidity", input.grant_validity)?,
            renewable: input.renewable,
            created_at,
        })
    }

    fn require_pair(input: &RuleInput) -> AdminResult<()> {
        if input.client_id.is_empty() || input.trustee.trim().is_empty() {
            return Err(AdminError::invalid(
                "TrusteePrefixedUniversal",
                "ApplicationId and TrusteePrefixedUniversal are required",
            ));
        }
        Ok(())
    }

    pub async fn create_rule(&self, caller: &Caller, input: RuleInput) -> AdminResult<Rule> {
        let detail = json!({"client_id": input.client_id, "trustee_given": input.trustee});
        self.gate
            .run(caller, Change::CreateRule, detail, |w| async move {
                caller.check(Need::OwnApp(&input.client_id))?;
                Self::require_pair(&input)?;
                let app = self.existing_app(&input.client_id).await?;
                let trustee = self.resolve(&input.trustee, true).await?;
                let rule = Self::build_rule(&app, input, trustee, self.clock.now())?;
                match w.store().create_rule(&rule).await {
                    Err(StoreError::Conflict) => Err(AdminError::AlreadyExists(Entity::Rule {
                        client_id: rule.client_id.into_string(),
                        trustee: rule.trustee.into_string(),
                    })),
                    Err(e) => Err(e.into()),
                    Ok(()) => Ok(rule),
                }
            })
            .await
    }

    /// Full replacement of the rule named by (application, trustee).
    pub async fn update_rule(&self, caller: &Caller, input: RuleInput) -> AdminResult<Rule> {
        let detail = json!({"client_id": input.client_id, "trustee_given": input.trustee});
        self.gate
            .run(caller, Change::UpdateRule, detail, |w| async move {
                caller.check(Need::OwnApp(&input.client_id))?;
                Self::require_pair(&input)?;
                let key = self.key_of(&input.trustee).await?;
                let existing = self.reads.rules(Some(&input.client_id)).await?;
                let Some(old) = existing.iter().find(|r| same(&r.trustee, &key)) else {
                    return Err(AdminError::NotFound(Entity::Rule {
                        client_id: input.client_id,
                        trustee: input.trustee,
                    }));
                };
                let app = self.existing_app(&input.client_id).await?;
                let rule = Self::build_rule(&app, input, old.trustee.clone(), old.created_at)?;
                if !w.store().update_rule(&rule).await? {
                    return Err(AdminError::NotFound(Entity::Rule {
                        client_id: rule.client_id.into_string(),
                        trustee: rule.trustee.into_string(),
                    }));
                }
                Ok(rule)
            })
            .await
    }

    /// Deletes the rules of an application, of a trustee, or the one rule of both; the rules
    /// deleted. Existing grants live on (docs/protocol.md §12).
    pub async fn delete_rules(
        &self,
        caller: &Caller,
        client_id: Option<&str>,
        trustee: Option<&str>,
    ) -> AdminResult<usize> {
        let detail = json!({"client_id": client_id, "trustee_given": trustee});
        let gone = self
            .gate
            .run(caller, Change::DeleteRules, detail, |w| async move {
                let targets = match (client_id, trustee) {
                    (None, None) => {
                        return Err(AdminError::invalid(
                            "ApplicationId",
                            "ApplicationId or TrusteePrefixedUniversal is required",
                        ))
                    }
                    (Some(c), _) => {
                        caller.check(Need::OwnApp(c))?;
                        self.reads.rules(Some(c)).await?
                    }
                    (None, Some(_)) => {
                        caller.check(Need::Admin)?;
                        self.reads.rules(None).await?
                    }
                };
                let key = match trustee {
                    Some(t) => Some(self.key_of(t).await?),
                    None => None,
                };
                let targets: Vec<Rule> = targets
                    .into_iter()
                    .filter(|r| key.as_deref().is_none_or(|k| same(&r.trustee, k)))
                    .collect();
                if targets.is_empty() {
                    return Err(AdminError::NotFound(Entity::Rule {
                        client_id: client_id.unwrap_or_default().to_string(),
                        trustee: trustee.unwrap_or_default().to_string(),
                    }));
                }
                let mut deleted = Vec::new();
                for r in targets {
                    if w.store().delete_rule(&r.client_id, &r.trustee).await? {
                        deleted.push(r);
                    }
                }
                Ok(deleted)
            })
            .await?;
        Ok(gone.len())
    }

    /// GetRules: rules matching all of the given criteria. Trustees may be given by name.
    pub async fn find_rules(
        &self,
        caller: &Caller,
        client_id: Option<&str>,
        trustees: &[String],
        max_scope: Option<&str>,
        renewable: Option<bool>,
        no_expire: Option<bool>,
    ) -> AdminResult<Vec<Rule>> {
        match client_id {
            Some(c) => caller.check(Need::ReadApp(c))?,
            None => caller.check(Need::ReadAll)?,
        }
        let wanted_scope = max_scope
            .map(|s| canonical_scope("MaximumScope", s))
            .transpose()?;
        let mut keys = Vec::with_capacity(trustees.len());
        for t in trustees {
            keys.push(self.key_of(t).await?);
        }
        Ok(self
            .reads
            .rules(client_id)
            .await?
            .into_iter()
            .filter(|r| keys.is_empty() || keys.iter().any(|k| same(k, &r.trustee)))
            .filter(|r| wanted_scope.is_none() || r.max_scope == wanted_scope)
            .filter(|r| renewable.is_none_or(|x| r.renewable == Some(x)))
            .filter(|r| no_expire.is_none_or(|x| (r.grant_validity == Some(Lifetime::Never)) == x))
            .collect())
    }

    pub async fn enumerate_rules(
        &self,
        caller: &Caller,
        client_id: Option<&str>,
        page: super::Page,
    ) -> AdminResult<Vec<Rule>> {
        let rules = self
            .find_rules(caller, client_id, &[], None, None, None)
            .await?;
        Ok(page.apply(rules))
    }
}
