//! Local users: add, password, disable, enable, remove, unlock, list, show.
//!
//! A user's identity is `local:{uuid}`, made when the user is added and never reused: removing
//! a user removes everything that named that identity (grants, rules, roles, lockout record),
//! so a new user who takes the name starts with nothing (docs/protocol.md §11).

use serde_json::{json, Map, Value};

use super::audited::{Change, Summary};
use super::policy::Need;
use super::{Admin, AdminError, AdminResult, Caller, Entity};
use crate::domain::Role;
use crate::domain::{GrantFilter, StoreError, User};
use crate::identity::names::normalize_user_name;
use crate::password::PasswordPolicy;
use crate::secret::Secret;

/// Checks a new user's name and returns the form to store: RFC 8265's username profile
/// (`identity::names`), which also refuses the characters that start other username forms (`:`
/// for prefixes, `\` for domains), invisible and control characters and reserved words.
pub fn validate_new_user_name(name: &str) -> AdminResult<String> {
    normalize_user_name(name).map_err(|e| AdminError::invalid("name", e.to_string()))
}

/// Checks a new password against the configured policy.
pub fn validate_new_password(policy: &PasswordPolicy, password: &Secret) -> AdminResult<()> {
    policy
        .check(password)
        .map_err(|e| AdminError::invalid("password", e.to_string()))
}

/// A user to add.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub password: Secret,
    pub full_name: Option<String>,
    pub email: Option<String>,
}

/// A local user as administration shows it: never the password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub id: String,
    pub name: String,
    pub identity: String,
    pub full_name: Option<String>,
    pub email: Option<String>,
    pub disabled: bool,
    pub created_at: i64,
    /// Failed logins counted now (0 when lockout is off or the user is not `show`n).
    pub failures: u32,
    pub locked_until: Option<i64>,
}

impl From<&User> for UserInfo {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.clone(),
            name: u.name.clone(),
            identity: u.identity().into_string(),
            full_name: u.full_name.clone(),
            email: u.email.clone(),
            disabled: u.disabled,
            created_at: u.created_at,
            failures: 0,
            locked_until: None,
        }
    }
}

/// What removing a user took with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removal {
    pub grants: usize,
    pub rules: usize,
    pub roles: u64,
}

/// A change to one user, for its audit record.
struct UserChange {
    user: UserInfo,
    grants_revoked: usize,
}

impl Summary for UserChange {
    fn summarize(&self, d: &mut Map<String, Value>) {
        self.user.summarize(d);
        d.insert("grants_revoked".into(), json!(self.grants_revoked));
    }
}

struct Removed {
    user: UserInfo,
    removal: Removal,
}

impl Summary for Removed {
    fn summarize(&self, d: &mut Map<String, Value>) {
        self.user.summarize(d);
        self.removal.summarize(d);
    }
}

struct Unlocked {
    identity: String,
    had_state: bool,
}

impl Summary for Unlocked {
    fn summarize(&self, d: &mut Map<String, Value>) {
        d.insert("identity".into(), json!(self.identity));
        d.insert("had_state".into(), json!(self.had_state));
    }
}

impl Admin {
    async fn existing_user(&self, name: &str) -> AdminResult<User> {
        self.reads
            .user_by_name(name)
            .await?
            .ok_or_else(|| AdminError::NotFound(Entity::User(name.to_string())))
    }

    pub async fn add_user(&self, caller: &Caller, new: NewUser) -> AdminResult<UserInfo> {
        let detail = json!({"user": new.name});
        self.gate
            .run(caller, Change::AddUser, detail, |w| async move {
                caller.check(Need::Admin)?;
                let name = validate_new_user_name(&new.name)?;
                validate_new_password(&self.password_policy, &new.password)?;
                let user = User {
                    id: uuid::Uuid::new_v4().to_string(),
                    name,
                    full_name: new.full_name,
                    email: new.email,
                    password_hash: self.hasher.hash(new.password).await?,
                    disabled: false,
                    created_at: self.clock.now(),
                };
                match w.store().create_user(&user).await {
                    Err(StoreError::Conflict) => {
                        Err(AdminError::AlreadyExists(Entity::User(user.name)))
                    }
                    Err(e) => Err(e.into()),
                    Ok(()) => Ok(UserInfo::from(&user)),
                }
            })
            .await
    }

    /// Sets a new password and revokes the user's grants (a new password is most often the
    /// answer to a suspected compromise); how many grants it revoked.
    pub async fn set_password(
        &self,
        caller: &Caller,
        name: &str,
        password: Secret,
    ) -> AdminResult<usize> {
        let done = self
            .gate
            .run(
                caller,
                Change::ChangePassword,
                json!({"user": name}),
                |w| async move {
                    caller.check(Need::Admin)?;
                    validate_new_password(&self.password_policy, &password)?;
                    let user = self.existing_user(name).await?;
                    let hash = self.hasher.hash(password).await?;
                    if !w
                        .store()
                        .replace_password_hash(&user.id, None, &hash)
                        .await?
                    {
                        return Err(AdminError::NotFound(Entity::User(name.to_string())));
                    }
                    let grants_revoked = w
                        .revocations
                        .revoke_matching(&GrantFilter {
                            identity: Some(user.identity()),
                            client_id: None,
                        })
                        .await?;
                    Ok(UserChange {
                        user: UserInfo::from(&user),
                        grants_revoked,
                    })
                },
            )
            .await?;
        Ok(done.grants_revoked)
    }

