//! The storage adapters: the domain's ports (`crate::domain::ports`) over SQLite and
//! PostgreSQL. The HTTP layer and the domain never see SQL.
//!
//! - `sql/`: the SQL, written once (`ports.rs`), the seam between the two databases
//!   (`dialect.rs`) and the migration runner (`migrate.rs`);
//! - `migrations/`: the schema, as `.sql` files per database (`common/` where one text serves
//!   both);
//! - `sqlite/`: the embedded store (integrity check, group-commit writer, polled feed);
//! - `postgres/`: the shared store (bounded operations, NOTIFY feed);
//! - `metered.rs`: latency and error metrics around every operation;
//! - `follower.rs`: the subscriber side of either invalidation feed;
//! - `rows.rs`: rows into records.

mod follower;
pub mod metered;
pub mod postgres;
mod rows;
pub mod sql;
pub mod sqlite;

// Today's imports (`crate::store::{Store, User, ...}`) keep working: the records and the ports
// are the domain's, re-exported here.
pub use crate::domain::model::*;
pub use crate::domain::ports::*;
