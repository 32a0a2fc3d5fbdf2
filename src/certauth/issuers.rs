//! The trusted issuers: the CA certificates whose client certificates may obtain a token.

use rustls::RootCertStore;
use rustls_pki_types::pem::{self, SectionKind};
use rustls_pki_types::{CertificateDer, TrustAnchor};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate, X509Version};

use crate::clock::UnixTime;

/// Why a trusted-issuer bundle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerError {
    #[error("the bundle holds no certificate")]
    Empty,
    #[error("the bundle is not valid PEM: {0}")]
    Pem(String),
    #[error("the bundle holds a {0} section; only CERTIFICATE sections belong in it")]
    NotACertificate(String),
    #[error("certificate {index} of the bundle cannot be read: {reason}")]
    Unreadable { index: usize, reason: String },
    #[error("certificate {index} of the bundle ({subject}) is not a CA certificate: {reason}")]
    NotCa {
        index: usize,
        subject: String,
        reason: String,
    },
    #[error("no trusted issuer has the fingerprint '{0}'")]
    UnknownIssuer(String),
}

/// One trusted issuer certificate.
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    fingerprint: String,
    subject: String,
    not_before: UnixTime,
    not_after: UnixTime,
    der: CertificateDer<'static>,
}

impl TrustedIssuer {
    /// SHA-256 of the DER certificate, lowercase hex without separators: the issuer's name in
    /// `AuthorizedIssuerDns` and on the command line.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    /// The subject DN as `CN=…, O=…` (in certificate order), for people and the audit trail.
    pub fn subject(&self) -> &str {
        &self.subject
    }
    pub fn not_before(&self) -> UnixTime {
        self.not_before
    }
    pub fn not_after(&self) -> UnixTime {
        self.not_after
    }
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }
}

/// The set of trusted issuers; a client certificate must chain to one of them.
#[derive(Debug, Clone, Default)]
pub struct TrustedIssuers {
    issuers: Vec<TrustedIssuer>,
    // In the same order as `issuers`.
    anchors: Vec<TrustAnchor<'static>>,
}

impl TrustedIssuers {
    pub fn empty() -> Self {
        Self::default()
    }

    /// Reads a PEM bundle of CA certificates. Every certificate must be a CA (basicConstraints
    /// cA, or an X.509 v1 certificate, which predates the extension); a private key or any other
    /// section in the bundle is refused rather than skipped. Duplicates collapse into one.
    pub fn from_pem(bundle: &[u8]) -> Result<Self, IssuerError> {
        let mut rd = bundle;
        let mut certs = Vec::new();
        loop {
            match pem::from_buf(&mut rd) {
                Ok(Some((SectionKind::Certificate, der))) => certs.push(CertificateDer::from(der)),
                Ok(Some((kind, _))) => {
                    return Err(IssuerError::NotACertificate(format!("{kind:?}")))
                }
                Ok(None) => break,
                Err(e) => return Err(IssuerError::Pem(e.to_string())),
            }
        }
        Self::from_der(certs)
    }

