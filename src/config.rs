//! Typed settings. Defaults are code; a TOML file (`--config`, default `<data-dir>/vedauth.toml`)
//! overrides them; command-line flags override the file. Unknown keys are errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::grants::EngineOptions;
use crate::password::{HashParams, HashScheduling, PoolOptions};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The cause is the `source` (printed after this by `{:#}`, not repeated in this text).
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not TOML, or a value of the wrong type. `at` says where: `file:line:column` and the key,
    /// or the environment variable.
    #[error("{at}: {message}")]
    Parse { at: String, message: String },
    #[error("invalid setting {key}: {message}")]
    Invalid { key: &'static str, message: String },
    /// An `Invalid` setting and where it was set (`file:line:column`, or the variable).
    #[error("{at}: {inner}")]
    At { at: String, inner: Box<ConfigError> },
}

/// `""` in a file or the environment means "not set".
fn empty_as_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: From<String>,
{
    let s: Option<String> = Option::deserialize(d)?;
    Ok(s.filter(|s| !s.is_empty()).map(T::from))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address and port to listen on.
    pub listen: String,
    /// Serve HTTPS (true) or plain HTTP for use behind a TLS-terminating proxy (false).
    pub tls: bool,
    /// PEM certificate chain; empty = the generated one in the data directory.
    #[serde(deserialize_with = "empty_as_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key; empty = the generated one in the data directory.
    #[serde(deserialize_with = "empty_as_none")]
    pub tls_key_file: Option<PathBuf>,
    /// PostgreSQL URL; empty = the embedded SQLite file in the data directory.
    #[serde(deserialize_with = "empty_as_none")]
    pub database_url: Option<String>,
    /// The four-part version `GET /vedsdk/SystemStatus/Version` reports.
    pub tpp_version: String,
    /// The URL clients reach this server at (`https://auth.example:8443`): the OAuth 2.0
    /// issuer and the base of the metadata's endpoint URLs. Empty = this listener's own URL.
    pub public_url: String,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    pub shutdown_grace_secs: u64,
    pub password_hash: PasswordHashConfig,
    /// What local users' new passwords must be.
    pub password_policy: crate::password::PasswordPolicy,
    pub tokens: TokenConfig,
    pub lockout: crate::lockout::LockoutPolicy,
    pub audit: crate::audit::AuditConfig,
    pub rate_limit: RateLimitConfig,
    pub http: HttpConfig,
    pub metrics: MetricsConfig,
    pub database: DatabaseConfig,
    /// Directory identity providers (LDAP, Active Directory), tried in this order after local users.
    pub ldap: Vec<crate::identity::ldap::LdapConfig>,
    /// The gateway check (`/gateway/check`) for reverse proxies.
    pub gateway: GatewayConfig,
    /// Client certificates: where they are asked for, and who may forward them.
    pub client_cert: ClientCertConfig,
}

/// The gateway check's rules: which scope a path of the operator's own APIs needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Refuse (403) a request that matches no route rule and no `/vedsdk` endpoint; false:
    /// any valid token passes there.
    pub require_route: bool,
    /// Path prefix to scope rules, `[[gateway.route]]` in the file; the longest matching
    /// prefix wins, and they are checked before the `/vedsdk` scope map.
    pub route: Vec<GatewayRoute>,
}

/// One `[[gateway.route]]`: requests whose path starts with `prefix` (at a `/` boundary) and
/// whose method is in `methods` (empty = any) need `scope` (empty = any valid token).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayRoute {
    pub prefix: String,
    pub scope: String,
    pub methods: Vec<String>,
}

/// The listener side of the certificate grant (docs/certificate-auth.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientCertConfig {
    /// Ask for an optional client certificate on the main listener (while the certificate grant
    /// is on and trusted issuers are configured). Off: only on `listen`.
    pub request_on_main_listener: bool,
    /// A second HTTPS listener (same routes) that asks for client certificates; empty = none.
    pub listen: String,
    /// The proxy convention whose header carries a forwarded client certificate: `envoy`,
    /// `traefik`, `nginx` or `nginx-ingress`; empty = none is read.
    pub forwarded_header: String,
    /// Peers (IP addresses or CIDR blocks) whose forwarded certificate header is believed.
    pub trusted_proxies: Vec<String>,
    /// Seconds between reads of the switch and the trusted issuers by the listeners.
    pub refresh_secs: u64,
}

impl Default for ClientCertConfig {
    fn default() -> Self {
        Self {
            request_on_main_listener: true,
            listen: String::new(),
            forwarded_header: String::new(),
            trusted_proxies: Vec::new(),
            refresh_secs: 2,
        }
    }
}

