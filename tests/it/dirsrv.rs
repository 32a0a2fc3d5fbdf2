//! Real directory servers for the tests, each in a temporary directory on loopback:
//! OpenLDAP's slapd through `scripts/slapd` (one per test, free ports) and a Samba AD domain
//! controller through `scripts/samba-ad` (ports 389/636, so one at a time). Both carry TLS
//! certificates from vedauth's own generator (SANs 127.0.0.1, localhost). Dropping a handle
//! stops its server, resuming it first if a test had stopped it with SIGSTOP.
//!
//! Instances are made under `$VEDAUTH_TEST_DIRECTORIES` when set (`scripts/test` sets it and
//! stops whatever is left there on exit, even after a crash), else in the system's temp dir.

use std::path::{Path, PathBuf};
use std::process::Command;

use vedauth::tls::{ensure_generated, TlsPaths};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: run scripts/install-directory-servers (scripts/test does)"
    );
}

fn instance_dir(prefix: &str) -> tempfile::TempDir {
    let mut b = tempfile::Builder::new();
    b.prefix(prefix);
    match std::env::var_os("VEDAUTH_TEST_DIRECTORIES") {
        Some(root) => b.tempdir_in(root),
        None => b.tempdir(),
    }
    .expect("instance directory")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn signal(pid: &str, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, pid])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill {sig} {pid}");
}

/// One slapd with the entries of `tests/directory/slapd.ldif` (suffix `dc=vedauth,dc=test`).
pub struct Slapd {
    dir: tempfile::TempDir,
    pub port: u16,
    pub ldaps_port: u16,
}

pub const SUFFIX: &str = "dc=vedauth,dc=test";
pub const ADMIN_DN: &str = "cn=admin,dc=vedauth,dc=test";
pub const ADMIN_PW: &str = "admin-secret";
pub const SVC_DN: &str = "cn=svc,dc=vedauth,dc=test";
pub const SVC_PW: &str = "svc-secret";

