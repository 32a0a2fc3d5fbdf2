//! The `[[ldap]]` entries of the configuration file, and the settings they resolve to.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// What kind of directory a provider talks to; it picks the identity prefix and the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectoryKind {
    /// A generic LDAP directory (OpenLDAP, 389 Directory Server, ...): identities `LDAP+N:`.
    Ldap,
    /// Active Directory (or Samba AD): identities `AD+N:`.
    Ad,
}

fn yes() -> bool {
    true
}
fn default_connect_timeout() -> u64 {
    5
}
fn default_timeout() -> u64 {
    10
}
fn default_pool_size() -> usize {
    4
}
fn default_max_group_depth() -> u32 {
    8
}

/// One directory provider: an `[[ldap]]` table in the configuration file. Providers are tried
/// in the order they appear, after local users, for bare user names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap` (a generic LDAP directory) or `ad` (Active Directory): the identity prefix
    /// (`LDAP+N` or `AD+N`) and the defaults of the attribute settings below depend on it.
    pub kind: DirectoryKind,
    /// The friendly name N in `LDAP+N:` / `AD+N:`: part of every identity this provider issues,
    /// so it must not change once tokens have been given out. No `:`, `\`, `@` or spaces.
    pub name: String,
    /// Server URLs, `ldap://host[:port]` or `ldaps://host[:port]`, tried in this order whenever
    /// a connection is opened: a server that refuses, fails TLS or does not answer within
    /// `connect_timeout_secs` is skipped for the next.
    pub urls: Vec<String>,
    /// For `ldap://` URLs: upgrade the connection with StartTLS before anything is sent
    /// (default true). false sends the service account's and users' passwords in clear.
    #[serde(default = "yes")]
    pub starttls: bool,
    /// PEM file with the CA certificate(s) the servers' certificates chain to; absent = the
    /// system's trust store. Server names (or IP addresses) are verified against the URL's host.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// DN of the service account that searches for users and groups (for AD, a
    /// `user@dns.domain` name works too).
    pub bind_dn: String,
    /// File that holds the service account's password (a trailing line break is ignored). Read
    /// once at start.
    pub bind_password_file: PathBuf,
    /// Where users are searched, with subtree scope (e.g. `ou=people,dc=example,dc=com`).
    pub base_dn: String,
    /// Filter that selects user entries; the login-name match is ANDed to it. Default
    /// `(objectClass=person)` for `ldap`, `(&(objectClass=user)(!(objectClass=computer)))` for `ad`.
    #[serde(default)]
    pub user_filter: Option<String>,
    /// Attribute holding the login name. Default `uid` for `ldap`, `sAMAccountName` for `ad`
    /// (which also matches `userPrincipalName` for `name@dns_domain`).
    #[serde(default)]
    pub login_attribute: Option<String>,
    /// Attribute holding the stable, rename-proof id that becomes the identity's universal part.
    /// Default `entryUUID` for `ldap` (its text, lower-cased), `objectGUID` for `ad` (its 16 raw
    /// bytes, in the order the directory sends them, as 32 lower-case hex characters). Used for
    /// groups as well.
    #[serde(default)]
    pub id_attribute: Option<String>,
    /// Where groups are searched, with subtree scope. Default: `base_dn`.
    #[serde(default)]
    pub group_base_dn: Option<String>,
    /// Filter that selects group entries. Default `(objectClass=groupOfNames)` for `ldap`,
    /// `(objectClass=group)` for `ad`.
    #[serde(default)]
    pub group_filter: Option<String>,
    /// Attribute of a group that holds its name, as used in rules (`LDAP+N:name`). Default `cn`.
    #[serde(default)]
    pub group_name_attribute: Option<String>,
    /// Attribute of a group that lists its members' DNs. Default `member`.
    #[serde(default)]
    pub group_member_attribute: Option<String>,
    /// Also count groups that contain the user's groups (nested membership), up to
    /// `max_group_depth` levels. Default false for `ldap`, true for `ad`.
    #[serde(default)]
    pub nested_groups: Option<bool>,
    /// How many levels of nested groups are followed (default 8).
    #[serde(default = "default_max_group_depth")]
    pub max_group_depth: u32,
    /// NetBIOS domain name that `DOMAIN\name` user names address to this provider (case-
    /// insensitive). Default for `ad`: the first `DC=` label of `base_dn`, upper-cased; none for
    /// `ldap`.
    #[serde(default)]
    pub netbios_domain: Option<String>,
    /// DNS domain that `name@dns.domain` user names (UPNs) address to this provider. Default for
    /// `ad`: the `DC=` labels of `base_dn` joined with dots; none for `ldap`.
    #[serde(default)]
    pub dns_domain: Option<String>,
    /// Seconds to open a connection (TCP, TLS, the bind) to one server before trying the next
    /// (default 5).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Seconds any one LDAP operation (search, bind) may take before the directory counts as
    /// unavailable and the request gets 503 (default 10).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Service-account connections kept open for searches (default 4). Users' binds use a
    /// connection of their own each time.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