impl ClientCertConfig {
    /// The forwarding set-up, when a header convention is configured.
    pub fn forwarding(&self) -> Option<crate::certauth::ForwardedCertConfig> {
        let format = self.forwarded_header.parse().ok()?;
        Some(crate::certauth::ForwardedCertConfig {
            format,
            trusted_proxies: self
                .trusted_proxies
                .iter()
                .filter_map(|p| crate::net::parse_cidr(p))
                .collect(),
        })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid { key, message };
        if !self.listen.is_empty() {
            self.listen
                .parse::<SocketAddr>()
                .map_err(|e| invalid("client_cert.listen", e.to_string()))?;
        }
        if !self.forwarded_header.is_empty() {
            self.forwarded_header
                .parse::<crate::certauth::ForwardedFormat>()
                .map_err(|e| invalid("client_cert.forwarded_header", e))?;
            if self.trusted_proxies.is_empty() {
                return Err(invalid(
                    "client_cert.forwarded_header",
                    "a forwarded certificate header needs client_cert.trusted_proxies: the proxies it is believed from".into(),
                ));
            }
        } else if !self.trusted_proxies.is_empty() {
            return Err(invalid(
                "client_cert.trusted_proxies",
                "set client_cert.forwarded_header too: the header convention these proxies follow"
                    .into(),
            ));
        }
        for p in &self.trusted_proxies {
            crate::net::parse_cidr(p).ok_or_else(|| {
                invalid(
                    "client_cert.trusted_proxies",
                    format!("'{p}' is not an IP address or CIDR block"),
                )
            })?;
        }
        Ok(())
    }
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
    /// How hashing threads give way to request handling: `idle` or `nice`.
    pub scheduling: HashScheduling,
    /// Seconds a hashing thread keeps argon2id's working memory after its last hash; 0 = for
    /// the thread's life.
    pub keep_memory_secs: u64,
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
            scheduling: HashScheduling::default(),
            keep_memory_secs: 10,
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

    pub fn pool_options(&self) -> PoolOptions {
        PoolOptions {
            threads: self.threads,
            queue: self.queue,
            scheduling: self.scheduling,
            keep_memory: (self.keep_memory_secs > 0)
                .then(|| Duration::from_secs(self.keep_memory_secs)),
        }
    }
}

/// The PostgreSQL connection pool, and the embedded SQLite file's memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Most connections this node keeps open to PostgreSQL (one more serves the invalidation feed).
    pub max_connections: u32,
    /// Seconds a request waits for a connection, connecting included, before it gets 503.
    pub acquire_timeout_secs: u64,
    /// Seconds one store operation may take in all before it is abandoned with 503 (a database
    /// that hangs rather than refuses).
    pub operation_timeout_secs: u64,
    /// SQLite only: MiB all of SQLite's page caches in this process may hold together.
    pub sqlite_cache_mib: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout_secs: 3,
            operation_timeout_secs: 10,
            sqlite_cache_mib: crate::store::sqlite::DEFAULT_CACHE_MIB,
        }
    }
}

impl DatabaseConfig {
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_secs(self.acquire_timeout_secs)
    }
    pub fn operation_timeout(&self) -> Duration {
        Duration::from_secs(self.operation_timeout_secs)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Revoke the whole grant when an already rotated refresh token is presented again.
    pub refresh_reuse_detection: bool,
    /// Seconds during which a rotated refresh token, presented again, gets the same answer.
    pub refresh_grace_secs: u64,
    /// Seconds a verified token stays in the verify cache.
    pub verify_cache_ttl_secs: u64,
    /// Entries in the verify cache.
    pub verify_cache_capacity: u64,
    /// Seconds between sweeps of expired grants.
    pub sweep_interval_secs: u64,
    /// Grants deleted per sweep statement.
    pub sweep_batch: u32,
    /// Extra CA certificates (PEM) trusted, besides the system's, when fetching JWT issuers' keys.
    #[serde(deserialize_with = "empty_as_none")]
    pub jwt_ca_file: Option<PathBuf>,
}

impl Default for TokenConfig {
    fn default() -> Self {
        let e = EngineOptions::default();
        Self {
            refresh_reuse_detection: e.refresh_reuse_detection,
            refresh_grace_secs: e.refresh_grace_secs,
            verify_cache_ttl_secs: e.verify_cache_ttl.as_secs(),
            verify_cache_capacity: e.verify_cache_capacity,
            sweep_interval_secs: 60,
            sweep_batch: 1000,
            jwt_ca_file: None,
        }
    }
}