impl Slapd {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A second server with the same entries, entryUUIDs included, as a replica would have,
    /// and a certificate from the same CA.
    pub fn replica_of(other: &Slapd) -> Self {
        let out = Command::new("slapcat")
            .arg("-f")
            .arg(other.dir.path().join("slapd.conf"))
            .output()
            .expect("slapcat");
        assert!(
            out.status.success(),
            "slapcat: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self::start_with(Some((out.stdout, other.dir.path())))
    }

    fn start_with(like: Option<(Vec<u8>, &Path)>) -> Self {
        require("slapd");
        require("ldapsearch");
        let mut last = String::new();
        // Another process may take a port between choosing and binding it: try again.
        for _ in 0..3 {
            let dir = instance_dir("slapd-");
            let tls = TlsPaths::in_dir(dir.path());
            if let Some((_, other)) = &like {
                let from = TlsPaths::in_dir(other);
                std::fs::create_dir_all(dir.path().join("tls")).expect("tls dir");
                for (a, b) in [
                    (&from.ca_cert, &tls.ca_cert),
                    (&from.ca_key, &tls.ca_key),
                    (&from.cert, &tls.cert),
                    (&from.key, &tls.key),
                ] {
                    std::fs::copy(a, b).expect("copy TLS files");
                }
            }
            ensure_generated(&tls, crate::common::wall_now()).expect("test certificates");
            std::fs::write(dir.path().join("svc-password"), format!("{SVC_PW}\n"))
                .expect("password file");
            if let Some((d, _)) = &like {
                std::fs::write(dir.path().join("data.ldif"), d).expect("data");
            }
            let (port, ldaps_port) = (free_port(), free_port());
            let out = Command::new(script("slapd"))
                .arg("start")
                .arg(dir.path())
                .arg(port.to_string())
                .arg(ldaps_port.to_string())
                .output()
                .expect("scripts/slapd");
            if out.status.success() {
                return Self {
                    dir,
                    port,
                    ldaps_port,
                };
            }
            let _ = Command::new(script("slapd"))
                .arg("stop")
                .arg(dir.path())
                .status();
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        panic!("slapd did not start: {last}");
    }

    /// `ldap://` (the tests use StartTLS on it).
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }
    pub fn ca_file(&self) -> PathBuf {
        TlsPaths::in_dir(self.dir.path()).ca_cert
    }
    pub fn svc_password_file(&self) -> PathBuf {
        self.dir.path().join("svc-password")
    }
    fn pid(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.pid"))
            .expect("slapd.pid")
            .trim()
            .to_string()
    }
    /// SIGSTOP: the server accepts TCP connections (the kernel does) but never answers.
    pub fn pause(&self) {
        signal(&self.pid(), "-STOP");
    }
    pub fn resume(&self) {
        signal(&self.pid(), "-CONT");
    }
    pub fn stop(&self) {
        let ok = Command::new(script("slapd"))
            .arg("stop")
            .arg(self.dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "scripts/slapd stop");
    }

    /// A connection bound as the directory's administrator, for changing entries.
    pub async fn admin(&self) -> ldap3::Ldap {
        let (conn, mut ldap) = ldap3::LdapConnAsync::new(&self.url())
            .await
            .expect("connect");
        ldap3::drive!(conn);
        ldap.simple_bind(ADMIN_DN, ADMIN_PW)
            .await
            .and_then(|r| r.success())
            .expect("admin bind");
        ldap
    }

    /// The entryUUID of the entry `dn`, as the directory gives it.
    pub async fn entry_uuid(&self, dn: &str) -> String {
        let mut ldap = self.admin().await;
        let (entries, _) = ldap
            .search(dn, ldap3::Scope::Base, "(objectClass=*)", vec!["entryUUID"])
            .await
            .and_then(|r| r.success())
            .expect("search");
        let e = ldap3::SearchEntry::construct(entries.into_iter().next().expect("entry"));
        e.attrs["entryUUID"][0].clone()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = Command::new(script("slapd"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// A Samba AD domain controller: NetBIOS domain VEDTEST, DNS domain vedtest.example, the
/// accounts listed in `scripts/samba-ad`.
pub struct SambaAd {
    dir: tempfile::TempDir,
    // Samba cannot move its ports: tests that start one take turns (released after the stop).
    _turn: std::sync::MutexGuard<'static, ()>,
}

static SAMBA_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub const AD_BASE: &str = "DC=vedtest,DC=example";
pub const AD_SVC_DN: &str = "CN=svc-vedauth,CN=Users,DC=vedtest,DC=example";
pub const AD_SVC_PW: &str = "Svc-Passw0rd!";

impl SambaAd {
    pub fn start() -> Self {
        require("samba");
        require("samba-tool");
        require("ldapsearch");
        let turn = SAMBA_TURN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dir = instance_dir("samba-");
        ensure_generated(&TlsPaths::in_dir(dir.path()), crate::common::wall_now())
            .expect("test certificates");
        std::fs::write(dir.path().join("svc-password"), format!("{AD_SVC_PW}\n"))
            .expect("password file");
        let out = Command::new(script("samba-ad"))
            .arg("start")
            .arg(dir.path())
            .output()
            .expect("scripts/samba-ad");
        let handle = Self { dir, _turn: turn };
        assert!(
            out.status.success(),
            "samba did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        handle
    }

    pub fn ldaps_url(&self) -> String {
        "ldaps://127.0.0.1:636".into()
    }
    pub fn ca_file(&self) -> PathBuf {
        TlsPaths::in_dir(self.dir.path()).ca_cert
    }
    pub fn svc_password_file(&self) -> PathBuf {
        self.dir.path().join("svc-password")
    }

    /// The raw objectGUID of the one entry matching `filter`, read over ldaps as the service
    /// account, independently of vedauth.
    pub async fn object_guid(&self, filter: &str) -> Vec<u8> {
        self.binary_attribute(filter, "objectGUID").await
    }

    /// The raw value of a binary attribute (objectGUID, objectSid) of the one entry matching
    /// `filter`, read as the service account.
    pub async fn binary_attribute(&self, filter: &str, attr: &str) -> Vec<u8> {
        use rustls_pki_types::pem::PemObject;
        let pem = std::fs::read(self.ca_file()).expect("CA");
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(c.expect("PEM")).expect("root");
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let settings = ldap3::LdapConnSettings::new().set_config(std::sync::Arc::new(tls));
        let (conn, mut ldap) = ldap3::LdapConnAsync::with_settings(settings, &self.ldaps_url())
            .await
            .expect("connect");
        ldap3::drive!(conn);
        ldap.simple_bind(AD_SVC_DN, AD_SVC_PW)
            .await
            .and_then(|r| r.success())
            .expect("bind");
        let (entries, _) = ldap
            .search(AD_BASE, ldap3::Scope::Subtree, filter, vec![attr])
            .await
            .and_then(|r| r.success())
            .expect("search");
        assert_eq!(entries.len(), 1, "{filter}");
        let e = ldap3::SearchEntry::construct(entries.into_iter().next().expect("entry"));
        // A GUID whose bytes happen to be UTF-8 lands among the text attributes.
        match e.bin_attrs.get(attr) {
            Some(v) => v[0].clone(),
            None => e.attrs[attr][0].as_bytes().to_vec(),
        }
    }
}

impl Drop for SambaAd {
    fn drop(&mut self) {
        let _ = Command::new(script("samba-ad"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}
