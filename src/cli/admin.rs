//! `vedauth user|app|grant|role ...`: administration on the same store the server uses.
//! Presentation only: every command calls [`crate::admin::Admin`] as the operator and prints
//! the outcome for a person or, with `--json`, for a program.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use clap::Subcommand;
use serde::Serialize;

use super::{prompt, GlobalOpts};
use crate::admin::{
    validate_new_user_name, Admin, AdminError, ApplicationInput, Caller, NewUser, Page, Role,
    RoleGrant, RuleInput, UserInfo,
};
use crate::domain::{CanonicalScope, ClientId, GrantId, Identity};
use crate::identity::lookup::Named;
use crate::store::{Application, Grant, Lifetime, Rule};

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
    /// Let a trustee obtain grants for the application: `everyone`, a user or group by name
    /// (`alice`, `local:alice`, `LDAP+N:ops`, `DOMAIN\name`) or by identity. The rule
    /// keeps the identity the name has now.
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
    /// Give the application a new client secret (for the OAuth 2.0 face: client_credentials,
    /// introspection, confidential clients), replacing any earlier one at once. The secret is
    /// printed this once and never again; only its argon2id hash is stored.
    Secret {
        /// The application's client_id.
        client_id: String,
        /// Remove the secret instead: the application becomes a public client again.
        #[arg(long)]
        remove: bool,
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

pub(super) fn print<T: Serialize>(json: bool, value: &T, human: impl FnOnce() -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into())
        );
    } else {
        println!("{}", human());
    }
}