impl TokenConfig {
    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            refresh_reuse_detection: self.refresh_reuse_detection,
            refresh_grace_secs: self.refresh_grace_secs,
            verify_cache_capacity: self.verify_cache_capacity,
            verify_cache_ttl: Duration::from_secs(self.verify_cache_ttl_secs),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Sustained requests per second per client address on authorize, token and revoke.
    pub per_second: u32,
    /// Requests a client address may make at once before the sustained rate applies.
    pub burst: u32,
    /// Peers whose `X-Forwarded-For` is believed (IP addresses or CIDR blocks).
    pub trusted_proxies: Vec<String>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            per_second: 20,
            burst: 40,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Connections one client address (an IPv6 /64) may hold at once; 0 = no cap. Peers in
    /// `rate_limit.trusted_proxies` are not capped.
    pub max_connections_per_address: usize,
    /// Seconds a client may take to finish the TLS handshake.
    pub tls_handshake_timeout_secs: u64,
    /// Seconds a client may take to send a request's headers, the first one counted from the
    /// connection's start (after the TLS handshake).
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in progress.
    pub idle_timeout_secs: u64,
    /// Seconds a request may take from its headers to its response.
    pub request_timeout_secs: u64,
    /// Seconds between HTTP/2 keep-alive pings; 0 = no pings.
    pub h2_keepalive_interval_secs: u64,
    /// Seconds an HTTP/2 client has to answer a keep-alive ping.
    pub h2_keepalive_timeout_secs: u64,
    /// Bytes of request line and headers.
    pub max_header_bytes: usize,
    /// Header fields per request.
    pub max_headers: usize,
    /// `Strict-Transport-Security` max-age on HTTPS; 0 = no header.
    pub hsts_max_age_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_address: 256,
            tls_handshake_timeout_secs: 10,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            request_timeout_secs: 30,
            h2_keepalive_interval_secs: 30,
            h2_keepalive_timeout_secs: 10,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            hsts_max_age_secs: 31_536_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// Serve `/metrics` on this separate address (plain HTTP); empty = on the main listener.
    pub listen: String,
    /// On the main listener, serve `/metrics` without a token. Off by default: the metrics
    /// describe the traffic of every client, which is not for anyone who can reach the port.
    pub public: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: String::new(),
            public: false,
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
            public_url: String::new(),
            shutdown_grace_secs: 30,
            password_hash: PasswordHashConfig::default(),
            tokens: TokenConfig::default(),
            lockout: Default::default(),
            password_policy: Default::default(),
            audit: Default::default(),
            rate_limit: RateLimitConfig::default(),
            http: HttpConfig::default(),
            metrics: MetricsConfig::default(),
            database: DatabaseConfig::default(),
            ldap: Vec::new(),
            gateway: GatewayConfig::default(),
            client_cert: ClientCertConfig::default(),
        }
    }
}

/// How a key's value is written in the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    Bool,
    /// Comma-separated in the environment.
    List,
}

/// One configuration key: its dotted path, type and meaning. This table is the single source
/// for `config defaults`, the `VEDAUTH_...` environment variables and docs/configuration.md
/// (tests keep all three in step with the `Config` struct).
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub path: &'static str,
    pub kind: Kind,
    pub doc: &'static str,
}

