//! The one integration-test binary: a module per capability, all against real servers on
//! loopback (TLS, a real SQLite file).

mod authorize;
mod binary;
mod clients;
mod common;
mod dirsrv;
mod ldap;
mod lifecycle;
mod store_suite;
