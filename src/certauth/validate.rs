//! The grant-time check of a presented chain: validity window, a path to a trusted issuer, then
//! the identity.

use std::time::Duration;

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::chain::{ChainSource, PresentedChain};
use super::config::CertificateConfiguration;
use super::error::CertAuthError;
use super::extract::{extract_identity, CertIdentity};
use super::issuers::{sha256_hex, TrustedIssuers};
use crate::clock::UnixTime;

/// Longest chain looked at (leaf and intermediates); longer ones are refused before any work.
pub const MAX_CHAIN_LEN: usize = 8;

/// A certificate that passed: who it names and the facts the audit trail records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedCertificate {
    pub identity: CertIdentity,
    /// The leaf's subject DN.
    pub subject: String,
    /// The leaf's issuer DN.
    pub issuer: String,
    /// The leaf's serial number, hex bytes separated by `:`.
    pub serial: String,
    /// SHA-256 of the leaf, lowercase hex.
    pub fingerprint: String,
    pub not_after: UnixTime,
    /// The fingerprint of the trusted issuer the chain ended on.
    pub trusted_issuer: String,
    pub source: ChainSource,
}

/// A chain that passed the trust checks, before any identity is read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedChain {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub fingerprint: String,
    pub not_after: UnixTime,
    pub trusted_issuer: String,
}

/// The whole check the certificate grant runs: [`verify_chain`], then [`extract_identity`].
/// `now` comes from the caller's clock.
pub fn validate(
    chain: Option<&PresentedChain>,
    issuers: &TrustedIssuers,
    config: &CertificateConfiguration,
    now: UnixTime,
) -> Result<ValidatedCertificate, CertAuthError> {
    let chain = chain.ok_or(CertAuthError::NoCertificate)?;
    let trusted = verify_chain(chain.leaf(), chain.intermediates(), issuers, now)?;
    let leaf = parse(chain.leaf())?;
    let identity = extract_identity(&leaf, config)?;
    Ok(ValidatedCertificate {
        identity,
        subject: trusted.subject,
        issuer: trusted.issuer,
        serial: trusted.serial,
        fingerprint: trusted.fingerprint,
        not_after: trusted.not_after,
        trusted_issuer: trusted.trusted_issuer,
        source: chain.source(),
    })
}

fn parse<'a>(der: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, CertAuthError> {
    match X509Certificate::from_der(der.as_ref()) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(CertAuthError::Malformed(
            "trailing bytes after the certificate".into(),
        )),
        Err(e) => Err(CertAuthError::Malformed(e.to_string())),
    }
}

/// RFC 3339 for messages; the number if it is out of range.
pub(crate) fn rfc3339(t: UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// The trust checks, in this order: the leaf can be read; `now` is inside its validity window;
/// if it has a keyUsage extension, that allows digital signatures (what a TLS client key does);
/// a path to one of `issuers` exists through the presented intermediates (built by
/// rustls-webpki, which checks every signature, the CA flag and path length of each
/// intermediate, the validity of each certificate on the path, name constraints, and an
/// extended key usage, where one is present, that allows client authentication); and the
/// trusted issuer at the end of the path is itself inside its validity window at `now`.
/// Revocation (CRL, OCSP) is not checked.
pub fn verify_chain(
    leaf_der: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    issuers: &TrustedIssuers,
    now: UnixTime,
) -> Result<TrustedChain, CertAuthError> {
    if intermediates.len() + 1 > MAX_CHAIN_LEN {
        return Err(CertAuthError::BadChain(format!(
            "{} certificates presented; at most {MAX_CHAIN_LEN} are looked at",
            intermediates.len() + 1
        )));
    }
    let leaf = parse(leaf_der)?;
    let subject = leaf.subject().to_string();
    let issuer = leaf.issuer().to_string();
    let validity = leaf.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    if now < not_before {
        return Err(CertAuthError::NotYetValid {
            subject,
            not_before: rfc3339(not_before),
        });
    }
    if now > not_after {
        return Err(CertAuthError::Expired {
            subject,
            not_after: rfc3339(not_after),
        });
    }
    if let Ok(Some(ku)) = leaf.key_usage() {
        if !ku.value.digital_signature() {
            return Err(CertAuthError::BadChain(
                "the certificate's keyUsage does not allow digital signatures".into(),
            ));
        }
    }

    let ee = webpki::EndEntityCert::try_from(leaf_der)
        .map_err(|e| CertAuthError::Malformed(format!("{e:?}")))?;
    let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    let time = rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(
        u64::try_from(now).unwrap_or(0),
    ));
    let path = ee
        .verify_for_usage(
            algs.all,
            issuers.anchors(),
            intermediates,
            time,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| chain_error(e, &subject, &issuer))?;

    let anchor = issuers.issuer_of_anchor(path.anchor()).ok_or_else(|| {
        CertAuthError::BadChain("the path ended on an issuer that is not configured".into())
    })?;
    if now > anchor.not_after() {
        return Err(CertAuthError::BadChain(format!(
            "the trusted issuer {} expired at {}",
            anchor.subject(),
            rfc3339(anchor.not_after())
        )));
    }
    if now < anchor.not_before() {
        return Err(CertAuthError::BadChain(format!(
            "the trusted issuer {} is not valid before {}",
            anchor.subject(),
            rfc3339(anchor.not_before())
        )));
    }
    Ok(TrustedChain {
        serial: leaf.raw_serial_as_string(),
        fingerprint: sha256_hex(leaf_der.as_ref()),
        not_after,
        trusted_issuer: anchor.fingerprint().to_string(),
        subject,
        issuer,
    })
}

fn chain_error(e: webpki::Error, subject: &str, issuer: &str) -> CertAuthError {
    use webpki::Error as W;
    match e {
        W::UnknownIssuer => CertAuthError::UntrustedIssuer {
            subject: subject.to_string(),
            issuer: issuer.to_string(),
        },
        // The leaf's own window was checked before; this is an intermediate's.
        W::CertExpired { .. } | W::CertNotValidYet { .. } => CertAuthError::BadChain(
            "an intermediate certificate is outside its validity window".into(),
        ),
        W::RequiredEkuNotFoundContext(_) => CertAuthError::BadChain(
            "an extended key usage on the path does not allow client authentication".into(),
        ),
        W::InvalidSignatureForPublicKey => CertAuthError::BadChain(
            "a signature on the path does not verify: the issuer's name matches a trusted or \
             presented CA, but not its key"
                .into(),
        ),
        W::CaUsedAsEndEntity => {
            CertAuthError::BadChain("the presented certificate is a CA certificate".into())
        }
        W::BadDer | W::BadDerTime | W::TrailingData(_) => {
            CertAuthError::Malformed(format!("{e:?}"))
        }
        other => CertAuthError::BadChain(format!("{other:?}")),
    }
}
