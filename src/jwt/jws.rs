//! Compact JWS (RFC 7515) parsing, the public keys of a JWK Set (RFC 7517, 7518, 8037) and
//! signature verification with `ring`.
//!
//! Why not the `jsonwebtoken` crate: its releases from 10 on have no `ring` backend (aws-lc-rs,
//! or RustCrypto's rsa + p256 + p384 + ed25519-dalek: about twenty more crates to build), and
//! 9.3, the last on ring, is a line no longer developed whose claim checks read the system clock
//! (time is a parameter here) and whose `crypto::verify` reaches an `unreachable!` when given an
//! HMAC algorithm with a key built from an RSA JWK. What the grant needs from it (split,
//! base64url, JSON, the JWK-to-key conversion) is small; the cryptography is ring's, already built
//! for rustls, so this module costs no new crate.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

use super::JwtError;

/// Longest token accepted (bytes). Kubernetes and CI tokens are 1–2 KiB; Entra tokens with
/// group claims reach ~8 KiB.
pub const MAX_TOKEN_LEN: usize = 32 * 1024;
/// Most keys read from one JWK Set; the rest are ignored. Bounds the work of a token without `kid`.
pub const MAX_KEYS: usize = 64;

/// The signature algorithms a JWT grant accepts. `none` and the HMAC family never are: the
/// issuer's keys are public, so an HMAC "signature" made with one proves nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// What kind of key an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Algorithm {
    pub const ALL: [Algorithm; 9] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// The JOSE name (`alg`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The algorithm a token's `alg` names, if it is one of those allowed.
    pub fn from_header(alg: &str) -> Result<Self, JwtError> {
        if let Some(a) = Self::ALL.into_iter().find(|a| a.name() == alg) {
            return Ok(a);
        }
        Err(JwtError::AlgorithmNotAllowed(
            if alg.eq_ignore_ascii_case("none") {
                "alg \"none\": the token is not signed".to_string()
            } else if alg.starts_with("HS") {
                format!("alg {alg:?}: HMAC is never accepted (the issuer's keys are public)")
            } else {
                format!("alg {:?} is not one of the allowed algorithms", clip(alg))
            },
        ))
    }

    fn key_kind(self) -> KeyKind {
        match self {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyKind::Rsa,
            Algorithm::ES256 => KeyKind::P256,
            Algorithm::ES384 => KeyKind::P384,
            Algorithm::EdDSA => KeyKind::Ed25519,
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed compact JWS whose signature has not been checked yet.
#[derive(Debug)]
pub struct Jws<'a> {
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`, the bytes the signature covers.
    signing_input: &'a str,
    signature_part: &'a str,
    pub alg: String,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    signature: Vec<u8>,
}

fn b64(part: &str, what: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| JwtError::Malformed(format!("{what} is not base64url: {e}")))
}

fn json_object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, JwtError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(JwtError::Malformed(format!("{what} is not a JSON object"))),
        Err(e) => Err(JwtError::Malformed(format!("{what} is not JSON: {e}"))),
    }
}

/// Splits and decodes a compact JWS. Surrounding whitespace (a pasted newline) is ignored;
/// anything else that is not three canonical base64url parts with JSON-object header and
/// payload is refused.
pub fn parse(token: &str) -> Result<Jws<'_>, JwtError> {
    let token = token.trim_matches(|c: char| c.is_ascii_whitespace());
    if token.is_empty() {
        return Err(JwtError::Malformed("empty token".into()));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::Malformed(format!(
            "token is {} bytes, more than {MAX_TOKEN_LEN}",
            token.len()
        )));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed(
            "not a compact JWS (three dot-separated parts); JWE is not accepted".into(),
        ));
    };
    let header = json_object(&b64(h, "header")?, "header")?;
    let claims = json_object(&b64(p, "payload")?, "payload")?;
    let signature = b64(s, "signature")?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => a.clone(),
        Some(_) => return Err(JwtError::Malformed("header alg is not a string".into())),
        None => return Err(JwtError::Malformed("header has no alg".into())),
    };
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(JwtError::Malformed("header kid is not a string".into())),
    };
    // RFC 7515 §4.1.11: extensions listed as critical must be understood; we implement none
    // (this also refuses RFC 7797's unencoded payloads).
    if header.contains_key("crit") {
        return Err(JwtError::Malformed(
            "header lists critical extensions (crit), which are not supported".into(),
        ));
    }
    Ok(Jws {
        signing_input: &token[..h.len() + 1 + p.len()],
        signature_part: s,
        alg,
        kid,
        claims,
        signature,
    })
}

/// One public key from a JWK Set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub kid: Option<String>,
    /// The JWK's own `alg`, when it names one: the key is then used with that algorithm only.
    alg: Option<Algorithm>,
    material: Material,
}

#[derive(Clone, PartialEq, Eq)]
enum Material {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// SEC1 uncompressed point: 0x04 || x || y.
    P256(Vec<u8>),
    P384(Vec<u8>),
    Ed25519(Vec<u8>),
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

impl Material {
    fn kind(&self) -> KeyKind {
        match self {
            Material::Rsa { .. } => KeyKind::Rsa,
            Material::P256(_) => KeyKind::P256,
            Material::P384(_) => KeyKind::P384,
            Material::Ed25519(_) => KeyKind::Ed25519,
        }
    }
    fn describe(&self) -> &'static str {
        match self {
            Material::Rsa { .. } => "RSA",
            Material::P256(_) => "EC P-256",
            Material::P384(_) => "EC P-384",
            Material::Ed25519(_) => "OKP Ed25519",
        }
    }
}

impl PublicKey {
    /// Whether this key may check a signature made with `alg`: the right kind of key, and the
    /// JWK's `alg` (if any) the same.
    pub fn fits(&self, alg: Algorithm) -> bool {
        self.material.kind() == alg.key_kind() && self.alg.is_none_or(|a| a == alg)
    }

    /// Checks `signature` over `message` with this key. A key that does not fit `alg` verifies
    /// nothing.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        if !self.fits(alg) {
            return false;
        }
        let rsa = |params: &'static sig::RsaParameters, n: &[u8], e: &[u8]| {
            RsaPublicKeyComponents { n, e }
                .verify(params, message, signature)
                .is_ok()
        };
        match (&self.material, alg) {
            (Material::Rsa { n, e }, Algorithm::RS256) => {
                rsa(&sig::RSA_PKCS1_2048_8192_SHA256, n, e)
            }
            (Material::Rsa { n, e }, Algorithm::RS384) => {
                rsa(&sig::RSA_PKCS1_2048_8192_SHA384, n, e)
            }
            (Material::Rsa { n, e }, Algorithm::RS512) => {
                rsa(&sig::RSA_PKCS1_2048_8192_SHA512, n, e)
            }
            (Material::Rsa { n, e }, Algorithm::PS256) => rsa(&sig::RSA_PSS_2048_8192_SHA256, n, e),
            (Material::Rsa { n, e }, Algorithm::PS384) => rsa(&sig::RSA_PSS_2048_8192_SHA384, n, e),
            (Material::Rsa { n, e }, Algorithm::PS512) => rsa(&sig::RSA_PSS_2048_8192_SHA512, n, e),
            (Material::P256(point), Algorithm::ES256) => {
                UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            (Material::P384(point), Algorithm::ES384) => {
                UnparsedPublicKey::new(&sig::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            (Material::Ed25519(x), Algorithm::EdDSA) => UnparsedPublicKey::new(&sig::ED25519, x)
                .verify(message, signature)
                .is_ok(),
            _ => false,
        }
    }

    /// "RSA", "EC P-256", … for messages.
    pub fn describe(&self) -> &'static str {
        self.material.describe()
    }

    /// Reads one JWK. `Ok(None)` for a key that is well-formed but not for us (an encryption
    /// key, an HMAC secret, a curve or algorithm we do not accept); `Err` for a broken one.
    pub fn from_jwk(jwk: &Map<String, Value>) -> Result<Option<Self>, String> {
        let text = |name: &str| -> Result<Option<&str>, String> {
            match jwk.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(format!("{name} is not a string")),
            }
        };
        let bytes = |name: &str| -> Result<Vec<u8>, String> {
            let s = text(name)?.ok_or_else(|| format!("{name} missing"))?;
            URL_SAFE_NO_PAD
                .decode(s)
                .map_err(|e| format!("{name} is not base64url: {e}"))
        };
        let kid = text("kid")?.map(str::to_string);
        if text("use")?.is_some_and(|u| u != "sig") {
            return Ok(None);
        }
        if let Some(ops) = jwk.get("key_ops") {
            let verify = ops
                .as_array()
                .is_some_and(|a| a.iter().any(|o| o.as_str() == Some("verify")));
            if !verify {
                return Ok(None);
            }
        }
        let alg = match text("alg")? {
            None => None,
            Some(a) => match Algorithm::from_header(a) {
                Ok(a) => Some(a),
                Err(_) => return Ok(None),
            },
        };
        let material = match text("kty")? {
            Some("RSA") => {
                let n = strip_zeros(bytes("n")?);
                let e = strip_zeros(bytes("e")?);
                // ring's verification limits: 2048..=8192-bit moduli.
                if !(256..=1024).contains(&n.len()) {
                    return Err(format!(
                        "RSA modulus of {} bits (2048 to 8192 accepted)",
                        n.len() * 8
                    ));
                }
                if e.is_empty() || e.len() > 4 {
                    return Err("RSA exponent out of range".into());
                }
                Material::Rsa { n, e }
            }
            Some("EC") => {
                let (len, p384) = match text("crv")? {
                    Some("P-256") => (32, false),
                    Some("P-384") => (48, true),
                    _ => return Ok(None),
                };
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != len || y.len() != len {
                    return Err("EC coordinates of the wrong length for the curve".into());
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                if p384 {
                    Material::P384(point)
                } else {
                    Material::P256(point)
                }
            }
            Some("OKP") => {
                if text("crv")? != Some("Ed25519") {
                    return Ok(None);
                }
                let x = bytes("x")?;
                if x.len() != 32 {
                    return Err("Ed25519 key is not 32 bytes".into());
                }
                Material::Ed25519(x)
            }
            Some(_) => return Ok(None),
            None => return Err("kty missing".into()),
        };
        let key = PublicKey { kid, alg, material };
        if let Some(a) = key.alg {
            if !key.fits(a) {
                return Err(format!("alg {a} does not suit a {} key", key.describe()));
            }
        }
        Ok(Some(key))
    }
}

fn strip_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let lead = v.iter().take_while(|b| **b == 0).count();
    v.drain(..lead);
    v
}

/// The usable signing keys of one JWK Set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    pub keys: Vec<PublicKey>,
    /// Keys present but not usable here (encryption keys, other curves, broken entries).
    pub skipped: usize,
}

impl KeySet {
    /// Reads a JWK Set document (`{"keys": [...]}`). Keys that are not for signature
    /// verification with an allowed algorithm are skipped; a set left with no key is an error,
    /// as is a document that is not a JWK Set.
    pub fn from_json(body: &[u8]) -> Result<Self, String> {
        let doc: Value =
            serde_json::from_slice(body).map_err(|e| format!("JWK Set is not JSON: {e}"))?;
        let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
            return Err("JWK Set has no \"keys\" array".into());
        };
        let mut set = KeySet::default();
        for jwk in keys {
            if set.keys.len() == MAX_KEYS {
                set.skipped += 1;
                continue;
            }
            match jwk.as_object().map(PublicKey::from_jwk) {
                Some(Ok(Some(k))) => set.keys.push(k),
                Some(Ok(None)) => set.skipped += 1,
                Some(Err(e)) => {
                    tracing::debug!(reason = %e, "JWK skipped");
                    set.skipped += 1;
                }
                None => set.skipped += 1,
            }
        }
        if set.keys.is_empty() {
            return Err(format!(
                "JWK Set holds no usable signing key ({} skipped)",
                set.skipped
            ));
        }
        Ok(set)
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Why a signature check failed, before the caller turns it into a [`JwtError`].
#[derive(Debug, PartialEq, Eq)]
pub enum SignatureFailure {
    /// The token's `kid` is not in the set.
    UnknownKid(String),
    /// No key of the kind the algorithm needs (token without `kid`).
    NoKeyForAlgorithm(Algorithm),
    /// The key named by `kid` is of another kind or pinned to another algorithm.
    KeyDoesNotFit {
        kid: String,
        alg: Algorithm,
        key: &'static str,
    },
    /// Keys were tried and none verified.
    Mismatch,
}

impl<'a> Jws<'a> {
    /// The signature as it appears in the token (base64url).
    pub fn signature_b64(&self) -> &'a str {
        self.signature_part
    }

    /// Verifies the signature with the key named by `kid`, or, without `kid`, with each key
    /// that fits the algorithm.
    pub fn verify_with(&self, alg: Algorithm, keys: &KeySet) -> Result<(), SignatureFailure> {
        let message = self.signing_input.as_bytes();
        match &self.kid {
            Some(kid) => {
                let named: Vec<&PublicKey> = keys
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .collect();
                let Some(first) = named.first() else {
                    return Err(SignatureFailure::UnknownKid(kid.clone()));
                };
                let fitting: Vec<&&PublicKey> = named.iter().filter(|k| k.fits(alg)).collect();
                if fitting.is_empty() {
                    return Err(SignatureFailure::KeyDoesNotFit {
                        kid: kid.clone(),
                        alg,
                        key: first.describe(),
                    });
                }
                if fitting
                    .iter()
                    .any(|k| k.verify(alg, message, &self.signature))
                {
                    Ok(())
                } else {
                    Err(SignatureFailure::Mismatch)
                }
            }
            None => {
                let mut tried = false;
                for k in keys.keys.iter().filter(|k| k.fits(alg)) {
                    tried = true;
                    if k.verify(alg, message, &self.signature) {
                        return Ok(());
                    }
                }
                Err(if tried {
                    SignatureFailure::Mismatch
                } else {
                    SignatureFailure::NoKeyForAlgorithm(alg)
                })
            }
        }
    }
}

/// At most 64 characters of a value for a message (the audit trail keeps reasons short).
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};
    use serde_json::json;

    fn enc(v: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    fn compact(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let input = format!(
            "{}.{}",
            enc(header.to_string().as_bytes()),
            enc(claims.to_string().as_bytes())
        );
        let s = sign(input.as_bytes());
        format!("{input}.{}", enc(&s))
    }

    fn es256() -> (EcdsaKeyPair, Value) {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp =
            EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .unwrap();
        let pt = kp.public_key().as_ref();
        let jwk =
            json!({"kty":"EC","crv":"P-256","kid":"ec1","x":enc(&pt[1..33]),"y":enc(&pt[33..])});
        (kp, jwk)
    }

    fn ed25519() -> (Ed25519KeyPair, Value) {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk =
            json!({"kty":"OKP","crv":"Ed25519","kid":"ed1","x":enc(kp.public_key().as_ref())});
        (kp, jwk)
    }

    fn set(keys: Vec<Value>) -> KeySet {
        KeySet::from_json(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

    #[test]
    fn parse_splits_decodes_and_keeps_the_signing_input() {
        let t = compact(
            &json!({"alg":"ES256","kid":"k","typ":"JWT"}),
            &json!({"iss":"https://i","sub":"s"}),
            |_| vec![1, 2, 3],
        );
        let padded = format!("  {t}\n");
        let jws = parse(&padded).unwrap();
        assert_eq!(jws.alg, "ES256");
        assert_eq!(jws.kid.as_deref(), Some("k"));
        assert_eq!(jws.claims["sub"], "s");
        assert_eq!(jws.signature, vec![1, 2, 3]);
        assert_eq!(jws.signing_input, t.rsplit_once('.').unwrap().0);
    }

    #[test]
    fn parse_refuses_what_is_not_a_compact_jws() {
        let h = enc(br#"{"alg":"RS256"}"#);
        let p = enc(br#"{"iss":"x"}"#);
        let cases = [
            String::new(),
            "abc".to_string(),
            format!("{h}.{p}"),
            format!("{h}.{p}.sig.extra"),
            format!("{h}.{p}.a*b"),
            format!("{h}=.{p}.AA"),
            format!("{}.{p}.AA", enc(b"[1]")),
            format!("{}.{p}.AA", enc(b"{\"alg\":1}")),
            format!("{}.{p}.AA", enc(b"{\"typ\":\"JWT\"}")),
            format!("{}.{p}.AA", enc(b"{\"alg\":\"RS256\",\"kid\":7}")),
            format!(
                "{}.{p}.AA",
                enc(b"{\"alg\":\"RS256\",\"crit\":[\"b64\"],\"b64\":false}")
            ),
            format!("{h}.{}.AA", enc(b"\"just a string\"")),
            format!("{h}.{}.AA", enc(b"not json")),
            format!("{h}.{p}.{}", "A".repeat(MAX_TOKEN_LEN)),
        ];
        for c in cases {
            match parse(&c) {
                Err(JwtError::Malformed(_)) => {}
                other => panic!("{c:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn algorithm_allow_list() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_header(a.name()).unwrap(), a);
        }
        for bad in [
            "none", "None", "HS256", "HS384", "HS512", "ES512", "RS1", "",
        ] {
            assert!(
                matches!(
                    Algorithm::from_header(bad),
                    Err(JwtError::AlgorithmNotAllowed(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn jwk_set_reading_skips_what_is_not_a_signing_key() {
        let (_, ec) = es256();
        let (_, ed) = ed25519();
        let doc = json!({"keys":[
            ec,
            ed,
            {"kty":"oct","k":"c2VjcmV0"},
            {"kty":"EC","crv":"P-521","x":"AA","y":"AA"},
            {"kty":"OKP","crv":"X25519","x":enc(&[0u8;32])},
            {"kty":"RSA","use":"enc","n":enc(&[1u8;256]),"e":"AQAB"},
            {"kty":"RSA","n":enc(&[1u8;128]),"e":"AQAB"},
            {"kty":"RSA","alg":"RSA-OAEP","n":enc(&[1u8;256]),"e":"AQAB"},
            {"kty":"RSA","key_ops":["encrypt"],"n":enc(&[1u8;256]),"e":"AQAB"},
            {"kty":"RSA","n":enc(&[1u8;256]),"e":"AQAB","kid":"rsa"},
            {"kty":"EC","crv":"P-256","alg":"ES384","x":enc(&[1u8;32]),"y":enc(&[1u8;32])},
            "not an object"
        ]});
        let set = KeySet::from_json(doc.to_string().as_bytes()).unwrap();
        let kids: Vec<_> = set.keys.iter().map(|k| k.kid.clone()).collect();
        assert_eq!(
            kids,
            vec![Some("ec1".into()), Some("ed1".into()), Some("rsa".into())]
        );
        assert_eq!(set.skipped, 9);
        assert!(set.has_kid("rsa") && !set.has_kid("nope"));
        assert!(KeySet::from_json(b"{\"keys\":[]}").is_err());
        assert!(KeySet::from_json(b"{}").is_err());
        assert!(KeySet::from_json(b"nope").is_err());
    }

    #[test]
    fn signatures_verify_with_the_named_key_only() {
        let (ec, ec_jwk) = es256();
        let (ed, ed_jwk) = ed25519();
        let rng = SystemRandom::new();
        let keys = set(vec![ec_jwk.clone(), ed_jwk.clone()]);

        let t = compact(&json!({"alg":"ES256","kid":"ec1"}), &json!({}), |m| {
            ec.sign(&rng, m).unwrap().as_ref().to_vec()
        });
        assert_eq!(
            parse(&t).unwrap().verify_with(Algorithm::ES256, &keys),
            Ok(())
        );

        let t = compact(&json!({"alg":"EdDSA","kid":"ed1"}), &json!({}), |m| {
            ed.sign(m).as_ref().to_vec()
        });
        assert_eq!(
            parse(&t).unwrap().verify_with(Algorithm::EdDSA, &keys),
            Ok(())
        );

        // Without kid: every fitting key is tried.
        let t = compact(&json!({"alg":"EdDSA"}), &json!({}), |m| {
            ed.sign(m).as_ref().to_vec()
        });
        assert_eq!(
            parse(&t).unwrap().verify_with(Algorithm::EdDSA, &keys),
            Ok(())
        );

        // A tampered payload.
        let t = compact(&json!({"alg":"EdDSA","kid":"ed1"}), &json!({"a":1}), |m| {
            ed.sign(m).as_ref().to_vec()
        });
        let (hp, s) = t.rsplit_once('.').unwrap();
        let (h, _) = hp.split_once('.').unwrap();
        let forged = format!("{h}.{}.{s}", enc(b"{\"a\":2}"));
        assert_eq!(
            parse(&forged).unwrap().verify_with(Algorithm::EdDSA, &keys),
            Err(SignatureFailure::Mismatch)
        );

        // An EdDSA token naming the EC key.
        let t = compact(&json!({"alg":"EdDSA","kid":"ec1"}), &json!({}), |m| {
            ed.sign(m).as_ref().to_vec()
        });
        assert!(matches!(
            parse(&t).unwrap().verify_with(Algorithm::EdDSA, &keys),
            Err(SignatureFailure::KeyDoesNotFit { .. })
        ));

        let t = compact(&json!({"alg":"ES256","kid":"other"}), &json!({}), |m| {
            ec.sign(&rng, m).unwrap().as_ref().to_vec()
        });
        assert_eq!(
            parse(&t).unwrap().verify_with(Algorithm::ES256, &keys),
            Err(SignatureFailure::UnknownKid("other".into()))
        );

        let only_ed = set(vec![ed_jwk]);
        let t = compact(&json!({"alg":"ES256"}), &json!({}), |m| {
            ec.sign(&rng, m).unwrap().as_ref().to_vec()
        });
        assert_eq!(
            parse(&t).unwrap().verify_with(Algorithm::ES256, &only_ed),
            Err(SignatureFailure::NoKeyForAlgorithm(Algorithm::ES256))
        );

        // A JWK pinned to another algorithm of the same kind does not fit.
        let mut pinned = ec_jwk;
        pinned["alg"] = json!("ES256");
        let k = PublicKey::from_jwk(pinned.as_object().unwrap())
            .unwrap()
            .unwrap();
        assert!(k.fits(Algorithm::ES256) && !k.fits(Algorithm::ES384));
    }

    #[test]
    fn clip_keeps_messages_short() {
        assert_eq!(clip("abc"), "abc");
        let long = "é".repeat(100);
        assert_eq!(clip(&long).chars().count(), 65);
    }
}
