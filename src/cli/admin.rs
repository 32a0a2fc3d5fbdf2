//! `vedauth user|app|grant ...`: administration on the same store the server uses.

use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use serde::Serialize;

use super::{read_password_stdin, GlobalOpts};
use crate::app::App;
use crate::scope::Scope;
use crate::secret::Secret;
use crate::store::{Application, Grant, GrantFilter, Lifetime, Rule, StoreError, User};

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a local user.
    Add {
        name: String,
        /// Read the password from stdin (otherwise a random one is generated and printed).
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        full_name: Option<String>,
        #[arg(long)]
        email: Option<String>,
    },
    /// Set a user's password (read from stdin).
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    List,
    Show {
        name: String,
    },
    Disable {
        name: String,
    },
    Enable {
        name: String,
    },
    Remove {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppCmd {
    /// Register an application (API integration).
    Add {
        client_id: String,
        /// The most the application can grant.
        #[arg(long)]
        scope: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        vendor: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Access-token lifetime in seconds.
        #[arg(long)]
        access_validity: Option<i64>,
        /// Grant lifetime in seconds, or `never`.
        #[arg(long)]
        grant_validity: Option<Lifetime>,
        #[arg(long)]
        renewable: Option<bool>,
    },
    /// Let a trustee (user, group or `everyone`) obtain grants for the application.
    Allow {
        client_id: String,
        trustee: String,
        #[arg(long)]
        max_scope: Option<String>,
        #[arg(long)]
        access_validity: Option<i64>,
        #[arg(long)]
        grant_validity: Option<Lifetime>,
        #[arg(long)]
        renewable: Option<bool>,
    },
    List,
    Show {
        client_id: String,
    },
    /// Delete an application, its rules and its grants.
    Remove {
        client_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GrantCmd {
    List {
        #[arg(long)]
        client_id: Option<String>,
        #[arg(long)]
        identity: Option<String>,
    },
    /// Revoke grants by application and/or identity (at least one, or --all).
    Revoke {
        #[arg(long)]
        client_id: Option<String>,
        #[arg(long)]
        identity: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

fn print<T: Serialize>(json: bool, value: &T, human: impl FnOnce() -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into())
        );
    } else {
        println!("{}", human());
    }
}

#[derive(Serialize)]
struct UserView {
    name: String,
    identity: String,
    full_name: Option<String>,
    email: Option<String>,
    state: &'static str,
    created_at: i64,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            name: u.name.clone(),
            identity: u.identity(),
            full_name: u.full_name.clone(),
            email: u.email.clone(),
            state: if u.disabled { "disabled" } else { "active" },
            created_at: u.created_at,
        }
    }
}

async fn find_user(app: &App, name: &str) -> anyhow::Result<User> {
    app.store
        .user_by_name(name)
        .await?
        .ok_or_else(|| anyhow!("no user named '{name}'"))
}

