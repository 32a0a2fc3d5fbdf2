//! Assembly: opens the store, starts the hashing pool, wires the providers and the engine.
//! Both `serve` and the admin commands build an [`App`], so they work on the same state.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::grants::Engine;
use crate::identity::local::LocalProvider;
use crate::identity::{Identities, IdentityProvider};
use crate::password::{HashParams, HashPool, PasswordError};
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
}

pub const DB_FILE: &str = "vedauth.db";

/// Opens the configured store: PostgreSQL when `database_url` says so, else the SQLite file in
/// the data directory.
pub async fn open_store(config: &Config, data_dir: &Path) -> Result<SharedStore, AppError> {
    match config.database_url.as_deref() {
        None | Some("") => Ok(Arc::new(
            SqliteStore::open(&data_dir.join(DB_FILE), 8).await?,
        )),
        Some(url) if url.starts_with("sqlite:") => Ok(Arc::new(SqliteStore::open_url(url).await?)),
        Some(url) => Err(AppError::DatabaseUrl(url.to_string())),
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
        let identities = Arc::new(Identities::new(providers, pool.clone()));
        let engine = Engine::new(
            store.clone(),
            identities,
            clock.clone(),
            config.tokens.engine_options(),
        );
        Ok(Self {
            config,
            data_dir,
            store,
            pool,
            engine,
            clock,
        })
    }
}
