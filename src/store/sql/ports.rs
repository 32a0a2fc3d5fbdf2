//! Every port, implemented once over [`Dialect`] and [`Backend`]. Each operation runs through
//! [`Sql::run`] (time bound, latency, errors) under the name of its method.

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::super::rows::{
    app_from, client_secret_from, device_from, digests, grant_from, issuer_from, jwt_mapping_from,
    jwt_use_from, lockout_entry_from, lockout_from, retired_from, role_from, rule_from,
    successor_from, user_from, Columns,
};
use super::{Backend, Dialect, SqlStore, Stmt};
use crate::clock::UnixTime;
use crate::domain::*;
use crate::token::TokenDigest;

/// The grant columns, in the order [`bind_grant`] binds them (a macro, so that statements can
/// be `concat!`-ed constants).
macro_rules! grant_columns {
    () => {
        "id, client_id, identity, granted_to, scope, issued_at, expires_at, renewable, access_validity, access_digest, access_issued_at, access_expires_at, refresh_digest"
    };
}
pub(crate) use grant_columns;
pub const GRANT_COLUMNS: &str = grant_columns!();
/// The single-row INSERT of a grant.
pub const INSERT_GRANT: &str = concat!(
    "INSERT INTO grants (",
    grant_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
);
const GRANT_BY_ACCESS: &str = concat!(
    "SELECT ",
    grant_columns!(),
    " FROM grants WHERE access_digest = $1"
);
const GRANT_BY_REFRESH: &str = concat!(
    "SELECT ",
    grant_columns!(),
    " FROM grants WHERE refresh_digest = $1"
);

const INSERT_USER: &str =
    "INSERT INTO users (id, name, full_name, email, password_hash, disabled, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
const INSERT_APPLICATION: &str =
    "INSERT INTO applications (client_id, name, vendor, description, url, scope, max_scope,
         access_validity, grant_validity, renewable, unused_expiration, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
const INSERT_RULE: &str =
    "INSERT INTO rules (client_id, trustee, description, max_scope, access_validity,
         grant_validity, renewable, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
const INSERT_CLIENT_SECRET: &str =
    "INSERT INTO client_secrets (client_id, secret_hash, created_at) VALUES ($1, $2, $3)";
/// A rotation replaces the row.
const UPSERT_CLIENT_SECRET: &str =
    "INSERT INTO client_secrets (client_id, secret_hash, created_at) VALUES ($1, $2, $3)
     ON CONFLICT (client_id) DO UPDATE SET secret_hash = excluded.secret_hash,
         created_at = excluded.created_at";
const INSERT_ROLE: &str = "INSERT INTO roles (grantee, role, client_id) VALUES ($1, $2, $3)";
const INSERT_LOCKOUT: &str = "INSERT INTO lockout (identity, failures, window_start, pending, pending_since, locked_until, version)
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
const INSERT_ISSUER: &str =
    "INSERT INTO trusted_issuers (fingerprint, subject, pem, added_at) VALUES ($1, $2, $3, $4)";
/// An issuer added twice is one issuer: the second add changes nothing.
const ADD_ISSUER: &str = "INSERT INTO trusted_issuers (fingerprint, subject, pem, added_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
const INSERT_RETIRED: &str =
    "INSERT INTO retired_refresh (digest, grant_id, expires_at) VALUES ($1, $2, $3)";
const INSERT_JWT_MAPPING: &str = "INSERT INTO jwt_mappings (name, issuer_uri, jwks_uri,
         purpose_field, purpose_match, id_field, id_match, grantee)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
const INSERT_JWT_USE: &str = "INSERT INTO jwt_uses (digest, used_until) VALUES ($1, $2)";
/// Records a used JWT: a new digest is inserted; a known one is taken over only if its record
/// has ended (a row the sweep has not reached yet). One row changed = the first use.
pub const RECORD_JWT_USE: &str = "INSERT INTO jwt_uses (digest, used_until) VALUES ($1, $2)
     ON CONFLICT (digest) DO UPDATE SET used_until = excluded.used_until
     WHERE jwt_uses.used_until <= $3";

/// [`RECORD_JWT_USE`]'s values.
pub fn bind_record_jwt_use<'q, D: Dialect>(
    s: Stmt<'q, D>,
    u: &'q JwtUse,
    now: UnixTime,
) -> Stmt<'q, D> {
    s.arg(&u.digest).arg(u.used_until).arg(now)
}
/// For imports: a row whose key exists is left alone.
const OR_SKIP: &str = " ON CONFLICT DO NOTHING";

fn or_skip(insert: &str) -> String {
    format!("{insert}{OR_SKIP}")
}

fn bind_user<'q, D: Dialect>(s: Stmt<'q, D>, u: &'q User) -> Stmt<'q, D> {
    s.arg(&u.id)
        .arg(&u.name)
        .arg(&u.full_name)
        .arg(&u.email)
        .arg(&u.password_hash)
        .arg(u.disabled)
        .arg(u.created_at)
}

/// The columns an application's create and update share, from `name` on.
fn bind_app_fields<'q, D: Dialect>(s: Stmt<'q, D>, a: &'q Application) -> Stmt<'q, D> {
    s.arg(&a.name)
        .arg(&a.vendor)
        .arg(&a.description)
        .arg(&a.url)
        .arg(&a.scope)
        .arg(&a.max_scope)
        .arg(a.access_validity)
        .arg(a.grant_validity.map(Lifetime::to_db))
        .arg(a.renewable)
        .arg(a.unused_expiration)
}

fn bind_app<'q, D: Dialect>(s: Stmt<'q, D>, a: &'q Application) -> Stmt<'q, D> {
    bind_app_fields(s.arg(&a.client_id), a).arg(a.created_at)
}