pub const KEYS: &[Key] = &[
    Key { path: "listen", kind: Kind::Str, doc: "Address and port to listen on." },
    Key { path: "tls", kind: Kind::Bool, doc: "Serve HTTPS (true) or plain HTTP for use behind a TLS-terminating proxy (false)." },
    Key { path: "tls_cert_file", kind: Kind::Str, doc: "PEM certificate chain; empty = the certificate generated in <data-dir>/tls." },
    Key { path: "tls_key_file", kind: Kind::Str, doc: "PEM private key for tls_cert_file; empty = the generated one." },
    Key { path: "database_url", kind: Kind::Str, doc: "PostgreSQL URL (postgres://...); empty = the embedded SQLite file <data-dir>/vedauth.db. A secret: VEDAUTH_DATABASE_URL_FILE reads it from a file." },
    Key { path: "tpp_version", kind: Kind::Str, doc: "The four-part version GET /vedsdk/SystemStatus/Version reports." },
    Key { path: "public_url", kind: Kind::Str, doc: "The URL clients reach this server at (https://host:port): the OAuth 2.0 issuer and the base of the endpoint URLs in /.well-known/oauth-authorization-server; empty = this listener's own URL." },
    Key { path: "shutdown_grace_secs", kind: Kind::Int, doc: "Seconds in-flight requests get to finish after SIGINT/SIGTERM." },
    Key { path: "password_hash.memory_kib", kind: Kind::Int, doc: "argon2id memory cost in KiB; hashes made with other parameters are upgraded at the next login." },
    Key { path: "password_hash.iterations", kind: Kind::Int, doc: "argon2id passes." },
    Key { path: "password_hash.parallelism", kind: Kind::Int, doc: "argon2id lanes." },
    Key { path: "password_hash.threads", kind: Kind::Int, doc: "Password-hashing threads; 0 = one per core." },
    Key { path: "password_hash.queue", kind: Kind::Int, doc: "Hashing jobs that may wait for a thread before requests are refused with 503; 0 = 32 per thread." },
    Key { path: "password_hash.scheduling", kind: Kind::Str, doc: "How hashing threads give way to request handling: \"idle\" (Linux SCHED_IDLE: a request takes the core at once; default) or \"nice\" (nice 10: a smaller share only)." },
    Key { path: "password_hash.keep_memory_secs", kind: Kind::Int, doc: "Seconds a hashing thread keeps argon2id's working memory (memory_kib) after its last hash, then gives it back to the OS; 0 = for the thread's life." },
    Key { path: "password_policy.min_length", kind: Kind::Int, doc: "Fewest characters a local user's new password may have." },
    Key { path: "tokens.refresh_grace_secs", kind: Kind::Int, doc: "Seconds after a refresh during which the same (old) refresh token, presented again, gets the same new pair instead of an error; 0 = off. For clients that lose an answer or run as several replicas." },
    Key { path: "tokens.refresh_reuse_detection", kind: Kind::Bool, doc: "Revoke the whole grant when an already rotated refresh token is presented again (off: TPP clients do not expect it)." },
    Key { path: "tokens.verify_cache_ttl_secs", kind: Kind::Int, doc: "Seconds a verified token stays in the verify cache; the bound on how long another process's revocation can go unseen. Successful client authentications and introspection's names are kept as long. 0 disables these caches." },
    Key { path: "tokens.verify_cache_capacity", kind: Kind::Int, doc: "Entries in the verify cache." },
    Key { path: "tokens.sweep_interval_secs", kind: Kind::Int, doc: "Seconds between sweeps of expired grants." },
    Key { path: "tokens.sweep_batch", kind: Kind::Int, doc: "Grants deleted per sweep statement." },
    Key { path: "tokens.jwt_ca_file", kind: Kind::Str, doc: "PEM file of CA certificates trusted, besides the system's, for fetching JWT issuers' keys (an issuer with a private CA); empty = the system's only." },
    Key { path: "database.max_connections", kind: Kind::Int, doc: "PostgreSQL only: most connections this node keeps open (one more serves the invalidation feed)." },
    Key { path: "database.acquire_timeout_secs", kind: Kind::Int, doc: "PostgreSQL only: seconds a request waits for a connection, connecting included, before it gets 503." },
    Key { path: "database.operation_timeout_secs", kind: Kind::Int, doc: "PostgreSQL only: seconds one store operation may take in all before it is abandoned with 503." },
    Key { path: "database.sqlite_cache_mib", kind: Kind::Int, doc: "SQLite only: MiB of memory SQLite may hold in this process (page caches of all connections together) before its caches recycle pages instead of growing." },
    Key { path: "lockout.enabled", kind: Kind::Bool, doc: "Lock an identity out after too many failed logins." },
    Key { path: "lockout.threshold", kind: Kind::Int, doc: "Failed logins within the window that lock the identity." },
    Key { path: "lockout.window_secs", kind: Kind::Int, doc: "Seconds over which failed logins are counted." },
    Key { path: "lockout.duration_secs", kind: Kind::Int, doc: "Seconds a locked identity stays locked (vedauth user unlock ends it early)." },
    Key { path: "lockout.wait_secs", kind: Kind::Int, doc: "Seconds an attempt waits for its turn while threshold checks of the same identity are under way (503 after that)." },
    Key { path: "audit.path", kind: Kind::Str, doc: "Audit trail file; empty = <data-dir>/audit.log, \"-\" = standard output, \"off\" = none." },
    Key { path: "audit.fail_closed", kind: Kind::Bool, doc: "Refuse requests (503) when an audit event cannot be written (false: log the loss and go on)." },
    Key { path: "rate_limit.enabled", kind: Kind::Bool, doc: "Rate-limit the authorize, token and revoke endpoints per client address." },
    Key { path: "rate_limit.per_second", kind: Kind::Int, doc: "Sustained requests per second per client address." },
    Key { path: "rate_limit.burst", kind: Kind::Int, doc: "Requests a client address may make at once before the sustained rate applies." },
    Key { path: "rate_limit.trusted_proxies", kind: Kind::List, doc: "Peers (IP addresses or CIDR blocks) whose X-Forwarded-For names the client; comma-separated in the environment." },
    Key { path: "http.max_connections", kind: Kind::Int, doc: "Connections served at once; more wait in the kernel's backlog." },
    Key { path: "http.max_connections_per_address", kind: Kind::Int, doc: "Connections one client address (an IPv6 /64) may hold at once; more are closed at once. 0 = no cap. Peers in rate_limit.trusted_proxies are not capped." },
    Key { path: "http.tls_handshake_timeout_secs", kind: Kind::Int, doc: "Seconds a client may take to finish the TLS handshake." },
    Key { path: "http.header_read_timeout_secs", kind: Kind::Int, doc: "Seconds a client may take to send a request's headers before it is cut off; for the first request counted from the connection's start (after the TLS handshake)." },
    Key { path: "http.idle_timeout_secs", kind: Kind::Int, doc: "Seconds a connection may stay open with no request in progress before it is closed (an idle HTTP/1.1 connection already closes after header_read_timeout_secs); requests that make no progress for request_timeout_secs plus this also close it." },
    Key { path: "http.request_timeout_secs", kind: Kind::Int, doc: "Seconds a request may take from its headers to its response." },
    Key { path: "http.h2_keepalive_interval_secs", kind: Kind::Int, doc: "Seconds between HTTP/2 keep-alive pings; 0 = no pings." },
    Key { path: "http.h2_keepalive_timeout_secs", kind: Kind::Int, doc: "Seconds an HTTP/2 client has to answer a keep-alive ping before the connection is closed." },
    Key { path: "http.max_header_bytes", kind: Kind::Int, doc: "Bytes of request line and headers." },
    Key { path: "http.max_headers", kind: Kind::Int, doc: "Header fields per request." },
    Key { path: "http.hsts_max_age_secs", kind: Kind::Int, doc: "Strict-Transport-Security max-age on HTTPS; 0 = no header." },
    Key { path: "metrics.enabled", kind: Kind::Bool, doc: "Serve Prometheus metrics at /metrics." },
    Key { path: "metrics.listen", kind: Kind::Str, doc: "Serve /metrics on this separate address (plain HTTP, without a token, e.g. 127.0.0.1:9464); empty = on the main listener." },
    Key { path: "metrics.public", kind: Kind::Bool, doc: "On the main listener, serve /metrics without a token (false: a bearer token with the admin scope is needed)." },
    Key { path: "gateway.require_route", kind: Kind::Bool, doc: "Gateway check: refuse (403) a request whose path matches no [[gateway.route]] rule and no /vedsdk endpoint (false: any valid token passes there)." },
    Key { path: "client_cert.request_on_main_listener", kind: Kind::Bool, doc: "Ask for an optional client certificate on the main listener while the certificate grant is on (AuthorizeByCertificate) and trusted issuers are configured; false: only on client_cert.listen, so that browsers on the main listener never see a certificate prompt." },
    Key { path: "client_cert.listen", kind: Kind::Str, doc: "A second HTTPS listener, with the same routes, that asks for client certificates (e.g. 0.0.0.0:8444); empty = none." },
    Key { path: "client_cert.forwarded_header", kind: Kind::Str, doc: "Behind a TLS-terminating proxy: the convention of the header that carries the client certificate (envoy, traefik, nginx or nginx-ingress); empty = none is read." },
    Key { path: "client_cert.trusted_proxies", kind: Kind::List, doc: "Peers (IP addresses or CIDR blocks) whose forwarded certificate header is believed; the header is removed from everyone else's requests. Comma-separated in the environment." },
    Key { path: "client_cert.refresh_secs", kind: Kind::Int, doc: "Seconds between the listeners' reads of AuthorizeByCertificate and the trusted issuers from the store: how long a change takes to reach the TLS handshakes of every node." },
];

