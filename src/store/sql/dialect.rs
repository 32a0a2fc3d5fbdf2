//! The seam between the SQL written once (`sql/ports.rs`) and the two databases.
//!
//! What differs, and where it is settled:
//! - placeholders: none; both take `$1`, `$2`, ... (sqlx binds SQLite's `$N` by number);
//! - booleans: bound as Rust `bool` on both (sqlx writes 0/1 for SQLite); read back through
//!   [`Columns::flag`], since SQLite keeps them in INTEGER columns;
//! - upserts: `INSERT ... ON CONFLICT ... DO NOTHING | DO UPDATE` is the same text on both;
//! - case-insensitive user names: [`Dialect::USER_BY_NAME`] (a NOCASE column in SQLite, an
//!   index on `lower(name)` in PostgreSQL);
//! - the sweep's statements, which lean on each planner ([`Dialect::SWEEP_GRANTS`]);
//! - per-operation timeouts: a value of [`super::Sql`], set by each backend;
//! - errors: [`Dialect::error`] and [`Dialect::fault`];
//! - sqlx's executor calls, which cannot be written over a generic database without a wall of
//!   higher-ranked bounds: the few here, implemented for each database by one macro.
//!
//! Measured before choosing this over a query builder: a cold-verify lookup through an
//! enum-typed bind costs the same as sqlx's direct bind, and building the SQL per call with
//! `QueryBuilder` did not cost measurably more either (both hidden by the round trip to sqlx's
//! SQLite thread, about 75-115 µs on the shared 2-core machine). Static SQL strings won on
//! reading: the statement is there to see, and nothing new to compile.

use std::future::Future;
use std::pin::Pin;

use sqlx::pool::Pool;

use super::super::rows::Columns;
use crate::domain::StoreError;
use crate::token::TokenDigest;

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A query of database `D` with its arguments.
pub type Query<'q, D> = sqlx::query::Query<'q, D, <D as sqlx::Database>::Arguments<'q>>;

/// A value to bind: every Rust type the statements use, as one enum.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'q> {
    Text(&'q str),
    OptText(Option<&'q str>),
    Int(i64),
    OptInt(Option<i64>),
    Int32(i32),
    Flag(bool),
    OptFlag(Option<bool>),
    Bytes(&'q [u8]),
    OptBytes(Option<&'q [u8]>),
}

impl<'q> From<&'q str> for Arg<'q> {
    fn from(v: &'q str) -> Self {
        Arg::Text(v)
    }
}
impl<'q> From<&'q String> for Arg<'q> {
    fn from(v: &'q String) -> Self {
        Arg::Text(v)
    }
}
impl<'q> From<Option<&'q str>> for Arg<'q> {
    fn from(v: Option<&'q str>) -> Self {
        Arg::OptText(v)
    }
}
impl<'q> From<&'q Option<String>> for Arg<'q> {
    fn from(v: &'q Option<String>) -> Self {
        Arg::OptText(v.as_deref())
    }
}
/// The domain's words bind as the text they stand for.
macro_rules! word_args {
    ($($t:ty),*) => {$(
        impl<'q> From<&'q $t> for Arg<'q> {
            fn from(v: &'q $t) -> Self {
                Arg::Text(v.as_str())
            }
        }
        impl<'q> From<&'q Option<$t>> for Arg<'q> {
            fn from(v: &'q Option<$t>) -> Self {
                Arg::OptText(v.as_ref().map(|w| w.as_str()))
            }
        }
    )*};
}
word_args!(
    crate::domain::ClientId,
    crate::domain::GrantId,
    crate::domain::Identity,
    crate::domain::CanonicalScope
);
impl From<crate::domain::Role> for Arg<'_> {
    fn from(v: crate::domain::Role) -> Self {
        Arg::Int32(v.code())
    }
}
impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::OptInt(v)
    }
}
impl From<i32> for Arg<'_> {
    fn from(v: i32) -> Self {
        Arg::Int32(v)
    }
}
impl From<u32> for Arg<'_> {
    fn from(v: u32) -> Self {
        Arg::Int(i64::from(v))
    }
}
impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Flag(v)
    }
}
impl From<Option<bool>> for Arg<'_> {
    fn from(v: Option<bool>) -> Self {
        Arg::OptFlag(v)
    }
}
impl<'q> From<&'q [u8]> for Arg<'q> {
    fn from(v: &'q [u8]) -> Self {
        Arg::Bytes(v)
    }
}
impl<'q> From<&'q TokenDigest> for Arg<'q> {
    fn from(v: &'q TokenDigest) -> Self {
        Arg::Bytes(&v.0)
    }
}
impl<'q> From<Option<&'q TokenDigest>> for Arg<'q> {
    fn from(v: Option<&'q TokenDigest>) -> Self {
        Arg::OptBytes(v.map(|d| &d.0[..]))
    }
}
impl<'q> From<&'q Option<TokenDigest>> for Arg<'q> {
    fn from(v: &'q Option<TokenDigest>) -> Self {
        Arg::OptBytes(v.as_ref().map(|d| &d.0[..]))
    }
}

