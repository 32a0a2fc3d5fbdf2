//! `vedauth store ...`: whole-store operations. `copy` moves everything from one store to
//! another (SQLite to PostgreSQL and back), aggregate by aggregate (`Aggregate::ALL`, so that
//! none can be forgotten), token digests included, so that tokens issued before the copy keep
//! working against the copy.

use anyhow::{bail, Context};
use clap::Subcommand;
use serde::Serialize;

use super::GlobalOpts;
use crate::app::open_store_url;
use crate::store::{Aggregate, Rows, Store, Tally};

#[derive(Debug, Subcommand)]
pub enum StoreCmd {
    /// Copy everything (users, applications and rules, role assignments, lockout records,
    /// settings, grants and retired refresh tokens) from one store to another.
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
    pub roles: u64,
    pub lockout: u64,
    pub settings: u64,
    pub grants: u64,
    pub retired_refresh: u64,
    pub skipped: Skipped,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Skipped {
    pub users: u64,
    pub applications: u64,
    pub rules: u64,
    pub roles: u64,
    pub lockout: u64,
    pub grants: u64,
    pub retired_refresh: u64,
}

impl CopyCounts {
    fn add(&mut self, rows: Rows, t: Tally) {
        let s = &mut self.skipped;
        let (copied, skipped) = match rows {
            Rows::Users => (&mut self.users, &mut s.users),
            Rows::Applications => (&mut self.applications, &mut s.applications),
            Rows::Rules => (&mut self.rules, &mut s.rules),
            Rows::Roles => (&mut self.roles, &mut s.roles),
            Rows::Lockout => (&mut self.lockout, &mut s.lockout),
            Rows::Grants => (&mut self.grants, &mut s.grants),
            Rows::RetiredRefresh => (&mut self.retired_refresh, &mut s.retired_refresh),
            // Settings are replaced, never skipped.
            Rows::Settings => {
                self.settings += t.copied;
                return;
            }
        };
        *copied += t.copied;
        *skipped += t.skipped;
    }
}

/// "N users, N applications, ..." of counts laid out as in [`Skipped`].
#[allow(clippy::too_many_arguments)]
fn rows_line(
    users: u64,
    apps: u64,
    rules: u64,
    grants: u64,
    roles: u64,
    lockout: u64,
    retired: u64,
) -> String {
    format!(
        "{users} users, {apps} applications, {rules} rules, {grants} grants, {roles} role \
         assignments, {lockout} lockout records, {retired} retired refresh tokens"
    )
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
                let c = &counts;
                println!(
                    "copied {} and the settings from {} to {}",
                    rows_line(
                        c.users,
                        c.applications,
                        c.rules,
                        c.grants,
                        c.roles,
                        c.lockout,
                        c.retired_refresh
                    ),
                    src.describe(),
                    dst.describe()
                );
                let s = &counts.skipped;
                let skipped = [
                    s.users,
                    s.applications,
                    s.rules,
                    s.grants,
                    s.roles,
                    s.lockout,
                    s.retired_refresh,
                ];
                if skipped.iter().sum::<u64>() > 0 {
                    println!(
                        "skipped (already in the destination): {}",
                        rows_line(
                            s.users,
                            s.applications,
                            s.rules,
                            s.grants,
                            s.roles,
                            s.lockout,
                            s.retired_refresh
                        )
                    );
                }
            }
            Ok(())
        }
    }
}

/// Whether a store holds anything (settings alone do not count).
async fn is_empty(s: &dyn Store) -> anyhow::Result<bool> {
    for a in Aggregate::ALL {
        if a != Aggregate::Settings && !s.export(a).await?.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Copies every aggregate of `src` into `dst`, in `Aggregate::ALL`'s order. Refuses a
/// destination that holds data unless `allow_non_empty`; then keys that exist there are
/// skipped. What is not copied: SQLite's table of pending invalidation announcements (messages
/// for a running server, not state).
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
    for a in Aggregate::ALL {
        let dump = src.export(a).await?;
        for (rows, tally) in dst.import(&dump).await? {
            n.add(rows, tally);
        }
    }
    Ok(n)
}
