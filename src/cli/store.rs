//! `vedauth store ...`: whole-store operations. `copy` moves everything from one store to
//! another (SQLite to PostgreSQL and back), aggregate by aggregate (`Aggregate::ALL`, so that
//! none can be forgotten), token digests included, so that tokens issued before the copy keep
//! working against the copy.

use anyhow::{bail, Context};
use clap::Subcommand;
use serde::Serialize;

use super::GlobalOpts;
use crate::assembly::open_store_url;
use crate::store::{Aggregate, Rows, Store, Tally};

#[derive(Debug, Subcommand)]
pub enum StoreCmd {
    /// Copy everything (users, applications and rules, client secrets, role assignments,
    /// lockout records, settings, grants and retired refresh tokens, JWT mappings and used JWTs,
    /// trusted certificate issuers) from one store to another.
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
    #[serde(flatten)]
    pub copied: Kinds,
    pub settings: u64,
    pub skipped: Kinds,
}

/// A count per kind of row (settings apart: they are replaced, never skipped).
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Kinds {
    pub users: u64,
    pub applications: u64,
    pub rules: u64,
    pub client_secrets: u64,
    pub roles: u64,
    pub lockout: u64,
    pub grants: u64,
    pub retired_refresh: u64,
    pub jwt_mappings: u64,
    pub jwt_uses: u64,
    pub trusted_issuers: u64,
}

impl Kinds {
    fn slot(&mut self, rows: Rows) -> Option<&mut u64> {
        Some(match rows {
            Rows::Users => &mut self.users,
            Rows::Applications => &mut self.applications,
            Rows::Rules => &mut self.rules,
            Rows::ClientSecrets => &mut self.client_secrets,
            Rows::Roles => &mut self.roles,
            Rows::Lockout => &mut self.lockout,
            Rows::Grants => &mut self.grants,
            Rows::RetiredRefresh => &mut self.retired_refresh,
            Rows::JwtMappings => &mut self.jwt_mappings,
            Rows::JwtUses => &mut self.jwt_uses,
            Rows::Issuers => &mut self.trusted_issuers,
            Rows::Settings => return None,
        })
    }

    fn total(&self) -> u64 {
        self.users
            + self.applications
            + self.rules
            + self.client_secrets
            + self.roles
            + self.lockout
            + self.grants
            + self.retired_refresh
            + self.jwt_mappings
            + self.jwt_uses
            + self.trusted_issuers
    }

    fn line(&self) -> String {
        format!(
            "{} users, {} applications, {} rules, {} grants, {} role assignments, {} lockout \
             records, {} retired refresh tokens, {} client secrets, {} JWT mappings, {} used JWTs, {} trusted issuers",
            self.users,
            self.applications,
            self.rules,
            self.grants,
            self.roles,
            self.lockout,
            self.retired_refresh,
            self.client_secrets,
            self.jwt_mappings,
            self.jwt_uses,
            self.trusted_issuers
        )
    }
}

impl CopyCounts {
    fn add(&mut self, rows: Rows, t: Tally) {
        match (self.copied.slot(rows), self.skipped.slot(rows)) {
            (Some(c), Some(s)) => {
                *c += t.copied;
                *s += t.skipped;
            }
            _ => self.settings += t.copied,
        }
    }
}

pub async fn store(g: &GlobalOpts, cmd: StoreCmd) -> anyhow::Result<()> {
    match cmd {
        StoreCmd::Copy {
            from,
            to,
            allow_non_empty,
        } => {
            let mut db = g.load_config()?.database;
            // A copy moves each aggregate (every grant, say) in one store operation: the bound
            // meant for request handling (10 s by default) cut large stores short.
            db.operation_timeout_secs = db.operation_timeout_secs.max(3600);
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
                    "copied {} and the settings from {} to {}",
                    counts.copied.line(),
                    src.describe(),
                    dst.describe()
                );
                if counts.skipped.total() > 0 {
                    println!(
                        "skipped (already in the destination): {}",
                        counts.skipped.line()
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
