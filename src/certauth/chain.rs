//! The certificate chain a request presented, as the listener hands it to the grant.

use std::sync::Arc;

use rustls_pki_types::CertificateDer;

use super::forwarded::ForwardedFormat;
use super::issuers::sha256_hex;

/// Where a presented chain came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainSource {
    /// The client's own TLS handshake with vedauth.
    Tls,
    /// A header set by a trusted TLS-terminating proxy.
    Forwarded(ForwardedFormat),
}

/// The certificates a client presented: the leaf first, then whatever intermediates it sent, in
/// its order. Only possession of the leaf's key is established (by the TLS handshake, or by the
/// proxy's); nothing about trust. [`super::validate`] decides that. Cheap to clone: the listener
/// puts one in each request's extensions.
#[derive(Debug, Clone)]
pub struct PresentedChain {
    certs: Arc<[CertificateDer<'static>]>,
    source: ChainSource,
}

impl PresentedChain {
    /// `None` for an empty list.
    pub fn new(certs: Vec<CertificateDer<'static>>, source: ChainSource) -> Option<Self> {
        (!certs.is_empty()).then(|| Self {
            certs: certs.into(),
            source,
        })
    }

    /// The chain of a finished server handshake; `None` when the client sent no certificate.
    /// rustls records it only after the client's CertificateVerify signature checked out.
    pub fn from_tls(conn: &rustls::ServerConnection) -> Option<Self> {
        Self::new(conn.peer_certificates()?.to_vec(), ChainSource::Tls)
    }

    pub fn leaf(&self) -> &CertificateDer<'static> {
        // `new` refuses an empty list, so there is always a first certificate; an empty slice
        // here could only come from a bug, and is answered like any unusable chain downstream.
        static NONE: CertificateDer<'static> = CertificateDer::from_slice(&[]);
        self.certs.first().unwrap_or(&NONE)
    }

    /// The certificates after the leaf.
    pub fn intermediates(&self) -> &[CertificateDer<'static>] {
        self.certs.get(1..).unwrap_or(&[])
    }

    /// All certificates, the leaf first.
    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    pub fn source(&self) -> ChainSource {
        self.source
    }

    /// SHA-256 of the leaf, lowercase hex: how the audit trail names the certificate.
    pub fn leaf_fingerprint(&self) -> String {
        sha256_hex(self.leaf().as_ref())
    }
}