impl Key {
    /// `VEDAUTH_` and the path in upper case with `_` for `.`.
    pub fn env_name(&self) -> String {
        format!(
            "VEDAUTH_{}",
            self.path.replace('.', "_").to_ascii_uppercase()
        )
    }
}

fn env_value(key: &Key, raw: &str) -> Result<toml::Value, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        key: key.path,
        message,
    };
    match key.kind {
        Kind::Str => Ok(toml::Value::String(raw.to_string())),
        Kind::Int => raw
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| {
                invalid(format!(
                    "{} must be an integer, not '{raw}'",
                    key.env_name()
                ))
            }),
        Kind::Bool => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(toml::Value::Boolean(false)),
            _ => Err(invalid(format!(
                "{} must be true or false, not '{raw}'",
                key.env_name()
            ))),
        },
        Kind::List => Ok(toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        )),
    }
}

fn set_path(table: &mut toml::Table, path: &str, v: toml::Value) {
    match path.split_once('.') {
        None => {
            table.insert(path.to_string(), v);
        }
        Some((head, rest)) => {
            let entry = table
                .entry(head.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = entry {
                set_path(t, rest, v);
            }
        }
    }
}

/// A configuration file's text, parsed once for where its keys are and once into the types.
struct FileText<'a> {
    text: &'a str,
    path: &'a Path,
    doc: toml_edit::ImDocument<&'a str>,
}

impl<'a> FileText<'a> {
    /// Syntax errors say where (`file:line:column`) and, when the line has one, the key.
    fn parse(text: &'a str, path: &'a Path) -> Result<Self, ConfigError> {
        match toml_edit::ImDocument::parse(text) {
            Ok(doc) => Ok(Self { text, path, doc }),
            Err(e) => {
                let start = e.span().map(|s| s.start).unwrap_or(0);
                let mut at = position(text, path, start);
                if let Some(key) = key_on_line(text, start) {
                    at = format!("{at}: {key}");
                }
                Err(ConfigError::Parse {
                    at,
                    message: e.message().trim_end().to_string(),
                })
            }
        }
    }

    /// The file alone into the types (unknown keys and wrong types are named here, with the
    /// place of the value), then as a table to layer the environment on.
    fn typed_check(&self) -> Result<toml::Table, ConfigError> {
        let checked: Result<Config, _> =
            serde_path_to_error::deserialize(toml::Deserializer::new(self.text));
        if let Err(e) = checked {
            let key = e.path().to_string();
            let place = match e.inner().span() {
                Some(span) => position(self.text, self.path, span.start),
                None => self
                    .locate(&key)
                    .unwrap_or_else(|| self.path.display().to_string()),
            };
            // Type errors name the key (the message itself does not).
            let at = if key.is_empty() || key == "." {
                place
            } else {
                format!("{place}: {key}")
            };
            return Err(ConfigError::Parse {
                at,
                message: e.inner().message().trim_end().to_string(),
            });
        }
        toml::from_str(self.text).map_err(|e: toml::de::Error| ConfigError::Parse {
            at: self.path.display().to_string(),
            message: e.message().to_string(),
        })
    }

