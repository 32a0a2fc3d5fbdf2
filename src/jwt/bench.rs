//! The benchmark hook: a verifier with keys already cached and one signed token per measured
//! algorithm, so that `benches/load.rs` can time JWT verification next to a bare `ring`
//! signature check over the same bytes with the same key.
//!
//! The ES256 and EdDSA keys are made at start. ring cannot make RSA keys, so the RS256 case is
//! a fixed public key and a token signed once with its (discarded) private key; its `exp` is in
//! 2100 and the hook's `now` is fixed, so it never expires.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::json;

use super::{
    Algorithm, FetchTrust, JwtAccepted, JwtConfiguration, JwtError, JwtMapping, JwtVerifier,
    MappingSet,
};
use crate::clock::UnixTime;

const ISSUER: &str = "https://bench.vedauth.invalid";
const NOW: UnixTime = 1_800_000_000;
const RSA_N: &str = "tfKyD3WsuHZCV4R5vVh3HY7rAICy69kVZjaeZbFVUaw8_1BemRhQCNdooD0ny9u1uBceNhh1q7pn9_eaMUJfeQfho15JpJmwzaw0QqMbLLOHlM5HXa_MZ2f7ZrsxIshDvS-RQ9HP0Ex0AKgRwrahSxHM3prh9lnkrUBurS3ldtcfyo6wdMi7Ug0I-YDETgt5GfzWv-eRe5MN928sflqIRry5vE_NJGxijyNh1sSb03hUwK80_-y_Hr6ELszIIc96kx4J6j-0-97tZyTPpQftThg6sro_H21ENITVigiJSDV0d0-f1OC_DUf4bV0d8RdaFuBy3qSE3VPdSeL3Fi2Www";
const RS256_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImJlbmNoLXJzYSIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2JlbmNoLnZlZGF1dGguaW52YWxpZCIsImF1ZCI6InZlZGF1dGgiLCJzdWIiOiJiZW5jaC11c2VyIiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjQxMDI0NDQ4MDB9.Xt_3UcTXfc3wpYseQsDSTbImij-xh4b0LMZ_WF0TOUxz86cwgYIOT5LKBndjNASTm4VVmHs5k6Y0XJ5vmecS3ao-Bj5iouXQfc36JNmKSfEa5BYv9A6w-hWdgOk-N-k6_IjOLn436X_vsgL4dN9c0iyxo5F7zeSoA020h6mz_pYbfyDTaFnwfpTgrThoJXt0xudTS_Fe2DDvHHhJ7cEfgQgAB5nbXUnSZuuJxW1kkjMX257ljYu6wwuEg_TfsU7WYuCAZ1Rc6f6cKWbygZ9dpqJG3F1FYxol2G5waEQu6hGTKP0B4SxiGxiw-qhnln_r8eyfR5cfb-uuECHZMGpTRg";

/// The algorithms the hook measures.
pub const BENCH_ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

struct Case {
    alg: Algorithm,
    token: String,
    /// For the bare check: the signed bytes, the signature, the public key.
    message: Vec<u8>,
    signature: Vec<u8>,
    public: Public,
}

enum Public {
    Rsa(Vec<u8>, Vec<u8>),
    Point(Vec<u8>),
}

/// A verifier with cached keys and a token per algorithm (see the module's doc).
pub struct JwtBench {
    verifier: JwtVerifier,
    cases: Vec<Case>,
}

impl std::fmt::Debug for JwtBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtBench").finish_non_exhaustive()
    }
}

/// A measured loop: how many calls in how long.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub count: u64,
    pub elapsed: Duration,
}

