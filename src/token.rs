//! Access and refresh tokens: 16 bytes from the OS CSPRNG, standard base64 (24 characters
//! ending in `==`, which pyVenafi requires). Only their SHA-256 digests are ever stored.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// SHA-256 of a token; the only form in which a token reaches the store or the audit log.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenDigest(pub [u8; 32]);

impl TokenDigest {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(b).ok().map(Self)
    }
    /// Constant-time equality, for the rare place a digest is compared outside an index lookup.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A short prefix is enough to correlate log lines and reveals nothing usable.
        write!(f, "TokenDigest({}..)", &self.to_hex()[..12])
    }
}

/// A freshly minted token and its digest.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub value: Secret,
    pub digest: TokenDigest,
}

pub fn generate() -> IssuedToken {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    let value = STANDARD.encode(bytes);
    let digest = TokenDigest::of(&value);
    IssuedToken {
        value: Secret::new(value),
        digest,
    }
}

/// 16 random bytes as URL-safe text: a one-off value (a form's nonce) that is no grant's token.
/// Grant tokens are minted by the grant pipeline alone, with `generate`.
pub fn nonce() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether a presented string has the shape of a vedauth token. Anything else cannot be one,
/// so callers reject it without touching the store.
pub fn looks_like_token(s: &str) -> bool {
    match s.as_bytes().split_at_checked(22) {
        Some((body, b"==")) => body.iter().all(|c| BASE64[usize::from(*c)]),
        _ => false,
    }
}

/// The standard base64 alphabet as a table: one load per character on every verify, where
/// the three range tests cost ten instructions a character (callgrind).
const BASE64: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
        c += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_wire_shape_and_differ() {
        let a = generate();
        let b = generate();
        assert_eq!(a.value.expose().len(), 24);
        assert!(a.value.expose().ends_with("=="));
        assert!(looks_like_token(a.value.expose()));
        assert_ne!(a.value.expose(), b.value.expose());
        assert_eq!(a.digest, TokenDigest::of(a.value.expose()));
        assert!(a.digest.ct_eq(&TokenDigest::of(a.value.expose())));
        assert!(!a.digest.ct_eq(&b.digest));
    }

    #[test]
    fn shape_check_rejects_other_strings() {
        assert!(looks_like_token("KT2EEVTIjWM/37L78dqJAg=="));
        assert!(!looks_like_token("KT2EEVTIjWM/37L78dqJAg="));
        assert!(!looks_like_token("KT2EEVTIjWM/37L78dqJA!=="));
        assert!(!looks_like_token(""));
        assert!(!looks_like_token("KT2EEVTIjWM_37L78dqJAg=="));
        assert!(!looks_like_token("KT2EEVTIjWM=37L78dqJAg=="));
        assert!(!looks_like_token("KT2EEVTIjWM/37L78dqJAg==="));
        assert!(!looks_like_token("+/09azAZ+/09azAZ+/09az=A"));
        assert!(looks_like_token("+/09azAZ+/09azAZ+/09az=="));
        assert!(!looks_like_token("ééééééééééééééééééééé=="));
    }
}
