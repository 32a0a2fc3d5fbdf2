//! Client-certificate authentication (src/certauth): certificates made with rcgen, validation at
//! grant time, forwarded-certificate headers, and a real rustls server with real clients.

mod admin;
mod directory;
mod forwarded;
pub mod grant;
pub mod pki;
mod tls;
mod validate;