/// The operator's view of the administration core.
async fn open(g: &GlobalOpts) -> anyhow::Result<Admin> {
    Ok(g.open_assembly().await?.admin)
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

impl From<&UserInfo> for UserView {
    fn from(u: &UserInfo) -> Self {
        Self {
            name: u.name.clone(),
            identity: u.identity.clone(),
            full_name: u.full_name.clone(),
            email: u.email.clone(),
            state: if u.disabled {
                "disabled"
            } else if u.locked_until.is_some() {
                "locked"
            } else {
                "active"
            },
            created_at: u.created_at,
            locked_until: u.locked_until,
            failed_logins: u.failures,
        }
    }
}

pub async fn user(g: &GlobalOpts, cmd: UserCmd) -> anyhow::Result<()> {
    let admin = open(g).await?;
    let me = &Caller::Operator;
    match cmd {
        UserCmd::Add {
            name,
            password_stdin,
            full_name,
            email,
        } => {
            // Before a prompt: nobody should type a password twice to learn that the name is
            // refused or taken. (A script's --password-stdin goes straight to the core, which
            // refuses a taken name and audits the refusal.)
            if !password_stdin {
                let name = admin_op(validate_new_user_name(&name))?;
                if admin.user(me, &name).await.is_ok() {
                    bail!("a user named '{name}' already exists");
                }
            }
            let password = prompt::new_password(&name, password_stdin)?;
            let info = admin_op(
                admin
                    .add_user(
                        me,
                        NewUser {
                            name,
                            password,
                            full_name,
                            email,
                        },
                    )
                    .await,
            )?;
            let view = UserView::from(&info);
            print(g.json, &view, || {
                format!("created {} ({})", view.name, view.identity)
            });
        }
        UserCmd::Passwd {
            name,
            password_stdin,
        } => {
            // The user must exist before anyone types a new password for it.
            admin_op(admin.user(me, &name).await)?;
            let password = prompt::new_password(&name, password_stdin)?;
            let n = admin_op(admin.set_password(me, &name, password).await)?;
            print(
                g.json,
                &serde_json::json!({"name": name, "password_changed": true, "grants_revoked": n}),
                || format!("password of {name} changed; {n} grant(s) revoked"),
            );
        }
        UserCmd::List => {
            let users = admin_op(admin.list_users(me).await)?;
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
            let had = admin_op(admin.unlock_user(me, &name).await)?;
            print(
                g.json,
                &serde_json::json!({"name": name, "unlocked": true, "had_failures": had}),
                || format!("{name} unlocked"),
            );
        }
        UserCmd::Show { name } => {
            let v = UserView::from(&admin_op(admin.user(me, &name).await)?);
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
                        .map(|t| format!("\nlocked until: {}", crate::wire_time::iso8601(t)))
                        .unwrap_or_default()
                )
            });
        }
        UserCmd::Disable { name } => {
            let n = admin_op(admin.set_user_disabled(me, &name, true).await)?;
            print(
                g.json,
                &serde_json::json!({"name": name, "state": "disabled", "grants_revoked": n}),
                || format!("{name} disabled; {n} grant(s) revoked"),
            );
        }
        UserCmd::Enable { name } => {
            admin_op(admin.set_user_disabled(me, &name, false).await)?;
            print(
                g.json,
                &serde_json::json!({"name": name, "state": "active"}),
                || format!("{name} enabled"),
            );
        }
        UserCmd::Remove { name } => {
            let r = admin_op(admin.remove_user(me, &name).await)?;
            print(
                g.json,
                &serde_json::json!({
                    "name": name,
                    "removed": true,
                    "grants_revoked": r.grants,
                    "rules_removed": r.rules,
                    "roles_removed": r.roles,
                }),
                || {
                    format!(
                        "{name} removed; {} grant(s) revoked, {} rule(s) and {} role assignment(s) removed",
                        r.grants, r.rules, r.roles
                    )
                },
            );
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct AppView {
    client_id: ClientId,
    name: String,
    vendor: String,
    description: String,
    scope: CanonicalScope,
    access_validity: Option<i64>,
    grant_validity: Option<String>,
    renewable: Option<bool>,
    rules: Vec<RuleView>,
    /// When its client secret was set (`app show` only; never the secret itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret_set_at: Option<i64>,
}

#[derive(Serialize)]
struct RuleView {
    /// The identity the rule admits (or `everyone`).
    trustee: Identity,
    /// Its current name, when a provider knows it.
    trustee_name: Option<String>,
    max_scope: Option<CanonicalScope>,
    access_validity: Option<i64>,
    grant_validity: Option<String>,
    renewable: Option<bool>,
}

impl RuleView {
    fn new(r: &Rule, names: &BTreeMap<String, Named>) -> Self {
        Self {
            trustee: r.trustee.clone(),
            trustee_name: names.get(r.trustee.as_str()).map(|n| n.name.clone()),
            max_scope: r.max_scope.clone(),
            access_validity: r.access_validity,
            grant_validity: r.grant_validity.map(|l| l.to_string()),
            renewable: r.renewable,
        }
    }

    /// `local:alice (local:{…})`, or the identity alone when nobody is named by it now.
    fn who(&self) -> String {
        match &self.trustee_name {
            Some(n) => format!("{n} ({})", self.trustee),
            None => self.trustee.to_string(),
        }
    }
}

fn app_view(a: &Application, rules: &[Rule], names: &BTreeMap<String, Named>) -> AppView {
    AppView {
        client_id: a.client_id.clone(),
        name: a.name.clone(),
        vendor: a.vendor.clone(),
        description: a.description.clone(),
        scope: a.max_scope.clone(),
        access_validity: a.access_validity,
        grant_validity: a.grant_validity.map(|l| l.to_string()),
        renewable: a.renewable,
        rules: rules.iter().map(|r| RuleView::new(r, names)).collect(),
        client_secret_set_at: None,
    }
}

/// The command line reports an administration refusal as an error with its TPP result code,
/// the same number the administration API would answer.
pub fn admin_op<T>(r: Result<T, AdminError>) -> anyhow::Result<T> {
    r.map_err(|e| match crate::http::vedauth::admin::result_code(&e) {
        Some(code) => anyhow::Error::new(super::Refusal {
            code: code as i32,
            message: e.to_string(),
        }),
        None => anyhow!("{e}"),
    })
}

#[derive(Serialize)]
struct RoleView {
    identity: Identity,
    /// The identity's current name, when a provider knows it.
    identity_name: Option<String>,
    role: i32,
    name: &'static str,
    client_id: Option<ClientId>,
}

pub async fn roles(g: &GlobalOpts, cmd: RoleCmd) -> anyhow::Result<()> {
    let admin = open(g).await?;
    let me = &Caller::Operator;
    match cmd {
        RoleCmd::Grant {
            identity,
            role,
            client_id,
        } => {
            let role = admin_op(Role::parse(&role))?;
            let r = admin_op(
                admin
                    .grant_role(
                        me,
                        RoleGrant {
                            grantee: identity.clone(),
                            role,
                            client_id,
                        },
                    )
                    .await,
            )?;
            print(
                g.json,
                &serde_json::json!({"identity": r.grantee, "role": r.role, "client_id": r.client_id}),
                || format!("{identity} ({}) now holds the {role} role", r.grantee),
            );
        }
        RoleCmd::Revoke {
            identity,
            role,
            client_id,
        } => {
            let role = admin_op(Role::parse(&role))?;
            let n = admin_op(
                admin
                    .revoke_role(me, &identity, role, client_id.as_deref())
                    .await,
            )?;
            print(
                g.json,
                &serde_json::json!({"identity": identity, "removed": n}),
                || format!("{n} role assignment(s) removed"),
            );
        }
        RoleCmd::List { identity } => {
            let list = admin_op(admin.list_roles(me, identity.as_deref()).await)?;
            let names = admin
                .names(&list.iter().map(|r| r.grantee.as_str()).collect::<Vec<_>>())
                .await;
            let views: Vec<RoleView> = list
                .into_iter()
                .map(|r| RoleView {
                    identity_name: names.get(r.grantee.as_str()).map(|n| n.name.clone()),
                    name: r.role.name(),
                    identity: r.grantee,
                    role: r.role.code(),
                    client_id: r.client_id,
                })
                .collect();
            print(g.json, &views, || {
                views
                    .iter()
                    .map(|v| {
                        format!(
                            "{}\t{}\t{}\t{}",
                            v.identity_name.as_deref().unwrap_or("-"),
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
    let admin = open(g).await?;
    let me = &Caller::Operator;
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
                admin
                    .create_application(
                        me,
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
            let v = app_view(&a, &[], &BTreeMap::new());
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
                admin
                    .create_rule(
                        me,
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
            let names = admin.names(&[r.trustee.as_str()]).await;
            let v = RuleView::new(&r, &names);
            print(g.json, &v, || {
                format!("{} may now use {client_id}", v.who())
            });
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
            let current = admin_op(admin.get_application(me, &client_id).await)?.app;
            // The API replaces the whole application: start from what it is now.
            let a = admin_op(
                admin
                    .update_application(
                        me,
                        ApplicationInput {
                            client_id: client_id.clone(),
                            name: Some(name.unwrap_or(current.name)),
                            vendor: Some(vendor.unwrap_or(current.vendor)),
                            description: Some(description.unwrap_or(current.description)),
                            url: Some(current.url),
                            scope: Some(scope.clone().unwrap_or(current.scope)),
                            max_scope: Some(scope.unwrap_or(current.max_scope.into_string())),
                            access_validity: access_validity.or(current.access_validity),
                            grant_validity: grant_validity.or(current.grant_validity),
                            renewable: renewable.or(current.renewable),
                            unused_expiration: current.unused_expiration,
                        },
                    )
                    .await,
            )?;
            let rules = admin_op(
                admin
                    .find_rules(me, Some(&client_id), &[], None, None, None)
                    .await,
            )?;
            let names = admin
                .names(&rules.iter().map(|r| r.trustee.as_str()).collect::<Vec<_>>())
                .await;
            let v = app_view(&a, &rules, &names);
            print(g.json, &v, || {
                format!("updated {} (scope {})", v.client_id, v.scope)
            });
        }
        AppCmd::Disallow { client_id, trustee } => {
            admin_op(
                admin
                    .delete_rules(me, Some(&client_id), Some(&trustee))
                    .await,
            )?;
            print(
                g.json,
                &serde_json::json!({"client_id": client_id, "trustee": trustee, "removed": true}),
                || format!("{trustee} may no longer obtain new grants for {client_id}"),
            );
        }
        AppCmd::List => {
            let apps = admin_op(admin.list_applications(me).await)?;
            let rules = admin_op(admin.find_rules(me, None, &[], None, None, None).await)?;
            let names = admin
                .names(&rules.iter().map(|r| r.trustee.as_str()).collect::<Vec<_>>())
                .await;
            let views: Vec<AppView> = apps
                .iter()
                .map(|a| {
                    let mine: Vec<Rule> = rules
                        .iter()
                        .filter(|r| r.client_id == a.client_id)
                        .cloned()
                        .collect();
                    app_view(a, &mine, &names)
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
            let a = admin_op(admin.get_application(me, &client_id).await)?.app;
            let rules = admin_op(
                admin
                    .find_rules(me, Some(&client_id), &[], None, None, None)
                    .await,
            )?;
            let names = admin
                .names(&rules.iter().map(|r| r.trustee.as_str()).collect::<Vec<_>>())
                .await;
            let mut v = app_view(&a, &rules, &names);
            v.client_secret_set_at = admin_op(admin.client_secret_set_at(me, &client_id).await)?;
            print(g.json, &v, || {
                let mut s = format!(
                    "client_id: {}\nname: {}\nvendor: {}\nscope: {}\naccess validity: {}\ngrant validity: {}\nrenewable: {}\nclient secret: {}\nrules:",
                    v.client_id,
                    v.name,
                    v.vendor,
                    v.scope,
                    v.access_validity.map(|x| x.to_string()).unwrap_or_else(|| "default".into()),
                    v.grant_validity.clone().unwrap_or_else(|| "default".into()),
                    v.renewable.map(|x| x.to_string()).unwrap_or_else(|| "default".into()),
                    match v.client_secret_set_at {
                        Some(at) => format!(
                            "set {} ({at})",
                            crate::wire_time::iso8601(at)
                        ),
                        None => "none (a public client)".into(),
                    },
                );
                for r in &v.rules {
                    s.push_str(&format!(
                        "\n  {} (max scope: {})",
                        r.who(),
                        r.max_scope.as_deref().unwrap_or("the application's")
                    ));
                }
                s
            });
        }
        AppCmd::Secret { client_id, remove } => {
            if remove {
                let had = admin_op(admin.remove_client_secret(me, &client_id).await)?;
                print(
                    g.json,
                    &serde_json::json!({"client_id": client_id, "removed": had}),
                    || match had {
                        true => {
                            format!("{client_id}: client secret removed; it is a public client now")
                        }
                        false => format!("{client_id} had no client secret"),
                    },
                );
            } else {
                let s = admin_op(admin.set_client_secret(me, &client_id).await)?;
                print(
                    g.json,
                    &serde_json::json!({
                        "client_id": s.client_id,
                        "client_secret": s.secret.expose(),
                        "created_at": s.created_at,
                        "rotated": s.rotated,
                    }),
                    || {
                        format!(
                            "client secret for {} (shown this once; store it now):\n{}",
                            s.client_id,
                            s.secret.expose()
                        )
                    },
                );
            }
        }
        AppCmd::Remove { client_id } => {
            let n = admin_op(admin.delete_application(me, &client_id).await)?;
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
    id: GrantId,
    client_id: ClientId,
    identity: Identity,
    scope: CanonicalScope,
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
        use crate::wire_time::iso8601;
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
    let admin = open(g).await?;
    let me = &Caller::Operator;
    // `--identity` takes a name too (`alice`, `local:alice`).
    let identity_of = |given: Option<String>| {
        let admin = admin.clone();
        async move {
            match given {
                Some(i) => admin_op(admin.identity_of(&i).await).map(Some),
                None => Ok(None),
            }
        }
    };
    match cmd {
        GrantCmd::List {
            client_id,
            identity,
        } => {
            let identity = identity_of(identity).await?;
            let grants = admin_op(
                admin
                    .grants(
                        me,
                        identity.as_deref(),
                        client_id.as_deref(),
                        Page::default(),
                    )
                    .await,
            )?;
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
                admin_op(admin.revoke_all_grants(me).await)?
            } else {
                if client_id.is_none() && identity.is_none() {
                    bail!("name --client-id and/or --identity, or --all to revoke every grant");
                }
                let identity = identity_of(identity).await?;
                admin_op(
                    admin
                        .revoke_grants(me, identity.as_deref(), client_id.as_deref())
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
