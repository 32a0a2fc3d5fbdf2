//! Why a certificate did not yield an identity: the real reason for the audit trail, and the
//! documented answer for the client (decisions.md §12).

use super::forwarded::ForwardedError;

/// A certificate refusal. The message is for the audit trail and logs; clients see only
/// [`CertAuthError::refusal`]'s fixed text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertAuthError {
    #[error("no client certificate was presented")]
    NoCertificate,
    #[error("the client certificate cannot be read: {0}")]
    Malformed(String),
    #[error("the client certificate ({subject}) expired at {not_after}")]
    Expired { subject: String, not_after: String },
    #[error("the client certificate ({subject}) is not valid before {not_before}")]
    NotYetValid { subject: String, not_before: String },
    #[error(
        "the client certificate ({subject}, issued by {issuer}) does not chain to a trusted issuer"
    )]
    UntrustedIssuer { subject: String, issuer: String },
    #[error("the client certificate's chain is not acceptable: {0}")]
    BadChain(String),
    #[error("the forwarded client certificate is not usable: {0}")]
    Forwarded(#[from] ForwardedError),
    #[error("the client certificate does not name an identity: {0}")]
    NoIdentity(String),
}

/// The three answers a client can get (decisions.md §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400 `invalid_request` "No client certificate was presented".
    NoCertificate,
    /// 401 `invalid_grant` "Client certificate is not trusted".
    NotTrusted,
    /// 401 `invalid_grant` "Certificate does not map to a known identity".
    NoIdentity,
}

impl Refusal {
    pub const fn status(self) -> u16 {
        match self {
            Self::NoCertificate => 400,
            Self::NotTrusted | Self::NoIdentity => 401,
        }
    }
    /// The OAuth `error` code.
    pub const fn error(self) -> &'static str {
        match self {
            Self::NoCertificate => "invalid_request",
            Self::NotTrusted | Self::NoIdentity => "invalid_grant",
        }
    }
    /// The fixed `error_description`.
    pub const fn description(self) -> &'static str {
        match self {
            Self::NoCertificate => "No client certificate was presented",
            Self::NotTrusted => "Client certificate is not trusted",
            Self::NoIdentity => "Certificate does not map to a known identity",
        }
    }
}

impl CertAuthError {
    /// The audit trail's word for the cause.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::NoCertificate => "no_certificate",
            Self::Malformed(_) => "malformed_certificate",
            Self::Expired { .. } => "certificate_expired",
            Self::NotYetValid { .. } => "certificate_not_yet_valid",
            Self::UntrustedIssuer { .. } => "untrusted_issuer",
            Self::BadChain(_) => "bad_chain",
            Self::Forwarded(_) => "bad_forwarded_certificate",
            Self::NoIdentity(_) => "no_mappable_identity",
        }
    }

    /// What the client is told. A certificate that cannot be read, a bad chain and a forwarded
    /// header that cannot be read are all "not trusted": the client did present something, and
    /// vedauth will not say which check failed.
    pub fn refusal(&self) -> Refusal {
        match self {
            Self::NoCertificate => Refusal::NoCertificate,
            Self::NoIdentity(_) => Refusal::NoIdentity,
            Self::Malformed(_)
            | Self::Expired { .. }
            | Self::NotYetValid { .. }
            | Self::UntrustedIssuer { .. }
            | Self::BadChain(_)
            | Self::Forwarded(_) => Refusal::NotTrusted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_has_its_documented_answer() {
        let cases = [
            (
                CertAuthError::NoCertificate,
                400,
                "invalid_request",
                "No client certificate was presented",
            ),
            (
                CertAuthError::Malformed("x".into()),
                401,
                "invalid_grant",
                "Client certificate is not trusted",
            ),
            (
                CertAuthError::Expired {
                    subject: "CN=a".into(),
                    not_after: "t".into(),
                },
                401,
                "invalid_grant",
                "Client certificate is not trusted",
            ),
            (
                CertAuthError::NotYetValid {
                    subject: "CN=a".into(),
                    not_before: "t".into(),
                },
                401,
                "invalid_grant",
                "Client certificate is not trusted",
            ),
            (
                CertAuthError::UntrustedIssuer {
                    subject: "CN=a".into(),
                    issuer: "CN=b".into(),
                },
                401,
                "invalid_grant",
                "Client certificate is not trusted",
            ),
            (
                CertAuthError::BadChain("x".into()),
                401,
                "invalid_grant",
                "Client certificate is not trusted",
            ),
            (
                CertAuthError::NoIdentity("x".into()),
                401,
                "invalid_grant",
                "Certificate does not map to a known identity",
            ),
        ];
        let mut words = std::collections::HashSet::new();
        for (e, status, error, text) in cases {
            let r = e.refusal();
            assert_eq!(
                (r.status(), r.error(), r.description()),
                (status, error, text),
                "{e}"
            );
            assert!(
                words.insert(e.cause()),
                "duplicate audit word {}",
                e.cause()
            );
        }
    }
}
