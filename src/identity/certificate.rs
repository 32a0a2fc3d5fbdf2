//! Who a client certificate names (the certificate grant, docs/certificate-auth.md): a value
//! read from the certificate (its CN, UPN SAN, Email SAN or AD SID), looked up without any
//! password in the providers, in their usual order; the first provider that knows the value
//! decides. The certificate itself was checked before (chain, validity); here only the name is
//! turned into an identity, and a disabled or locked identity is refused as at a password login.

use super::{Identities, IdpError, Principal};
use crate::domain::Identity;

/// The certificate field the value came from; it decides what a provider compares it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertField {
    /// The subject's common name: a local user's name, a directory's login attribute.
    Cn,
    /// The UPN otherName SAN: a directory's `userPrincipalName`.
    Upn,
    /// The rfc822Name SAN: a directory's `mail`.
    Email,
    /// The AD SID extension: Active Directory's `objectSid`.
    Sid,
}

impl CertField {
    pub fn as_str(self) -> &'static str {
        match self {
            CertField::Cn => "CN",
            CertField::Upn => "UPN",
            CertField::Email => "Email",
            CertField::Sid => "SID",
        }
    }
}

/// One provider's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertMatch {
    Found(Principal),
    /// This provider has nobody with that value; the next one may.
    NotFound,
    /// Several entries carry the value: refused rather than guessed.
    Ambiguous,
    /// The identity exists but is disabled.
    Disabled(Identity),
}

/// What [`Identities::by_certificate`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertResolution {
    Found(Principal),
    NotFound,
    /// The provider (prefix) in which several entries carry the value.
    Ambiguous(String),
    Disabled(Identity),
    /// Locked out after failed password logins: a certificate does not bypass the lockout.
    Locked(Identity),
}

impl CertResolution {
    /// The audit trail's word for a refusal.
    pub fn cause(&self) -> &'static str {
        match self {
            CertResolution::Found(_) => "found",
            CertResolution::NotFound => "unknown_identity",
            CertResolution::Ambiguous(_) => "ambiguous_identity",
            CertResolution::Disabled(_) => "disabled",
            CertResolution::Locked(_) => "locked",
        }
    }
}

impl Identities {
    /// The identity a certificate's value names. Local users first, then each directory in
    /// configured order (decisions.md §8); the first provider that has the value decides.
    pub async fn by_certificate(
        &self,
        field: CertField,
        value: &str,
    ) -> Result<CertResolution, IdpError> {
        if value.trim().is_empty() {
            return Ok(CertResolution::NotFound);
        }
        for p in &self.providers {
            match p.by_certificate(field, value).await? {
                CertMatch::NotFound => continue,
                CertMatch::Ambiguous => {
                    return Ok(CertResolution::Ambiguous(p.prefix().to_string()))
                }
                CertMatch::Disabled(id) => return Ok(CertResolution::Disabled(id)),
                CertMatch::Found(principal) => {
                    if let Some(lockout) = &self.lockout {
                        let id = principal.prefixed_universal();
                        let state = lockout.state(&id).await?;
                        if state.locked_until.is_some() {
                            return Ok(CertResolution::Locked(id));
                        }
                    }
                    return Ok(CertResolution::Found(principal));
                }
            }
        }
        Ok(CertResolution::NotFound)
    }
}

/// The binary form of a SID string (`S-1-5-21-…`), as AD stores `objectSid`: revision, the
/// count of sub-authorities, the 48-bit authority big-endian, then each sub-authority as 32
/// bits little-endian. `None` for anything that is not a SID.
pub fn sid_bytes(text: &str) -> Option<Vec<u8>> {
    let mut parts = text
        .strip_prefix("S-")
        .or_else(|| text.strip_prefix("s-"))?
        .split('-');
    let revision: u8 = parts.next()?.parse().ok()?;
    let authority: u64 = parts.next()?.parse().ok()?;
    if authority >= 1 << 48 {
        return None;
    }
    let subs: Vec<u32> = parts
        .map(|p| p.parse::<u32>().ok())
        .collect::<Option<_>>()?;
    if subs.is_empty() || subs.len() > 15 {
        return None;
    }
    let mut out = vec![revision, u8::try_from(subs.len()).ok()?];
    out.extend_from_slice(&authority.to_be_bytes()[2..]);
    for s in subs {
        out.extend_from_slice(&s.to_le_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sid_strings_become_their_binary_form() {
        assert_eq!(
            sid_bytes("S-1-5-21-1004336348-1177238915-682003330-512"),
            Some(vec![
                1, 5, 0, 0, 0, 0, 0, 5, 21, 0, 0, 0, 0xdc, 0xf4, 0xdc, 0x3b, 0x83, 0x3d, 0x2b,
                0x46, 0x82, 0x8b, 0xa6, 0x28, 0x00, 0x02, 0x00, 0x00
            ])
        );
        assert_eq!(
            sid_bytes("S-1-1-0"),
            Some(vec![1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])
        );
        for bad in [
            "",
            "S-1",
            "S-1-5",
            "X-1-5-21",
            "S-1-5-21-x",
            "S-1-281474976710656-1",
        ] {
            assert_eq!(sid_bytes(bad), None, "{bad}");
        }
    }
}