    /// Disables or enables a local user; disabling revokes the user's grants (how many).
    pub async fn set_user_disabled(
        &self,
        caller: &Caller,
        name: &str,
        disabled: bool,
    ) -> AdminResult<usize> {
        let change = if disabled {
            Change::DisableUser
        } else {
            Change::EnableUser
        };
        let done = self
            .gate
            .run(caller, change, json!({"user": name}), |w| async move {
                caller.check(Need::Admin)?;
                let user = self.existing_user(name).await?;
                w.store().set_user_disabled(&user.id, disabled).await?;
                let grants_revoked = if disabled {
                    w.revocations
                        .revoke_matching(&GrantFilter {
                            identity: Some(user.identity()),
                            client_id: None,
                        })
                        .await?
                } else {
                    0
                };
                Ok(UserChange {
                    user: UserInfo::from(&user),
                    grants_revoked,
                })
            })
            .await?;
        Ok(done.grants_revoked)
    }

    /// Removes a user and everything that names its identity: grants, rules, role
    /// assignments and the lockout record. Each step can be repeated, and the user row goes
    /// last, so a removal cut short is finished by running it again. The user is disabled
    /// first, so that no grant is issued while the rest goes.
    pub async fn remove_user(&self, caller: &Caller, name: &str) -> AdminResult<Removal> {
        let done = self
            .gate
            .run(
                caller,
                Change::RemoveUser,
                json!({"user": name}),
                |w| async move {
                    caller.check(Need::Admin)?;
                    let user = self.existing_user(name).await?;
                    let identity = user.identity();
                    let store = w.store();
                    store.set_user_disabled(&user.id, true).await?;
                    let mut removal = Removal {
                        grants: w
                            .revocations
                            .revoke_matching(&GrantFilter {
                                identity: Some(identity.clone()),
                                client_id: None,
                            })
                            .await?,
                        ..Removal::default()
                    };
                    // Rules made before they named identities may still name the user.
                    let by_name = format!("local:{}", user.name);
                    for r in self.reads.rules(None).await? {
                        if (r.trustee.eq_ignore_ascii_case(&identity)
                            || r.trustee.eq_ignore_ascii_case(&by_name))
                            && store.delete_rule(&r.client_id, &r.trustee).await?
                        {
                            removal.rules += 1;
                        }
                    }
                    let mut held: Vec<Role> = self
                        .reads
                        .roles(Some(&identity))
                        .await?
                        .iter()
                        .map(|r| r.role)
                        .collect();
                    held.sort_unstable();
                    held.dedup();
                    for role in held {
                        removal.roles += store.remove_role(&identity, role, None).await?;
                    }
                    store.delete_lockout(&identity).await?;
                    if !store.delete_user(&user.id).await? {
                        return Err(AdminError::NotFound(Entity::User(name.to_string())));
                    }
                    Ok(Removed {
                        user: UserInfo::from(&user),
                        removal,
                    })
                },
            )
            .await?;
        Ok(done.removal)
    }

    /// Ends a lockout early and forgets counted failures; whether there was anything to clear.
    pub async fn unlock(&self, caller: &Caller, identity: &str) -> AdminResult<bool> {
        let done = self
            .gate
            .run(caller, Change::UnlockUser, Value::Null, |w| async move {
                caller.check(Need::Admin)?;
                Ok(Unlocked {
                    identity: identity.to_string(),
                    had_state: w.store().delete_lockout(identity).await?,
                })
            })
            .await?;
        Ok(done.had_state)
    }

    /// [`Admin::unlock`] for a local user named `name`.
    pub async fn unlock_user(&self, caller: &Caller, name: &str) -> AdminResult<bool> {
        let user = self.existing_user(name).await?;
        self.unlock(caller, &user.identity()).await
    }

    pub async fn list_users(&self, caller: &Caller) -> AdminResult<Vec<UserInfo>> {
        caller.check(Need::ReadAll)?;
        Ok(self
            .reads
            .list_users()
            .await?
            .iter()
            .map(UserInfo::from)
            .collect())
    }

    /// One user, with its lockout state.
    pub async fn user(&self, caller: &Caller, name: &str) -> AdminResult<UserInfo> {
        caller.check(Need::ReadAll)?;
        let user = self.existing_user(name).await?;
        let mut info = UserInfo::from(&user);
        if let Some(state) = self.lock_state(&info.identity).await? {
            info.failures = state.failures;
            info.locked_until = state.locked_until;
        }
        Ok(info)
    }

    /// The lockout state of an identity (failures counted, locked until); None when lockout
    /// is off.
    pub async fn lock_state(&self, identity: &str) -> AdminResult<Option<crate::lockout::State>> {
        match self.identities.lockout() {
            Some(l) => Ok(Some(l.state(identity).await?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_passwords_of_new_users() {
        assert_eq!(
            validate_new_user_name("alice").ok().as_deref(),
            Some("alice")
        );
        // Stored in the profile's form: a full-width or capitalised spelling is the same name.
        assert_eq!(
            validate_new_user_name("ＡＬＩＣＥ").ok().as_deref(),
            Some("alice")
        );
        for bad in ["", "a:b", "dom\\user", "everyone", "a\u{200b}b", "a\tb"] {
            assert!(validate_new_user_name(bad).is_err(), "{bad:?}");
        }
        let policy = PasswordPolicy::default();
        assert!(validate_new_password(&policy, &Secret::new("Only-11-chr")).is_err());
        assert!(validate_new_password(&policy, &Secret::new("Exactly-12ch")).is_ok());
        // Characters, not bytes: twelve two-byte letters are twelve.
        assert!(validate_new_password(&policy, &Secret::new("éééééééééééé")).is_ok());
        assert!(validate_new_password(&policy, &Secret::new("ééééééééééé")).is_err());
        let short = PasswordPolicy { min_length: 4 };
        assert!(validate_new_password(&short, &Secret::new("four")).is_ok());
    }
}
