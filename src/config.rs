//! Typed settings. Defaults are code; a TOML file (`--config`, default `<data-dir>/vedauth.toml`)
//! overrides them; command-line flags override the file. Unknown keys are errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::grants::EngineOptions;
use crate::password::HashParams;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address and port to listen on.
    pub listen: String,
    /// Serve HTTPS (true) or plain HTTP for use behind a TLS-terminating proxy (false).
    pub tls: bool,
    /// PEM certificate chain; empty = the generated one in the data directory.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key; empty = the generated one in the data directory.
    pub tls_key_file: Option<PathBuf>,
    /// PostgreSQL URL; empty = the embedded SQLite file in the data directory.
    pub database_url: Option<String>,
    /// The four-part version `GET /vedsdk/SystemStatus/Version` reports.
    pub tpp_version: String,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    pub shutdown_grace_secs: u64,
    pub password_hash: PasswordHashConfig,
    pub tokens: TokenConfig,
    /// Directory identity providers (LDAP, Active Directory), tried in this order after local users.
    pub ldap: Vec<crate::identity::ldap::LdapConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordHashConfig {
    /// argon2id memory cost in KiB.
    pub memory_kib: u32,
    /// argon2id passes.
    pub iterations: u32,
    /// argon2id lanes.
    pub parallelism: u32,
    /// Hashing threads; 0 = one per core.
    pub threads: usize,
    /// Hashing jobs that may wait for a thread before requests are refused with 503; 0 = 32 per thread.
    pub queue: usize,
}

impl Default for PasswordHashConfig {
    fn default() -> Self {
        let p = HashParams::default();
        Self {
            memory_kib: p.memory_kib,
            iterations: p.iterations,
            parallelism: p.parallelism,
            threads: 0,
            queue: 0,
        }
    }
}

impl PasswordHashConfig {
    pub fn params(&self) -> HashParams {
        HashParams {
            memory_kib: self.memory_kib,
            iterations: self.iterations,
            parallelism: self.parallelism,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Revoke the whole grant when an already rotated refresh token is presented again.
    pub refresh_reuse_detection: bool,
    /// Seconds a verified token stays in the verify cache.
    pub verify_cache_ttl_secs: u64,
    /// Entries in the verify cache.
    pub verify_cache_capacity: u64,
    /// Seconds between sweeps of expired grants.
    pub sweep_interval_secs: u64,
    /// Grants deleted per sweep statement.
    pub sweep_batch: u32,
}

impl Default for TokenConfig {
    fn default() -> Self {
        let e = EngineOptions::default();
        Self {
            refresh_reuse_detection: e.refresh_reuse_detection,
            verify_cache_ttl_secs: e.verify_cache_ttl.as_secs(),
            verify_cache_capacity: e.verify_cache_capacity,
            sweep_interval_secs: 60,
            sweep_batch: 1000,
        }
    }
}

impl TokenConfig {
    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            refresh_reuse_detection: self.refresh_reuse_detection,
            verify_cache_capacity: self.verify_cache_capacity,
            verify_cache_ttl: Duration::from_secs(self.verify_cache_ttl_secs),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8443".into(),
            tls: true,
            tls_cert_file: None,
            tls_key_file: None,
            database_url: None,
            tpp_version: "25.3.0.2740".into(),
            shutdown_grace_secs: 30,
            password_hash: PasswordHashConfig::default(),
            tokens: TokenConfig::default(),
            ldap: Vec::new(),
        }
    }
}

impl Config {
    /// Parses TOML text; unknown keys are rejected by name.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Loads `path` if it exists; a missing file at the default location means defaults.
    pub fn load(path: &Path, must_exist: bool) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_toml(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|e| ConfigError::Invalid {
            key: "listen",
            message: format!("{e}"),
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        argon2::Params::new(
            self.password_hash.memory_kib,
            self.password_hash.iterations,
            self.password_hash.parallelism,
            None,
        )
        .map_err(|e| ConfigError::Invalid {
            key: "password_hash",
            message: e.to_string(),
        })?;
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(ConfigError::Invalid {
                key: "tls_cert_file",
                message: "tls_cert_file and tls_key_file go together".into(),
            });
        }
        for provider in &self.ldap {
            provider.validate().map_err(|e| ConfigError::Invalid {
                key: "ldap",
                message: e.to_string(),
            })?;
        }
        if self.tokens.sweep_batch == 0 {
            return Err(ConfigError::Invalid {
                key: "tokens.sweep_batch",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::from_toml(
            "listen = \"127.0.0.1:1\"\nlisten_port = 3\n",
            Path::new("x.toml"),
        );
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("listen_port"), "{msg}");
        let e = Config::from_toml("[tokens]\nbogus = 1\n", Path::new("x.toml"));
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("bogus"), "{msg}");
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let text = toml::to_string(&Config::default()).unwrap_or_default();
        let back = Config::from_toml(&text, Path::new("d.toml")).ok();
        assert_eq!(back, Some(Config::default()));
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Config::from_toml("listen = \"nope\"", Path::new("x")).is_err());
        assert!(Config::from_toml("[password_hash]\nmemory_kib = 1", Path::new("x")).is_err());
    }
}
