//! vedauth: a VEDauth-compatible token authorization server.
//!
//! The crate is laid out by domain; see ARCHITECTURE.md for the map and the invariants.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![deny(unsafe_code)]

pub mod admin;
pub mod assembly;
pub mod audit;
pub mod bootstrap;
pub mod certauth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod grants;
pub mod heap;
pub mod http;
pub mod identity;
pub mod jwt;
pub mod lockout;
pub mod net;
pub mod password;
pub mod runtime;
pub mod scope;
pub mod secret;
pub mod server;
pub mod services;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod version;
pub mod wire_time;
