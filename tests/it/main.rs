//! The one integration-test binary: a module per capability, all against real servers on
//! loopback (TLS, a real SQLite file, throwaway PostgreSQL clusters).

mod authorize;
mod binary;
mod clients;
mod common;
mod lifecycle;
mod multinode;
mod pg;
mod store_suite;
