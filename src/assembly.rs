//! The composition root: opens the store, starts the hashing pool, wires the providers, the
//! lockout, the audit trail, the grant engine and the administration core, mapping the
//! configuration into each part's options. Both `serve` and the admin commands build an
//! [`Assembly`], so they work on the same state; the faces get only its [`Services`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::admin::{Admin, Ports};
use crate::audit::Audit;
use crate::clock::SharedClock;
use crate::config::{Config, DatabaseConfig};
use crate::grants::{Engine, JwtGrant};
use crate::identity::local::LocalProvider;
use crate::identity::{Identities, IdentityProvider};
use crate::jwt::FetchTrust;
use crate::lockout::Lockout;
use crate::password::{HashParams, HashPool, PasswordError};
use crate::services::Services;
use crate::store::postgres::{is_postgres_url, PgOptions, PostgresStore};
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::{SharedStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AssemblyError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data directory {path}: cannot make it private to its owner (chmod 0700): {source}; run vedauth as the directory's owner, or choose another --data-dir")]
    Private {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("unsupported database URL (expected sqlite: or postgres://): {0}")]
    DatabaseUrl(String),
    #[error("{0}")]
    Audit(String),
    #[error(transparent)]
    Providers(#[from] crate::identity::ldap::DirectoryConfigError),
    #[error("tokens.jwt_ca_file {path}: {reason}")]
    JwtTrust { path: PathBuf, reason: String },
}

/// Everything a running vedauth (server or admin command) is made of. Only the runtime, the
/// command line and the tests see it whole.
#[derive(Debug, Clone)]
pub struct Assembly {
    pub config: Config,
    pub data_dir: PathBuf,
    pub store: SharedStore,
    pub pool: HashPool,
    pub engine: Engine,
    pub identities: Arc<Identities>,
    pub admin: Admin,
    pub clock: SharedClock,
    pub audit: Arc<Audit>,
}

pub const DB_FILE: &str = "vedauth.db";

/// Opens the configured store: PostgreSQL when `database_url` says so, else the SQLite file in
/// the data directory.
pub async fn open_store(config: &Config, data_dir: &Path) -> Result<SharedStore, AssemblyError> {
    match config.database_url.as_deref() {
        None | Some("") => {
            let mut o = SqliteOptions::new(8);
            o.cache_mib = config.database.sqlite_cache_mib;
            Ok(Arc::new(
                SqliteStore::open_with(&data_dir.join(DB_FILE), &o).await?,
            ))
        }
        Some(url) => open_store_url(url, &config.database).await,
    }
}

/// Opens a store named by URL: `sqlite:PATH` or `postgres://...` (`postgresql://` too).
pub async fn open_store_url(url: &str, db: &DatabaseConfig) -> Result<SharedStore, AssemblyError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open_url(url).await?))
    } else if is_postgres_url(url) {
        Ok(Arc::new(PostgresStore::open(url, db).await?))
    } else {
        // Only the scheme: the rest may hold a password.
        let scheme = url.split_once(':').map_or(url, |(s, _)| s);
        Err(AssemblyError::DatabaseUrl(format!("{scheme}:...")))
    }
}

impl From<&DatabaseConfig> for PgOptions {
    fn from(c: &DatabaseConfig) -> Self {
        PgOptions {
            max_connections: c.max_connections,
            acquire_timeout: c.acquire_timeout(),
            operation_timeout: c.operation_timeout(),
        }
    }
}

/// The JWT grant's verifier, trusting the system's CAs and `tokens.jwt_ca_file`'s.
fn jwt_grant(config: &Config) -> Result<JwtGrant, AssemblyError> {
    let trust = match &config.tokens.jwt_ca_file {
        None => FetchTrust::default(),
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| AssemblyError::JwtTrust {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            FetchTrust::system_plus(pem)
        }
    };
    JwtGrant::new(&trust).map_err(|e| AssemblyError::JwtTrust {
        path: config.tokens.jwt_ca_file.clone().unwrap_or_default(),
        reason: e.to_string(),
    })
}

impl Assembly {
    /// `hash_params` overrides the configured ones (tests use cheap parameters).
    pub async fn open(
        config: Config,
        data_dir: &Path,
        clock: SharedClock,
        hash_params: Option<HashParams>,
    ) -> Result<Self, AssemblyError> {
        std::fs::create_dir_all(data_dir).map_err(|source| AssemblyError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The directory holds the database, the CA key and the initial password: a directory
            // others may read is no place for them, so a failure here stops the start.
            std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700)).map_err(
                |source| AssemblyError::Private {
                    path: data_dir.to_path_buf(),
                    source,
                },
            )?;
        }
        let data_dir = data_dir
            .canonicalize()
            .unwrap_or_else(|_| data_dir.to_path_buf());
        // Every store operation is measured inside the store (`store/metered.rs`).
        let store = open_store(&config, &data_dir).await?;
        let params = hash_params.unwrap_or_else(|| config.password_hash.params());
        let pool = HashPool::start_with(params, config.password_hash.pool_options())?;
        let mut providers: Vec<Arc<dyn IdentityProvider>> =
            vec![Arc::new(LocalProvider::new(store.clone(), pool.clone()))];
        providers.extend(crate::identity::ldap::providers(&config.ldap)?);
        let lockout = config
            .lockout
            .enabled
            .then(|| Lockout::new(store.clone(), clock.clone(), config.lockout.clone()));
        let identities = Arc::new(Identities::new(providers, pool.clone(), lockout));
        let audit = Arc::new(
            Audit::open(&config.audit, &data_dir, clock.clone())
                .map_err(|e| AssemblyError::Audit(e.to_string()))?,
        );
        let engine = Engine::new(
            store.clone(),
            identities.clone(),
            clock.clone(),
            config.tokens.engine_options(),
            audit.clone(),
        )
        .with_jwt(Arc::new(jwt_grant(&config)?));
        let admin = Admin::new(Ports {
            store: store.clone(),
            identities: identities.clone(),
            audit: audit.clone(),
            clock: clock.clone(),
            revocations: Arc::new(engine.clone()),
            hasher: pool.clone(),
            password_policy: config.password_policy.clone(),
        });
        Ok(Self {
            config,
            data_dir,
            store,
            pool,
            engine,
            identities,
            admin,
            clock,
            audit,
        })
    }
}

impl Assembly {
    /// The use cases the faces may call, and nothing else.
    pub fn services(&self) -> Services {
        Services::new(
            self.engine.clone(),
            self.admin.clone(),
            self.identities.clone(),
            self.store.clone(),
            self.config.tpp_version.clone(),
        )
    }
}
