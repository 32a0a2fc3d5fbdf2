//! Assembly: opens the store, starts the hashing pool, wires the providers and the engine.
//! Both `serve` and the admin commands build an [`App`], so they work on the same state.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::api::client::Limiter;
use crate::audit::Audit;
use crate::clock::SharedClock;
use crate::config::{Config, DatabaseConfig};
use crate::grants::Engine;
use crate::identity::local::LocalProvider;
use crate::identity::{Identities, IdentityProvider};
use crate::lockout::Lockout;
use crate::password::{HashParams, HashPool, PasswordError};
use crate::store::postgres::{is_postgres_url, PgOptions, PostgresStore};
use crate::store::sqlite::SqliteStore;
use crate::store::{SharedStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("data directory {path}: {source}")]
    DataDir {
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
}

/// Everything a running vedauth (server or admin command) works with.
#[derive(Debug, Clone)]
pub struct App {
    pub config: Config,
    pub data_dir: PathBuf,
    pub store: SharedStore,
    pub pool: HashPool,
    pub engine: Engine,
    pub clock: SharedClock,
    pub audit: Arc<Audit>,
    pub limiter: Limiter,
}

pub const DB_FILE: &str = "vedauth.db";

/// Opens the configured store: PostgreSQL when `database_url` says so, else the SQLite file in
/// the data directory.
pub async fn open_store(config: &Config, data_dir: &Path) -> Result<SharedStore, AppError> {
    match config.database_url.as_deref() {
        None | Some("") => Ok(Arc::new(
            SqliteStore::open(&data_dir.join(DB_FILE), 8).await?,
        )),
        Some(url) => open_store_url(url, &config.database).await,
    }
}

/// Opens a store named by URL: `sqlite:PATH` or `postgres://...` (`postgresql://` too).
pub async fn open_store_url(url: &str, db: &DatabaseConfig) -> Result<SharedStore, AppError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open_url(url).await?))
    } else if is_postgres_url(url) {
        Ok(Arc::new(PostgresStore::open(url, db).await?))
    } else {
        // Only the scheme: the rest may hold a password.
        let scheme = url.split_once(':').map_or(url, |(s, _)| s);
        Err(AppError::DatabaseUrl(format!("{scheme}:...")))
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

impl App {
    /// `hash_params` overrides the configured ones (tests use cheap parameters).
    pub async fn open(
        config: Config,
        data_dir: &Path,
        clock: SharedClock,
        hash_params: Option<HashParams>,
    ) -> Result<Self, AppError> {
        std::fs::create_dir_all(data_dir).map_err(|source| AppError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The directory holds the database, the CA key and the initial password.
            let _ = std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700));
        }
        let data_dir = data_dir
            .canonicalize()
            .unwrap_or_else(|_| data_dir.to_path_buf());
        // Every store operation is measured inside the store (`store/metered.rs`).
        let store = open_store(&config, &data_dir).await?;
        let params = hash_params.unwrap_or_else(|| config.password_hash.params());
        let pool = HashPool::start(
            params,
            config.password_hash.threads,
            config.password_hash.queue,
        )?;
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
                .map_err(|e| AppError::Audit(e.to_string()))?,
        );
        let engine = Engine::new(
            store.clone(),
            identities,
            clock.clone(),
            config.tokens.engine_options(),
            audit.clone(),
        );
        let limiter = Limiter::new(&config.rate_limit);
        Ok(Self {
            config,
            data_dir,
            store,
            pool,
            engine,
            clock,
            audit,
            limiter,
        })
    }
}