/// A statement being bound: `Stmt::new(sql).arg(a).arg(b)`.
pub struct Stmt<'q, D: Dialect> {
    pub(crate) query: Query<'q, D>,
}

impl<'q, D: Dialect> Stmt<'q, D> {
    pub fn new(sql: &'q str) -> Self {
        Self {
            query: sqlx::query(sql),
        }
    }
    pub fn arg(self, v: impl Into<Arg<'q>>) -> Self {
        Self {
            query: D::bind(self.query, v.into()),
        }
    }
}

/// What a failed operation says about the store as a whole (for [`super::Health`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Writes cannot reach the disk now (full, I/O error, read-only): may pass.
    CannotWrite,
    /// The database file or a page of it is damaged: stays until a restart checks it.
    Corrupt,
}

/// One database's side of the seam. Implemented for `sqlx::Sqlite` and `sqlx::Postgres`.
pub trait Dialect: sqlx::Database<Row: Columns> {
    /// "sqlite" or "postgres".
    const KIND: &'static str;
    /// The user whose name equals `$1`, ignoring ASCII case (through the index that says so).
    const USER_BY_NAME: &'static str;
    /// Deletes up to `$2` grants unusable at `$1`.
    const SWEEP_GRANTS: &'static str;
    /// Deletes up to `$2` retired refresh digests past their grant at `$1`.
    const SWEEP_RETIRED: &'static str;
    /// Starts a transaction that will write (SQLite takes the write lock at once).
    const BEGIN_WRITE: &'static str;
    /// Run first in each migration's transaction: serialises processes migrating together.
    const MIGRATION_LOCK: &'static str;
    /// Run on a connection before and after a statement that reads a whole index (the
    /// gauges' counts), so that the scan does not fill the connection's page cache with pages
    /// an idle server would then hold. Empty: the cache is the database server's.
    const SCAN_BEGIN: &'static str;
    const SCAN_END: &'static str;
    /// The migrations, in order.
    const MIGRATIONS: &'static [super::migrate::Migration];

    fn error(e: sqlx::Error) -> StoreError;
    fn fault(e: &sqlx::Error) -> Option<Fault>;
    fn bind<'q>(q: Query<'q, Self>, v: Arg<'q>) -> Query<'q, Self>;

    fn execute<'e, 'q: 'e>(
        pool: &'e Pool<Self>,
        q: Query<'q, Self>,
    ) -> BoxFut<'e, Result<u64, sqlx::Error>>;
    fn fetch_all<'e, 'q: 'e>(
        pool: &'e Pool<Self>,
        q: Query<'q, Self>,
    ) -> BoxFut<'e, Result<Vec<Self::Row>, sqlx::Error>>;
    fn fetch_optional<'e, 'q: 'e>(
        pool: &'e Pool<Self>,
        q: Query<'q, Self>,
    ) -> BoxFut<'e, Result<Option<Self::Row>, sqlx::Error>>;
    fn execute_on<'e, 'q: 'e>(
        conn: &'e mut Self::Connection,
        q: Query<'q, Self>,
    ) -> BoxFut<'e, Result<u64, sqlx::Error>>;
    fn fetch_all_on<'e, 'q: 'e>(
        conn: &'e mut Self::Connection,
        q: Query<'q, Self>,
    ) -> BoxFut<'e, Result<Vec<Self::Row>, sqlx::Error>>;
    fn fetch_optional_on<'e, 'q: 'e>(
        conn: &'e mut Self::Connection,
        q: Query<'q, Self>,
    ) -> BoxFut<'e, Result<Option<Self::Row>, sqlx::Error>>;
    /// Several statements in one string, no arguments (migrations).
    fn raw_on<'e>(
        conn: &'e mut Self::Connection,
        sql: &'e str,
    ) -> BoxFut<'e, Result<(), sqlx::Error>>;
}

