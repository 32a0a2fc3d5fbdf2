//! Turning rows into records, once for every backend: each backend's row type says how to read
//! a column of each kind ([`Columns`]), and the decoders here do the rest.

use crate::domain::*;
use crate::token::TokenDigest;

/// The column reads the decoders need. Booleans differ by backend (an INTEGER in SQLite, a
/// BOOLEAN in PostgreSQL), which is why this is a trait rather than sqlx's `Row` bounds.
pub trait Columns {
    fn text(&self, col: &str) -> StoreResult<String>;
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>>;
    fn int(&self, col: &str) -> StoreResult<i64>;
    fn opt_int(&self, col: &str) -> StoreResult<Option<i64>>;
    fn flag(&self, col: &str) -> StoreResult<bool>;
    fn opt_flag(&self, col: &str) -> StoreResult<Option<bool>>;
    fn opt_bytes(&self, col: &str) -> StoreResult<Option<Vec<u8>>>;
}

pub fn digest_of(row: &impl Columns, col: &str) -> StoreResult<Option<TokenDigest>> {
    match row.opt_bytes(col)? {
        None => Ok(None),
        Some(b) => TokenDigest::from_slice(&b)
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt(format!("{col} is not 32 bytes"))),
    }
}

fn access_digest(row: &impl Columns) -> StoreResult<TokenDigest> {
    digest_of(row, "access_digest")?
        .ok_or_else(|| StoreError::Corrupt("grant without access digest".into()))
}

fn opt_lifetime(row: &impl Columns, col: &str) -> StoreResult<Option<Lifetime>> {
    Ok(row.opt_int(col)?.map(Lifetime::from_db))
}

pub fn user_from(row: &impl Columns) -> StoreResult<User> {
    Ok(User {
        id: row.text("id")?,
        name: row.text("name")?,
        full_name: row.opt_text("full_name")?,
        email: row.opt_text("email")?,
        password_hash: row.text("password_hash")?,
        disabled: row.flag("disabled")?,
        created_at: row.int("created_at")?,
    })
}

/// A holder's user row as a conditional grant write reads it: (disabled, password hash).
pub fn holder_row_from(row: &impl Columns) -> StoreResult<(bool, String)> {
    Ok((row.flag("disabled")?, row.text("password_hash")?))
}

pub fn app_from(row: &impl Columns) -> StoreResult<Application> {
    Ok(Application {
        client_id: row.text("client_id")?.into(),
        name: row.text("name")?,
        vendor: row.text("vendor")?,
        description: row.text("description")?,
        url: row.text("url")?,
        scope: row.text("scope")?,
        max_scope: CanonicalScope::from_stored(row.text("max_scope")?),
        access_validity: row.opt_int("access_validity")?,
        grant_validity: opt_lifetime(row, "grant_validity")?,
        renewable: row.opt_flag("renewable")?,
        unused_expiration: row.opt_int("unused_expiration")?,
        created_at: row.int("created_at")?,
    })
}

pub fn client_secret_from(row: &impl Columns) -> StoreResult<ClientSecret> {
    Ok(ClientSecret {
        client_id: row.text("client_id")?.into(),
        secret_hash: row.text("secret_hash")?,
        created_at: row.int("created_at")?,
    })
}

pub fn rule_from(row: &impl Columns) -> StoreResult<Rule> {
    Ok(Rule {
        client_id: row.text("client_id")?.into(),
        trustee: row.text("trustee")?.into(),
        description: row.text("description")?,
        max_scope: row.opt_text("max_scope")?.map(CanonicalScope::from_stored),
        access_validity: row.opt_int("access_validity")?,
        grant_validity: opt_lifetime(row, "grant_validity")?,
        renewable: row.opt_flag("renewable")?,
        created_at: row.int("created_at")?,
    })
}

pub fn grant_from(row: &impl Columns) -> StoreResult<Grant> {
    Ok(Grant {
        id: row.text("id")?.into(),
        client_id: row.text("client_id")?.into(),
        identity: row.text("identity")?.into(),
        granted_to: row.text("granted_to")?.into(),
        scope: CanonicalScope::from_stored(row.text("scope")?),
        issued_at: row.int("issued_at")?,
        expires_at: row.opt_int("expires_at")?,
        renewable: row.flag("renewable")?,
        access_validity: row.int("access_validity")?,
        access_digest: access_digest(row)?,
        access_issued_at: row.int("access_issued_at")?,
        access_expires_at: row.int("access_expires_at")?,
        refresh_digest: digest_of(row, "refresh_digest")?,
    })
}

