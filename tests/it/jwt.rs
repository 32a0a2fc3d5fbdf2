//! The JWT grant's core (src/jwt/) against real key servers: HTTPS on loopback with a test CA
//! made by rcgen, JWK Sets served directly and behind OIDC discovery, tokens signed here with
//! RS256/PS256 (a committed test-only RSA key: ring cannot generate RSA keys), ES256 and
//! EdDSA (keys made by each test). Time is passed in; the servers count their requests.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use vedauth::jwt::{
    FetchTrust, IdentitySource, JwtAccepted, JwtConfiguration, JwtError, JwtMapping, JwtVerifier,
    MappingError, MappingSet, MemoryReplayGuard, ReplayError, ReplayGuard,
};

/// A fixed "now" for the tokens and the cache (2030-03-17).
const NOW: i64 = 1_900_000_000;
const TEST_RSA_KEY: &str = include_str!("fixtures/jwt-test-rsa.pem");

// ---------------------------------------------------------------- certificates

pub(crate) struct TestCa {
    pub(crate) pem: String,
    cert: rcgen::Certificate,
    key: KeyPair,
}

pub(crate) fn test_ca(name: &str) -> TestCa {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    TestCa {
        pem: cert.pem(),
        cert,
        key,
    }
}

fn server_tls(ca: &TestCa) -> Arc<rustls::ServerConfig> {
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let chain = vec![CertificateDer::from(cert.der().to_vec())];
    let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    Arc::new(cfg)
}

// ---------------------------------------------------------------- the key server

#[derive(Default)]
pub(crate) struct ServerState {
    pub(crate) jwks: Value,
    /// The `issuer` the discovery document claims (None: the one asked about).
    pub(crate) discovery_issuer: Option<String>,
    cache_control: Option<String>,
    hits: HashMap<String, u64>,
}

