//! Client-certificate authentication (decisions.md §12, `POST /vedauth/authorize/certificate`):
//! the parts the TLS listener and the certificate grant call.
//!
//! - [`config`]: `CertificateConfiguration` as the admin API carries it;
//! - [`issuers`]: the trusted issuers, read from a PEM bundle, named by SHA-256 fingerprint;
//! - [`handshake`]: the rustls verifier and server configuration that ask for an optional client
//!   certificate; [`PresentedChain`] is what the listener hands on with each request;
//! - [`forwarded`]: a certificate forwarded by a trusted TLS-terminating proxy, and the stripping
//!   of such headers from everyone else;
//! - [`validate()`]: at grant time, the chain to a trusted issuer and the identity it names.
//!
//! docs/certificate-auth.md describes it for operators.

pub mod chain;
pub mod config;
pub mod error;
pub mod extract;
pub mod forwarded;
pub mod handshake;
pub mod issuers;
pub mod validate;

pub use chain::{ChainSource, PresentedChain};
pub use config::{CertificateConfiguration, SourceField};
pub use error::{CertAuthError, Refusal};
pub use extract::{extract_identity, CertIdentity};
pub use forwarded::{
    client_chain, forwarded_chain, strip_forwarded_headers, ForwardedCertConfig, ForwardedError,
    ForwardedFormat,
};
pub use handshake::{client_cert_verifier, server_config, ChainCheck, HandshakeConfigError};
pub use issuers::{IssuerError, TrustedIssuer, TrustedIssuers};
pub use validate::{validate, verify_chain, TrustedChain, ValidatedCertificate};
