//! The one integration-test binary: a module per capability, all against real servers on
//! loopback (TLS, a real SQLite file, throwaway PostgreSQL clusters).

mod admin_api;
mod authorize;
mod binary;
mod clients;
mod common;
mod crash;
mod dirsrv;
mod hostile;
mod integrity;
mod ldap;
mod lifecycle;
mod multinode;
mod old_schema;
mod openapi;
mod ops;
mod pg;
mod schema;
mod security;
mod sqlite_feed;
mod store_suite;