/// A JWKS/OIDC server on 127.0.0.1: `/jwks`, `/moved` (302 to `/jwks`) and
/// `<issuer path>/.well-known/openid-configuration` (pointing at `/jwks`).
pub(crate) struct KeyServer {
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) state: Arc<Mutex<ServerState>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl KeyServer {
    pub(crate) async fn start(ca: &TestCa) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), Some(server_tls(ca))).await
    }

    async fn start_plain() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), None).await
    }

    async fn start_on(addr: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let mut s = KeyServer {
            addr,
            tls,
            state: Arc::new(Mutex::new(ServerState {
                jwks: json!({"keys": []}),
                ..Default::default()
            })),
            task: None,
        };
        s.listen().await;
        s
    }

    async fn listen(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.addr = listener.local_addr().unwrap();
        let state = self.state.clone();
        let acceptor = self.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let base = self.base();
        self.task = Some(tokio::spawn(async move {
            // Dropped with the task: stopping the server closes its connections too.
            let mut conns = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                let acceptor = acceptor.clone();
                let base = base.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        let base = base.clone();
                        async move { Ok::<_, Infallible>(answer(&state, &base, req)) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(tcp).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        }));
    }

    pub(crate) fn base(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.addr.port())
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    pub(crate) fn set_keys(&self, keys: &[&TestKey]) {
        self.state.lock().unwrap().jwks =
            json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    }

    pub(crate) fn hits(&self, path: &str) -> u64 {
        self.state
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Closes the listener and every connection: connections are refused until `restart`.
    pub(crate) async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listens again on the same port.
    pub(crate) async fn restart(&mut self) {
        self.listen().await;
    }
}

fn answer(state: &Mutex<ServerState>, base: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let mut st = state.lock().unwrap();
    *st.hits.entry(path.clone()).or_default() += 1;
    let json = |v: &Value, cc: Option<&String>| {
        let mut r = Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(cc) = cc {
            r = r.header(header::CACHE_CONTROL, cc.as_str());
        }
        r.body(Full::new(Bytes::from(v.to_string()))).unwrap()
    };
    if path == "/jwks" {
        return json(&st.jwks, st.cache_control.as_ref());
    }
    if path == "/moved" {
        return Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, "/jwks")
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    if let Some(issuer_path) = path.strip_suffix("/.well-known/openid-configuration") {
        let issuer = st
            .discovery_issuer
            .clone()
            .unwrap_or_else(|| format!("{base}{issuer_path}"));
        return json(
            &json!({"issuer": issuer, "jwks_uri": format!("{base}/jwks"),
                    "response_types_supported": ["id_token"]}),
            None,
        );
    }
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

// ---------------------------------------------------------------- signing keys

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

pub(crate) struct TestKey {
    pub(crate) kid: String,
    signer: Signer,
    jwk: Value,
    /// The public key's DER (for the HMAC-with-the-public-key attack).
    pub(crate) public_der: Vec<u8>,
}

pub(crate) fn enc(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

pub(crate) fn rsa_key(kid: &str) -> TestKey {
    let der = PrivateKeyDer::from_pem_slice(TEST_RSA_KEY.as_bytes()).unwrap();
    let kp = RsaKeyPair::from_pkcs8(der.secret_der()).unwrap();
    let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(kp.public());
    let jwk = json!({"kty":"RSA","kid":kid,"use":"sig","n":enc(&c.n),"e":enc(&c.e)});
    TestKey {
        kid: kid.into(),
        public_der: kp.public().as_ref().to_vec(),
        signer: Signer::Rsa(kp),
        jwk,
    }
}

pub(crate) fn ec_key(kid: &str) -> TestKey {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let kp = EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .unwrap();
    let pt = kp.public_key().as_ref().to_vec();
    let jwk = json!({"kty":"EC","crv":"P-256","kid":kid,"x":enc(&pt[1..33]),"y":enc(&pt[33..])});
    TestKey {
        kid: kid.into(),
        public_der: pt,
        signer: Signer::Ec(kp),
        jwk,
    }
}

pub(crate) fn ed_key(kid: &str) -> TestKey {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let x = kp.public_key().as_ref().to_vec();
    let jwk = json!({"kty":"OKP","crv":"Ed25519","kid":kid,"x":enc(&x)});
    TestKey {
        kid: kid.into(),
        public_der: x,
        signer: Signer::Ed(kp),
        jwk,
    }
}

pub(crate) fn compact(
    header: &Value,
    claims: &Value,
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> String {
    let input = format!(
        "{}.{}",
        enc(header.to_string().as_bytes()),
        enc(claims.to_string().as_bytes())
    );
    let s = sign(input.as_bytes());
    format!("{input}.{}", enc(&s))
}

impl TestKey {
    /// A token signed with this key, its kid in the header.
    pub(crate) fn sign(&self, alg: &str, claims: &Value) -> String {
        self.sign_header(&json!({"alg": alg, "kid": self.kid, "typ": "JWT"}), claims)
    }

    pub(crate) fn sign_header(&self, header: &Value, claims: &Value) -> String {
        let alg = header["alg"].as_str().unwrap().to_string();
        let rng = SystemRandom::new();
        compact(header, claims, |m| match &self.signer {
            Signer::Rsa(kp) => {
                let pad: &'static dyn sig::RsaEncoding = match alg.as_str() {
                    "RS256" => &sig::RSA_PKCS1_SHA256,
                    "RS384" => &sig::RSA_PKCS1_SHA384,
                    "RS512" => &sig::RSA_PKCS1_SHA512,
                    "PS256" => &sig::RSA_PSS_SHA256,
                    "PS512" => &sig::RSA_PSS_SHA512,
                    other => panic!("{other}"),
                };
                let mut out = vec![0; kp.public().modulus_len()];
                kp.sign(pad, &rng, m, &mut out).unwrap();
                out
            }
            Signer::Ec(kp) => kp.sign(&rng, m).unwrap().as_ref().to_vec(),
            Signer::Ed(kp) => kp.sign(m).as_ref().to_vec(),
        })
    }
}

// ---------------------------------------------------------------- verifier set-up

const SUB: &str = "system:serviceaccount:build:deployer";

fn claims(issuer: &str) -> Value {
    json!({"iss": issuer, "aud": ["other", "tpp"], "sub": SUB, "iat": NOW - 5,
           "exp": NOW + 600, "jti": uuid::Uuid::new_v4().to_string()})
}

fn mapping(name: &str, issuer: &str, jwks_uri: Option<String>) -> JwtMapping {
    JwtMapping {
        name: name.into(),
        issuer_uri: issuer.into(),
        jwks_uri,
        purpose_field: "aud".into(),
        purpose_match: "tpp".into(),
        id_field: "sub".into(),
        id_match: "system:serviceaccount:build:(.+)".into(),
        grantee_prefixed_universal: None,
    }
}

fn config() -> JwtConfiguration {
    let mut c = JwtConfiguration::default();
    c.cache_configuration.refresh_delay = 60;
    c.cache_configuration.min_ttl = 300;
    c.cache_configuration.max_ttl = 3600;
    c.cache_configuration.timeout = 5;
    c
}

fn verifier(ca: &TestCa, mappings: &[JwtMapping], config: JwtConfiguration) -> JwtVerifier {
    let set = MappingSet::new(mappings, &config.cache_configuration).unwrap();
    JwtVerifier::new(config, set, &FetchTrust::only(ca.pem.clone())).unwrap()
}

/// The refusal's reason, after checking its audit word.
#[track_caller]
fn refused(r: Result<JwtAccepted, JwtError>, word: &str) -> String {
    match r {
        Err(e) => {
            assert_eq!(e.audit_word(), word, "{e}");
            e.to_string()
        }
        Ok(a) => panic!("accepted, expected {word}: {a:?}"),
    }
}

/// A key server with an issuer at `<base>/issuer` whose keys are at `<base>/jwks`.
struct Setup {
    ca: TestCa,
    server: KeyServer,
    issuer: String,
}

async fn setup() -> Setup {
    let ca = test_ca("jwt test CA");
    let server = KeyServer::start(&ca).await;
    let issuer = server.url("/issuer");
    Setup { ca, server, issuer }
}

// ---------------------------------------------------------------- the tests

#[tokio::test]
async fn tokens_of_each_algorithm_are_accepted_through_a_jwks_uri() {
    let s = setup().await;
    let (rsa, ec, ed) = (rsa_key("rsa-1"), ec_key("ec-1"), ed_key("ed-1"));
    s.server.set_keys(&[&rsa, &ec, &ed]);
    let v = verifier(
        &s.ca,
        &[mapping("k8s", &s.issuer, Some(s.server.url("/jwks")))],
        config(),
    );
    for (key, alg) in [
        (&rsa, "RS256"),
        (&rsa, "RS384"),
        (&rsa, "PS256"),
        (&rsa, "PS512"),
        (&ec, "ES256"),
        (&ed, "EdDSA"),
    ] {
        let c = claims(&s.issuer);
        let ok = v.verify(&key.sign(alg, &c), NOW).await.unwrap();
        assert_eq!(ok.mapping, "k8s", "{alg}");
        assert_eq!(ok.identity, "deployer", "{alg}");
        assert_eq!(ok.identity_source, IdentitySource::Captured);
        assert_eq!(ok.issuer, s.issuer);
        assert_eq!(ok.subject.as_deref(), Some(SUB));
        assert_eq!(ok.jti.as_deref(), c["jti"].as_str());
        assert_eq!(ok.exp, NOW + 600);
        assert_eq!(ok.replay_until, NOW + 600 + 60);
        assert_eq!(ok.alg.name(), alg);
    }
    // A token without kid: each key of the right type is tried.
    let c = claims(&s.issuer);
    let t = ed.sign_header(&json!({"alg": "EdDSA"}), &c);
    assert_eq!(v.verify(&t, NOW).await.unwrap().identity, "deployer");
    // One fetch served all of them; discovery was not used.
    assert_eq!(s.server.hits("/jwks"), 1);
    assert_eq!(s.server.hits("/issuer/.well-known/openid-configuration"), 0);
}

#[tokio::test]
async fn discovery_finds_the_keys_and_its_issuer_must_match() {
    let s = setup().await;
    let ed = ed_key("ed-1");
    s.server.set_keys(&[&ed]);
    let v = verifier(&s.ca, &[mapping("oidc", &s.issuer, None)], config());
    let ok = v
        .verify(&ed.sign("EdDSA", &claims(&s.issuer)), NOW)
        .await
        .unwrap();
    assert_eq!(ok.identity, "deployer");
    assert_eq!(s.server.hits("/issuer/.well-known/openid-configuration"), 1);
    assert_eq!(s.server.hits("/jwks"), 1);

    // A discovery document that names another issuer is refused.
    let s2 = setup().await;
    s2.server.set_keys(&[&ed]);
    s2.server.state.lock().unwrap().discovery_issuer = Some("https://impostor.example".into());
    let v2 = verifier(&s2.ca, &[mapping("oidc", &s2.issuer, None)], config());
    let why = refused(
        v2.verify(&ed.sign("EdDSA", &claims(&s2.issuer)), NOW).await,
        "keys_unreachable",
    );
    assert!(why.contains("impostor.example"), "{why}");
    assert_eq!(s2.server.hits("/jwks"), 0);

    // NoOidcIssuerCheck (tests only) skips that check.
    let mut lax = config();
    lax.cache_configuration.no_oidc_issuer_check = true;
    let v3 = verifier(&s2.ca, &[mapping("oidc", &s2.issuer, None)], lax);
    assert!(v3
        .verify(&ed.sign("EdDSA", &claims(&s2.issuer)), NOW)
        .await
        .is_ok());
}

#[tokio::test]
async fn time_claims_are_checked_with_the_clock_skew() {
    let s = setup().await;
    let ec = ec_key("ec-1");
    s.server.set_keys(&[&ec]);
    let v = verifier(
        &s.ca,
        &[mapping("m", &s.issuer, Some(s.server.url("/jwks")))],
        config(),
    );
    let with = |patch: Value| {
        let mut c = claims(&s.issuer);
        for (k, val) in patch.as_object().unwrap() {
            if val.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = val.clone();
            }
        }
        ec.sign("ES256", &c)
    };
    // Expired beyond the 60 s skew; within it still accepted.
    let why = refused(
        v.verify(&with(json!({"exp": NOW - 61})), NOW).await,
        "expired",
    );
    assert!(why.contains(&(NOW - 61).to_string()), "{why}");
    assert!(v.verify(&with(json!({"exp": NOW - 59})), NOW).await.is_ok());
    // Not yet valid: nbf or iat beyond the skew.
    refused(
        v.verify(&with(json!({"nbf": NOW + 61})), NOW).await,
        "not_yet_valid",
    );
    assert!(v.verify(&with(json!({"nbf": NOW + 59})), NOW).await.is_ok());
    let why = refused(
        v.verify(&with(json!({"iat": NOW + 3600})), NOW).await,
        "not_yet_valid",
    );
    assert!(why.contains("issued in the future"), "{why}");
    // exp is required, and NumericDates are numbers.
    let why = refused(
        v.verify(&with(json!({"exp": null})), NOW).await,
        "invalid_claims",
    );
    assert!(why.contains("exp"), "{why}");
    refused(
        v.verify(&with(json!({"nbf": "soon"})), NOW).await,
        "invalid_claims",
    );
    // A fractional exp is read as its whole seconds.
    assert!(v
        .verify(&with(json!({"exp": (NOW + 10) as f64 + 0.5})), NOW)
        .await
        .is_ok());
}

#[tokio::test]
async fn audience_issuer_and_identity_refusals_name_their_cause() {
    let s = setup().await;
    let rsa = rsa_key("rsa-1");
    s.server.set_keys(&[&rsa]);
    let jwks = Some(s.server.url("/jwks"));
    let mut fixed = mapping("b-fixed", &s.issuer, jwks.clone());
    fixed.purpose_match = "vsign".into();
    fixed.id_match = "repo:acme/app:ref:refs/heads/main".into();
    fixed.grantee_prefixed_universal = Some("local:{5b3c}".into());
    let v = verifier(
        &s.ca,
        &[mapping("a-k8s", &s.issuer, jwks.clone()), fixed],
        config(),
    );

    // Wrong audience: no mapping accepts, and the reason lists each mapping's refusal.
    let mut c = claims(&s.issuer);
    c["aud"] = json!("somebody-else");
    let why = refused(v.verify(&rsa.sign("RS256", &c), NOW).await, "no_mapping");
    assert!(
        why.contains("a-k8s: aud is \"somebody-else\", not \"tpp\""),
        "{why}"
    );
    assert!(why.contains("b-fixed: aud is"), "{why}");

    // IdMatch not matching (whole-value match: a suffix is not enough).
    let mut c = claims(&s.issuer);
    c["sub"] = json!("evil-system:serviceaccount:build:deployer");
    let why = refused(v.verify(&rsa.sign("RS256", &c), NOW).await, "no_mapping");
    assert!(why.contains("does not match IdMatch"), "{why}");

    // The second mapping (in Name order) gives its fixed identity.
    let mut c = claims(&s.issuer);
    c["aud"] = json!("vsign");
    c["sub"] = json!("repo:acme/app:ref:refs/heads/main");
    let ok = v.verify(&rsa.sign("RS256", &c), NOW).await.unwrap();
    assert_eq!(ok.mapping, "b-fixed");
    assert_eq!(ok.identity, "local:{5b3c}");
    assert_eq!(ok.identity_source, IdentitySource::Fixed);

    // Wrong issuer: refused before any key is fetched for it; a trailing slash is another issuer.
    let before = s.server.hits("/jwks");
    for iss in [
        "https://unknown.example".to_string(),
        format!("{}/", s.issuer),
    ] {
        let mut c = claims(&s.issuer);
        c["iss"] = json!(iss);
        let why = refused(
            v.verify(&rsa.sign("RS256", &c), NOW).await,
            "issuer_not_trusted",
        );
        assert!(why.contains(&iss), "{why}");
    }
    let mut c = claims(&s.issuer);
    c.as_object_mut().unwrap().remove("iss");
    refused(
        v.verify(&rsa.sign("RS256", &c), NOW).await,
        "issuer_not_trusted",
    );
    assert_eq!(s.server.hits("/jwks"), before);

    // Not a JWS at all.
    refused(v.verify("not.a-jwt", NOW).await, "malformed");
    refused(v.verify("", NOW).await, "malformed");
}

#[tokio::test]
async fn unsigned_hmac_and_mismatched_algorithms_are_refused() {
    let s = setup().await;
    let (rsa, ec) = (rsa_key("rsa-1"), ec_key("ec-1"));
    s.server.set_keys(&[&rsa, &ec]);
    let v = verifier(
        &s.ca,
        &[mapping("m", &s.issuer, Some(s.server.url("/jwks")))],
        config(),
    );
    let c = claims(&s.issuer);

    // alg none, with and without a signature part.
    let none = compact(&json!({"alg": "none"}), &c, |_| Vec::new());
    let why = refused(v.verify(&none, NOW).await, "algorithm_not_allowed");
    assert!(why.contains("not signed"), "{why}");
    let none_kid = compact(&json!({"alg": "none", "kid": "rsa-1"}), &c, |_| {
        b"x".to_vec()
    });
    refused(v.verify(&none_kid, NOW).await, "algorithm_not_allowed");

    // HS256 keyed with the RSA public key (the classic confusion attack).
    let hs = compact(&json!({"alg": "HS256", "kid": "rsa-1"}), &c, |m| {
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &rsa.public_der);
        ring::hmac::sign(&k, m).as_ref().to_vec()
    });
    let why = refused(v.verify(&hs, NOW).await, "algorithm_not_allowed");
    assert!(why.contains("HS256"), "{why}");

    // An alg that does not suit the key its kid names.
    let t = ec.sign_header(&json!({"alg": "ES256", "kid": "rsa-1"}), &c);
    let why = refused(v.verify(&t, NOW).await, "algorithm_not_allowed");
    assert!(why.contains("RSA"), "{why}");

    // Signed by another key under a known kid.
    let impostor = ec_key("ec-1");
    let why = refused(
        v.verify(&impostor.sign("ES256", &c), NOW).await,
        "bad_signature",
    );
    assert!(why.contains("does not verify"), "{why}");
    // A changed claim under a good signature.
    let good = ec.sign("ES256", &c);
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    let mut forged = c.clone();
    forged["sub"] = json!("system:serviceaccount:build:admin");
    parts[1] = enc(forged.to_string().as_bytes());
    refused(v.verify(&parts.join("."), NOW).await, "bad_signature");
}

#[tokio::test]
async fn an_unknown_kid_refetches_at_most_once_per_refresh_delay() {
    let s = setup().await;
    let (old, new) = (ec_key("2024"), ec_key("2025"));
    s.server.set_keys(&[&old]);
    let v = verifier(
        &s.ca,
        &[mapping("m", &s.issuer, Some(s.server.url("/jwks")))],
        config(),
    );
    v.verify(&old.sign("ES256", &claims(&s.issuer)), NOW)
        .await
        .unwrap();
    assert_eq!(s.server.hits("/jwks"), 1);

    // The issuer rotates: the new kid is unknown, so the keys are fetched again (RefreshDelay
    // after the last fetch) and it is found.
    s.server.set_keys(&[&old, &new]);
    let t = NOW + 60;
    v.verify(&new.sign("ES256", &claims(&s.issuer)), t)
        .await
        .unwrap();
    assert_eq!(s.server.hits("/jwks"), 2);

    // Another unknown kid within RefreshDelay (60 s) of that fetch: no fetch, refused.
    let stranger = ec_key("stranger");
    let why = refused(
        v.verify(&stranger.sign("ES256", &claims(&s.issuer)), t + 59)
            .await,
        "bad_signature",
    );
    assert!(why.contains("no key with kid \"stranger\""), "{why}");
    assert_eq!(s.server.hits("/jwks"), 2);
    // Known kids keep working meanwhile without a fetch.
    v.verify(&old.sign("ES256", &claims(&s.issuer)), t + 59)
        .await
        .unwrap();
    assert_eq!(s.server.hits("/jwks"), 2);

    // After RefreshDelay, one more fetch.
    refused(
        v.verify(&stranger.sign("ES256", &claims(&s.issuer)), t + 60)
            .await,
        "bad_signature",
    );
    assert_eq!(s.server.hits("/jwks"), 3);
    let status = v.key_status();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].fetches, 3);
    assert_eq!(status[0].keys, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tokens_of_one_issuer_share_one_fetch() {
    let s = setup().await;
    let ed = ed_key("ed-1");
    s.server.set_keys(&[&ed]);
    let v = Arc::new(verifier(&s.ca, &[mapping("m", &s.issuer, None)], config()));
    let mut tasks = JoinSet::new();
    for _ in 0..32 {
        let v = v.clone();
        let t = ed.sign("EdDSA", &claims(&s.issuer));
        tasks.spawn(async move { v.verify(&t, NOW).await.map(|a| a.identity) });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap(), "deployer");
    }
    assert_eq!(s.server.hits("/issuer/.well-known/openid-configuration"), 1);
    assert_eq!(s.server.hits("/jwks"), 1);
}