pub async fn user(g: &GlobalOpts, cmd: UserCmd) -> anyhow::Result<()> {
    let app = g.open_app().await?;
    match cmd {
        UserCmd::Add {
            name,
            password_stdin,
            full_name,
            email,
        } => {
            if name.is_empty() || name.contains(':') || name.contains('\\') {
                bail!("a user name must be non-empty and contain neither ':' nor '\\'");
            }
            let (password, generated) = if password_stdin {
                (read_password_stdin()?, false)
            } else {
                (Secret::new(uuid::Uuid::new_v4().simple().to_string()), true)
            };
            let hash = app.pool.hash(password.clone()).await?;
            let user = User {
                id: uuid::Uuid::new_v4().to_string(),
                name: name.clone(),
                full_name,
                email,
                password_hash: hash,
                disabled: false,
                created_at: app.clock.now(),
            };
            match app.store.create_user(&user).await {
                Err(StoreError::Conflict) => bail!("a user named '{name}' already exists"),
                other => other?,
            }
            let view = UserView::from(&user);
            print(g.json, &view, || {
                format!("created {} ({})", view.name, view.identity)
            });
            if generated {
                // Shown once, to the operator who ran the command; never logged.
                eprintln!("generated password: {}", password.expose());
            }
        }
        UserCmd::Passwd {
            name,
            password_stdin,
        } => {
            if !password_stdin {
                bail!("give the new password on stdin with --password-stdin");
            }
            let password = read_password_stdin()?;
            let user = find_user(&app, &name).await?;
            let hash = app.pool.hash(password).await?;
            app.store
                .replace_password_hash(&user.id, None, &hash)
                .await?;
            print(g.json, &UserView::from(&user), || {
                format!("password of {name} changed")
            });
        }
        UserCmd::List => {
            let users = app.store.list_users().await?;
            let views: Vec<UserView> = users.iter().map(UserView::from).collect();
            print(g.json, &views, || {
                views
                    .iter()
                    .map(|u| format!("{}\t{}\t{}", u.name, u.identity, u.state))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        UserCmd::Show { name } => {
            let v = UserView::from(&find_user(&app, &name).await?);
            print(g.json, &v, || {
                format!(
                    "name: {}\nidentity: {}\nfull name: {}\nemail: {}\nstate: {}",
                    v.name,
                    v.identity,
                    v.full_name.as_deref().unwrap_or(""),
                    v.email.as_deref().unwrap_or(""),
                    v.state
                )
            });
        }
        UserCmd::Disable { name } => {
            let user = find_user(&app, &name).await?;
            app.store.set_user_disabled(&user.id, true).await?;
            // A disabled user's existing tokens stop working too.
            let n = app
                .engine
                .revoke_matching(&GrantFilter {
                    identity: Some(user.identity()),
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow!("{e}"))?;
            print(
                g.json,
                &serde_json::json!({"name": name, "state": "disabled", "grants_revoked": n}),
                || format!("{name} disabled; {n} grant(s) revoked"),
            );
        }
        UserCmd::Enable { name } => {
            let user = find_user(&app, &name).await?;
            app.store.set_user_disabled(&user.id, false).await?;
            print(
                g.json,
                &serde_json::json!({"name": name, "state": "active"}),
                || format!("{name} enabled"),
            );
        }
        UserCmd::Remove { name } => {
            let user = find_user(&app, &name).await?;
            app.engine
                .revoke_matching(&GrantFilter {
                    identity: Some(user.identity()),
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow!("{e}"))?;
            app.store.delete_user(&user.id).await?;
            print(
                g.json,
                &serde_json::json!({"name": name, "removed": true}),
                || format!("{name} removed"),
            );
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct AppView {
    client_id: String,
    name: String,
    vendor: String,
    description: String,
    scope: String,
    access_validity: Option<i64>,
    grant_validity: Option<String>,
    renewable: Option<bool>,
    rules: Vec<RuleView>,
}

#[derive(Serialize)]
struct RuleView {
    trustee: String,
    max_scope: Option<String>,
    access_validity: Option<i64>,
    grant_validity: Option<String>,
    renewable: Option<bool>,
}

impl From<&Rule> for RuleView {
    fn from(r: &Rule) -> Self {
        Self {
            trustee: r.trustee.clone(),
            max_scope: r.max_scope.clone(),
            access_validity: r.access_validity,
            grant_validity: r.grant_validity.map(|l| l.to_string()),
            renewable: r.renewable,
        }
    }
}

fn app_view(a: &Application, rules: &[Rule]) -> AppView {
    AppView {
        client_id: a.client_id.clone(),
        name: a.name.clone(),
        vendor: a.vendor.clone(),
        description: a.description.clone(),
        scope: a.max_scope.clone(),
        access_validity: a.access_validity,
        grant_validity: a.grant_validity.map(|l| l.to_string()),
        renewable: a.renewable,
        rules: rules.iter().map(RuleView::from).collect(),
    }
}

fn canonical_scope(s: &str) -> anyhow::Result<String> {
    Scope::parse(s)
        .map(|s| s.to_string())
        .map_err(|e| anyhow!("scope '{s}' is not valid: {e}"))
}

fn positive(v: Option<i64>, what: &str) -> anyhow::Result<Option<i64>> {
    match v {
        Some(n) if n <= 0 => bail!("{what} must be a positive number of seconds"),
        other => Ok(other),
    }
}

pub async fn app(g: &GlobalOpts, cmd: AppCmd) -> anyhow::Result<()> {
    let app = g.open_app().await?;
    match cmd {
        AppCmd::Add {
            client_id,
            scope,
            name,
            vendor,
            description,
            access_validity,
            grant_validity,
            renewable,
        } => {
            if client_id.is_empty() {
                bail!("the client_id must not be empty");
            }
            let scope = canonical_scope(&scope)?;
            let a = Application {
                client_id: client_id.clone(),
                name: name.unwrap_or_else(|| client_id.clone()),
                vendor: vendor.unwrap_or_default(),
                description: description.unwrap_or_default(),
                url: String::new(),
                scope: scope.clone(),
                max_scope: scope,
                access_validity: positive(access_validity, "--access-validity")?,
                grant_validity,
                renewable,
                unused_expiration: None,
                created_at: app.clock.now(),
            };
            match app.store.create_application(&a).await {
                Err(StoreError::Conflict) => bail!("an application '{client_id}' already exists"),
                other => other?,
            }
            let v = app_view(&a, &[]);
            print(g.json, &v, || {
                format!("registered {} with scope {}", v.client_id, v.scope)
            });
        }
        AppCmd::Allow {
            client_id,
            trustee,
            max_scope,
            access_validity,
            grant_validity,
            renewable,
        } => {
            let a = app
                .store
                .application(&client_id)
                .await?
                .ok_or_else(|| anyhow!("no application '{client_id}'"))?;
            let max_scope = max_scope.as_deref().map(canonical_scope).transpose()?;
            if let Some(m) = &max_scope {
                let within = Scope::parse(m)
                    .ok()
                    .zip(Scope::parse(&a.max_scope).ok())
                    .is_some_and(|(m, app_scope)| m.is_subset_of(&app_scope));
                if !within {
                    bail!(
                        "--max-scope {m} is not within the application's scope {}",
                        a.max_scope
                    );
                }
            }
            let r = Rule {
                client_id: client_id.clone(),
                trustee: trustee.clone(),
                description: String::new(),
                max_scope,
                access_validity: positive(access_validity, "--access-validity")?,
                grant_validity,
                renewable,
                created_at: app.clock.now(),
            };
            match app.store.create_rule(&r).await {
                Err(StoreError::Conflict) => {
                    bail!("'{trustee}' is already allowed to use '{client_id}'")
                }
                other => other?,
            }
            let v = RuleView::from(&r);
            print(g.json, &v, || format!("{trustee} may now use {client_id}"));
        }
        AppCmd::List => {
            let apps = app.store.list_applications().await?;
            let rules = app.store.rules(None).await?;
            let views: Vec<AppView> = apps
                .iter()
                .map(|a| {
                    let mine: Vec<Rule> = rules
                        .iter()
                        .filter(|r| r.client_id == a.client_id)
                        .cloned()
                        .collect();
                    app_view(a, &mine)
                })
                .collect();
            print(g.json, &views, || {
                views
                    .iter()
                    .map(|v| format!("{}\t{}\t{} rule(s)", v.client_id, v.scope, v.rules.len()))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        AppCmd::Show { client_id } => {
            let a = app
                .store
                .application(&client_id)
                .await?
                .ok_or_else(|| anyhow!("no application '{client_id}'"))?;
            let rules = app.store.rules(Some(&client_id)).await?;
            let v = app_view(&a, &rules);
            print(g.json, &v, || {
                let mut s = format!(
                    "client_id: {}\nname: {}\nvendor: {}\nscope: {}\naccess validity: {}\ngrant validity: {}\nrenewable: {}\nrules:",
                    v.client_id,
                    v.name,
                    v.vendor,
                    v.scope,
                    v.access_validity.map(|x| x.to_string()).unwrap_or_else(|| "default".into()),
                    v.grant_validity.clone().unwrap_or_else(|| "default".into()),
                    v.renewable.map(|x| x.to_string()).unwrap_or_else(|| "default".into()),
                );
                for r in &v.rules {
                    s.push_str(&format!(
                        "\n  {} (max scope: {})",
                        r.trustee,
                        r.max_scope.as_deref().unwrap_or("the application's")
                    ));
                }
                s
            });
        }
        AppCmd::Remove { client_id } => {
            let gone = app
                .store
                .delete_application(&client_id)
                .await?
                .ok_or_else(|| anyhow!("no application '{client_id}'"))?;
            app.engine.invalidate(&gone).await;
            print(
                g.json,
                &serde_json::json!({"client_id": client_id, "removed": true, "grants_revoked": gone.len()}),
                || format!("{client_id} removed; {} grant(s) revoked", gone.len()),
            );
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct GrantView {
    id: String,
    client_id: String,
    identity: String,
    scope: String,
    issued_at: i64,
    expires_at: Option<i64>,
    access_expires_at: i64,
    renewable: bool,
}

impl From<&Grant> for GrantView {
    fn from(g: &Grant) -> Self {
        Self {
            id: g.id.clone(),
            client_id: g.client_id.clone(),
            identity: g.identity.clone(),
            scope: g.scope.clone(),
            issued_at: g.issued_at,
            expires_at: g.expires_at,
            access_expires_at: g.access_expires_at,
            renewable: g.renewable,
        }
    }
}

pub async fn grant(g: &GlobalOpts, cmd: GrantCmd) -> anyhow::Result<()> {
    let app = g.open_app().await?;
    match cmd {
        GrantCmd::List {
            client_id,
            identity,
        } => {
            let grants = app
                .store
                .list_grants(&GrantFilter {
                    client_id,
                    identity,
                })
                .await?;
            let views: Vec<GrantView> = grants.iter().map(GrantView::from).collect();
            print(g.json, &views, || {
                views
                    .iter()
                    .map(|v| {
                        format!(
                            "{}\t{}\t{}\t{}\texpires {}",
                            v.id,
                            v.client_id,
                            v.identity,
                            v.scope,
                            v.expires_at
                                .map(|e| e.to_string())
                                .unwrap_or_else(|| "never".into())
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        GrantCmd::Revoke {
            client_id,
            identity,
            all,
        } => {
            if client_id.is_none() && identity.is_none() && !all {
                bail!("name --client-id and/or --identity, or --all to revoke every grant");
            }
            let n = app
                .engine
                .revoke_matching(&GrantFilter {
                    client_id,
                    identity,
                })
                .await
                .context("revoking")?;
            print(g.json, &serde_json::json!({"revoked": n}), || {
                format!("{n} grant(s) revoked")
            });
        }
    }
    Ok(())
}
