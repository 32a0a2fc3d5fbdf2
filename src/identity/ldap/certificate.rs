//! Directory users by what a client certificate names: the login attribute for a CN,
//! `userPrincipalName` for a UPN, `mail` for an e-mail address, `objectSid` (Active Directory)
//! for a SID. Only the service account's search: no bind as the user.

use super::{DirectoryKind, DirectoryProvider, Entry};
use crate::identity::certificate::{sid_bytes, CertField, CertMatch};
use crate::identity::IdpError;

/// AD's userAccountControl flag ACCOUNTDISABLE.
const ACCOUNT_DISABLE: u32 = 0x2;

impl DirectoryProvider {
    pub(super) async fn by_certificate_value(
        &self,
        field: CertField,
        value: &str,
    ) -> Result<CertMatch, IdpError> {
        let matched = match field {
            // A CN is a login name, with AD's UPN forms, as at a password login.
            CertField::Cn => {
                return self.certificate_user(&self.login_filter(value)).await;
            }
            CertField::Upn => format!("(userPrincipalName={})", ldap3::ldap_escape(value)),
            CertField::Email => format!("(mail={})", ldap3::ldap_escape(value)),
            CertField::Sid => match (self.s.kind, sid_bytes(value)) {
                (DirectoryKind::Ad, Some(raw)) => {
                    format!("(objectSid={})", super::escape::filter_bytes(&raw))
                }
                _ => return Ok(CertMatch::NotFound),
            },
        };
        self.certificate_user(&format!("(&{}{matched})", self.s.user_filter))
            .await
    }

    /// The one user `filter` matches, with its groups; AD accounts marked disabled are
    /// `Disabled` (a password login learns that from the refused bind; here nobody binds).
    async fn certificate_user(&self, filter: &str) -> Result<CertMatch, IdpError> {
        let mut attrs = vec![
            self.s.login_attribute.as_str(),
            self.s.id_attribute.as_str(),
        ];
        if self.s.kind == DirectoryKind::Ad {
            attrs.push("userAccountControl");
        }
        let mut found = self.search(&self.s.base_dn, filter, &attrs, 2).await?;
        let entry: Entry = match found.len() {
            0 => return Ok(CertMatch::NotFound),
            1 => found.remove(0),
            _ => return Ok(CertMatch::Ambiguous),
        };
        let Some(universal) = self.universal_of(&entry) else {
            tracing::warn!(provider = %self.s.prefix, dn = %entry.dn, attribute = %self.s.id_attribute, "directory entry has no usable id; refused");
            return Ok(CertMatch::NotFound);
        };
        let disabled = self.s.kind == DirectoryKind::Ad
            && entry
                .first_str("userAccountControl")
                .and_then(|v| v.trim().parse::<u32>().ok())
                .is_some_and(|flags| flags & ACCOUNT_DISABLE != 0);
        if disabled {
            return Ok(CertMatch::Disabled(crate::domain::Identity::of(
                &self.s.prefix,
                &universal,
            )));
        }
        Ok(CertMatch::Found(
            self.principal(&entry, universal, "").await?,
        ))
    }
}
