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
mod dirsrv;
mod hostile;
mod identities;
mod jwt;
mod ldap;
mod lifecycle;
mod lockout;
mod multinode;
mod names;
mod openapi;
mod ops;
mod pg;
mod security;
mod store_suite;
mod transport;
mod trustees;
