//! Schema migrations: `.sql` files per database (`store/migrations/{sqlite,postgres,common}/`),
//! applied in order at open, each once, in its own transaction, and recorded by version in
//! `vedauth_schema`. Both databases have the same versions; a migration that means the same on
//! both is one file in `common/`.

use sqlx::Connection;

use super::{Dialect, Stmt};
use crate::domain::{StoreError, StoreResult};

/// One schema version.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($version:literal, $file:literal) => {
        $crate::store::sql::migrate::Migration {
            version: $version,
            name: $file,
            sql: include_str!(concat!("../migrations/", $file)),
        }
    };
}
pub(crate) use migration;

/// The newest version this build knows.
pub fn latest<D: Dialect>() -> i64 {
    D::MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Reads the version without creating anything; None if the table is not there yet.
async fn current<D: Dialect>(conn: &mut D::Connection) -> Option<i64> {
    let q = Stmt::<D>::new("SELECT COALESCE(MAX(version), 0) AS v FROM vedauth_schema");
    let row = D::fetch_optional_on(conn, q.query).await.ok()??;
    super::super::rows::Columns::int(&row, "v").ok()
}

/// Brings the schema to the newest version.
pub async fn run<D: Dialect>(pool: &sqlx::Pool<D>) -> StoreResult<()> {
    let mut conn = pool.acquire().await.map_err(D::error)?;
    let latest = latest::<D>();
    // The common case (every start, every admin command): nothing to do, nothing written.
    match current::<D>(&mut conn).await {
        Some(v) if v == latest => return Ok(()),
        Some(v) if v > latest => return Err(too_new(v, latest)),
        _ => {}
    }
    for m in D::MIGRATIONS {
        let mut tx = conn.begin_with(D::BEGIN_WRITE).await.map_err(D::error)?;
        // Held until commit: a second process migrating now waits, then sees the new version.
        if !D::MIGRATION_LOCK.is_empty() {
            D::raw_on(&mut *tx, D::MIGRATION_LOCK)
                .await
                .map_err(D::error)?;
        }
        D::raw_on(
            &mut *tx,
            "CREATE TABLE IF NOT EXISTS vedauth_schema (version INTEGER NOT NULL)",
        )
        .await
        .map_err(D::error)?;
        let v = current::<D>(&mut *tx).await.unwrap_or(0);
        if v > latest {
            return Err(too_new(v, latest));
        }
        if m.version > v {
            D::raw_on(&mut *tx, m.sql).await.map_err(|source| {
                StoreError::Backend(Box::new(MigrationFailed {
                    name: m.name,
                    source,
                }))
            })?;
            let q = Stmt::<D>::new("INSERT INTO vedauth_schema (version) VALUES ($1)")
                .arg(i32::try_from(m.version).unwrap_or(i32::MAX));
            D::execute_on(&mut *tx, q.query).await.map_err(D::error)?;
            tracing::info!(version = m.version, name = m.name, "schema migrated");
        }
        tx.commit().await.map_err(D::error)?;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("migration {name} failed: {source}")]
struct MigrationFailed {
    name: &'static str,
    #[source]
    source: sqlx::Error,
}

fn too_new(found: i64, latest: i64) -> StoreError {
    StoreError::backend(format!(
        "the database has schema version {found}, newer than this vedauth knows ({latest}): \
         run a newer vedauth"
    ))
}

/// The schema version a database is at (for tests and `status`).
pub async fn version<D: Dialect>(pool: &sqlx::Pool<D>) -> StoreResult<i64> {
    let mut conn = pool.acquire().await.map_err(D::error)?;
    Ok(current::<D>(&mut conn).await.unwrap_or(0))
}
