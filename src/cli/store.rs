//! `vedauth store ...`: whole-store operations. `copy` moves everything from one store to
//! another (SQLite to PostgreSQL and back) through the `Store` trait, token digests included,
//! so that tokens issued before the copy keep working against the copy.

use anyhow::{bail, Context};
use clap::Subcommand;
use serde::Serialize;

use super::GlobalOpts;
use crate::assembly::open_store_url;
use crate::store::{GrantFilter, Store, StoreError, StoreResult};

#[derive(Debug, Subcommand)]
pub enum StoreCmd {
    /// Copy users, applications, rules, settings and grants from one store to another.
    Copy {
        /// The source: `sqlite:PATH` or `postgres://USER:PASSWORD@HOST:PORT/DB`.
        #[arg(long)]
        from: String,
        /// The destination, same forms. A SQLite file is created if missing.
        #[arg(long)]
        to: String,
        /// Copy into a destination that already holds data: rows whose key exists there are
        /// skipped (and counted), and the source's settings replace the destination's.
        #[arg(long)]
        allow_non_empty: bool,
    },
}

/// Rows copied and, with `--allow-non-empty`, rows skipped because the destination had them.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct CopyCounts {
    pub users: u64,
    pub applications: u64,
    pub rules: u64,
    pub grants: u64,
    pub settings: u64,
    pub skipped: Skipped,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Skipped {
    pub users: u64,
    pub applications: u64,
    pub rules: u64,
    pub grants: u64,
}

pub async fn store(g: &GlobalOpts, cmd: StoreCmd) -> anyhow::Result<()> {
    match cmd {
        StoreCmd::Copy {
            from,
            to,
            allow_non_empty,
        } => {
            let db = g.load_config()?.database;
            let src = open_store_url(&from, &db)
                .await
                .context("opening the source store")?;
            let dst = open_store_url(&to, &db)
                .await
                .context("opening the destination store")?;
            let counts = copy(src.as_ref(), dst.as_ref(), allow_non_empty).await?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&counts)?);
            } else {
                println!(
                    "copied {} users, {} applications, {} rules, {} grants and the settings from {} to {}",
                    counts.users,
                    counts.applications,
                    counts.rules,
                    counts.grants,
                    src.describe(),
                    dst.describe()
                );
                let s = &counts.skipped;
                if s.users + s.applications + s.rules + s.grants > 0 {
                    println!(
                        "skipped (already in the destination): {} users, {} applications, {} rules, {} grants",
                        s.users, s.applications, s.rules, s.grants
                    );
                }
            }
            Ok(())
        }
    }
}

/// Whether a store holds anything an operator made (settings alone do not count).
async fn is_empty(s: &dyn Store) -> StoreResult<bool> {
    Ok(s.list_users().await?.is_empty()
        && s.list_applications().await?.is_empty()
        && s.rules(None).await?.is_empty()
        && s.list_grants(&GrantFilter::default()).await?.is_empty())
}

/// Counts one insert: copied, skipped on a key that exists, or the error.
fn tally(res: StoreResult<()>, copied: &mut u64, skipped: &mut u64) -> StoreResult<()> {
    match res {
        Ok(()) => *copied += 1,
        Err(StoreError::Conflict) => *skipped += 1,
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Copies every record of `src` into `dst`. Refuses a destination that holds data unless
/// `allow_non_empty`; then keys that exist there are skipped. Retired refresh digests (kept
/// only for reuse detection) are not copied.
pub async fn copy(
    src: &dyn Store,
    dst: &dyn Store,
    allow_non_empty: bool,
) -> anyhow::Result<CopyCounts> {
    if !allow_non_empty && !is_empty(dst).await? {
        bail!(
            "the destination {} already holds data; pass --allow-non-empty to copy into it anyway",
            dst.describe()
        );
    }
    let mut n = CopyCounts::default();
    for u in src.list_users().await? {
        tally(
            dst.create_user(&u).await,
            &mut n.users,
            &mut n.skipped.users,
        )?;
    }
    // Applications before their rules and grants.
    for a in src.list_applications().await? {
        tally(
            dst.create_application(&a).await,
            &mut n.applications,
            &mut n.skipped.applications,
        )?;
    }
    for r in src.rules(None).await? {
        tally(
            dst.create_rule(&r).await,
            &mut n.rules,
            &mut n.skipped.rules,
        )?;
    }
    dst.put_settings(&src.settings().await?).await?;
    n.settings = 1;
    for gr in src.list_grants(&GrantFilter::default()).await? {
        tally(
            dst.insert_grant(&gr).await,
            &mut n.grants,
            &mut n.skipped.grants,
        )?;
    }
    Ok(n)
}