impl Rate {
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn enc(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn signed(
    header: serde_json::Value,
    claims: &serde_json::Value,
    mut sign: impl FnMut(&[u8]) -> Vec<u8>,
) -> (String, Vec<u8>, Vec<u8>) {
    let input = format!(
        "{}.{}",
        enc(header.to_string().as_bytes()),
        enc(claims.to_string().as_bytes())
    );
    let s = sign(input.as_bytes());
    (format!("{input}.{}", enc(&s)), input.into_bytes(), s)
}

fn split(token: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let (input, s) = token.rsplit_once('.').ok_or("bad fixed token")?;
    let s = URL_SAFE_NO_PAD.decode(s).map_err(|e| e.to_string())?;
    Ok((input.as_bytes().to_vec(), s))
}

impl JwtBench {
    pub fn new() -> Result<Self, String> {
        let e = |x: &dyn std::fmt::Display| x.to_string();
        let rng = SystemRandom::new();
        let claims = json!({"iss": ISSUER, "aud": "vedauth", "sub": "bench-user",
                            "iat": 1_700_000_000, "exp": 4_102_444_800_i64});

        let ec_pkcs8 = EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|x| e(&x))?;
        let ec = EcdsaKeyPair::from_pkcs8(
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            ec_pkcs8.as_ref(),
            &rng,
        )
        .map_err(|x| e(&x))?;
        let ec_point = ec.public_key().as_ref().to_vec();
        let mut ec_err = None;
        let (ec_token, ec_msg, ec_sig) = signed(
            json!({"alg":"ES256","kid":"bench-ec"}),
            &claims,
            |m| match ec.sign(&rng, m) {
                Ok(s) => s.as_ref().to_vec(),
                Err(x) => {
                    ec_err = Some(x.to_string());
                    Vec::new()
                }
            },
        );
        if let Some(x) = ec_err {
            return Err(x);
        }

        let ed_pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|x| e(&x))?;
        let ed = Ed25519KeyPair::from_pkcs8(ed_pkcs8.as_ref()).map_err(|x| e(&x))?;
        let ed_x = ed.public_key().as_ref().to_vec();
        let (ed_token, ed_msg, ed_sig) =
            signed(json!({"alg":"EdDSA","kid":"bench-ed"}), &claims, |m| {
                ed.sign(m).as_ref().to_vec()
            });

        let (rs_msg, rs_sig) = split(RS256_TOKEN)?;
        let rsa_n = URL_SAFE_NO_PAD.decode(RSA_N).map_err(|x| e(&x))?;

        let jwks = json!({"keys": [
            {"kty":"RSA","kid":"bench-rsa","n":RSA_N,"e":"AQAB"},
            {"kty":"EC","crv":"P-256","kid":"bench-ec","x":enc(&ec_point[1..33]),"y":enc(&ec_point[33..])},
            {"kty":"OKP","crv":"Ed25519","kid":"bench-ed","x":enc(&ed_x)},
        ]});
        let config = JwtConfiguration::default();
        let mapping = JwtMapping {
            name: "bench".into(),
            issuer_uri: ISSUER.into(),
            jwks_uri: Some(format!("{ISSUER}/jwks")),
            purpose_field: "aud".into(),
            purpose_match: "vedauth".into(),
            id_field: "sub".into(),
            id_match: "(.+)".into(),
            grantee_prefixed_universal: None,
        };
        let mappings =
            MappingSet::new(&[mapping], &config.cache_configuration).map_err(|x| e(&x))?;
        let trust = FetchTrust {
            system_roots: false,
            extra_ca_pem: None,
        };
        let verifier = JwtVerifier::new(config, mappings, &trust).map_err(|x| e(&x))?;
        verifier.preload_keys(ISSUER, jwks.to_string().as_bytes(), NOW)?;
        let bench = Self {
            verifier,
            cases: vec![
                Case {
                    alg: Algorithm::RS256,
                    token: RS256_TOKEN.to_string(),
                    message: rs_msg,
                    signature: rs_sig,
                    public: Public::Rsa(rsa_n, vec![1, 0, 1]),
                },
                Case {
                    alg: Algorithm::ES256,
                    token: ec_token,
                    message: ec_msg,
                    signature: ec_sig,
                    public: Public::Point(ec_point),
                },
                Case {
                    alg: Algorithm::EdDSA,
                    token: ed_token,
                    message: ed_msg,
                    signature: ed_sig,
                    public: Public::Point(ed_x),
                },
            ],
        };
        for alg in BENCH_ALGORITHMS {
            bench.verify_once(alg).map_err(|x| format!("{alg}: {x}"))?;
            if !bench.bare_verify_once(alg) {
                return Err(format!("{alg}: bare check failed"));
            }
        }
        Ok(bench)
    }

    fn case(&self, alg: Algorithm) -> Option<&Case> {
        self.cases.iter().find(|c| c.alg == alg)
    }

    /// The signed token for `alg` (RS256, ES256 or EdDSA).
    pub fn token(&self, alg: Algorithm) -> Option<&str> {
        self.case(alg).map(|c| c.token.as_str())
    }

    /// One full verification (parse, issuer, keys from the cache, signature, times, mapping).
    pub fn verify_once(&self, alg: Algorithm) -> Result<JwtAccepted, JwtError> {
        let token = self
            .token(alg)
            .ok_or_else(|| JwtError::AlgorithmNotAllowed(format!("{alg} is not measured")))?;
        self.verifier.verify_cached(token, NOW)
    }

    /// One bare ring check of the same signature with the same key, as the verifier calls it.
    pub fn bare_verify_once(&self, alg: Algorithm) -> bool {
        let Some(c) = self.case(alg) else {
            return false;
        };
        match (&c.public, alg) {
            (Public::Rsa(n, e), _) => sig::RsaPublicKeyComponents { n, e }
                .verify(&sig::RSA_PKCS1_2048_8192_SHA256, &c.message, &c.signature)
                .is_ok(),
            (Public::Point(p), Algorithm::ES256) => {
                sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, p)
                    .verify(&c.message, &c.signature)
                    .is_ok()
            }
            (Public::Point(p), _) => sig::UnparsedPublicKey::new(&sig::ED25519, p)
                .verify(&c.message, &c.signature)
                .is_ok(),
        }
    }

    /// Calls [`JwtBench::verify_once`] (or, `bare`, [`JwtBench::bare_verify_once`]) until
    /// `max_time` has passed or `max_count` calls were made. Stops at the first failure.
    pub fn measure(&self, alg: Algorithm, bare: bool, max_time: Duration, max_count: u64) -> Rate {
        let start = Instant::now();
        let mut count = 0;
        while count < max_count && start.elapsed() < max_time {
            let ok = if bare {
                self.bare_verify_once(alg)
            } else {
                self.verify_once(alg).is_ok()
            };
            if !ok {
                break;
            }
            count += 1;
        }
        Rate {
            count,
            elapsed: start.elapsed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_verifies_and_a_changed_signature_does_not() {
        let b = JwtBench::new().unwrap();
        for alg in BENCH_ALGORITHMS {
            let ok = b.verify_once(alg).unwrap();
            assert_eq!(ok.identity, "bench-user");
            assert_eq!(ok.alg, alg);
            let r = b.measure(alg, false, Duration::from_secs(5), 3);
            assert_eq!(r.count, 3);
        }
        // A different character in the middle of the signature.
        let mut forged = RS256_TOKEN.as_bytes().to_vec();
        let i = forged.len() - 20;
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(matches!(
            b.verifier.verify_cached(&forged, NOW),
            Err(JwtError::BadSignature(_))
        ));
    }
}
