//! TLS: a local CA and server certificate made on first start, and the rustls server
//! configuration (ring provider, TLS 1.2 and 1.3 only, ALPN h2 and http/1.1).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::clock::UnixTime;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("the private key {key} does not belong to the certificate {cert} (the key must be that of the first certificate in the file)")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{dir}: {problem}. vedauth does not make a new CA by itself, as clients that trust the old one would stop connecting: put the missing files back, or remove the directory {dir} to start over with a new CA (and give clients the new ca.crt)")]
    Incomplete { dir: PathBuf, problem: String },
    #[error("certificate generation failed: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Where the generated files live.
#[derive(Debug, Clone)]
pub struct TlsPaths {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsPaths {
    pub fn in_dir(data_dir: &Path) -> Self {
        let d = data_dir.join("tls");
        Self {
            ca_cert: d.join("ca.crt"),
            ca_key: d.join("ca.key"),
            cert: d.join("server.crt"),
            key: d.join("server.key"),
        }
    }

    /// The directory of the files (they share one when made by [`TlsPaths::in_dir`]).
    fn dir(&self) -> PathBuf {
        self.ca_cert
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }

    /// The same file names in another directory.
    fn moved_to(&self, dir: &Path) -> Self {
        let name = |p: &Path| dir.join(p.file_name().unwrap_or(p.as_os_str()));
        Self {
            ca_cert: name(&self.ca_cert),
            ca_key: name(&self.ca_key),
            cert: name(&self.cert),
            key: name(&self.key),
        }
    }
}

fn gen_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Generate(e.to_string())
}

fn file_err(path: &Path, e: &dyn std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, &e))?;
    }
    crate::bootstrap::write_private_or_public(path, contents.as_bytes(), private)
        .map_err(|e| file_err(path, &e))
}

const CA_NAME: &str = "vedauth local CA";

/// The local CA's parameters. A CA certificate rebuilt from these and the CA key signs leaves
/// that chain to the `ca.crt` written at first start (same subject, same key identifier).
fn ca_params(now: time::OffsetDateTime) -> Result<CertificateParams, TlsError> {
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, CA_NAME);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = now - time::Duration::days(1);
    ca.not_after = now + time::Duration::days(3650);
    Ok(ca)
}

/// A new server key and certificate for localhost, the loopback addresses and the host name.
fn new_leaf(
    now: time::OffsetDateTime,
    ca_cert: &rcgen::Certificate,
    ca_key: &KeyPair,
) -> Result<(KeyPair, rcgen::Certificate), TlsError> {
    let host = gethostname::gethostname().to_string_lossy().to_string();
    let mut names = vec!["localhost".to_string()];
    if !host.is_empty() && host != "localhost" {
        names.push(host);
    }
    let mut leaf = CertificateParams::new(names).map_err(gen_err)?;
    leaf.subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    leaf.subject_alt_names
        .push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    leaf.distinguished_name.push(DnType::CommonName, "vedauth");
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // Strict verifiers (Python 3.13's X509_STRICT) want the authority key identifier.
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = now - time::Duration::days(1);
    leaf.not_after = now + time::Duration::days(3650);
    let leaf_key = KeyPair::generate().map_err(gen_err)?;
    let leaf_cert = leaf
        .signed_by(&leaf_key, ca_cert, ca_key)
        .map_err(gen_err)?;
    Ok((leaf_key, leaf_cert))
}

/// Writes the four files in an order that a crash part-way leaves something the next start
/// can finish: the CA first, then the server key and certificate (a missing leaf is reissued).
fn write_all(
    paths: &TlsPaths,
    ca_key: &KeyPair,
    ca_pem: &str,
    leaf_key: &KeyPair,
    leaf_cert: &rcgen::Certificate,
) -> Result<(), TlsError> {
    write_file(&paths.ca_key, &ca_key.serialize_pem(), true)?;
    write_file(&paths.ca_cert, ca_pem, false)?;
    write_leaf(paths, ca_pem, leaf_key, leaf_cert)
}

fn write_leaf(
    paths: &TlsPaths,
    ca_pem: &str,
    leaf_key: &KeyPair,
    leaf_cert: &rcgen::Certificate,
) -> Result<(), TlsError> {
    write_file(&paths.key, &leaf_key.serialize_pem(), true)?;
    // The chain includes the CA so that clients given only the server's chain can still build it.
    write_file(&paths.cert, &format!("{}{ca_pem}", leaf_cert.pem()), false)
}