/// The columns a rule's create and update share, from `description` on.
fn bind_rule_fields<'q, D: Dialect>(s: Stmt<'q, D>, r: &'q Rule) -> Stmt<'q, D> {
    s.arg(&r.description)
        .arg(&r.max_scope)
        .arg(r.access_validity)
        .arg(r.grant_validity.map(Lifetime::to_db))
        .arg(r.renewable)
}

fn bind_rule<'q, D: Dialect>(s: Stmt<'q, D>, r: &'q Rule) -> Stmt<'q, D> {
    bind_rule_fields(s.arg(&r.client_id).arg(&r.trustee), r).arg(r.created_at)
}

fn bind_client_secret<'q, D: Dialect>(s: Stmt<'q, D>, c: &'q ClientSecret) -> Stmt<'q, D> {
    s.arg(&c.client_id).arg(&c.secret_hash).arg(c.created_at)
}

fn bind_role<'q, D: Dialect>(s: Stmt<'q, D>, r: &'q RoleAssignment) -> Stmt<'q, D> {
    s.arg(&r.grantee)
        .arg(r.role)
        .arg(r.client_id.as_deref().unwrap_or(""))
}

/// The record's counters, as the insert and the compare-and-swap bind them.
fn bind_lockout_fields<'q, D: Dialect>(s: Stmt<'q, D>, r: &'q LockoutRecord) -> Stmt<'q, D> {
    s.arg(r.failures)
        .arg(r.window_start)
        .arg(r.pending)
        .arg(r.pending_since)
        .arg(r.locked_until)
}

fn bind_lockout_entry<'q, D: Dialect>(s: Stmt<'q, D>, e: &'q LockoutEntry) -> Stmt<'q, D> {
    bind_lockout_fields(s.arg(&e.identity), &e.record).arg(e.record.version)
}

/// A grant's values in [`GRANT_COLUMNS`] order (also the SQLite writer's multi-row INSERT).
pub fn bind_grant<'q, D: Dialect>(s: Stmt<'q, D>, g: &'q Grant) -> Stmt<'q, D> {
    s.arg(&g.id)
        .arg(&g.client_id)
        .arg(&g.identity)
        .arg(&g.granted_to)
        .arg(&g.scope)
        .arg(g.issued_at)
        .arg(g.expires_at)
        .arg(g.renewable)
        .arg(g.access_validity)
        .arg(&g.access_digest)
        .arg(g.access_issued_at)
        .arg(g.access_expires_at)
        .arg(&g.refresh_digest)
}

fn bind_issuer<'q, D: Dialect>(s: Stmt<'q, D>, i: &'q IssuerRecord) -> Stmt<'q, D> {
    s.arg(&i.fingerprint)
        .arg(&i.subject)
        .arg(&i.pem)
        .arg(i.added_at)
}

fn bind_retired<'q, D: Dialect>(s: Stmt<'q, D>, r: &'q RetiredRefresh) -> Stmt<'q, D> {
    s.arg(&r.digest).arg(&r.grant_id).arg(r.expires_at)
}

/// A mapping's columns from `issuer_uri` on (create and update share them).
fn bind_jwt_mapping_fields<'q, D: Dialect>(s: Stmt<'q, D>, m: &'q JwtMapping) -> Stmt<'q, D> {
    // An empty JwksUri or grantee is stored as absent: it means the same.
    let some = |v: &'q Option<String>| v.as_deref().filter(|v| !v.is_empty());
    s.arg(&m.issuer_uri)
        .arg(some(&m.jwks_uri))
        .arg(&m.purpose_field)
        .arg(&m.purpose_match)
        .arg(&m.id_field)
        .arg(&m.id_match)
        .arg(some(&m.grantee_prefixed_universal))
}

fn bind_jwt_mapping<'q, D: Dialect>(s: Stmt<'q, D>, m: &'q JwtMapping) -> Stmt<'q, D> {
    bind_jwt_mapping_fields(s.arg(&m.name), m)
}

fn bind_jwt_use<'q, D: Dialect>(s: Stmt<'q, D>, u: &'q JwtUse) -> Stmt<'q, D> {
    s.arg(&u.digest).arg(u.used_until)
}

/// The WHERE clause of a grant filter, and its values in order.
fn grant_where(filter: &GrantFilter) -> (String, Vec<&str>) {
    let mut clauses = Vec::new();
    let mut binds = Vec::new();
    for (col, v) in [
        ("client_id", filter.client_id.as_ref().map(|c| c.as_str())),
        ("identity", filter.identity.as_ref().map(|i| i.as_str())),
    ] {
        if let Some(v) = v {
            binds.push(v);
            clauses.push(format!("{col} = ${}", binds.len()));
        }
    }
    if clauses.is_empty() {
        (String::new(), binds)
    } else {
        (format!(" WHERE {}", clauses.join(" AND ")), binds)
    }
}

#[async_trait]
impl<B: Backend> UserStore for SqlStore<B> {
    async fn create_user(&self, u: &User) -> StoreResult<()> {
        self.sql
            .run("create_user", async {
                self.sql.exec(bind_user(Stmt::new(INSERT_USER), u)).await?;
                Ok(())
            })
            .await
    }

    async fn user_by_name(&self, name: &str) -> StoreResult<Option<User>> {
        self.sql
            .run("user_by_name", async {
                let s = Stmt::new(B::Db::USER_BY_NAME).arg(name);
                self.sql.one_as(s, user_from).await
            })
            .await
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        self.sql
            .run("user_by_id", async {
                let id = id.to_ascii_lowercase();
                let s = Stmt::new("SELECT * FROM users WHERE id = $1").arg(&id);
                self.sql.one_as(s, user_from).await
            })
            .await
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        self.sql
            .run("list_users", async {
                let s = Stmt::new("SELECT * FROM users ORDER BY lower(name), name");
                self.sql.all_as(s, user_from).await
            })
            .await
    }

