//! The refresh grace window (`tokens.refresh_grace_secs`). A client that loses the answer to a
//! refresh (a dropped connection, a second replica racing the first) presents the old refresh
//! token again; within the window it gets the same new pair instead of `invalid_grant`.
//!
//! Tokens are stored only as digests, so the pair is kept sealed (ChaCha20-Poly1305) under a key
//! derived (HKDF-SHA256) from the old refresh token itself: only whoever holds that token can
//! open it, not a reader of the database. Each key seals exactly one answer (a refresh token
//! rotates once), so a fixed nonce is safe. The sealed row lives in the store, so the retry may
//! land on any node.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use ring::hkdf;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::secret::Secret;

const SALT: &[u8] = b"vedauth refresh grace v1";

/// The answer of one refresh: the new pair and when its access token expires.
#[derive(Debug, Clone)]
pub(crate) struct Pair {
    pub access: Secret,
    pub refresh: Secret,
}

#[derive(Serialize, Deserialize)]
struct Plain {
    a: String,
    r: String,
}

fn key(old_refresh: &Secret, grant_id: &str) -> Option<LessSafeKey> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(old_refresh.expose().as_bytes());
    let info = [grant_id.as_bytes()];
    let okm = prk.expand(&info, &CHACHA20_POLY1305).ok()?;
    Some(LessSafeKey::new(UnboundKey::from(okm)))
}

fn nonce() -> Nonce {
    Nonce::assume_unique_for_key([0u8; 12])
}

/// The pair sealed for the holder of `old_refresh`; None only if sealing itself fails.
pub(crate) fn seal(old_refresh: &Secret, grant_id: &str, pair: &Pair) -> Option<Vec<u8>> {
    let key = key(old_refresh, grant_id)?;
    let mut buf = serde_json::to_vec(&Plain {
        a: pair.access.expose().to_string(),
        r: pair.refresh.expose().to_string(),
    })
    .ok()?;
    key.seal_in_place_append_tag(nonce(), Aad::from(grant_id.as_bytes()), &mut buf)
        .ok()?;
    Some(buf)
}

/// The pair, if `old_refresh` is the token it was sealed for.
pub(crate) fn open(old_refresh: &Secret, grant_id: &str, sealed: &[u8]) -> Option<Pair> {
    let key = key(old_refresh, grant_id)?;
    let mut buf = sealed.to_vec();
    let plain = key
        .open_in_place(nonce(), Aad::from(grant_id.as_bytes()), &mut buf)
        .ok()?;
    let p: Plain = serde_json::from_slice(plain).ok()?;
    Some(Pair {
        access: Secret::new(p.a),
        refresh: Secret::new(p.r),
    })
}

/// When a sealed answer made at `now` stops being kept.
pub(crate) fn until(now: UnixTime, grace_secs: u64) -> UnixTime {
    now.saturating_add(i64::try_from(grace_secs).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_old_token_opens_the_answer_for_its_grant() {
        let old = Secret::new("old-refresh-token-value");
        let pair = Pair {
            access: Secret::new("new-access"),
            refresh: Secret::new("new-refresh"),
        };
        let sealed = seal(&old, "g1", &pair).unwrap_or_default();
        assert!(!sealed.is_empty());
        assert!(!String::from_utf8_lossy(&sealed).contains("new-access"));
        let back = open(&old, "g1", &sealed).map(|p| (p.access, p.refresh));
        assert_eq!(
            back.map(|(a, r)| (a.expose().to_string(), r.expose().to_string())),
            Some(("new-access".to_string(), "new-refresh".to_string()))
        );
        assert!(open(&Secret::new("another-token"), "g1", &sealed).is_none());
        assert!(open(&old, "g2", &sealed).is_none());
        let mut tampered = sealed.clone();
        tampered[0] ^= 1;
        assert!(open(&old, "g1", &tampered).is_none());
    }
}