/// Makes sure the data directory's TLS files can serve, without ever replacing a CA that
/// clients may trust:
/// - none of the files there: a new CA and server certificate (returns true);
/// - `ca.crt`, `server.crt` and `server.key` there: used as they are (`ca.key` may be kept
///   elsewhere);
/// - the server key or certificate missing, the CA whole: a new server certificate from the
///   same CA;
/// - anything else (the CA certificate gone, or its key gone when a server certificate is
///   needed): an error saying what is missing and how to start over.
pub fn ensure_generated(paths: &TlsPaths, now: UnixTime) -> Result<bool, TlsError> {
    let files = [
        (&paths.ca_cert, paths.ca_cert.exists()),
        (&paths.ca_key, paths.ca_key.exists()),
        (&paths.cert, paths.cert.exists()),
        (&paths.key, paths.key.exists()),
    ];
    let [(_, ca_cert), (_, ca_key), (_, cert), (_, key)] = files;
    if ca_cert && cert && key {
        return Ok(false);
    }
    let now = time::OffsetDateTime::from_unix_timestamp(now)
        .map_err(|e| TlsError::Generate(format!("the clock says {now}: {e}")))?;
    if files.iter().all(|(_, there)| !there) {
        generate_all(paths, now)?;
        return Ok(true);
    }
    let names = |there: bool| {
        files
            .iter()
            .filter(|(_, t)| *t == there)
            .map(|(p, _)| p.file_name().unwrap_or(p.as_os_str()).to_string_lossy())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !ca_cert || !ca_key {
        return Err(TlsError::Incomplete {
            dir: paths.dir(),
            problem: format!(
                "{} missing (present: {}), and a new server certificate cannot be issued without the CA's certificate and key",
                names(false),
                names(true)
            ),
        });
    }
    reissue_leaf(paths, now)?;
    tracing::warn!(
        cert = %paths.cert.display(),
        ca = %paths.ca_cert.display(),
        "the server key or certificate was missing: issued a new server certificate from the existing CA"
    );
    Ok(false)
}

/// First start: a new CA and server certificate. When the directory does not exist yet they
/// are made in a temporary directory renamed into place, so a crash leaves all or nothing.
fn generate_all(paths: &TlsPaths, now: time::OffsetDateTime) -> Result<(), TlsError> {
    let ca_key = KeyPair::generate().map_err(gen_err)?;
    let ca_cert = ca_params(now)?.self_signed(&ca_key).map_err(gen_err)?;
    let (leaf_key, leaf_cert) = new_leaf(now, &ca_cert, &ca_key)?;
    let dir = paths.dir();
    let shared_dir = [&paths.ca_key, &paths.cert, &paths.key]
        .iter()
        .all(|p| p.parent() == Some(dir.as_path()));
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    match parent {
        Some(parent) if shared_dir && !dir.exists() && parent.is_dir() => {
            let tmp = parent.join(format!(".tls.tmp-{:016x}", rand::random::<u64>()));
            std::fs::create_dir(&tmp).map_err(|e| file_err(&tmp, &e))?;
            let done = write_all(
                &paths.moved_to(&tmp),
                &ca_key,
                &ca_cert.pem(),
                &leaf_key,
                &leaf_cert,
            )
            .and_then(|()| std::fs::rename(&tmp, &dir).map_err(|e| file_err(&dir, &e)));
            if let Err(e) = done {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
            crate::bootstrap::sync_dir(parent).map_err(|e| file_err(parent, &e))
        }
        _ => write_all(paths, &ca_key, &ca_cert.pem(), &leaf_key, &leaf_cert),
    }
}

/// A new server key and certificate signed by the CA on disk; the old leaf files are removed
/// first, so that a crash in between never pairs a new key with an old certificate.
fn reissue_leaf(paths: &TlsPaths, now: time::OffsetDateTime) -> Result<(), TlsError> {
    let ca_pem =
        std::fs::read_to_string(&paths.ca_cert).map_err(|e| file_err(&paths.ca_cert, &e))?;
    let key_pem =
        std::fs::read_to_string(&paths.ca_key).map_err(|e| file_err(&paths.ca_key, &e))?;
    let ca_key = KeyPair::from_pem(&key_pem).map_err(|e| file_err(&paths.ca_key, &e))?;
    let ca_cert = ca_params(now)?.self_signed(&ca_key).map_err(gen_err)?;
    let (leaf_key, leaf_cert) = new_leaf(now, &ca_cert, &ca_key)?;
    // The rebuilt CA is only as good as the check that its leaf chains to the real ca.crt.
    chains_to(&ca_pem, leaf_cert.der()).map_err(|e| TlsError::Incomplete {
        dir: paths.dir(),
        problem: format!(
            "the server key or certificate is missing, and a certificate issued with {} does not verify against {} ({e})",
            paths.ca_key.display(),
            paths.ca_cert.display()
        ),
    })?;
    for leftover in [&paths.cert, &paths.key] {
        match std::fs::remove_file(leftover) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_err(leftover, &e)),
        }
    }
    let dir = paths.dir();
    crate::bootstrap::sync_dir(&dir).map_err(|e| file_err(&dir, &e))?;
    write_leaf(paths, &ca_pem, &leaf_key, &leaf_cert)
}