    async fn replace_password_hash(
        &self,
        id: &str,
        expected: Option<&str>,
        new_hash: &str,
    ) -> StoreResult<bool> {
        self.sql
            .run("replace_password_hash", async {
                let s = match expected {
                    Some(old) => Stmt::new(
                        "UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3",
                    )
                    .arg(new_hash)
                    .arg(id)
                    .arg(old),
                    None => Stmt::new("UPDATE users SET password_hash = $1 WHERE id = $2")
                        .arg(new_hash)
                        .arg(id),
                };
                Ok(self.sql.exec(s).await? == 1)
            })
            .await
    }

    async fn set_user_disabled(&self, id: &str, disabled: bool) -> StoreResult<bool> {
        self.sql
            .run("set_user_disabled", async {
                let s = Stmt::new("UPDATE users SET disabled = $1 WHERE id = $2")
                    .arg(disabled)
                    .arg(id);
                Ok(self.sql.exec(s).await? == 1)
            })
            .await
    }

    async fn delete_user(&self, id: &str) -> StoreResult<bool> {
        self.sql
            .run("delete_user", async {
                let s = Stmt::new("DELETE FROM users WHERE id = $1").arg(id);
                Ok(self.sql.exec(s).await? == 1)
            })
            .await
    }

    async fn import_users(&self, users: &[User]) -> StoreResult<Tally> {
        self.sql
            .run("import_users", async {
                let mut tx = self.sql.begin().await?;
                let t = self
                    .sql
                    .import_rows(&mut *tx, &or_skip(INSERT_USER), users, bind_user)
                    .await?;
                self.sql.commit(tx).await?;
                Ok(t)
            })
            .await
    }
}

#[async_trait]
impl<B: Backend> ApplicationStore for SqlStore<B> {
    async fn create_application(&self, a: &Application) -> StoreResult<()> {
        self.sql
            .run("create_application", async {
                self.sql
                    .exec(bind_app(Stmt::new(INSERT_APPLICATION), a))
                    .await?;
                Ok(())
            })
            .await
    }

    async fn application(&self, client_id: &str) -> StoreResult<Option<Application>> {
        self.sql
            .run("application", async {
                let s = Stmt::new("SELECT * FROM applications WHERE client_id = $1").arg(client_id);
                self.sql.one_as(s, app_from).await
            })
            .await
    }

    async fn list_applications(&self) -> StoreResult<Vec<Application>> {
        self.sql
            .run("list_applications", async {
                let s = Stmt::new("SELECT * FROM applications ORDER BY client_id");
                self.sql.all_as(s, app_from).await
            })
            .await
    }

    async fn update_application(&self, a: &Application) -> StoreResult<bool> {
        self.sql
            .run("update_application", async {
                let s = Stmt::new(
                    "UPDATE applications SET name = $1, vendor = $2, description = $3, url = $4,
                         scope = $5, max_scope = $6, access_validity = $7, grant_validity = $8,
                         renewable = $9, unused_expiration = $10
                     WHERE client_id = $11",
                );
                Ok(self
                    .sql
                    .exec(bind_app_fields(s, a).arg(&a.client_id))
                    .await?
                    == 1)
            })
            .await
    }

    async fn delete_application(&self, client_id: &str) -> StoreResult<Option<Vec<TokenDigest>>> {
        self.sql
            .run("delete_application", async {
                let mut tx = self.sql.begin().await?;
                let on = |sql| Stmt::<B::Db>::new(sql).arg(client_id);
                let gone = B::Db::execute_on(
                    &mut *tx,
                    on("DELETE FROM applications WHERE client_id = $1").query,
                )
                .await
                .map_err(|e| self.sql.fail(e))?;
                if gone == 0 {
                    return Ok(None);
                }
                // The rules' foreign key would cascade; said here so the intent does not hang
                // on it. Roles held on the application go with it.
                for sql in [
                    "DELETE FROM rules WHERE client_id = $1",
                    "DELETE FROM roles WHERE client_id = $1",
                    "DELETE FROM client_secrets WHERE client_id = $1",
                ] {
                    B::Db::execute_on(&mut *tx, on(sql).query)
                        .await
                        .map_err(|e| self.sql.fail(e))?;
                }
                let rows = B::Db::fetch_all_on(
                    &mut *tx,
                    on("DELETE FROM grants WHERE client_id = $1 RETURNING access_digest").query,
                )
                .await
                .map_err(|e| self.sql.fail(e))?;
                self.sql.commit(tx).await?;
                digests(&rows).map(Some)
            })
            .await
    }