#[tokio::test]
async fn keys_server_down_then_back() {
    let mut s = setup().await;
    let (ec, ec2) = (ec_key("ec-1"), ec_key("ec-2"));
    s.server.set_keys(&[&ec]);
    let m = [mapping("m", &s.issuer, Some(s.server.url("/jwks")))];
    let v = verifier(&s.ca, &m, config());
    v.verify(&ec.sign("ES256", &claims(&s.issuer)), NOW)
        .await
        .unwrap();

    s.server.stop().await;

    // A verifier with nothing cached: keys unreachable, with the connection error as reason.
    let cold = verifier(&s.ca, &m, config());
    let why = refused(
        cold.verify(&ec.sign("ES256", &claims(&s.issuer)), NOW)
            .await,
        "keys_unreachable",
    );
    assert!(why.contains("connecting to"), "{why}");
    // Retries wait for RefreshDelay: within it the last error is given again without a try.
    let why2 = refused(
        cold.verify(&ec.sign("ES256", &claims(&s.issuer)), NOW + 30)
            .await,
        "keys_unreachable",
    );
    assert!(why2.contains("connecting to"), "{why2}");
    assert_eq!(cold.key_status()[0].fetches, 1);

    // The warm verifier: an unknown kid cannot be looked up, which is "unreachable", not "bad".
    refused(
        v.verify(&ec2.sign("ES256", &claims(&s.issuer)), NOW + 100)
            .await,
        "keys_unreachable",
    );
    // Past MaxTtl the keys are due; the refetch fails, and the keys in hand keep working.
    let due = NOW + 3600 + 5;
    let mut c = claims(&s.issuer);
    c["exp"] = json!(due + 600);
    v.verify(&ec.sign("ES256", &c), due).await.unwrap();
    // But not for more than MaxTtl past their time.
    let too_late = NOW + 2 * 3600;
    let mut c = claims(&s.issuer);
    c["exp"] = json!(too_late + 600);
    refused(
        v.verify(&ec.sign("ES256", &c), too_late).await,
        "keys_unreachable",
    );

    // Back up (with a rotated key): after RefreshDelay the next token fetches and succeeds.
    s.server.set_keys(&[&ec, &ec2]);
    s.server.restart().await;
    let back = too_late + 60;
    let mut c = claims(&s.issuer);
    c["exp"] = json!(back + 600);
    assert_eq!(
        v.verify(&ec2.sign("ES256", &c), back)
            .await
            .unwrap()
            .identity,
        "deployer"
    );
    assert!(cold
        .verify(&ec.sign("ES256", &claims(&s.issuer)), NOW + 60)
        .await
        .is_ok());
    assert!(v.key_status()[0].last_error.is_none());
}

