//! The TLS side: asking for an optional client certificate in the first handshake (rustls cannot
//! renegotiate as IIS does), with the trusted issuers named in the CertificateRequest.
//!
//! By default ([`ChainCheck::AtGrant`]) the handshake accepts a client certificate from any CA
//! and leaves the chain to [`super::validate`], so that a client whose certificate is untrusted,
//! expired or not yet valid gets the grant's documented JSON answer (401 "Client certificate is
//! not trusted") instead of a TLS alert its HTTP library reports as a connection error. This does
//! not weaken the proof of possession: rustls checks the client's CertificateVerify signature
//! against the leaf's public key through `verify_tls12_signature` / `verify_tls13_signature` after
//! `verify_client_cert` has returned, whatever that decided (rustls `server/tls12.rs` and
//! `server/tls13.rs`, `ExpectCertificateVerify`), and it records the chain as the peer's only after
//! that signature checked out. A client that holds someone's certificate but not the key fails
//! the handshake. What is deferred is only the question whether the certificate is trusted, and
//! no request gets an identity without [`super::validate`] answering it.
//!
//! [`ChainCheck::AtHandshake`] is the stricter alternative: rustls's own `WebPkiClientVerifier`
//! refuses an untrusted chain with a TLS alert (for a dedicated mutual-TLS listener, say).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, ServerConfig,
    SignatureScheme,
};

use super::issuers::TrustedIssuers;

/// Where the chain of a client certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChainCheck {
    /// Any client certificate is accepted at the handshake (its key's possession is still
    /// proven); [`super::validate`] checks the chain when the grant runs. The default.
    #[default]
    AtGrant,
    /// An untrusted, expired or not-yet-valid certificate fails the handshake.
    AtHandshake,
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeConfigError {
    #[error(
        "no trusted issuers are configured; client certificates are requested only when some are"
    )]
    NoTrustedIssuers,
    #[error("TLS configuration: {0}")]
    Tls(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The verifier that requests an optional client certificate, naming `issuers` as acceptable
/// CAs. Refuses an empty issuer set: with no CA hints, browsers would offer every certificate
/// they hold, and no certificate could be trusted anyway.
pub fn client_cert_verifier(
    issuers: &TrustedIssuers,
    check: ChainCheck,
) -> Result<Arc<dyn ClientCertVerifier>, HandshakeConfigError> {
    if issuers.is_empty() {
        return Err(HandshakeConfigError::NoTrustedIssuers);
    }
    let roots = Arc::new(issuers.root_store());
    let provider = provider();
    match check {
        ChainCheck::AtHandshake => WebPkiClientVerifier::builder_with_provider(roots, provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| HandshakeConfigError::Tls(e.to_string())),
        ChainCheck::AtGrant => Ok(Arc::new(DeferredChainVerifier {
            hints: roots.subjects(),
            algs: provider.signature_verification_algorithms,
        })),
    }
}

/// A server configuration like the listener's own (ring, TLS 1.3 and 1.2, ALPN h2 and
/// http/1.1) that also asks for an optional client certificate. `resolver` is the listener's
/// certificate source (`tls::CertStore`), so certificate reloads keep working.
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    issuers: &TrustedIssuers,
    check: ChainCheck,
) -> Result<ServerConfig, HandshakeConfigError> {
    let verifier = client_cert_verifier(issuers, check)?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| HandshakeConfigError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Accepts any well-formed client certificate at the handshake and checks the handshake
/// signature made with its key; the chain is judged later (see the module comment).
#[derive(Debug)]
struct DeferredChainVerifier {
    hints: Vec<DistinguishedName>,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for DeferredChainVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        // Garbage is refused here already: its key could not sign anything checkable.
        webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
