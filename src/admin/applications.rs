//! Applications (API integrations): create, read, replace, delete (docs/protocol.md §13).

use std::collections::HashMap;

use serde_json::json;

use super::audited::Change;
use super::policy::Need;
use super::{
    canonical_scope, grant_validity, validity, within, Admin, AdminError, AdminResult, Caller,
    Entity,
};
use crate::domain::{Application, Lifetime, StoreError, Window};

/// What a caller gives to create or replace an application.
#[derive(Debug, Clone, Default)]
pub struct ApplicationInput {
    pub client_id: String,
    pub name: Option<String>,
    pub vendor: Option<String>,
    pub description: Option<String>,
    pub url: Option<String>,
    pub scope: Option<String>,
    pub max_scope: Option<String>,
    pub access_validity: Option<i64>,
    pub grant_validity: Option<Lifetime>,
    pub renewable: Option<bool>,
    pub unused_expiration: Option<i64>,
}

/// Offset paging and ordering (docs/protocol.md §13).
#[derive(Debug, Clone, Copy, Default)]
pub struct Page {
    pub start: Option<usize>,
    pub count: Option<usize>,
    pub order_by: Option<i32>,
    pub descending: bool,
}

impl Page {
    /// The window a store cuts for this page.
    pub(super) fn window(&self) -> Window {
        Window {
            offset: self.start.unwrap_or(0) as u64,
            limit: self.count.map(|c| c as u64),
            descending: self.descending,
        }
    }

    pub(super) fn apply<T>(&self, mut items: Vec<T>) -> Vec<T> {
        if self.descending {
            items.reverse();
        }
        let start = self.start.unwrap_or(0).min(items.len());
        let mut items = items.split_off(start);
        if let Some(c) = self.count {
            items.truncate(c);
        }
        items
    }
}

/// An application and its statistics.
#[derive(Debug, Clone)]
pub struct ApplicationInfo {
    pub app: Application,
    pub grant_count: u64,
    pub user_count: u64,
}

fn build(input: ApplicationInput, created_at: i64) -> AdminResult<Application> {
    if input.client_id.trim().is_empty() {
        return Err(AdminError::invalid(
            "ApplicationId",
            "ApplicationId is required",
        ));
    }
    let max_scope = match (&input.max_scope, &input.scope) {
        (Some(m), _) => canonical_scope("MaximumScope", m)?,
        (None, Some(s)) => canonical_scope("Scope", s)?,
        (None, None) => {
            return Err(AdminError::invalid(
                "Scope",
                "Scope or MaximumScope is required",
            ))
        }
    };
    let scope = match &input.scope {
        Some(s) => canonical_scope("Scope", s)?,
        None => max_scope.clone(),
    };
    if !within(&scope, &max_scope) {
        return Err(AdminError::ScopeExceeds(
            "Scope is not within MaximumScope".into(),
        ));
    }
    Ok(Application {
        name: input.name.unwrap_or_else(|| input.client_id.clone()),
        client_id: input.client_id.into(),
        vendor: input.vendor.unwrap_or_default(),
        description: input.description.unwrap_or_default(),
        url: input.url.unwrap_or_default(),
        scope: scope.into_string(),
        max_scope,
        access_validity: validity("AccessValidity", input.access_validity)?,
        grant_validity: grant_validity("GrantValidity", input.grant_validity)?,
        renewable: input.renewable,
        unused_expiration: validity("UnusedExpiration", input.unused_expiration)?,
        created_at,
    })
}

impl Admin {
    pub(super) async fn existing_app(&self, client_id: &str) -> AdminResult<Application> {
        self.reads
            .application(client_id)
            .await?
            .ok_or_else(|| AdminError::NotFound(Entity::Application(client_id.to_string())))
    }

    pub async fn create_application(
        &self,
        caller: &Caller,
        input: ApplicationInput,
    ) -> AdminResult<Application> {
        let detail = json!({"client_id": input.client_id});
        self.gate
            .run(caller, Change::CreateApplication, detail, |w| async move {
                caller.check(Need::Admin)?;
                let app = build(input, self.clock.now())?;
                match w.store().create_application(&app).await {
                    Err(StoreError::Conflict) => Err(AdminError::AlreadyExists(
                        Entity::Application(app.client_id.into_string()),
                    )),
                    Err(e) => Err(e.into()),
                    Ok(()) => Ok(app),
                }
            })
            .await
    }

    /// Full replacement: what the input leaves out takes its default.
    pub async fn update_application(
        &self,
        caller: &Caller,
        input: ApplicationInput,
    ) -> AdminResult<Application> {
        let detail = json!({"client_id": input.client_id});
        self.gate
            .run(caller, Change::UpdateApplication, detail, |w| async move {
                caller.check(Need::ManageApp(&input.client_id))?;
                let old = self.existing_app(&input.client_id).await?;
                let app = build(input, old.created_at)?;
                if !w.store().update_application(&app).await? {
                    return Err(AdminError::NotFound(Entity::Application(
                        app.client_id.into_string(),
                    )));
                }
                w.revocations.client_changed(app.client_id.as_str()).await;
                Ok(app)
            })
            .await
    }