#[tokio::test]
async fn a_replayed_jti_is_refused_by_the_replay_guard() {
    let s = setup().await;
    let rsa = rsa_key("rsa-1");
    s.server.set_keys(&[&rsa]);
    let v = verifier(
        &s.ca,
        &[mapping("m", &s.issuer, Some(s.server.url("/jwks")))],
        config(),
    );
    let guard = MemoryReplayGuard::new(1000);
    let token = rsa.sign("RS256", &claims(&s.issuer));

    let first = v.verify(&token, NOW).await.unwrap();
    guard
        .check_and_record(first.replay_key, first.replay_until, NOW)
        .await
        .unwrap();
    // The same token again verifies, but the guard refuses it.
    let again = v.verify(&token, NOW + 5).await.unwrap();
    assert_eq!(again.replay_key, first.replay_key);
    let err = guard
        .check_and_record(again.replay_key, again.replay_until, NOW + 5)
        .await
        .unwrap_err();
    assert_eq!(err, ReplayError::Replayed { until: NOW + 660 });
    assert_eq!(err.audit_word(), "replayed");
    // A new token with another jti is fine; so is one with the same jti from another issuer...
    let other = v
        .verify(&rsa.sign("RS256", &claims(&s.issuer)), NOW + 5)
        .await
        .unwrap();
    guard
        .check_and_record(other.replay_key, other.replay_until, NOW + 5)
        .await
        .unwrap();
    // ... and a token without jti is remembered by its signature.
    let mut c = claims(&s.issuer);
    c.as_object_mut().unwrap().remove("jti");
    let no_jti = rsa.sign("RS256", &c);
    let a = v.verify(&no_jti, NOW).await.unwrap();
    assert_eq!(a.jti, None);
    guard
        .check_and_record(a.replay_key, a.replay_until, NOW)
        .await
        .unwrap();
    let b = v.verify(&no_jti, NOW).await.unwrap();
    assert!(guard
        .check_and_record(b.replay_key, b.replay_until, NOW)
        .await
        .is_err());
}

