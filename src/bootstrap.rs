//! First start: the data directory, the `admin` user and the `vedauth-admin` application.
//!
//! A store is bootstrapped only on its first start: the data directory remembers (in
//! [`STORES_FILE`]) every store it has seen holding data, and a remembered store found empty
//! (a truncated or replaced database file, a dropped database) is refused instead of getting a
//! fresh administrator over what was lost.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::clock::UnixTime;
use crate::password::HashPool;
use crate::scope::Scope;
use crate::secret::Secret;
use crate::store::{Application, RoleAssignment, Rule, Store, StoreError, User};

pub const ADMIN_USER: &str = "admin";
pub const ADMIN_APP: &str = "vedauth-admin";
pub const PASSWORD_FILE: &str = "initial-admin-password";
/// The stores this data directory has seen holding data, one description a line.
pub const STORES_FILE: &str = "stores-seen";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("hashing the admin password failed: {0}")]
    Hash(String),
    #[error(
        "the store {store} is empty, but this data directory saw it holding data before (it is \
         listed in {}): its database may have been lost or replaced. Restore it from a backup; \
         to start afresh on purpose, remove that line (or the file)",
        seen.display()
    )]
    StoreEmptied { store: String, seen: PathBuf },
}

/// The stores listed in the data directory's [`STORES_FILE`].
fn seen_stores(data_dir: &Path) -> Result<Vec<String>, BootstrapError> {
    let path = data_dir.join(STORES_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(BootstrapError::Io { path, source }),
    }
}

/// Adds `store` to the data directory's [`STORES_FILE`] unless it is there.
fn remember(data_dir: &Path, store: &str) -> Result<(), BootstrapError> {
    let mut seen = seen_stores(data_dir)?;
    if seen.iter().any(|s| s == store) {
        return Ok(());
    }
    seen.push(store.to_string());
    let text = format!(
        "# Stores this vedauth data directory has seen holding data. One found empty at start is\n\
         # refused (its data may have been lost); remove its line to bootstrap it afresh.\n{}\n",
        seen.join("\n")
    );
    let path = data_dir.join(STORES_FILE);
    write_private_or_public(&path, text.as_bytes(), false)
        .map_err(|source| BootstrapError::Io { path, source })
}

/// Writes a file whole or not at all: the bytes go to a new temporary file in the same
/// directory, which is synced and then renamed over `path` (and the directory synced), so a
/// crash or a full disk never leaves a truncated key or certificate behind. `private` files get
/// mode 0600 from the start (never briefly world-readable), others 0644.
pub fn write_private_or_public(path: &Path, data: &[u8], private: bool) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{:016x}", rand::random::<u64>()));
    let tmp = dir.join(tmp_name);
    let mut opts = std::fs::OpenOptions::new();
    // A fresh name, never an existing file or a planted symlink.
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    let written = opts.open(&tmp).and_then(|mut f| {
        f.write_all(data)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Makes a rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// What the first start created, for the banner.
#[derive(Debug, Clone)]
pub struct Bootstrapped {
    pub password_file: PathBuf,
}

/// On an empty store, creates `admin`, `vedauth-admin` and the rule joining them.
pub async fn ensure_admin(
    store: &dyn Store,
    pool: &HashPool,
    data_dir: &Path,
    now: UnixTime,
    preset_password: Option<Secret>,
) -> Result<Option<Bootstrapped>, BootstrapError> {
    let described = store.describe();
    if !store.is_empty().await? {
        // Also how data directories made before the list existed get it.
        remember(data_dir, &described)?;
        return Ok(None);
    }
    if seen_stores(data_dir)?.contains(&described) {
        return Err(BootstrapError::StoreEmptied {
            store: described,
            seen: data_dir.join(STORES_FILE),
        });
    }
    let password = preset_password.unwrap_or_else(|| {
        Secret::new(
            rand::thread_rng()
                .sample_iter(&Alphanumeric)
                .take(24)
                .map(char::from)
                .collect::<String>(),
        )
    });
    let password_file = data_dir.join(PASSWORD_FILE);
    write_private_or_public(&password_file, password.expose().as_bytes(), true).map_err(
        |source| BootstrapError::Io {
            path: password_file.clone(),
            source,
        },
    )?;
    let hash = pool
        .hash(password)
        .await
        .map_err(|e| BootstrapError::Hash(e.to_string()))?;
    let admin = User {
        id: uuid::Uuid::new_v4().to_string(),
        name: ADMIN_USER.into(),
        full_name: Some("vedauth administrator".into()),
        email: None,
        password_hash: hash,
        disabled: false,
        created_at: now,
    };
    match store.create_user(&admin).await {
        // Another node sharing the store bootstrapped at the same moment: its admin stands,
        // and the password written here would be wrong.
        Err(StoreError::Conflict) => {
            let _ = std::fs::remove_file(&password_file);
            remember(data_dir, &described)?;
            return Ok(None);
        }
        other => other?,
    }
    // The first administrator holds the OAuth Admin role for the administration API.
    store
        .add_role(&RoleAssignment {
            grantee: admin.identity(),
            role: crate::domain::Role::Admin,
            client_id: None,
        })
        .await?;
    let everything = crate::domain::CanonicalScope::of(&Scope::everything());
    store
        .create_application(&Application {
            client_id: ADMIN_APP.into(),
            name: "vedauth administration".into(),
            vendor: "vedauth".into(),
            description: "Created at first start for the admin user".into(),
            url: String::new(),
            scope: everything.to_string(),
            max_scope: everything,
            access_validity: None,
            grant_validity: None,
            renewable: None,
            unused_expiration: None,
            created_at: now,
        })
        .await?;
    store
        .create_rule(&Rule {
            client_id: ADMIN_APP.into(),
            // By identity, not by name: a later user called `admin` inherits nothing.
            trustee: admin.identity(),
            description: "The bootstrap administrator".into(),
            max_scope: None,
            access_validity: None,
            grant_validity: None,
            renewable: None,
            created_at: now,
        })
        .await?;
    remember(data_dir, &described)?;
    Ok(Some(Bootstrapped { password_file }))
}

/// The `curl` line that gets a token for `admin`, reading the password from its file.
pub fn curl_line(base_url: &str, ca_file: Option<&Path>, password_file: &Path) -> String {
    let cacert = ca_file
        .map(|p| format!("--cacert '{}' ", p.display()))
        .unwrap_or_default();
    format!(
        "curl {cacert}-H 'Content-Type: application/json' -d '{{\"client_id\":\"{ADMIN_APP}\",\"username\":\"{ADMIN_USER}\",\"password\":\"'\"$(cat '{}')\"'\",\"scope\":\"admin\"}}' {base_url}/vedauth/authorize/oauth",
        password_file.display()
    )
}