    /// Deletes the application, its rules and roles, and revokes its grants; how many.
    pub async fn delete_application(&self, caller: &Caller, client_id: &str) -> AdminResult<usize> {
        let detail = json!({"client_id": client_id});
        self.gate
            .run(caller, Change::DeleteApplication, detail, |w| async move {
                caller.check(Need::OwnApp(client_id))?;
                let gone = w
                    .store()
                    .delete_application(client_id)
                    .await?
                    .ok_or_else(|| {
                        AdminError::NotFound(Entity::Application(client_id.to_string()))
                    })?;
                w.revocations.forget(&gone).await;
                w.revocations.client_changed(client_id).await;
                Ok(gone.len())
            })
            .await
    }

    /// The applications with their statistics, counted by the store in one query.
    async fn infos(&self, apps: Vec<Application>) -> AdminResult<Vec<ApplicationInfo>> {
        let ids: Vec<_> = apps.iter().map(|a| a.client_id.clone()).collect();
        let counts: HashMap<_, _> = self.reads.grant_counts(&ids).await?.into_iter().collect();
        Ok(apps
            .into_iter()
            .map(|app| {
                let c = counts.get(&app.client_id).copied().unwrap_or_default();
                ApplicationInfo {
                    grant_count: c.grants,
                    user_count: c.identities,
                    app,
                }
            })
            .collect())
    }

    async fn info(&self, app: Application) -> AdminResult<ApplicationInfo> {
        let ids = [app.client_id.clone()];
        let c = self
            .reads
            .grant_counts(&ids)
            .await?
            .pop()
            .map(|(_, c)| c)
            .unwrap_or_default();
        Ok(ApplicationInfo {
            grant_count: c.grants,
            user_count: c.identities,
            app,
        })
    }

    pub async fn get_application(
        &self,
        caller: &Caller,
        client_id: &str,
    ) -> AdminResult<ApplicationInfo> {
        caller.check(Need::ReadApp(client_id))?;
        let app = self.existing_app(client_id).await?;
        self.info(app).await
    }

    /// GrantCount and UserCount.
    pub async fn counts(&self, caller: &Caller, client_id: &str) -> AdminResult<ApplicationInfo> {
        self.get_application(caller, client_id).await
    }

    pub async fn enumerate_applications(
        &self,
        caller: &Caller,
        page: Page,
    ) -> AdminResult<Vec<ApplicationInfo>> {
        if !caller.has_any_app_role() {
            caller.check(Need::ReadAll)?;
        }
        let mut apps = caller.visible_apps(self.reads.list_applications().await?);
        match page.order_by.unwrap_or(0) {
            1 => apps.sort_by_key(|a| a.name.to_lowercase()),
            2 => apps.sort_by_key(|a| a.vendor.to_lowercase()),
            3 => apps.sort_by_key(|a| a.access_validity),
            4 => apps.sort_by_key(|a| a.grant_validity.map(Lifetime::to_db)),
            _ => {}
        }
        self.infos(page.apply(apps)).await
    }

    /// The applications the caller may see, without statistics.
    pub async fn list_applications(&self, caller: &Caller) -> AdminResult<Vec<Application>> {
        if !caller.has_any_app_role() {
            caller.check(Need::ReadAll)?;
        }
        Ok(caller.visible_apps(self.reads.list_applications().await?))
    }

    /// GetApplications: by ids and/or a case-insensitive substring of id, name, vendor or
    /// description.
    pub async fn search_applications(
        &self,
        caller: &Caller,
        ids: &[String],
        filter: Option<&str>,
    ) -> AdminResult<Vec<ApplicationInfo>> {
        if !caller.has_any_app_role() {
            caller.check(Need::ReadAll)?;
        }
        let needle = filter.map(str::to_lowercase);
        let apps = caller
            .visible_apps(self.reads.list_applications().await?)
            .into_iter()
            .filter(|a| ids.is_empty() || ids.iter().any(|i| i == &a.client_id))
            .filter(|a| {
                needle.as_deref().is_none_or(|n| {
                    [a.client_id.as_str(), &a.name, &a.vendor, &a.description]
                        .iter()
                        .any(|f| f.to_lowercase().contains(n))
                })
            })
            .collect::<Vec<_>>();
        self.infos(apps).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging() {
        let p = Page {
            start: Some(1),
            count: Some(2),
            order_by: None,
            descending: false,
        };
        assert_eq!(p.apply(vec![1, 2, 3, 4]), vec![2, 3]);
        let d = Page {
            descending: true,
            ..Page::default()
        };
        assert_eq!(d.apply(vec![1, 2, 3]), vec![3, 2, 1]);
        let far = Page {
            start: Some(10),
            ..Page::default()
        };
        assert_eq!(far.apply(vec![1, 2]), Vec::<i32>::new());
    }

    #[test]
    fn applications_are_checked_before_they_are_stored() {
        let ok = ApplicationInput {
            client_id: "a".into(),
            scope: Some("certificate".into()),
            ..Default::default()
        };
        assert!(build(ok.clone(), 0).is_ok());
        let long = ApplicationInput {
            grant_validity: Some(Lifetime::Seconds(i64::MAX)),
            ..ok.clone()
        };
        assert!(matches!(
            build(long, 0),
            Err(AdminError::Invalid {
                field: "GrantValidity",
                ..
            })
        ));
        let wide = ApplicationInput {
            scope: Some("ssh".into()),
            max_scope: Some("certificate".into()),
            ..ok
        };
        assert!(matches!(build(wide, 0), Err(AdminError::ScopeExceeds(_))));
    }
}