/// The executor calls and the bind of a concrete database: the same text for both, which is
/// why it is a macro and not written out twice.
macro_rules! executor_glue {
    () => {
        fn bind<'q>(
            q: $crate::store::sql::Query<'q, Self>,
            v: $crate::store::sql::Arg<'q>,
        ) -> $crate::store::sql::Query<'q, Self> {
            use $crate::store::sql::Arg;
            match v {
                Arg::Text(v) => q.bind(v),
                Arg::OptText(v) => q.bind(v),
                Arg::Int(v) => q.bind(v),
                Arg::OptInt(v) => q.bind(v),
                Arg::Int32(v) => q.bind(v),
                Arg::Flag(v) => q.bind(v),
                Arg::OptFlag(v) => q.bind(v),
                Arg::Bytes(v) => q.bind(v),
                Arg::OptBytes(v) => q.bind(v),
            }
        }
        fn execute<'e, 'q: 'e>(
            pool: &'e sqlx::Pool<Self>,
            q: $crate::store::sql::Query<'q, Self>,
        ) -> $crate::store::sql::BoxFut<'e, Result<u64, sqlx::Error>> {
            Box::pin(async move { Ok(q.execute(pool).await?.rows_affected()) })
        }
        fn fetch_all<'e, 'q: 'e>(
            pool: &'e sqlx::Pool<Self>,
            q: $crate::store::sql::Query<'q, Self>,
        ) -> $crate::store::sql::BoxFut<'e, Result<Vec<Self::Row>, sqlx::Error>> {
            Box::pin(q.fetch_all(pool))
        }
        fn fetch_optional<'e, 'q: 'e>(
            pool: &'e sqlx::Pool<Self>,
            q: $crate::store::sql::Query<'q, Self>,
        ) -> $crate::store::sql::BoxFut<'e, Result<Option<Self::Row>, sqlx::Error>> {
            Box::pin(q.fetch_optional(pool))
        }
        fn execute_on<'e, 'q: 'e>(
            conn: &'e mut Self::Connection,
            q: $crate::store::sql::Query<'q, Self>,
        ) -> $crate::store::sql::BoxFut<'e, Result<u64, sqlx::Error>> {
            Box::pin(async move { Ok(q.execute(conn).await?.rows_affected()) })
        }
        fn fetch_all_on<'e, 'q: 'e>(
            conn: &'e mut Self::Connection,
            q: $crate::store::sql::Query<'q, Self>,
        ) -> $crate::store::sql::BoxFut<'e, Result<Vec<Self::Row>, sqlx::Error>> {
            Box::pin(q.fetch_all(conn))
        }
        fn fetch_optional_on<'e, 'q: 'e>(
            conn: &'e mut Self::Connection,
            q: $crate::store::sql::Query<'q, Self>,
        ) -> $crate::store::sql::BoxFut<'e, Result<Option<Self::Row>, sqlx::Error>> {
            Box::pin(q.fetch_optional(conn))
        }
        fn raw_on<'e>(
            conn: &'e mut Self::Connection,
            sql: &'e str,
        ) -> $crate::store::sql::BoxFut<'e, Result<(), sqlx::Error>> {
            Box::pin(async move { sqlx::Executor::execute(conn, sql).await.map(|_| ()) })
        }
    };
}
pub(crate) use executor_glue;