    /// `file:line:column` of a dotted key set in this file, if it is.
    fn locate(&self, key: &str) -> Option<String> {
        let mut table: &dyn toml_edit::TableLike = self.doc.as_table();
        let mut found = None;
        for part in key.split('.') {
            let (k, item) = table.get_key_value(part)?;
            found = k.span().or_else(|| item.span());
            if let Some(t) = item.as_table_like() {
                table = t;
            }
        }
        Some(position(self.text, self.path, found?.start))
    }
}

/// `file:line:column` of a byte offset (both counted from 1, columns in characters).
fn position(text: &str, path: &Path, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    format!("{}:{line}:{column}", path.display())
}

/// The dotted key a line defines (`[table]` headers above it included), for syntax errors
/// where no parse tree exists to ask.
fn key_on_line(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text.get(line_start..)?.lines().next()?.trim();
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') || key.contains(char::is_whitespace) {
        return None;
    }
    let header = text
        .get(..line_start)?
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    Some(match header {
        Some(h) if !h.is_empty() => format!("{h}.{key}"),
        _ => key.to_string(),
    })
}

impl Config {
    /// Parses TOML text alone (no environment); unknown keys are rejected by name.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::layered(Some((text, path)), &|_| None)
    }

    /// Defaults, then the file's text (if any), then the environment as `env` reports it
    /// (`VEDAUTH_<KEY>`, or `VEDAUTH_<KEY>_FILE` naming a file that holds the value).
    /// Errors name the key and where it was set: the file, line and column, or the variable.
    pub fn layered(
        file: Option<(&str, &Path)>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let doc = match file {
            Some((text, path)) => Some(FileText::parse(text, path)?),
            None => None,
        };
        let mut table: toml::Table = match &doc {
            Some(doc) => doc.typed_check()?,
            None => toml::Table::new(),
        };
        let mut from_env = Vec::new();
        for key in KEYS {
            let name = key.env_name();
            let raw = match env(&name) {
                Some(v) => Some(v),
                None => match env(&format!("{name}_FILE")) {
                    Some(file) => Some(
                        std::fs::read_to_string(&file)
                            .map_err(|source| ConfigError::Read {
                                path: PathBuf::from(&file),
                                source,
                            })?
                            .trim_end_matches(['\r', '\n'])
                            .to_string(),
                    ),
                    None => None,
                },
            };
            if let Some(raw) = raw {
                set_path(&mut table, key.path, env_value(key, &raw)?);
                from_env.push(key);
            }
        }
        // The file alone was checked above, so what fails now came from the environment.
        let cfg: Config = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(
            |e: serde_path_to_error::Error<toml::de::Error>| {
                let key = e.path().to_string();
                let var = KEYS
                    .iter()
                    .find(|k| k.path == key)
                    .map(Key::env_name)
                    .unwrap_or_else(|| "the environment".into());
                ConfigError::Parse {
                    at: format!("{var} ({key})"),
                    message: e.inner().message().to_string(),
                }
            },
        )?;
        cfg.validate().map_err(|e| match e {
            ConfigError::Invalid { key, .. } => {
                // A variable wins over the file, so it is the place to name if one is set.
                let var = from_env
                    .iter()
                    .find(|k| k.path == key || k.path.starts_with(&format!("{key}.")))
                    .map(|k| k.env_name());
                match var.or_else(|| doc.as_ref().and_then(|d| d.locate(key))) {
                    Some(at) => ConfigError::At {
                        at,
                        inner: Box::new(e),
                    },
                    None => e,
                }
            }
            other => other,
        })?;
        Ok(cfg)
    }

    /// Loads `path` (a missing file at the default location means defaults) and applies the
    /// process environment.
    pub fn load(path: &Path, must_exist: bool) -> Result<Self, ConfigError> {
        let env = |k: &str| std::env::var(k).ok();
        match std::fs::read_to_string(path) {
            Ok(text) => Self::layered(Some((&text, path)), &env),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                Self::layered(None, &env)
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The full default file, a comment above every key (`vedauth config defaults`).
    pub fn defaults_toml() -> String {
        let defaults = toml::Value::try_from(Config::default())
            .unwrap_or(toml::Value::Table(toml::Table::new()));
        let mut out = String::from(
            "# vedauth configuration: every key with its default value.\n\
             # Each key can also be set by the environment variable named beside it.\n",
        );
        let mut section = "";
        for key in KEYS {
            let (table, name) = match key.path.split_once('.') {
                Some((t, n)) => (t, n),
                None => ("", key.path),
            };
            if table != section {
                out.push_str(&format!("\n[{table}]\n"));
                section = table;
            }
            let value = key
                .path
                .split('.')
                .try_fold(&defaults, |v, part| v.get(part))
                .map(|v| v.to_string())
                .unwrap_or_else(|| "\"\"".into());
            out.push_str(&format!(
                "\n# {} ({})\n{name} = {value}\n",
                key.doc,
                key.env_name()
            ));
        }
        out.push_str(DIRECTORY_EXAMPLE);
        out.push_str(GATEWAY_EXAMPLE);
        out
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
        for p in &self.rate_limit.trusted_proxies {
            crate::net::parse_cidr(p).ok_or_else(|| ConfigError::Invalid {
                key: "rate_limit.trusted_proxies",
                message: format!("'{p}' is not an IP address or CIDR block"),
            })?;
        }
        self.client_cert.validate()?;
        if !self.tls && !self.client_cert.listen.is_empty() {
            return Err(ConfigError::Invalid {
                key: "client_cert.listen",
                message: "a client-certificate listener needs TLS; behind a TLS-terminating proxy use client_cert.forwarded_header".into(),
            });
        }
        if self.rate_limit.enabled
            && (self.rate_limit.per_second == 0 || self.rate_limit.burst == 0)
        {
            return Err(ConfigError::Invalid {
                key: "rate_limit.per_second",
                message: "per_second and burst must be at least 1 (or set enabled = false)".into(),
            });
        }
        if self.lockout.enabled && self.lockout.threshold == 0 {
            return Err(ConfigError::Invalid {
                key: "lockout.threshold",
                message: "must be at least 1 (or set enabled = false)".into(),
            });
        }
        let min = self.password_policy.min_length;
        if min == 0 || min > crate::password::MAX_PASSWORD_CHARS {
            return Err(ConfigError::Invalid {
                key: "password_policy.min_length",
                message: format!(
                    "must be between 1 and {}",
                    crate::password::MAX_PASSWORD_CHARS
                ),
            });
        }
        if self.lockout.enabled
            && (self.lockout.wait_secs == 0
                || self.lockout.wait_secs >= self.http.request_timeout_secs)
        {
            return Err(ConfigError::Invalid {
                key: "lockout.wait_secs",
                message: format!(
                    "must be at least 1 and less than http.request_timeout_secs ({}), so that a waiting login gets a 503 rather than a timeout",
                    self.http.request_timeout_secs
                ),
            });
        }
        if !self.metrics.listen.is_empty() {
            self.metrics
                .listen
                .parse::<SocketAddr>()
                .map_err(|e| ConfigError::Invalid {
                    key: "metrics.listen",
                    message: e.to_string(),
                })?;
        }
        let db = &self.database;
        if db.max_connections == 0 || db.acquire_timeout_secs == 0 || db.operation_timeout_secs == 0
        {
            return Err(ConfigError::Invalid {
                key: "database",
                message: "max_connections and the timeouts must be at least 1".into(),
            });
        }
        for provider in &self.ldap {
            provider.validate().map_err(|e| ConfigError::Invalid {
                key: "ldap",
                message: e.to_string(),
            })?;
        }
        if !self.public_url.is_empty() {
            let ok = url::Url::parse(&self.public_url).is_ok_and(|u| {
                matches!(u.scheme(), "https" | "http")
                    && u.host().is_some()
                    && u.query().is_none()
                    && u.fragment().is_none()
            });
            if !ok {
                return Err(ConfigError::Invalid {
                    key: "public_url",
                    message: format!(
                        "'{}' is not an https:// (or http://) URL without query or fragment",
                        self.public_url
                    ),
                });
            }
        }
        for r in &self.gateway.route {
            let bad = |message: String| ConfigError::Invalid {
                key: "gateway.route",
                message,
            };
            if !r.prefix.starts_with('/') {
                return Err(bad(format!("prefix '{}' must start with '/'", r.prefix)));
            }
            // `:priv` (that privilege on any scope name) is checked when the routes are built.
            if !r.scope.trim().is_empty() && !r.scope.trim().starts_with(':') {
                crate::scope::Scope::parse(&r.scope.replace(' ', ";"))
                    .map_err(|e| bad(format!("scope of '{}': {e}", r.prefix)))?;
            }
            for m in &r.methods {
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err(bad(format!("'{m}' is not an HTTP method")));
                }
            }
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

/// Gateway routes are a list, so they are shown as a commented example.
const GATEWAY_EXAMPLE: &str = "
# Gateway check rules (/gateway/check) for your own APIs: the longest matching prefix wins.
# Only in the file (not the environment); see docs/gateway.md. For example:
# [[gateway.route]]
# prefix = \"/api/orders\"
# scope = \"certificate:manage\"
# methods = [\"POST\", \"PUT\"]
";

/// Directory providers are a list, so they are shown as a commented example.
const DIRECTORY_EXAMPLE: &str = "
# Directory identity providers (LDAP, Active Directory), tried in order after local users.
# Only in the file (not the environment); see docs/configuration.md. For example:
# [[ldap]]
# name = \"CORP\"
";

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every leaf key of a TOML value, dotted.
    fn leaves(v: &toml::Value, prefix: &str, out: &mut BTreeSet<String>) {
        if let toml::Value::Table(t) = v {
            for (k, v) in t {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if v.is_table() {
                    leaves(v, &p, out);
                } else {
                    out.insert(p);
                }
            }
        }
    }

    #[test]
    fn the_key_table_covers_every_field() {
        let mut fields = BTreeSet::new();
        let full = Config {
            tls_cert_file: Some("c".into()),
            tls_key_file: Some("k".into()),
            database_url: Some("u".into()),
            tokens: TokenConfig {
                jwt_ca_file: Some("j".into()),
                ..TokenConfig::default()
            },
            ..Config::default()
        };
        leaves(
            &toml::Value::try_from(full).unwrap_or(toml::Value::Boolean(false)),
            "",
            &mut fields,
        );
        fields.remove("ldap");
        fields.remove("gateway.route");
        let keys: BTreeSet<String> = KEYS.iter().map(|k| k.path.to_string()).collect();
        assert_eq!(keys, fields);
    }

    #[test]
    fn defaults_file_parses_back_to_the_defaults() {
        let text = Config::defaults_toml();
        assert_eq!(
            Config::from_toml(&text, Path::new("d.toml")).ok(),
            Some(Config::default())
        );
        for k in KEYS {
            assert!(text.contains(k.doc), "{} has its comment", k.path);
        }
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = |k: &str| match k {
            "VEDAUTH_LISTEN" => Some("127.0.0.1:9000".to_string()),
            "VEDAUTH_TLS" => Some("false".to_string()),
            "VEDAUTH_TOKENS_SWEEP_BATCH" => Some("7".to_string()),
            _ => None,
        };
        let file = "listen = \"127.0.0.1:1\"\n[tokens]\nsweep_batch = 3\nsweep_interval_secs = 9\n";
        let cfg = Config::layered(Some((file, Path::new("f.toml"))), &env).ok();
        let cfg = cfg.unwrap_or_default();
        assert_eq!(cfg.listen, "127.0.0.1:9000");
        assert!(!cfg.tls);
        assert_eq!(cfg.tokens.sweep_batch, 7);
        assert_eq!(cfg.tokens.sweep_interval_secs, 9);
        let bad = |k: &str| (k == "VEDAUTH_TLS").then(|| "maybe".to_string());
        let msg = Config::layered(None, &bad)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("VEDAUTH_TLS"), "{msg}");
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = std::env::temp_dir().join(format!("vedauth-cfg-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let f = dir.join("db-url");
        let _ = std::fs::write(&f, "postgres://u:p@127.0.0.1/db\n");
        let fname = f.to_string_lossy().to_string();
        let env = move |k: &str| (k == "VEDAUTH_DATABASE_URL_FILE").then(|| fname.clone());
        let cfg = Config::layered(None, &env).ok().unwrap_or_default();
        assert_eq!(
            cfg.database_url.as_deref(),
            Some("postgres://u:p@127.0.0.1/db")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

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

    fn error(text: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
        Config::layered(Some((text, Path::new("/etc/v.toml"))), env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn errors_name_the_key_the_file_the_line_and_the_column() {
        let none = |_: &str| None;
        // A value of the wrong type: the place of the value.
        let msg = error(
            "listen = \"127.0.0.1:1\"\n[tokens]\nsweep_batch = \"five\"\n",
            &none,
        );
        assert!(
            msg.starts_with("/etc/v.toml:3:15: tokens.sweep_batch: invalid type: string \"five\""),
            "{msg}"
        );
        // Not TOML: the place, and the key of that line.
        let msg = error("\n[http]\nmax_headers = 3 4\n", &none);
        assert!(
            msg.starts_with("/etc/v.toml:3:17: http.max_headers: "),
            "{msg}"
        );
        // A dotted key, an unknown key.
        let msg = error("tokens.sweep_batch = -1\n", &none);
        assert!(
            msg.starts_with("/etc/v.toml:1:22: tokens.sweep_batch: "),
            "{msg}"
        );
        let msg = error("[tokens]\nbogus = 1\n", &none);
        assert!(
            msg.starts_with("/etc/v.toml:2:1: tokens.bogus: unknown field"),
            "{msg}"
        );
        // A value of the right type that fails validation: the place of its key.
        let msg = error("[lockout]\nthreshold = 0\n", &none);
        assert_eq!(
            msg,
            "/etc/v.toml:2:1: invalid setting lockout.threshold: must be at least 1 (or set enabled = false)"
        );
        // Set by the environment (which wins over the file): the variable.
        let env = |k: &str| (k == "VEDAUTH_LOCKOUT_THRESHOLD").then(|| "0".to_string());
        let msg = error("[lockout]\nthreshold = 3\n", &env);
        assert!(
            msg.starts_with("VEDAUTH_LOCKOUT_THRESHOLD: invalid setting lockout.threshold"),
            "{msg}"
        );
        let env = |k: &str| (k == "VEDAUTH_TOKENS_SWEEP_BATCH").then(|| "-3".to_string());
        let msg = error("", &env);
        assert!(
            msg.starts_with("VEDAUTH_TOKENS_SWEEP_BATCH (tokens.sweep_batch): "),
            "{msg}"
        );
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Config::from_toml("listen = \"nope\"", Path::new("x")).is_err());
        assert!(Config::from_toml("[password_hash]\nmemory_kib = 1", Path::new("x")).is_err());
    }
}