/// The access digests of `DELETE ... RETURNING access_digest` rows.
pub fn digests<R: Columns>(rows: &[R]) -> StoreResult<Vec<TokenDigest>> {
    rows.iter().map(access_digest).collect()
}

/// None for a row whose number is no role.
pub fn role_from(row: &impl Columns) -> StoreResult<Option<RoleAssignment>> {
    let c = row.text("client_id")?;
    let grantee: Identity = row.text("grantee")?.into();
    let role = match Role::try_from(row.int("role")?) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%grantee, error = %e, "stored role number is no role; ignored");
            return Ok(None);
        }
    };
    Ok(Some(RoleAssignment {
        grantee,
        role,
        client_id: (!c.is_empty()).then(|| c.into()),
    }))
}

pub fn lockout_from(row: &impl Columns) -> StoreResult<LockoutRecord> {
    let count = |c: &str| -> StoreResult<u32> {
        u32::try_from(row.int(c)?).map_err(|_| StoreError::Corrupt(format!("{c} out of range")))
    };
    Ok(LockoutRecord {
        failures: count("failures")?,
        window_start: row.int("window_start")?,
        pending: count("pending")?,
        pending_since: row.int("pending_since")?,
        locked_until: row.int("locked_until")?,
        version: row.int("version")?,
    })
}

pub fn lockout_entry_from(row: &impl Columns) -> StoreResult<LockoutEntry> {
    Ok(LockoutEntry {
        identity: row.text("identity")?,
        record: lockout_from(row)?,
    })
}

pub fn retired_from(row: &impl Columns) -> StoreResult<RetiredRefresh> {
    Ok(RetiredRefresh {
        digest: digest_of(row, "digest")?
            .ok_or_else(|| StoreError::Corrupt("retired refresh without digest".into()))?,
        grant_id: row.text("grant_id")?.into(),
        expires_at: row.opt_int("expires_at")?,
    })
}

pub fn successor_from(row: &impl Columns) -> StoreResult<Successor> {
    Ok(Successor {
        digest: digest_of(row, "digest")?
            .ok_or_else(|| StoreError::Corrupt("refresh successor without digest".into()))?,
        grant_id: row.text("grant_id")?.into(),
        sealed: row
            .opt_bytes("sealed")?
            .ok_or_else(|| StoreError::Corrupt("refresh successor without content".into()))?,
        until: row.int("until")?,
    })
}

pub fn device_from(row: &impl Columns) -> StoreResult<DeviceAuthorization> {
    let identity = row.opt_text("identity")?;
    let state = match (row.text("state")?.as_str(), identity) {
        ("pending", _) => DeviceState::Pending,
        ("approved", Some(i)) => DeviceState::Approved(i.into()),
        ("denied", _) => DeviceState::Denied,
        ("used", _) => DeviceState::Used,
        (other, _) => {
            return Err(StoreError::Corrupt(format!(
                "device code in state '{other}' (without an identity?)"
            )))
        }
    };
    Ok(DeviceAuthorization {
        digest: digest_of(row, "digest")?
            .ok_or_else(|| StoreError::Corrupt("device code without digest".into()))?,
        user_code: row.text("user_code")?,
        client_id: row.text("client_id")?.into(),
        scope: CanonicalScope::from_stored(row.text("scope")?),
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        interval: row.int("poll_interval")?,
        last_poll: row.opt_int("last_poll")?,
        state,
    })
}

pub fn jwt_mapping_from(row: &impl Columns) -> StoreResult<JwtMapping> {
    Ok(JwtMapping {
        name: row.text("name")?,
        issuer_uri: row.text("issuer_uri")?,
        jwks_uri: row.opt_text("jwks_uri")?,
        purpose_field: row.text("purpose_field")?,
        purpose_match: row.text("purpose_match")?,
        id_field: row.text("id_field")?,
        id_match: row.text("id_match")?,
        grantee_prefixed_universal: row.opt_text("grantee")?,
    })
}

pub fn jwt_use_from(row: &impl Columns) -> StoreResult<JwtUse> {
    Ok(JwtUse {
        digest: digest_of(row, "digest")?
            .ok_or_else(|| StoreError::Corrupt("JWT use without digest".into()))?,
        used_until: row.int("used_until")?,
    })
}

pub fn issuer_from(row: &impl Columns) -> StoreResult<IssuerRecord> {
    Ok(IssuerRecord {
        fingerprint: row.text("fingerprint")?,
        subject: row.text("subject")?,
        pem: row.text("pem")?,
        added_at: row.int("added_at")?,
    })
}
