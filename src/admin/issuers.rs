//! The CAs trusted to issue client certificates (the certificate grant): added from a PEM
//! bundle, listed, removed; and `CertificateConfiguration.AuthorizedIssuerDns`, which names
//! them by fingerprint in the global configuration.

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::audited::{Change, Summary, Writes};
use super::policy::Need;
use super::{Admin, AdminError, AdminResult, Caller, Entity};
use crate::certauth::issuers::normalize_fingerprint;
use crate::certauth::TrustedIssuers;
use crate::clock::UnixTime;
use crate::domain::IssuerRecord;

/// A trusted issuer as listings show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuerInfo {
    /// SHA-256 of the DER certificate, 64 lower-case hex digits.
    pub fingerprint: String,
    pub subject: String,
    /// The CA certificate's own validity.
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    pub added_at: UnixTime,
    /// For an add: whether it was new (false: it was trusted already).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added: Option<bool>,
}

impl Summary for Vec<IssuerInfo> {
    fn summarize(&self, d: &mut Map<String, Value>) {
        let v: Vec<Value> = self
            .iter()
            .map(|i| json!({"fingerprint": i.fingerprint, "subject": i.subject, "added": i.added}))
            .collect();
        d.insert("issuers".into(), Value::Array(v));
    }
}

/// The issuers of stored rows, parsed (their dates come from the certificates).
fn infos(rows: &[IssuerRecord]) -> Vec<IssuerInfo> {
    rows.iter()
        .filter_map(|r| {
            let set = TrustedIssuers::from_pem(r.pem.as_bytes()).ok()?;
            let i = set.issuers().first()?;
            Some(IssuerInfo {
                fingerprint: r.fingerprint.clone(),
                subject: r.subject.clone(),
                not_before: i.not_before(),
                not_after: i.not_after(),
                added_at: r.added_at,
                added: None,
            })
        })
        .collect()
}

/// Removes the stored issuers not in `keep` (fingerprints, normalised); what it removed.
pub(super) async fn keep_only(w: &Writes, keep: &[String]) -> AdminResult<Vec<String>> {
    let mut removed = Vec::new();
    for r in w.store().list_issuers().await? {
        if !keep.contains(&r.fingerprint) && w.store().remove_issuer(&r.fingerprint).await? {
            removed.push(r.fingerprint);
        }
    }
    Ok(removed)
}

/// `AuthorizedIssuerDns` as given, normalised; an entry that is no fingerprint, or names no
/// stored issuer, is refused (issuers are added from PEM, never by fingerprint).
pub(super) fn check_fingerprints(
    given: &[String],
    stored: &[IssuerRecord],
) -> AdminResult<Vec<String>> {
    given
        .iter()
        .map(|g| {
            let fp = normalize_fingerprint(g).ok_or_else(|| {
                AdminError::invalid(
                    "AuthorizedIssuerDns",
                    format!("'{g}' is not a SHA-256 fingerprint (64 hex digits)"),
                )
            })?;
            if stored.iter().any(|r| r.fingerprint == fp) {
                Ok(fp)
            } else {
                Err(AdminError::invalid(
                    "AuthorizedIssuerDns",
                    format!("no trusted issuer has the fingerprint '{g}'; add issuers from PEM (vedauth cert issuer add)"),
                ))
            }
        })
        .collect()
}

impl Admin {
    /// The trusted issuers, by fingerprint.
    pub async fn list_issuers(&self, caller: &Caller) -> AdminResult<Vec<IssuerInfo>> {
        caller.check(Need::ReadAll)?;
        Ok(infos(&self.reads.list_issuers().await?))
    }

    /// Trusts the CA certificates of a PEM bundle. The whole bundle is refused if any part of
    /// it is not a CA certificate (see `TrustedIssuers::from_pem`); one already trusted is
    /// reported with `added: false`.
    pub async fn add_issuers(&self, caller: &Caller, pem: &str) -> AdminResult<Vec<IssuerInfo>> {
        let now = self.clock.now();
        let detail = json!({});
        self.gate
            .run(caller, Change::AddIssuers, detail, |w| async move {
                caller.check(Need::Admin)?;
                let set = TrustedIssuers::from_pem(pem.as_bytes())
                    .map_err(|e| AdminError::invalid("Issuers", e.to_string()))?;
                let mut out = Vec::new();
                for i in set.issuers() {
                    let one = TrustedIssuers::from_der([i.der().clone()])
                        .map_err(|e| AdminError::invalid("Issuers", e.to_string()))?;
                    let record = IssuerRecord {
                        fingerprint: i.fingerprint().to_string(),
                        subject: i.subject().to_string(),
                        pem: one.to_pem(),
                        added_at: now,
                    };
                    let added = w.store().add_issuer(&record).await?;
                    out.push(IssuerInfo {
                        fingerprint: record.fingerprint,
                        subject: record.subject,
                        not_before: i.not_before(),
                        not_after: i.not_after(),
                        added_at: now,
                        added: Some(added),
                    });
                }
                Ok(out)
            })
            .await
    }

    /// Stops trusting an issuer (by fingerprint, in any of the accepted spellings). Tokens
    /// already issued on its certificates stay valid until they expire or are revoked.
    pub async fn remove_issuer(&self, caller: &Caller, fingerprint: &str) -> AdminResult<()> {
        let detail = json!({"fingerprint": fingerprint});
        self.gate
            .run(caller, Change::RemoveIssuer, detail, |w| async move {
                caller.check(Need::Admin)?;
                let gone = || AdminError::NotFound(Entity::Issuer(fingerprint.to_string()));
                let fp = normalize_fingerprint(fingerprint).ok_or_else(gone)?;
                if !w.store().remove_issuer(&fp).await? {
                    return Err(gone());
                }
                Ok(())
            })
            .await
    }
}
