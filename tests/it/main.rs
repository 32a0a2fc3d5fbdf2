//! The one integration-test binary: a module per capability, all against real servers on
//! loopback (TLS, a real SQLite file, throwaway PostgreSQL clusters).

mod admin_api;
mod audit;
mod authorize;
mod binary;
mod certauth;
mod cli;
mod clients;
mod common;
mod crash;
mod dirsrv;
mod hostile;
mod identities;
mod integrity;
mod jwt;
mod jwt_grant;
mod ldap;
mod lifecycle;
mod lockout;
mod multinode;
mod names;
mod old_schema;
mod openapi;
mod ops;
mod pg;
mod schema;
mod security;
mod sqlite_feed;
mod store_suite;
mod structure;
mod transport;
mod trustees;