    async fn create_rule(&self, r: &Rule) -> StoreResult<()> {
        self.sql
            .run("create_rule", async {
                let s = bind_rule(Stmt::<B::Db>::new(INSERT_RULE), r);
                match B::Db::execute(&self.sql.pool, s.query).await {
                    Ok(_) => Ok(()),
                    Err(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => {
                        Err(StoreError::Missing("application"))
                    }
                    Err(e) => Err(self.sql.fail(e)),
                }
            })
            .await
    }

    async fn rules(&self, client_id: Option<&str>) -> StoreResult<Vec<Rule>> {
        self.sql
            .run("rules", async {
                let s = match client_id {
                    Some(c) => {
                        Stmt::new("SELECT * FROM rules WHERE client_id = $1 ORDER BY trustee")
                            .arg(c)
                    }
                    None => Stmt::new("SELECT * FROM rules ORDER BY client_id, trustee"),
                };
                self.sql.all_as(s, rule_from).await
            })
            .await
    }

    async fn update_rule(&self, r: &Rule) -> StoreResult<bool> {
        self.sql
            .run("update_rule", async {
                let s = Stmt::new(
                    "UPDATE rules SET description = $1, max_scope = $2, access_validity = $3,
                         grant_validity = $4, renewable = $5
                     WHERE client_id = $6 AND trustee = $7",
                );
                let s = bind_rule_fields(s, r).arg(&r.client_id).arg(&r.trustee);
                Ok(self.sql.exec(s).await? == 1)
            })
            .await
    }

    async fn delete_rule(&self, client_id: &str, trustee: &str) -> StoreResult<bool> {
        self.sql
            .run("delete_rule", async {
                let s = Stmt::new("DELETE FROM rules WHERE client_id = $1 AND trustee = $2")
                    .arg(client_id)
                    .arg(trustee);
                Ok(self.sql.exec(s).await? == 1)
            })
            .await
    }

    async fn import_applications(
        &self,
        apps: &[Application],
        rules: &[Rule],
    ) -> StoreResult<(Tally, Tally)> {
        self.sql
            .run("import_applications", async {
                let mut tx = self.sql.begin().await?;
                let a = self
                    .sql
                    .import_rows(&mut *tx, &or_skip(INSERT_APPLICATION), apps, bind_app)
                    .await?;
                let r = self
                    .sql
                    .import_rows(&mut *tx, &or_skip(INSERT_RULE), rules, bind_rule)
                    .await?;
                self.sql.commit(tx).await?;
                Ok((a, r))
            })
            .await
    }
}

#[async_trait]
impl<B: Backend> ClientSecretStore for SqlStore<B> {
    async fn put_client_secret(&self, c: &ClientSecret) -> StoreResult<()> {
        self.sql
            .run("put_client_secret", async {
                let s = bind_client_secret(Stmt::<B::Db>::new(UPSERT_CLIENT_SECRET), c);
                match B::Db::execute(&self.sql.pool, s.query).await {
                    Ok(_) => Ok(()),
                    Err(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => {
                        Err(StoreError::Missing("application"))
                    }
                    Err(e) => Err(self.sql.fail(e)),
                }
            })
            .await
    }

    async fn client_secret(&self, client_id: &str) -> StoreResult<Option<ClientSecret>> {
        self.sql
            .run("client_secret", async {
                let s =
                    Stmt::new("SELECT * FROM client_secrets WHERE client_id = $1").arg(client_id);
                self.sql.one_as(s, client_secret_from).await
            })
            .await
    }

    async fn delete_client_secret(&self, client_id: &str) -> StoreResult<bool> {
        self.sql
            .run("delete_client_secret", async {
                let s = Stmt::new("DELETE FROM client_secrets WHERE client_id = $1").arg(client_id);
                Ok(self.sql.exec(s).await? == 1)
            })
            .await
    }

    async fn list_client_secrets(&self) -> StoreResult<Vec<ClientSecret>> {
        self.sql
            .run("list_client_secrets", async {
                let s = Stmt::new("SELECT * FROM client_secrets ORDER BY client_id");
                self.sql.all_as(s, client_secret_from).await
            })
            .await
    }

    async fn import_client_secrets(&self, secrets: &[ClientSecret]) -> StoreResult<Tally> {
        self.sql
            .run("import_client_secrets", async {
                let mut tx = self.sql.begin().await?;
                let t = self
                    .sql
                    .import_rows(
                        &mut *tx,
                        &or_skip(INSERT_CLIENT_SECRET),
                        secrets,
                        bind_client_secret,
                    )
                    .await?;
                self.sql.commit(tx).await?;
                Ok(t)
            })
            .await
    }
}

#[async_trait]
impl<B: Backend> RoleStore for SqlStore<B> {
    async fn add_role(&self, r: &RoleAssignment) -> StoreResult<()> {
        self.sql
            .run("add_role", async {
                self.sql.exec(bind_role(Stmt::new(INSERT_ROLE), r)).await?;
                Ok(())
            })
            .await
    }

    async fn remove_role(
        &self,
        grantee: &str,
        role: Role,
        client_id: Option<&str>,
    ) -> StoreResult<u64> {
        self.sql
            .run("remove_role", async {
                let s = match client_id {
                    Some(c) => Stmt::new(
                        "DELETE FROM roles WHERE grantee = $1 AND role = $2 AND client_id = $3",
                    )
                    .arg(grantee)
                    .arg(role)
                    .arg(c),
                    None => Stmt::new("DELETE FROM roles WHERE grantee = $1 AND role = $2")
                        .arg(grantee)
                        .arg(role),
                };
                self.sql.exec(s).await
            })
            .await
    }

    async fn roles(&self, grantee: Option<&str>) -> StoreResult<Vec<RoleAssignment>> {
        self.sql
            .run("roles", async {
                let s = match grantee {
                    Some(g) => Stmt::new(
                        "SELECT grantee, role, client_id FROM roles WHERE grantee = $1
                         ORDER BY grantee, role, client_id",
                    )
                    .arg(g),
                    None => Stmt::new(
                        "SELECT grantee, role, client_id FROM roles ORDER BY grantee, role, client_id",
                    ),
                };
                // A row whose number is no role (written by something else) grants nothing: it
                // is left out, not an error that would lock every caller out.
                Ok(self
                    .sql
                    .all_as(s, role_from)
                    .await?
                    .into_iter()
                    .flatten()
                    .collect())
            })
            .await
    }

    async fn import_roles(&self, roles: &[RoleAssignment]) -> StoreResult<Tally> {
        self.sql
            .run("import_roles", async {
                let mut tx = self.sql.begin().await?;
                let t = self
                    .sql
                    .import_rows(&mut *tx, &or_skip(INSERT_ROLE), roles, bind_role)
                    .await?;
                self.sql.commit(tx).await?;
                Ok(t)
            })
            .await
    }
}

#[async_trait]
impl<B: Backend> LockoutStore for SqlStore<B> {
    async fn lockout(&self, identity: &str) -> StoreResult<Option<LockoutRecord>> {
        self.sql
            .run("lockout", async {
                let s = Stmt::new("SELECT * FROM lockout WHERE identity = $1").arg(identity);
                self.sql.one_as(s, lockout_from).await
            })
            .await
    }

