//! `vedauth config ...`: the configuration file (check, defaults) and the global token
//! settings in the store (get, set), the latter through the same operations as the API.

use std::path::PathBuf;

use anyhow::{anyhow, bail};
use clap::Subcommand;

use super::admin::admin_op;
use super::GlobalOpts;
use crate::admin::Caller;
use crate::config::Config;
use crate::store::Settings;

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Validate a configuration file (default: the one `serve` would read) with the environment.
    Check {
        /// The file (default: --config, else <data-dir>/vedauth.toml).
        file: Option<PathBuf>,
    },
    /// Print the full default configuration file, a comment per key.
    Defaults,
    /// Print the global token settings kept in the store (GetConfiguration).
    Get,
    /// Change one global token setting, e.g. `AuthorizeByPassword false` (SetConfiguration).
    Set {
        /// The setting's name, as `config get` shows it (any case).
        name: String,
        /// true, false, a number, or text.
        value: String,
    },
}

pub async fn run(g: &GlobalOpts, cmd: ConfigCmd) -> anyhow::Result<()> {
    match cmd {
        ConfigCmd::Check { file } => {
            let (path, must_exist) = match file.or_else(|| g.config.clone()) {
                Some(p) => (p, true),
                None => (g.data_dir.join("vedauth.toml"), false),
            };
            Config::load(&path, must_exist)?;
            let exists = path.exists();
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({"file": path, "exists": exists, "valid": true})
                );
            } else if exists {
                println!("{}: ok", path.display());
            } else {
                println!(
                    "no configuration file at {}: the defaults and the environment are valid",
                    path.display()
                );
            }
        }
        ConfigCmd::Defaults => print!("{}", Config::defaults_toml()),
        ConfigCmd::Get => {
            let asm = g.open_assembly().await?;
            let s = admin_op(asm.admin.get_settings(&Caller::Operator).await)?;
            println!("{}", serde_json::to_string_pretty(&s)?);
        }
        ConfigCmd::Set { name, value } => {
            let asm = g.open_assembly().await?;
            let admin = asm.admin.clone();
            let current = admin_op(admin.get_settings(&Caller::Operator).await)?;
            let mut doc = serde_json::to_value(&current)?;
            let Some(obj) = doc.as_object_mut() else {
                bail!("settings are not an object");
            };
            let key = obj
                .keys()
                .find(|k| k.eq_ignore_ascii_case(&name))
                .cloned()
                .unwrap_or(name);
            // true/false/numbers as JSON, anything else as a string.
            let mut v = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value));
            let cert = key.eq_ignore_ascii_case("CertificateConfiguration");
            if cert {
                // As in SetConfiguration: without a list of issuers, the trusted issuers stay.
                if let (Some(new), Some(old)) = (
                    v.as_object_mut(),
                    obj.get(&key)
                        .and_then(|o| o.get("AuthorizedIssuerDns"))
                        .cloned(),
                ) {
                    if new.get("AuthorizedIssuerDns").is_none_or(|l| l.is_null()) {
                        new.insert("AuthorizedIssuerDns".into(), old);
                    }
                }
            }
            obj.insert(key.clone(), v.clone());
            let mut updated: Settings =
                serde_json::from_value(doc).map_err(|e| anyhow!("{key}: {e}"))?;
            if cert {
                // Checked strictly here (a stored one is read leniently).
                updated.certificate_configuration =
                    serde_json::from_value(v).map_err(|e| anyhow!("{key}: {e}"))?;
            }
            admin_op(admin.set_settings(&Caller::Operator, updated).await)?;
            if g.json {
                println!("{}", serde_json::json!({"name": key, "set": true}));
            } else {
                println!("{key} set");
            }
        }
    }
    Ok(())
}
