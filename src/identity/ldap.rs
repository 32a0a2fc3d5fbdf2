//! LDAP and Active Directory identity providers (a later issue fills this in).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::IdentityProvider;

/// One directory provider: `[[ldap]]` in the configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// The friendly name N of `LDAP+N:` / `AD+N:`.
    pub name: String,
}

/// Builds the configured directory providers, in configured order.
pub fn providers(configs: &[LdapConfig]) -> Result<Vec<Arc<dyn IdentityProvider>>, String> {
    if let Some(c) = configs.first() {
        return Err(format!(
            "directory provider '{}': not supported yet",
            c.name
        ));
    }
    Ok(Vec::new())
}