    async fn put_lockout(
        &self,
        identity: &str,
        expected: Option<i64>,
        r: &LockoutRecord,
    ) -> StoreResult<bool> {
        self.sql
            .run("put_lockout", async {
                let s = match expected {
                    None => bind_lockout_fields(
                        Stmt::new(
                            "INSERT INTO lockout (identity, failures, window_start, pending,
                                 pending_since, locked_until, version)
                             VALUES ($1, $2, $3, $4, $5, $6, 1) ON CONFLICT (identity) DO NOTHING",
                        )
                        .arg(identity),
                        r,
                    ),
                    Some(v) => bind_lockout_fields(
                        Stmt::new(
                            "UPDATE lockout SET failures = $1, window_start = $2, pending = $3,
                                 pending_since = $4, locked_until = $5, version = version + 1
                             WHERE identity = $6 AND version = $7",
                        ),
                        r,
                    )
                    .arg(identity)
                    .arg(v),
                };
                Ok(self.sql.exec(s).await? == 1)
            })
            .await
    }

    async fn delete_lockout(&self, identity: &str) -> StoreResult<bool> {
        self.sql
            .run("delete_lockout", async {
                let s = Stmt::new("DELETE FROM lockout WHERE identity = $1").arg(identity);
                Ok(self.sql.exec(s).await? == 1)
            })
            .await
    }

    async fn list_lockouts(&self) -> StoreResult<Vec<LockoutEntry>> {
        self.sql
            .run("list_lockouts", async {
                let s = Stmt::new("SELECT * FROM lockout ORDER BY identity");
                self.sql.all_as(s, lockout_entry_from).await
            })
            .await
    }

    async fn import_lockouts(&self, entries: &[LockoutEntry]) -> StoreResult<Tally> {
        self.sql
            .run("import_lockouts", async {
                let mut tx = self.sql.begin().await?;
                let t = self
                    .sql
                    .import_rows(
                        &mut *tx,
                        &or_skip(INSERT_LOCKOUT),
                        entries,
                        bind_lockout_entry,
                    )
                    .await?;
                self.sql.commit(tx).await?;
                Ok(t)
            })
            .await
    }
}

#[async_trait]
impl<B: Backend> SettingsStore for SqlStore<B> {
    async fn settings(&self) -> StoreResult<Settings> {
        self.sql
            .run("settings", async {
                let row = self
                    .sql
                    .one(Stmt::new("SELECT doc FROM settings WHERE id = 1"))
                    .await?;
                match row {
                    None => Ok(Settings::default()),
                    Some(r) => serde_json::from_str(&r.text("doc")?)
                        .map_err(|e| StoreError::Corrupt(format!("settings: {e}"))),
                }
            })
            .await
    }

