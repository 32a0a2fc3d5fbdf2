//! `vedauth user|app|grant ...`: administration on the same store the server uses.

use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use serde::Serialize;

use super::{prompt, GlobalOpts};
use crate::admin::{role, Admin, AdminError, ApplicationInput, Caller, RuleInput};
use crate::app::App;
use crate::store::{
    Application, Grant, GrantFilter, Lifetime, RoleAssignment, Rule, StoreError, User,
};

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a local user.
    Add {
        /// The user name (no ':' or '\\'); the user logs in as NAME or local:NAME.
        name: String,
        /// Read the password as one line from stdin (otherwise it is prompted for on the terminal).
        #[arg(long)]
        password_stdin: bool,
        /// The user's full name, for listings and Identity/Self.
        #[arg(long)]
        full_name: Option<String>,
        /// The user's email address.
        #[arg(long)]
        email: Option<String>,
    },
    /// Set a user's password (prompted for on the terminal, or one line of stdin).
    Passwd {
        /// The user name.
        name: String,
        /// Read the password as one line from stdin (otherwise it is prompted for on the terminal).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List local users with their identities and states.
    List,
    /// Show one user: identity, state, failed logins, lockout.
    Show {
        /// The user name.
        name: String,
    },
    /// Disable a user and revoke their grants.
    Disable {
        /// The user name.
        name: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// The user name.
        name: String,
    },
    /// End a lockout early and forget the counted failures.
    Unlock {
        /// The user name.
        name: String,
    },
    /// Delete a user and revoke their grants.
    Remove {
        /// The user name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppCmd {
    /// Register an application (API integration).
    Add {
        /// The application's client_id (case-sensitive, unique).
        client_id: String,
        /// The most the application can grant, e.g. 'certificate:manage,revoke'.
        #[arg(long)]
        scope: String,
        /// A display name (default: the client_id).
        #[arg(long)]
        name: Option<String>,
        /// The vendor shown in listings.
        #[arg(long)]
        vendor: Option<String>,
        /// A free-text description.
        #[arg(long)]
        description: Option<String>,
        /// Access-token lifetime in seconds.
        #[arg(long)]
        access_validity: Option<i64>,
        /// Grant lifetime in seconds, or `never`.
        #[arg(long)]
        grant_validity: Option<Lifetime>,
        /// Whether grants may be refreshed (true or false).
        #[arg(long)]
        renewable: Option<bool>,
    },
    /// Let a trustee (user, group or `everyone`) obtain grants for the application.
    Allow {
        /// The application's client_id.
        client_id: String,
        /// Who: a user or group name (alice, local:alice, LDAP+N:ops, DOMAIN\\name), an identity, or `everyone`.
        trustee: String,
        /// The most this trustee may be granted (within the application's scope).
        #[arg(long)]
        max_scope: Option<String>,
        /// Access-token lifetime in seconds for this trustee.
        #[arg(long)]
        access_validity: Option<i64>,
        /// Grant lifetime in seconds, or `never`, for this trustee.
        #[arg(long)]
        grant_validity: Option<Lifetime>,
        /// Whether this trustee's grants may be refreshed.
        #[arg(long)]
        renewable: Option<bool>,
    },
    /// Change an application: only the options given change (the API's UpdateApplication).
    Update {
        /// The application's client_id.
        client_id: String,
        /// The most the application can grant.
        #[arg(long)]
        scope: Option<String>,
        /// A display name.
        #[arg(long)]
        name: Option<String>,
        /// The vendor shown in listings.
        #[arg(long)]
        vendor: Option<String>,
        /// A free-text description.
        #[arg(long)]
        description: Option<String>,
        /// Access-token lifetime in seconds.
        #[arg(long)]
        access_validity: Option<i64>,
        /// Grant lifetime in seconds, or `never`.
        #[arg(long)]
        grant_validity: Option<Lifetime>,
        /// Whether grants may be refreshed.
        #[arg(long)]
        renewable: Option<bool>,
    },
    /// Remove a trustee's rule: no new grants for it (existing grants live on).
    Disallow {
        /// The application's client_id.
        client_id: String,
        /// The trustee whose rule goes, as given to `app allow`.
        trustee: String,
    },
    /// List applications with their scopes and number of rules.
    List,
    /// Show one application with its settings and rules.
    Show {
        /// The application's client_id.
        client_id: String,
    },
    /// Delete an application, its rules and its grants.
    Remove {
        /// The application's client_id.
        client_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoleCmd {
    /// Give an identity an OAuth role: auditor, maintainer, owner, grant-admin, admin (or 1-6).
    Grant {
        /// The identity: local:{uuid} (or local:NAME), LDAP+N:..., AD+N:....
        identity: String,
        /// auditor, maintainer, owner, grant-admin or admin (or its number).
        role: String,
        /// The application, for the maintainer and owner roles.
        #[arg(long = "app")]
        client_id: Option<String>,
    },
    /// Take a role away (on one application with --app, else on all).
    Revoke {
        /// The identity holding the role.
        identity: String,
        /// auditor, maintainer, owner, grant-admin or admin (or its number).
        role: String,
        /// Only on this application.
        #[arg(long = "app")]
        client_id: Option<String>,
    },
    /// List role assignments.
    List {
        /// Only this identity's.
        identity: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum GrantCmd {
    /// List live grants (never their tokens), with dates in ISO 8601 and Unix seconds.
    List {
        /// Only this application's.
        #[arg(long)]
        client_id: Option<String>,
        /// Only this identity's (local:{uuid}, LDAP+N:..., AD+N:...).
        #[arg(long)]
        identity: Option<String>,
    },
    /// Revoke grants by application and/or identity (at least one, or --all).
    Revoke {
        /// Grants of this application.
        #[arg(long)]
        client_id: Option<String>,
        /// Grants of this identity.
        #[arg(long)]
        identity: Option<String>,
        /// Every grant (when neither --client-id nor --identity is given).
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
    #[serde(skip_serializing_if = "Option::is_none")]
    locked_until: Option<i64>,
    failed_logins: u32,
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
            locked_until: None,
            failed_logins: 0,
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
            // Before the prompt: nobody should type a password twice to learn the name is taken.
            if app.store.user_by_name(&name).await?.is_some() {
                bail!("a user named '{name}' already exists");
            }
            let password = prompt::new_password(&name, password_stdin)?;
            let hash = app.pool.hash(password).await?;
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
        }
        UserCmd::Passwd {
            name,
            password_stdin,
        } => {
            let user = find_user(&app, &name).await?;
            let password = prompt::new_password(&name, password_stdin)?;
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
        UserCmd::Unlock { name } => {
            let user = find_user(&app, &name).await?;
            let had = admin_op(
                Admin::new(&app)
                    .unlock(&Caller::Operator, &user.identity())
                    .await,
            )?;
            print(
                g.json,
                &serde_json::json!({"name": name, "unlocked": true, "had_failures": had}),
                || format!("{name} unlocked"),
            );
        }
        UserCmd::Show { name } => {
            let user = find_user(&app, &name).await?;
            let mut v = UserView::from(&user);
            let lock = admin_op(Admin::new(&app).lock_state(&user.identity()).await)?;
            if let Some(l) = lock {
                v.failed_logins = l.failures;
                if let Some(until) = l.locked_until {
                    v.state = "locked";
                    v.locked_until = Some(until);
                }
            }
            print(g.json, &v, || {
                format!(
                    "name: {}\nidentity: {}\nfull name: {}\nemail: {}\nstate: {}\nfailed logins: {}{}",
                    v.name,
                    v.identity,
                    v.full_name.as_deref().unwrap_or(""),
                    v.email.as_deref().unwrap_or(""),
                    v.state,
                    v.failed_logins,
                    v.locked_until
                        .map(|t| format!("\nlocked until: {}", crate::api::iso8601(t)))
                        .unwrap_or_default()
                )
            });
        }
        UserCmd::Disable { name } => {
            let n = admin_op(
                Admin::new(&app)
                    .set_user_disabled(&Caller::Operator, &name, true)
                    .await,
            )?;
            print(
                g.json,
                &serde_json::json!({"name": name, "state": "disabled", "grants_revoked": n}),
                || format!("{name} disabled; {n} grant(s) revoked"),
            );
        }
        UserCmd::Enable { name } => {
            admin_op(
                Admin::new(&app)
                    .set_user_disabled(&Caller::Operator, &name, false)
                    .await,
            )?;
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

/// The command line reports an administration refusal as an error with its result code.
pub fn admin_op<T>(r: Result<T, AdminError>) -> anyhow::Result<T> {
    r.map_err(|e| match e {
        AdminError::Refused(code, message) => anyhow::Error::new(super::Refusal {
            code: code as i32,
            message,
        }),
        other => anyhow!("{other}"),
    })
}

fn parse_role(s: &str) -> anyhow::Result<i32> {
    let r = match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
        "auditor" => role::AUDITOR,
        "maintainer" => role::MAINTAINER,
        "owner" => role::OWNER,
        "grantadmin" => role::GRANT_ADMIN,
        "admin" => role::ADMIN,
        n => n.parse().map_err(|_| anyhow!("unknown role '{s}'"))?,
    };
    Ok(r)
}

fn role_name(r: i32) -> &'static str {
    match r {
        role::AUDITOR => "auditor",
        role::MAINTAINER => "maintainer",
        role::OWNER => "owner",
        role::GRANT_ADMIN => "grant-admin",
        role::ADMIN => "admin",
        _ => "user",
    }
}

#[derive(Serialize)]
struct RoleView {
    identity: String,
    role: i32,
    name: &'static str,
    client_id: Option<String>,
}

pub async fn roles(g: &GlobalOpts, cmd: RoleCmd) -> anyhow::Result<()> {
    let app = g.open_app().await?;
    let admin = Admin::new(&app);
    match cmd {
        RoleCmd::Grant {
            identity,
            role,
            client_id,
        } => {
            let r = RoleAssignment {
                grantee: identity.clone(),
                role: parse_role(&role)?,
                client_id,
            };
            admin_op(admin.grant_role(&Caller::Operator, r.clone()).await)?;
            print(
                g.json,
                &serde_json::json!({"identity": identity, "role": r.role}),
                || format!("{identity} now holds the {} role", role_name(r.role)),
            );
        }
        RoleCmd::Revoke {
            identity,
            role,
            client_id,
        } => {
            let n = admin_op(
                admin
                    .revoke_role(
                        &Caller::Operator,
                        &identity,
                        parse_role(&role)?,
                        client_id.as_deref(),
                    )
                    .await,
            )?;
            print(
                g.json,
                &serde_json::json!({"identity": identity, "removed": n}),
                || format!("{n} role assignment(s) removed"),
            );
        }
        RoleCmd::List { identity } => {
            let list = admin_op(
                admin
                    .list_roles(&Caller::Operator, identity.as_deref())
                    .await,
            )?;
            let views: Vec<RoleView> = list
                .into_iter()
                .map(|r| RoleView {
                    name: role_name(r.role),
                    identity: r.grantee,
                    role: r.role,
                    client_id: r.client_id,
                })
                .collect();
            print(g.json, &views, || {
                views
                    .iter()
                    .map(|v| {
                        format!(
                            "{}\t{}\t{}",
                            v.identity,
                            v.name,
                            v.client_id.as_deref().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
    }
    Ok(())
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
            let a = admin_op(
                Admin::new(&app)
                    .create_application(
                        &Caller::Operator,
                        ApplicationInput {
                            client_id,
                            name,
                            vendor,
                            description,
                            scope: Some(scope),
                            access_validity,
                            grant_validity,
                            renewable,
                            ..Default::default()
                        },
                    )
                    .await,
            )?;
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
            let r = admin_op(
                Admin::new(&app)
                    .create_rule(
                        &Caller::Operator,
                        RuleInput {
                            client_id: client_id.clone(),
                            trustee: trustee.clone(),
                            description: None,
                            max_scope,
                            access_validity,
                            grant_validity,
                            renewable,
                        },
                    )
                    .await,
            )?;
            let v = RuleView::from(&r);
            print(g.json, &v, || format!("{trustee} may now use {client_id}"));
        }
        AppCmd::Update {
            client_id,
            scope,
            name,
            vendor,
            description,
            access_validity,
            grant_validity,
            renewable,
        } => {
            let admin = Admin::new(&app);
            let current = app
                .store
                .application(&client_id)
                .await?
                .ok_or_else(|| anyhow!("no application '{client_id}'"))?;
            // The API replaces the whole application: start from what it is now.
            let a = admin_op(
                admin
                    .update_application(
                        &Caller::Operator,
                        ApplicationInput {
                            client_id: client_id.clone(),
                            name: Some(name.unwrap_or(current.name)),
                            vendor: Some(vendor.unwrap_or(current.vendor)),
                            description: Some(description.unwrap_or(current.description)),
                            url: Some(current.url),
                            scope: Some(scope.clone().unwrap_or(current.scope)),
                            max_scope: Some(scope.unwrap_or(current.max_scope)),
                            access_validity: access_validity.or(current.access_validity),
                            grant_validity: grant_validity.or(current.grant_validity),
                            renewable: renewable.or(current.renewable),
                            unused_expiration: current.unused_expiration,
                        },
                    )
                    .await,
            )?;
            let rules = app.store.rules(Some(&client_id)).await?;
            let v = app_view(&a, &rules);
            print(g.json, &v, || {
                format!("updated {} (scope {})", v.client_id, v.scope)
            });
        }
        AppCmd::Disallow { client_id, trustee } => {
            admin_op(
                Admin::new(&app)
                    .delete_rules(&Caller::Operator, Some(&client_id), Some(&trustee))
                    .await,
            )?;
            print(
                g.json,
                &serde_json::json!({"client_id": client_id, "trustee": trustee, "removed": true}),
                || format!("{trustee} may no longer obtain new grants for {client_id}"),
            );
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
            let n = admin_op(
                Admin::new(&app)
                    .delete_application(&Caller::Operator, &client_id)
                    .await,
            )?;
            print(
                g.json,
                &serde_json::json!({"client_id": client_id, "removed": true, "grants_revoked": n}),
                || format!("{client_id} removed; {n} grant(s) revoked"),
            );
        }
    }
    Ok(())
}

/// A grant as listed: times as Unix seconds and, beside each, the same instant in ISO 8601 (UTC).
#[derive(Serialize)]
struct GrantView {
    id: String,
    client_id: String,
    identity: String,
    scope: String,
    issued_at: i64,
    issued_at_iso: String,
    /// None: the grant never expires.
    expires_at: Option<i64>,
    expires_at_iso: Option<String>,
    access_expires_at: i64,
    access_expires_at_iso: String,
    renewable: bool,
}

impl From<&Grant> for GrantView {
    fn from(g: &Grant) -> Self {
        use crate::api::iso8601;
        Self {
            id: g.id.clone(),
            client_id: g.client_id.clone(),
            identity: g.identity.clone(),
            scope: g.scope.clone(),
            issued_at: g.issued_at,
            issued_at_iso: iso8601(g.issued_at),
            expires_at: g.expires_at,
            expires_at_iso: g.expires_at.map(iso8601),
            access_expires_at: g.access_expires_at,
            access_expires_at_iso: iso8601(g.access_expires_at),
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
                            "{}\t{}\t{}\t{}\tissued {} ({})\texpires {}",
                            v.id,
                            v.client_id,
                            v.identity,
                            v.scope,
                            v.issued_at_iso,
                            v.issued_at,
                            match (&v.expires_at_iso, v.expires_at) {
                                (Some(iso), Some(unix)) => format!("{iso} ({unix})"),
                                _ => "never".into(),
                            }
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
            let n = if all && client_id.is_none() && identity.is_none() {
                app.engine
                    .revoke_matching(&GrantFilter::default())
                    .await
                    .context("revoking")?
            } else {
                if client_id.is_none() && identity.is_none() {
                    bail!("name --client-id and/or --identity, or --all to revoke every grant");
                }
                admin_op(
                    Admin::new(&app)
                        .revoke_grants(&Caller::Operator, identity.as_deref(), client_id.as_deref())
                        .await,
                )?
            };
            print(g.json, &serde_json::json!({"revoked": n}), || {
                format!("{n} grant(s) revoked")
            });
        }
    }
    Ok(())
}