/// Whether `leaf` verifies as a server certificate for `localhost` against the CAs in `ca_pem`.
fn chains_to(ca_pem: &str, leaf: &CertificateDer<'_>) -> Result<(), String> {
    use rustls::client::danger::ServerCertVerifier;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    verifier
        .verify_server_cert(leaf, &[], &name, &[], rustls_pki_types::UnixTime::now())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Reads a certificate chain and its key, and checks that the key is the first certificate's.
fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(cert, &e))?;
    if chain.is_empty() {
        return Err(file_err(cert, &"no certificate in file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, &e))?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key_der).map_err(|e| file_err(key, &e))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }),
        Err(e) => Err(file_err(cert, &e)),
    }
}

/// The server's certificate, replaceable while connections keep running (SIGHUP reload).
#[derive(Debug)]
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
    cert: PathBuf,
    key: PathBuf,
}

impl CertStore {
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            current: RwLock::new(Arc::new(load_certified_key(cert, key)?)),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        })
    }

    /// Re-reads the files; on any error (unreadable, or a key that is not the certificate's)
    /// the old pair stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(load_certified_key(&self.cert, &self.key)?);
        let mut guard = self
            .current
            .write()
            .map_err(|_| TlsError::Config("certificate lock poisoned".into()))?;
        *guard = fresh;
        Ok(())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|g| g.clone())
    }
}

pub fn server_config(certs: Arc<CertStore>) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A listener's TLS configuration, swapped whole while the listener runs: it asks for an
/// optional client certificate only while certificate authentication is on and trusted issuers
/// are configured (docs/certificate-auth.md). Each handshake takes the configuration current at
/// its start; a swap affects only connections that start afterwards. rustls cannot change what a
/// configuration asks of clients, so a change is a new `ServerConfig` over the same certificate
/// resolver (certificate reloads keep working).
#[derive(Debug)]
pub struct LiveTls {
    plain: Arc<rustls::ServerConfig>,
    /// The issuers' fingerprints the current configuration names (None: no client certificates
    /// requested), and the configuration.
    current: RwLock<(Option<Vec<String>>, Arc<rustls::ServerConfig>)>,
}

impl LiveTls {
    /// Starts out as `plain`, asking for no client certificate.
    pub fn new(plain: Arc<rustls::ServerConfig>) -> Self {
        Self {
            current: RwLock::new((None, plain.clone())),
            plain,
        }
    }

    /// The configuration a handshake starting now uses.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        match self.current.read() {
            Ok(g) => g.1.clone(),
            // A writer never panics while holding the lock (it only swaps); if one did, the
            // configuration without client certificates is the safe fallback.
            Err(_) => self.plain.clone(),
        }
    }

    /// Whether client certificates are requested now, and the fingerprints of the CAs named.
    pub fn requested_issuers(&self) -> Option<Vec<String>> {
        self.current.read().ok().and_then(|g| g.0.clone())
    }

    /// Asks for client certificates naming `issuers` (None or an empty set: stop asking).
    /// Returns whether anything changed; an unchanged set builds nothing.
    pub fn request_client_certs(
        &self,
        issuers: Option<&crate::certauth::TrustedIssuers>,
    ) -> Result<bool, TlsError> {
        let wanted = issuers
            .filter(|i| !i.is_empty())
            .map(|i| i.authorized_issuer_dns());
        if self.requested_issuers() == wanted {
            return Ok(false);
        }
        let cfg = match issuers.filter(|i| !i.is_empty()) {
            None => self.plain.clone(),
            Some(i) => {
                let mut cfg = crate::certauth::server_config(
                    self.plain.cert_resolver.clone(),
                    i,
                    crate::certauth::ChainCheck::AtGrant,
                )
                .map_err(|e| TlsError::Config(e.to_string()))?;
                cfg.alpn_protocols = self.plain.alpn_protocols.clone();
                Arc::new(cfg)
            }
        };
        let mut guard = self
            .current
            .write()
            .map_err(|_| TlsError::Config("TLS configuration lock poisoned".into()))?;
        *guard = (wanted, cfg);
        Ok(true)
    }
}