#[tokio::test]
async fn https_only_unless_no_https_and_only_trusted_certificates() {
    let s = setup().await;
    let ed = ed_key("ed-1");
    s.server.set_keys(&[&ed]);
    let plain = KeyServer::start_plain().await;
    plain.set_keys(&[&ed]);
    let http_mapping = mapping("m", "https://plain.example", Some(plain.url("/jwks")));

    // Refused as a mapping while NoHttps is off.
    let strict = config();
    match MappingSet::new(
        std::slice::from_ref(&http_mapping),
        &strict.cache_configuration,
    ) {
        Err(MappingError::Invalid { field, .. }) => assert_eq!(field, "JwksUri"),
        other => panic!("{other:?}"),
    }
    // With NoHttps (tests only) it works over plain HTTP...
    let mut lax = config();
    lax.cache_configuration.no_https = true;
    let v = verifier(&s.ca, std::slice::from_ref(&http_mapping), lax);
    let mut c = claims("https://plain.example");
    v.verify(&ed.sign("EdDSA", &c), NOW).await.unwrap();
    // ... and turning NoHttps off stops the fetches even for a mapping already loaded.
    v.set_configuration(config()).unwrap();
    let ed2 = ed_key("ed-2");
    c["jti"] = json!("x");
    let why = refused(
        v.verify(&ed2.sign("EdDSA", &c), NOW + 120).await,
        "keys_unreachable",
    );
    assert!(why.contains("not allowed"), "{why}");
    assert_eq!(plain.hits("/jwks"), 1);

    // A server whose certificate comes from a CA we were not told to trust.
    let stranger_ca = test_ca("untrusted CA");
    let v = verifier(
        &stranger_ca,
        &[mapping("m", &s.issuer, Some(s.server.url("/jwks")))],
        config(),
    );
    let why = refused(
        v.verify(&ed.sign("EdDSA", &claims(&s.issuer)), NOW).await,
        "keys_unreachable",
    );
    assert!(why.contains("TLS"), "{why}");
    assert_eq!(s.server.hits("/jwks"), 0);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let ca = test_ca("jwt test CA");
    // Accepts connections and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    let mut c = config();
    c.cache_configuration.timeout = 1;
    let issuer = format!("https://127.0.0.1:{}/issuer", addr.port());
    let v = verifier(&ca, &[mapping("m", &issuer, None)], c);
    let ed = ed_key("ed-1");
    let why = refused(
        v.verify(&ed.sign("EdDSA", &claims(&issuer)), NOW).await,
        "keys_unreachable",
    );
    assert!(why.contains("no answer within 1 s"), "{why}");
    holder.abort();
}