    async fn put_settings(&self, settings: &Settings) -> StoreResult<()> {
        let doc = serde_json::to_string(settings).map_err(|e| StoreError::Backend(e.into()))?;
        self.sql
            .run("put_settings", async {
                let s = Stmt::new(
                    "INSERT INTO settings (id, doc) VALUES (1, $1)
                     ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
                )
                .arg(&doc);
                self.sql.exec(s).await?;
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl<B: Backend> GrantStore for SqlStore<B> {
    async fn insert_grant_for(
        &self,
        grant: &Grant,
        holder: Option<&Holder>,
    ) -> StoreResult<Option<HolderChange>> {
        self.sql
            .run(
                "insert_grant",
                self.backend.insert_grant(&self.sql, grant, holder),
            )
            .await
    }

    async fn grant_by_access(&self, d: &TokenDigest) -> StoreResult<Option<Grant>> {
        self.sql
            .run("grant_by_access", async {
                let s = Stmt::new(GRANT_BY_ACCESS).arg(d);
                self.sql.one_as(s, grant_from).await
            })
            .await
    }

    async fn grant_by_refresh(&self, d: &TokenDigest) -> StoreResult<Option<Grant>> {
        self.sql
            .run("grant_by_refresh", async {
                let s = Stmt::new(GRANT_BY_REFRESH).arg(d);
                self.sql.one_as(s, grant_from).await
            })
            .await
    }

    async fn rotate_tokens(
        &self,
        grant_id: &str,
        old_refresh: &TokenDigest,
        new: &Rotation,
        _now: UnixTime,
    ) -> StoreResult<bool> {
        self.sql
            .run(
                "rotate_tokens",
                self.backend
                    .rotate_tokens(&self.sql, grant_id, old_refresh, new),
            )
            .await
    }

    async fn grant_by_retired_refresh(&self, d: &TokenDigest) -> StoreResult<Option<String>> {
        self.sql
            .run("grant_by_retired_refresh", async {
                let s = Stmt::new("SELECT grant_id FROM retired_refresh WHERE digest = $1").arg(d);
                self.sql.one_as(s, |r| r.text("grant_id")).await
            })
            .await
    }

    async fn delete_grant(&self, grant_id: &str) -> StoreResult<Option<TokenDigest>> {
        self.sql
            .run(
                "delete_grant",
                self.backend.delete_grant(&self.sql, grant_id),
            )
            .await
    }

    async fn delete_grants(&self, filter: &GrantFilter) -> StoreResult<Vec<TokenDigest>> {
        self.sql
            .run("delete_grants", async {
                let (clause, binds) = grant_where(filter);
                let sql = format!("DELETE FROM grants{clause} RETURNING access_digest");
                let s = binds.into_iter().fold(Stmt::new(&sql), |s, b| s.arg(b));
                digests(&self.sql.all(s).await?)
            })
            .await
    }

    async fn list_grants(&self, filter: &GrantFilter) -> StoreResult<Vec<Grant>> {
        self.sql
            .run("list_grants", async {
                let (clause, binds) = grant_where(filter);
                let sql =
                    format!("SELECT {GRANT_COLUMNS} FROM grants{clause} ORDER BY issued_at, id");
                let s = binds.into_iter().fold(Stmt::new(&sql), |s, b| s.arg(b));
                self.sql.all_as(s, grant_from).await
            })
            .await
    }

    async fn page_grants(&self, filter: &GrantFilter, window: Window) -> StoreResult<Vec<Grant>> {
        self.sql
            .run("page_grants", async {
                let (clause, binds) = grant_where(filter);
                let dir = if window.descending { "DESC" } else { "ASC" };
                let n = binds.len();
                let sql = format!(
                    "SELECT {GRANT_COLUMNS} FROM grants{clause} \
                     ORDER BY issued_at {dir}, id {dir} LIMIT ${} OFFSET ${}",
                    n + 1,
                    n + 2
                );
                // Both databases take a bigint limit; "no limit" is the largest one.
                let limit = window
                    .limit
                    .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
                let offset = i64::try_from(window.offset).unwrap_or(i64::MAX);
                let s = binds.into_iter().fold(Stmt::new(&sql), |s, b| s.arg(b));
                self.sql.all_as(s.arg(limit).arg(offset), grant_from).await
            })
            .await
    }

    async fn grant_counts(
        &self,
        client_ids: &[ClientId],
    ) -> StoreResult<Vec<(ClientId, GrantCounts)>> {
        self.sql
            .run("grant_counts", async {
                let mut out = Vec::new();
                // Chunks keep the statement under both databases' placeholder limits.
                for chunk in client_ids.chunks(500) {
                    let marks = (1..=chunk.len())
                        .map(|i| format!("${i}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let sql = format!(
                        "SELECT client_id, COUNT(*) AS g, COUNT(DISTINCT identity) AS i \
                         FROM grants WHERE client_id IN ({marks}) GROUP BY client_id"
                    );
                    let s = chunk.iter().fold(Stmt::new(&sql), |s, c| s.arg(c));
                    for row in self.sql.all(s).await? {
                        let count = |c: &str| row.int(c).map(|v| u64::try_from(v).unwrap_or(0));
                        out.push((
                            ClientId::from(row.text("client_id")?),
                            GrantCounts {
                                grants: count("g")?,
                                identities: count("i")?,
                            },
                        ));
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn put_successor(&self, x: &Successor) -> StoreResult<()> {
        self.sql
            .run("put_successor", async {
                let s = Stmt::new(
                    "INSERT INTO refresh_successors (digest, grant_id, sealed, until) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO UPDATE SET \
                     grant_id = excluded.grant_id, sealed = excluded.sealed, until = excluded.until",
                )
                .arg(&x.digest)
                .arg(&x.grant_id)
                .arg(x.sealed.as_slice())
                .arg(x.until);
                self.sql.exec(s).await?;
                Ok(())
            })
            .await
    }

    async fn successor(
        &self,
        digest: &TokenDigest,
        now: UnixTime,
    ) -> StoreResult<Option<Successor>> {
        self.sql
            .run("successor", async {
                let s = Stmt::new(
                    "SELECT digest, grant_id, sealed, until FROM refresh_successors \
                     WHERE digest = $1 AND until > $2",
                )
                .arg(digest)
                .arg(now);
                self.sql.one_as(s, successor_from).await
            })
            .await
    }

    async fn list_retired_refresh(&self) -> StoreResult<Vec<RetiredRefresh>> {
        self.sql
            .run("list_retired_refresh", async {
                let s = Stmt::new(
                    "SELECT digest, grant_id, expires_at FROM retired_refresh ORDER BY digest",
                );
                self.sql.all_as(s, retired_from).await
            })
            .await
    }

    async fn sweep_expired(&self, now: UnixTime, batch: u32) -> StoreResult<u64> {
        self.sql
            .run("sweep_expired", async {
                let gone = self
                    .sql
                    .exec(Stmt::new(B::Db::SWEEP_GRANTS).arg(now).arg(batch))
                    .await?;
                // Sealed refresh answers live only for the grace window.
                self.sql
                    .exec(Stmt::new("DELETE FROM refresh_successors WHERE until <= $1").arg(now))
                    .await?;
                // Retired refresh digests are only useful while their grant could be alive.
                self.sql
                    .exec(Stmt::new(B::Db::SWEEP_RETIRED).arg(now).arg(batch))
                    .await?;
                self.backend.after_sweep(&self.sql).await?;
                Ok(gone)
            })
            .await
    }

    async fn import_grants(
        &self,
        grants: &[Grant],
        retired: &[RetiredRefresh],
    ) -> StoreResult<(Tally, Tally)> {
        self.sql
            .run("import_grants", async {
                let mut tx = self.sql.begin().await?;
                let g = self
                    .sql
                    .import_rows(&mut *tx, &or_skip(INSERT_GRANT), grants, bind_grant)
                    .await?;
                let r = self
                    .sql
                    .import_rows(&mut *tx, &or_skip(INSERT_RETIRED), retired, bind_retired)
                    .await?;
                self.sql.commit(tx).await?;
                Ok((g, r))
            })
            .await
    }
}

#[async_trait]
impl<B: Backend> DeviceStore for SqlStore<B> {
    async fn insert_device(&self, d: &DeviceAuthorization) -> StoreResult<()> {
        let identity = match &d.state {
            DeviceState::Approved(i) => Some(i.as_str()),
            _ => None,
        };
        self.sql
            .run("insert_device", async {
                let s = Stmt::new(
                    "INSERT INTO device_codes (digest, user_code, client_id, scope, created_at,
                         expires_at, poll_interval, last_poll, state, identity)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .arg(&d.digest)
                .arg(&d.user_code)
                .arg(&d.client_id)
                .arg(&d.scope)
                .arg(d.created_at)
                .arg(d.expires_at)
                .arg(d.interval)
                .arg(d.last_poll)
                .arg(d.state.word())
                .arg(identity);
                self.sql.exec(s).await?;
                Ok(())
            })
            .await
    }

    async fn device_by_digest(&self, d: &TokenDigest) -> StoreResult<Option<DeviceAuthorization>> {
        self.sql
            .run("device_by_digest", async {
                let s = Stmt::new("SELECT * FROM device_codes WHERE digest = $1").arg(d);
                self.sql.one_as(s, device_from).await
            })
            .await
    }

    async fn device_by_user_code(
        &self,
        user_code: &str,
    ) -> StoreResult<Option<DeviceAuthorization>> {
        self.sql
            .run("device_by_user_code", async {
                let s = Stmt::new("SELECT * FROM device_codes WHERE user_code = $1").arg(user_code);
                self.sql.one_as(s, device_from).await
            })
            .await
    }

    async fn decide_device(
        &self,
        d: &TokenDigest,
        approved_by: Option<&Identity>,
    ) -> StoreResult<bool> {
        let state = if approved_by.is_some() {
            "approved"
        } else {
            "denied"
        };
        self.sql
            .run("decide_device", async {
                let s = Stmt::new(
                    "UPDATE device_codes SET state = $1, identity = $2
                     WHERE digest = $3 AND state = 'pending'",
                )
                .arg(state)
                .arg(approved_by.map(|i| i.as_str()))
                .arg(d);
                Ok(self.sql.exec(s).await? == 1)
            })
            .await
    }

    async fn poll_device(&self, d: &TokenDigest, now: UnixTime, penalty: i64) -> StoreResult<bool> {
        self.sql
            .run("poll_device", async {
                // On time: the last poll was at least the interval ago.
                let s = Stmt::new(
                    "UPDATE device_codes SET last_poll = $1
                     WHERE digest = $2 AND (last_poll IS NULL OR last_poll + poll_interval <= $1)",
                )
                .arg(now)
                .arg(d);
                if self.sql.exec(s).await? == 1 {
                    return Ok(true);
                }
                let s = Stmt::new(
                    "UPDATE device_codes SET last_poll = $1, poll_interval = poll_interval + $2
                     WHERE digest = $3",
                )
                .arg(now)
                .arg(penalty)
                .arg(d);
                self.sql.exec(s).await?;
                Ok(false)
            })
            .await
    }

    async fn consume_device(&self, d: &TokenDigest) -> StoreResult<bool> {
        self.sql
            .run("consume_device", async {
                let s = Stmt::new(
                    "UPDATE device_codes SET state = 'used' WHERE digest = $1 AND state = 'approved'",
                )
                .arg(d);
                Ok(self.sql.exec(s).await? == 1)
            })
            .await
    }

    async fn sweep_devices(&self, before: UnixTime) -> StoreResult<u64> {
        self.sql
            .run("sweep_devices", async {
                let s = Stmt::new("DELETE FROM device_codes WHERE expires_at < $1").arg(before);
                self.sql.exec(s).await
            })
            .await
    }
}

#[async_trait]
impl<B: Backend> JwtStore for SqlStore<B> {
    async fn create_jwt_mapping(&self, m: &JwtMapping) -> StoreResult<()> {
        self.sql
            .run("create_jwt_mapping", async {
                self.sql
                    .exec(bind_jwt_mapping(Stmt::new(INSERT_JWT_MAPPING), m))
                    .await?;
                Ok(())
            })
            .await
    }

    async fn jwt_mapping(&self, name: &str) -> StoreResult<Option<JwtMapping>> {
        self.sql
            .run("jwt_mapping", async {
                let s = Stmt::new("SELECT * FROM jwt_mappings WHERE name = $1").arg(name);
                self.sql.one_as(s, jwt_mapping_from).await
            })
            .await
    }

    async fn list_jwt_mappings(&self) -> StoreResult<Vec<JwtMapping>> {
        self.sql
            .run("list_jwt_mappings", async {
                let s = Stmt::new("SELECT * FROM jwt_mappings ORDER BY name");
                self.sql.all_as(s, jwt_mapping_from).await
            })
            .await
    }

    async fn update_jwt_mapping(&self, m: &JwtMapping) -> StoreResult<bool> {
        self.sql
            .run("update_jwt_mapping", async {
                let s = Stmt::new(
                    "UPDATE jwt_mappings SET issuer_uri = $1, jwks_uri = $2, purpose_field = $3,
                         purpose_match = $4, id_field = $5, id_match = $6, grantee = $7
                     WHERE name = $8",
                );
                let s = bind_jwt_mapping_fields(s, m).arg(&m.name);
                Ok(self.sql.exec(s).await? == 1)
            })
            .await
    }

    async fn delete_jwt_mapping(&self, name: &str) -> StoreResult<bool> {
        self.sql
            .run("delete_jwt_mapping", async {
                let s = Stmt::new("DELETE FROM jwt_mappings WHERE name = $1").arg(name);
                Ok(self.sql.exec(s).await? == 1)
            })
            .await
    }

    async fn record_jwt_use(&self, u: &JwtUse, now: UnixTime) -> StoreResult<bool> {
        // A write on the grant path: SQLite's goes into the group commit.
        self.sql
            .run(
                "record_jwt_use",
                self.backend.record_jwt_use(&self.sql, u, now),
            )
            .await
    }

    async fn list_jwt_uses(&self) -> StoreResult<Vec<JwtUse>> {
        self.sql
            .run("list_jwt_uses", async {
                let s = Stmt::new("SELECT digest, used_until FROM jwt_uses ORDER BY digest");
                self.sql.all_as(s, jwt_use_from).await
            })
            .await
    }

    async fn sweep_jwt_uses(&self, now: UnixTime, batch: u32) -> StoreResult<u64> {
        self.sql
            .run("sweep_jwt_uses", async {
                let s = Stmt::new(
                    "DELETE FROM jwt_uses WHERE digest IN (
                         SELECT digest FROM jwt_uses WHERE used_until <= $1 LIMIT $2)",
                )
                .arg(now)
                .arg(batch);
                self.sql.exec(s).await
            })
            .await
    }

    async fn import_jwt(
        &self,
        mappings: &[JwtMapping],
        uses: &[JwtUse],
    ) -> StoreResult<(Tally, Tally)> {
        self.sql
            .run("import_jwt", async {
                let mut tx = self.sql.begin().await?;
                let m = self
                    .sql
                    .import_rows(
                        &mut *tx,
                        &or_skip(INSERT_JWT_MAPPING),
                        mappings,
                        bind_jwt_mapping,
                    )
                    .await?;
                let u = self
                    .sql
                    .import_rows(&mut *tx, &or_skip(INSERT_JWT_USE), uses, bind_jwt_use)
                    .await?;
                self.sql.commit(tx).await?;
                Ok((m, u))
            })
            .await
    }
}

#[async_trait]
impl<B: Backend> IssuerStore for SqlStore<B> {
    async fn add_issuer(&self, issuer: &IssuerRecord) -> StoreResult<bool> {
        self.sql
            .run("add_issuer", async {
                let s = bind_issuer(Stmt::new(ADD_ISSUER), issuer);
                Ok(self.sql.exec(s).await? == 1)
            })
            .await
    }

    async fn remove_issuer(&self, fingerprint: &str) -> StoreResult<bool> {
        self.sql
            .run("remove_issuer", async {
                let s = Stmt::new("DELETE FROM trusted_issuers WHERE fingerprint = $1")
                    .arg(fingerprint);
                Ok(self.sql.exec(s).await? == 1)
            })
            .await
    }

    async fn list_issuers(&self) -> StoreResult<Vec<IssuerRecord>> {
        self.sql
            .run("list_issuers", async {
                let s = Stmt::new(
                    "SELECT fingerprint, subject, pem, added_at FROM trusted_issuers ORDER BY fingerprint",
                );
                self.sql.all_as(s, issuer_from).await
            })
            .await
    }

    async fn import_issuers(&self, issuers: &[IssuerRecord]) -> StoreResult<Tally> {
        self.sql
            .run("import_issuers", async {
                let mut tx = self.sql.begin().await?;
                let t = self
                    .sql
                    .import_rows(&mut *tx, &or_skip(INSERT_ISSUER), issuers, bind_issuer)
                    .await?;
                self.sql.commit(tx).await?;
                Ok(t)
            })
            .await
    }
}

#[async_trait]
impl<B: Backend> InvalidationFeed for SqlStore<B> {
    async fn announce_invalidation(&self, digests: &[TokenDigest]) -> StoreResult<()> {
        if digests.is_empty() {
            return Ok(());
        }
        self.sql
            .run(
                "announce_invalidation",
                self.backend.announce(&self.sql, digests),
            )
            .await
    }

    fn invalidations(&self) -> Option<broadcast::Receiver<Invalidation>> {
        self.backend.invalidations(&self.sql)
    }
}

#[async_trait]
impl<B: Backend> Store for SqlStore<B> {
    fn describe(&self) -> String {
        self.backend.describe()
    }

    fn kind(&self) -> &'static str {
        B::Db::KIND
    }

    async fn ping(&self) -> StoreResult<()> {
        self.sql
            .run("ping", async {
                self.sql.exec(Stmt::new("SELECT 1")).await?;
                Ok(())
            })
            .await
    }

    async fn ready(&self) -> StoreResult<()> {
        self.sql
            .run("ready", async {
                if let Some(why) = self.sql.health.corrupt() {
                    return Err(StoreError::Corrupt(format!(
                        "the database is damaged ({why}); restart to check it"
                    )));
                }
                self.backend.ready(&self.sql).await
            })
            .await
    }

    async fn close(&self) {
        self.backend.close(&self.sql).await;
    }

    async fn counts(&self, now: UnixTime) -> StoreResult<Counts> {
        self.sql
            .run("counts", async {
                let s = Stmt::new(
                    "SELECT (SELECT COUNT(*) FROM users) AS u,
                            (SELECT COUNT(*) FROM applications) AS a,
                            (SELECT COUNT(*) FROM grants WHERE expires_at IS NULL OR expires_at > $1) AS g",
                )
                .arg(now);
                // The grants count reads a whole index: through a reader's cache, 1.5 MB at
                // 100,000 grants that an idle server then held (docs/BENCHMARKS.md).
                let mut conn = self.sql.acquire().await?;
                if !B::Db::SCAN_BEGIN.is_empty() {
                    B::Db::raw_on(&mut *conn, B::Db::SCAN_BEGIN)
                        .await
                        .map_err(|e| self.sql.fail(e))?;
                }
                let row = B::Db::fetch_optional_on(&mut *conn, s.query).await;
                if !B::Db::SCAN_END.is_empty() {
                    if let Err(e) = B::Db::raw_on(&mut *conn, B::Db::SCAN_END).await {
                        // Not back into the pool with the scan's small cache: closed instead.
                        drop(conn.detach());
                        return Err(self.sql.fail(e));
                    }
                }
                let row = row
                    .map_err(|e| self.sql.fail(e))?
                    .ok_or_else(|| StoreError::backend("no row from a count"))?;
                let get = |c: &str| row.int(c).map(|v| u64::try_from(v).unwrap_or(0));
                Ok(Counts {
                    users: get("u")?,
                    applications: get("a")?,
                    grants: get("g")?,
                })
            })
            .await
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        self.sql
            .run("is_empty", async {
                let s = Stmt::new(
                    "SELECT (EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM applications)) AS nonempty",
                );
                let row = self
                    .sql
                    .one(s)
                    .await?
                    .ok_or_else(|| StoreError::backend("no row from EXISTS"))?;
                Ok(!row.flag("nonempty")?)
            })
            .await
    }
}
