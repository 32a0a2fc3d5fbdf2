//! The global token-authentication configuration (docs/protocol.md §13).

use super::audited::Change;
use super::policy::Need;
use super::{validity, Admin, AdminError, AdminResult, Caller, MAX_VALIDITY_SECS};
use crate::domain::Settings;
use crate::jwt::{JwtConfiguration, SETTINGS_KEY};

/// `JwtConfiguration` checked and written out whole (absent fields take their defaults), so
/// that what is stored and shown is what applies.
fn normalize_jwt(s: &mut Settings) -> AdminResult<()> {
    let given = s.other.get(SETTINGS_KEY).cloned().unwrap_or_default();
    let c = JwtConfiguration::from_value(&given)
        .map_err(|e| AdminError::invalid("JwtConfiguration", e.to_string()))?;
    let v = serde_json::to_value(c).map_err(AdminError::unavailable)?;
    s.other.insert(SETTINGS_KEY.into(), v);
    Ok(())
}

fn check(s: &Settings) -> AdminResult<()> {
    validity(
        "DefaultAccessTokenValidity",
        Some(s.default_access_token_validity),
    )?;
    // 0 is "never" for the grant validity and "off" for the unused-token expiration.
    for (field, v) in [
        ("DefaultGrantValidity", s.default_grant_validity),
        (
            "UnusedAccessTokenExpiration",
            s.unused_access_token_expiration,
        ),
    ] {
        if !(0..=MAX_VALIDITY_SECS).contains(&v) {
            return Err(AdminError::invalid(
                field,
                format!(
                    "{field} must be a number of seconds from 0 to {MAX_VALIDITY_SECS} (100 years)"
                ),
            ));
        }
    }
    Ok(())
}

impl Admin {
    /// The configuration; `CertificateConfiguration.AuthorizedIssuerDns` lists the trusted
    /// issuers' fingerprints.
    pub async fn get_settings(&self, caller: &Caller) -> AdminResult<Settings> {
        caller.check(Need::Anyone)?;
        let (mut s, issuers) = tokio::try_join!(self.reads.settings(), self.reads.list_issuers())?;
        if !s.other.contains_key(SETTINGS_KEY) {
            // The defaults in force, shown as such.
            normalize_jwt(&mut s)?;
        }
        s.certificate_configuration.authorized_issuer_dns =
            issuers.into_iter().map(|i| i.fingerprint).collect();
        Ok(s)
    }

    /// Replaces the whole configuration (absent fields take their defaults). The trusted
    /// issuers left out of `AuthorizedIssuerDns` stop being trusted; a fingerprint that names
    /// none is refused.
    pub async fn set_settings(&self, caller: &Caller, mut s: Settings) -> AdminResult<()> {
        let jwt = normalize_jwt(&mut s);
        let detail = serde_json::to_value(&s)
            .unwrap_or_else(|e| serde_json::json!({"unrenderable": e.to_string()}));
        self.gate
            .run(caller, Change::SetConfiguration, detail, |w| async move {
                caller.check(Need::Admin)?;
                jwt?;
                check(&s)?;
                let stored = w.store().list_issuers().await?;
                let keep = super::issuers::check_fingerprints(
                    &s.certificate_configuration.authorized_issuer_dns,
                    &stored,
                )?;
                // The issuers are their own aggregate: the document does not repeat them.
                s.certificate_configuration.authorized_issuer_dns.clear();
                w.store().put_settings(&s).await?;
                let removed = super::issuers::keep_only(&w, &keep).await?;
                Ok(removed.len())
            })
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_bounded() {
        assert!(check(&Settings::default()).is_ok());
        let at_bound = Settings {
            default_access_token_validity: MAX_VALIDITY_SECS,
            default_grant_validity: MAX_VALIDITY_SECS,
            ..Settings::default()
        };
        assert!(check(&at_bound).is_ok());
        for bad in [
            Settings {
                default_access_token_validity: 0,
                ..Settings::default()
            },
            Settings {
                default_access_token_validity: i64::MAX,
                ..Settings::default()
            },
            Settings {
                default_grant_validity: -1,
                ..Settings::default()
            },
            Settings {
                default_grant_validity: MAX_VALIDITY_SECS + 1,
                ..Settings::default()
            },
            Settings {
                unused_access_token_expiration: i64::MAX,
                ..Settings::default()
            },
        ] {
            assert!(
                matches!(check(&bad), Err(AdminError::Invalid { .. })),
                "{bad:?}"
            );
        }
    }
}