#[tokio::test]
async fn cache_control_is_honoured_within_min_and_max_ttl() {
    let s = setup().await;
    let ec = ec_key("ec-1");
    s.server.set_keys(&[&ec]);
    s.server.state.lock().unwrap().cache_control = Some("no-cache".into());
    let v = verifier(
        &s.ca,
        &[mapping("m", &s.issuer, Some(s.server.url("/moved")))],
        config(),
    );
    let at = |t: i64| {
        let mut c = claims(&s.issuer);
        c["exp"] = json!(t + 600);
        ec.sign("ES256", &c)
    };
    // The JwksUri redirects to /jwks: followed.
    v.verify(&at(NOW), NOW).await.unwrap();
    assert_eq!((s.server.hits("/moved"), s.server.hits("/jwks")), (1, 1));
    // "no-cache" is raised to MinTtl (300 s): no fetch before, one at it.
    v.verify(&at(NOW + 299), NOW + 299).await.unwrap();
    assert_eq!(s.server.hits("/jwks"), 1);
    v.verify(&at(NOW + 300), NOW + 300).await.unwrap();
    assert_eq!(s.server.hits("/jwks"), 2);

    // A long max-age is cut to MaxTtl (3600 s); a medium one is used as given.
    s.server.state.lock().unwrap().cache_control = Some("public, max-age=1000".into());
    let t0 = NOW + 1000;
    v.verify(&at(t0), t0).await.unwrap();
    assert_eq!(s.server.hits("/jwks"), 3);
    v.verify(&at(t0 + 999), t0 + 999).await.unwrap();
    assert_eq!(s.server.hits("/jwks"), 3);
    s.server.state.lock().unwrap().cache_control = Some("max-age=86400".into());
    v.verify(&at(t0 + 1000), t0 + 1000).await.unwrap();
    assert_eq!(s.server.hits("/jwks"), 4);
    let t1 = t0 + 1000;
    v.verify(&at(t1 + 3599), t1 + 3599).await.unwrap();
    assert_eq!(s.server.hits("/jwks"), 4);
    v.verify(&at(t1 + 3600), t1 + 3600).await.unwrap();
    assert_eq!(s.server.hits("/jwks"), 5);
}