    /// As [`Self::from_pem`], from DER certificates.
    pub fn from_der(
        certs: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<Self, IssuerError> {
        let mut set = Self::default();
        for (i, der) in certs.into_iter().enumerate() {
            let issuer = read_issuer(i + 1, der)?;
            set.push(issuer)?;
        }
        if set.issuers.is_empty() {
            return Err(IssuerError::Empty);
        }
        Ok(set)
    }

    fn push(&mut self, issuer: TrustedIssuer) -> Result<(), IssuerError> {
        if self.find(&issuer.fingerprint).is_some() {
            return Ok(());
        }
        let anchor = webpki::anchor_from_trusted_cert(&issuer.der)
            .map_err(|e| IssuerError::Unreadable {
                index: self.issuers.len() + 1,
                reason: format!("not usable as a trust anchor: {e}"),
            })?
            .to_owned();
        self.anchors.push(anchor);
        self.issuers.push(issuer);
        Ok(())
    }

    /// This set plus `other`'s issuers (adding a bundle to the configured ones).
    pub fn merged(&self, other: &TrustedIssuers) -> TrustedIssuers {
        let mut out = self.clone();
        for (issuer, anchor) in other.issuers.iter().zip(&other.anchors) {
            if out.find(&issuer.fingerprint).is_none() {
                out.issuers.push(issuer.clone());
                out.anchors.push(anchor.clone());
            }
        }
        out
    }

    /// The issuers named by `ids` (fingerprints, in any of the spellings
    /// [`normalize_fingerprint`] reads): what `setconfiguration` with an `AuthorizedIssuerDns`
    /// list leaves trusted. A name that matches no issuer is an error; it may not add one.
    pub fn select(&self, ids: &[String]) -> Result<TrustedIssuers, IssuerError> {
        let mut out = TrustedIssuers::default();
        for id in ids {
            let i = self
                .position(id)
                .ok_or_else(|| IssuerError::UnknownIssuer(id.clone()))?;
            if out.find(&self.issuers[i].fingerprint).is_none() {
                out.issuers.push(self.issuers[i].clone());
                out.anchors.push(self.anchors[i].clone());
            }
        }
        Ok(out)
    }

    fn position(&self, id: &str) -> Option<usize> {
        let fp = normalize_fingerprint(id)?;
        self.issuers.iter().position(|i| i.fingerprint == fp)
    }

    /// The issuer with this fingerprint.
    pub fn find(&self, id: &str) -> Option<&TrustedIssuer> {
        self.position(id).map(|i| &self.issuers[i])
    }

    pub fn issuers(&self) -> &[TrustedIssuer] {
        &self.issuers
    }

    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    pub fn len(&self) -> usize {
        self.issuers.len()
    }

    /// What `CertificateConfiguration.AuthorizedIssuerDns` echoes: the fingerprints.
    pub fn authorized_issuer_dns(&self) -> Vec<String> {
        self.issuers.iter().map(|i| i.fingerprint.clone()).collect()
    }

    /// The set as one PEM bundle (for storage); [`Self::from_pem`] reads it back.
    pub fn to_pem(&self) -> String {
        use base64::Engine as _;
        let mut out = String::new();
        for i in &self.issuers {
            let b64 = base64::engine::general_purpose::STANDARD.encode(i.der.as_ref());
            out.push_str("-----BEGIN CERTIFICATE-----\n");
            for line in b64.as_bytes().chunks(64) {
                out.push_str(&String::from_utf8_lossy(line));
                out.push('\n');
            }
            out.push_str("-----END CERTIFICATE-----\n");
        }
        out
    }

    pub(crate) fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// The issuer behind a trust anchor that path building ended on.
    pub(crate) fn issuer_of_anchor(&self, anchor: &TrustAnchor<'_>) -> Option<&TrustedIssuer> {
        self.anchors
            .iter()
            .position(|a| {
                a.subject.as_ref() == anchor.subject.as_ref()
                    && a.subject_public_key_info.as_ref() == anchor.subject_public_key_info.as_ref()
            })
            .map(|i| &self.issuers[i])
    }

    /// The roots rustls uses to verify at the handshake and to name acceptable CAs in the
    /// CertificateRequest.
    pub(crate) fn root_store(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.extend(self.anchors.iter().cloned());
        roots
    }
}

fn read_issuer(index: usize, der: CertificateDer<'static>) -> Result<TrustedIssuer, IssuerError> {
    let unreadable = |reason: String| IssuerError::Unreadable { index, reason };
    let (rest, cert) =
        X509Certificate::from_der(der.as_ref()).map_err(|e| unreadable(e.to_string()))?;
    if !rest.is_empty() {
        return Err(unreadable("trailing bytes after the certificate".into()));
    }
    let subject = cert.subject().to_string();
    let not_ca = |reason: &str| IssuerError::NotCa {
        index,
        subject: subject.clone(),
        reason: reason.to_string(),
    };
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        Ok(Some(_)) => return Err(not_ca("basicConstraints says cA is false")),
        Ok(None) if cert.version() == X509Version::V1 => {}
        Ok(None) => return Err(not_ca("it has no basicConstraints extension")),
        Err(e) => return Err(unreadable(e.to_string())),
    }
    if let Ok(Some(ku)) = cert.key_usage() {
        if !ku.value.key_cert_sign() {
            return Err(not_ca("its keyUsage does not allow signing certificates"));
        }
    }
    let validity = cert.validity();
    Ok(TrustedIssuer {
        fingerprint: sha256_hex(der.as_ref()),
        subject,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        der,
    })
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A SHA-256 fingerprint in the spellings people paste: any case, with or without `:` between
/// bytes, with or without a `sha256:` prefix. `None` unless it is 32 bytes of hex.
pub fn normalize_fingerprint(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s
        .strip_prefix("sha256:")
        .or_else(|| s.strip_prefix("SHA256:"))
        .unwrap_or(s);
    let hex: String = s
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_spellings() {
        let plain = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(
            normalize_fingerprint(&plain).as_deref(),
            Some(plain.as_str())
        );
        assert_eq!(
            normalize_fingerprint(&colons).as_deref(),
            Some(plain.as_str())
        );
        assert_eq!(
            normalize_fingerprint(&format!("sha256:{plain}")).as_deref(),
            Some(plain.as_str())
        );
        assert_eq!(normalize_fingerprint("abcd"), None);
        assert_eq!(normalize_fingerprint(&"zz".repeat(32)), None);
    }

    #[test]
    fn sha256_hex_is_lowercase_hex() {
        // SHA-256 of the empty string.
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn bundles_without_certificates_or_with_keys_are_refused() {
        assert_eq!(
            TrustedIssuers::from_pem(b"").unwrap_err(),
            IssuerError::Empty
        );
        assert_eq!(
            TrustedIssuers::from_pem(b"just some text\n").unwrap_err(),
            IssuerError::Empty
        );
        let key = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            TrustedIssuers::from_pem(key),
            Err(IssuerError::NotACertificate(_))
        ));
        let junk = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            TrustedIssuers::from_pem(junk),
            Err(IssuerError::Unreadable { index: 1, .. })
        ));
    }
}