/// A provider's configuration that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("directory provider '{provider}': {message}")]
pub struct DirectoryConfigError {
    pub provider: String,
    pub message: String,
}

impl LdapConfig {
    fn err(&self, message: impl Into<String>) -> DirectoryConfigError {
        DirectoryConfigError {
            provider: self.name.clone(),
            message: message.into(),
        }
    }

    /// Checks what can be checked without reading files.
    pub fn validate(&self) -> Result<(), DirectoryConfigError> {
        if self.name.is_empty()
            || self
                .name
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, ':' | '\\' | '@'))
        {
            return Err(self.err("name must be non-empty, without spaces, ':', '\\' or '@'"));
        }
        if self.urls.is_empty() {
            return Err(self.err("urls: at least one server URL is needed"));
        }
        for u in &self.urls {
            let parsed = url::Url::parse(u).map_err(|e| self.err(format!("url {u:?}: {e}")))?;
            if !matches!(parsed.scheme(), "ldap" | "ldaps")
                || parsed.host_str().is_none_or(str::is_empty)
            {
                return Err(self.err(format!(
                    "url {u:?}: expected ldap://host[:port] or ldaps://host[:port]"
                )));
            }
        }
        if self.base_dn.trim().is_empty() {
            return Err(self.err("base_dn is empty"));
        }
        if self.bind_dn.trim().is_empty() {
            return Err(self.err("bind_dn is empty"));
        }
        for (key, filter) in [
            ("user_filter", &self.user_filter),
            ("group_filter", &self.group_filter),
        ] {
            if let Some(f) = filter {
                if ldap3::parse_filter(f).is_err() {
                    return Err(self.err(format!("{key} {f:?} is not a valid LDAP filter")));
                }
            }
        }
        for (key, attr) in [
            ("login_attribute", &self.login_attribute),
            ("id_attribute", &self.id_attribute),
            ("group_name_attribute", &self.group_name_attribute),
            ("group_member_attribute", &self.group_member_attribute),
        ] {
            if let Some(a) = attr {
                if a.is_empty() || !a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    return Err(self.err(format!("{key} {a:?} is not an attribute name")));
                }
            }
        }
        if self.connect_timeout_secs == 0 || self.timeout_secs == 0 {
            return Err(self.err("connect_timeout_secs and timeout_secs must be at least 1"));
        }
        if self.pool_size == 0 {
            return Err(self.err("pool_size must be at least 1"));
        }
        Ok(())
    }

    /// Validates, reads the password and CA files, and fills in the defaults of the kind.
    pub(super) fn resolve(&self) -> Result<Settings, DirectoryConfigError> {
        self.validate()?;
        let ad = self.kind == DirectoryKind::Ad;
        let pick = |v: &Option<String>, ldap: &str, ad_default: &str| {
            v.clone()
                .unwrap_or_else(|| if ad { ad_default } else { ldap }.to_string())
        };
        let password = std::fs::read_to_string(&self.bind_password_file).map_err(|e| {
            self.err(format!(
                "bind_password_file {}: {e}",
                self.bind_password_file.display()
            ))
        })?;
        let password = password.trim_end_matches(['\r', '\n']).to_string();
        if password.is_empty() {
            return Err(self.err("bind_password_file is empty"));
        }
        let schemes: Vec<String> = self
            .urls
            .iter()
            .filter_map(|u| url::Url::parse(u).ok().map(|u| u.scheme().to_string()))
            .collect();
        let plain = schemes.iter().any(|s| s == "ldap");
        let needs_tls = (plain && self.starttls) || schemes.iter().any(|s| s == "ldaps");
        if plain && !self.starttls {
            tracing::warn!(
                provider = %self.name,
                "starttls is off for ldap:// URLs: passwords travel to the directory in clear"
            );
        }
        let tls = if needs_tls {
            Some(client_tls(self.ca_file.as_deref()).map_err(|m| self.err(m))?)
        } else {
            None
        };
        let dc_labels: Vec<&str> = self
            .base_dn
            .split(',')
            .filter_map(|rdn| {
                let (k, v) = rdn.trim().split_once('=')?;
                k.trim().eq_ignore_ascii_case("dc").then(|| v.trim())
            })
            .collect();
        let (netbios, dns) = if ad {
            (
                self.netbios_domain
                    .clone()
                    .or_else(|| dc_labels.first().map(|l| l.to_ascii_uppercase())),
                self.dns_domain
                    .clone()
                    .or_else(|| (!dc_labels.is_empty()).then(|| dc_labels.join("."))),
            )
        } else {
            (self.netbios_domain.clone(), self.dns_domain.clone())
        };
        Ok(Settings {
            kind: self.kind,
            prefix: format!("{}+{}", if ad { "AD" } else { "LDAP" }, self.name),
            urls: self.urls.clone(),
            starttls: self.starttls,
            tls,
            bind_dn: self.bind_dn.clone(),
            bind_password: Secret::new(password),
            base_dn: self.base_dn.clone(),
            user_filter: parenthesized(pick(
                &self.user_filter,
                "(objectClass=person)",
                "(&(objectClass=user)(!(objectClass=computer)))",
            )),
            login_attribute: pick(&self.login_attribute, "uid", "sAMAccountName"),
            id_attribute: pick(&self.id_attribute, "entryUUID", "objectGUID"),
            group_base_dn: self
                .group_base_dn
                .clone()
                .unwrap_or_else(|| self.base_dn.clone()),
            group_filter: parenthesized(pick(
                &self.group_filter,
                "(objectClass=groupOfNames)",
                "(objectClass=group)",
            )),
            group_name_attribute: pick(&self.group_name_attribute, "cn", "cn"),
            group_member_attribute: pick(&self.group_member_attribute, "member", "member"),
            nested_groups: self.nested_groups.unwrap_or(ad),
            max_group_depth: self.max_group_depth,
            netbios_domain: netbios,
            dns_domain: dns,
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            timeout: Duration::from_secs(self.timeout_secs),
            pool_size: self.pool_size,
        })
    }
}