#[tokio::test]
async fn refresh_all_warms_every_issuer_and_new_mappings_keep_or_drop_keys() {
    let (a, b) = (setup().await, setup().await);
    let ed = ed_key("ed-1");
    a.server.set_keys(&[&ed]);
    b.server.set_keys(&[&ed]);
    // Both servers' CAs are trusted.
    let trust = FetchTrust::only(format!("{}{}", a.ca.pem, b.ca.pem));
    let cfg = config();
    let maps = [
        mapping("a", &a.issuer, None),
        mapping("b", &b.issuer, Some(b.server.url("/jwks"))),
    ];
    let v = JwtVerifier::new(
        cfg.clone(),
        MappingSet::new(&maps, &cfg.cache_configuration).unwrap(),
        &trust,
    )
    .unwrap();
    let r = v.refresh_all(NOW).await;
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(|(_, x)| x == &Ok(1)), "{r:?}");
    assert_eq!((a.server.hits("/jwks"), b.server.hits("/jwks")), (1, 1));
    // Nothing is due yet: a second pass fetches nothing.
    v.refresh_all(NOW + 10).await;
    assert_eq!((a.server.hits("/jwks"), b.server.hits("/jwks")), (1, 1));
    // Tokens are served from the warm cache.
    v.verify_cached(&ed.sign("EdDSA", &claims(&a.issuer)), NOW + 10)
        .unwrap();

    // Drop issuer a: its keys are forgotten; b's stay.
    v.set_mappings(MappingSet::new(&maps[1..], &cfg.cache_configuration).unwrap());
    let issuers: Vec<String> = v.key_status().into_iter().map(|s| s.issuer).collect();
    assert_eq!(issuers, vec![b.issuer.clone()]);
    refused(
        v.verify(&ed.sign("EdDSA", &claims(&a.issuer)), NOW + 10)
            .await,
        "issuer_not_trusted",
    );
    v.verify(&ed.sign("EdDSA", &claims(&b.issuer)), NOW + 10)
        .await
        .unwrap();
    assert_eq!(b.server.hits("/jwks"), 1);
}