/// `objectClass=x` as `(objectClass=x)`: filters are ANDed with others, which needs the parentheses.
fn parenthesized(filter: String) -> String {
    let f = filter.trim();
    if f.starts_with('(') {
        f.to_string()
    } else {
        format!("({f})")
    }
}

/// rustls with the ring provider, trusting `ca_file` or else the system's store.
fn client_tls(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("ca_file {}: no certificate in it", path.display()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!("no CA certificates in the system's trust store; set ca_file");
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A provider's configuration with every default filled in and every file read.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub kind: DirectoryKind,
    /// `LDAP+N` or `AD+N`.
    pub prefix: String,
    pub urls: Vec<String>,
    pub starttls: bool,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub bind_dn: String,
    pub bind_password: Secret,
    pub base_dn: String,
    pub user_filter: String,
    pub login_attribute: String,
    pub id_attribute: String,
    pub group_base_dn: String,
    pub group_filter: String,
    pub group_name_attribute: String,
    pub group_member_attribute: String,
    pub nested_groups: bool,
    pub max_group_depth: u32,
    pub netbios_domain: Option<String>,
    pub dns_domain: Option<String>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub pool_size: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kind: &str) -> String {
        format!(
            r#"
kind = "{kind}"
name = "CORP"
urls = ["ldaps://dc1.corp.example", "ldap://dc2.corp.example:3268"]
bind_dn = "CN=svc,CN=Users,DC=corp,DC=example"
bind_password_file = "/nonexistent"
base_dn = "DC=corp,DC=example"
"#
        )
    }

    fn parse(text: &str) -> LdapConfig {
        toml::from_str(text).expect("parses")
    }

    #[test]
    fn minimal_entries_parse_with_defaults() {
        let c = parse(&sample("ad"));
        assert_eq!(c.kind, DirectoryKind::Ad);
        assert!(c.starttls);
        assert_eq!(
            (c.connect_timeout_secs, c.timeout_secs, c.pool_size),
            (5, 10, 4)
        );
        c.validate().expect("valid");
        assert!(toml::from_str::<LdapConfig>(&format!("{}\nbogus = 1\n", sample("ldap"))).is_err());
        assert!(toml::from_str::<LdapConfig>(&sample("novell")).is_err());
    }

    #[test]
    fn the_configuration_file_takes_a_list_of_providers() {
        let path = Path::new("vedauth.toml");
        let text = format!("[[ldap]]\n{}\n[[ldap]]\n{}", sample("ad"), sample("ldap"));
        let cfg = crate::config::Config::from_toml(&text, path).expect("valid");
        let kinds: Vec<_> = cfg.ldap.iter().map(|l| l.kind).collect();
        assert_eq!(kinds, vec![DirectoryKind::Ad, DirectoryKind::Ldap]);
        // Entries are checked with the rest of the file, and the message says where.
        let bad = text.replacen("ldaps://dc1.corp.example", "http://dc1", 1);
        let msg = crate::config::Config::from_toml(&bad, path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("ldap") && msg.contains("CORP") && msg.contains("http://dc1"),
            "{msg}"
        );
    }

    #[test]
    fn kind_defaults_and_derived_domains() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").expect("write");
        let mut c = parse(&sample("ad"));
        c.bind_password_file = pw.clone();
        let s = c.resolve().expect("resolves");
        assert_eq!(s.prefix, "AD+CORP");
        assert_eq!(s.bind_password.expose(), "s3cret");
        assert_eq!(s.login_attribute, "sAMAccountName");
        assert_eq!(s.id_attribute, "objectGUID");
        assert!(s.nested_groups);
        assert_eq!(s.netbios_domain.as_deref(), Some("CORP"));
        assert_eq!(s.dns_domain.as_deref(), Some("corp.example"));
        assert!(s.tls.is_some());

        let mut c = parse(&sample("ldap"));
        c.bind_password_file = pw;
        let s = c.resolve().expect("resolves");
        assert_eq!(s.prefix, "LDAP+CORP");
        assert_eq!(s.login_attribute, "uid");
        assert_eq!(s.id_attribute, "entryUUID");
        assert!(!s.nested_groups);
        assert_eq!(s.netbios_domain, None);
        assert_eq!(s.dns_domain, None);
    }

    #[test]
    fn bad_entries_are_named() {
        let base = parse(&sample("ldap"));
        type Change = Box<dyn Fn(&mut LdapConfig)>;
        let cases: Vec<(&str, Change)> = vec![
            ("name", Box::new(|c| c.name = "a:b".into())),
            ("name", Box::new(|c| c.name = String::new())),
            ("urls", Box::new(|c| c.urls.clear())),
            ("url", Box::new(|c| c.urls = vec!["http://x".into()])),
            ("url", Box::new(|c| c.urls = vec!["ldap:///dc=x".into()])),
            (
                "user_filter",
                Box::new(|c| c.user_filter = Some("(uid=".into())),
            ),
            (
                "login_attribute",
                Box::new(|c| c.login_attribute = Some("uid)(x".into())),
            ),
            ("timeout", Box::new(|c| c.timeout_secs = 0)),
            ("pool_size", Box::new(|c| c.pool_size = 0)),
        ];
        for (what, change) in cases {
            let mut c = base.clone();
            change(&mut c);
            let msg = c
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                msg.contains(what) && msg.contains("directory provider"),
                "{what}: {msg:?}"
            );
        }
        let msg = base
            .resolve()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("bind_password_file"), "{msg}");
    }
}
