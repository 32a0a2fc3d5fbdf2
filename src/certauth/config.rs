//! `CertificateConfiguration` as the admin API carries it inside `Configuration`
//! (`POST /vedsdk/oauth/getconfiguration|setconfiguration`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The certificate field that names the identity.
///
/// The vendor's exact API strings are not published; vedauth writes `CN`, `UPN` and `Email`, and
/// reads those without regard to case or blanks, plus the vendor console's labels
/// (`SubjectAltName: UPN`, `SubjectAltEmail`), so that a value copied from either round-trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SourceField {
    /// The subject's common name. The default: the console says local identities need it.
    #[default]
    Cn,
    /// The Microsoft UPN otherName SAN (1.3.6.1.4.1.311.20.2.3).
    Upn,
    /// The rfc822Name SAN.
    Email,
}

impl SourceField {
    /// The canonical spelling, what getconfiguration returns.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Cn => "CN",
            Self::Upn => "UPN",
            Self::Email => "Email",
        }
    }
}

impl fmt::Display for SourceField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown SourceField '{0}': expected CN, UPN (also \"SubjectAltName: UPN\") or Email (also \"SubjectAltEmail\")"
)]
pub struct UnknownSourceField(pub String);

impl FromStr for SourceField {
    type Err = UnknownSourceField;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Case and blanks do not matter: "SubjectAltName: UPN" and "subjectaltname:upn" are one.
        let key: String = s
            .chars()
            .filter(|c| !c.is_whitespace())
            .flat_map(char::to_lowercase)
            .collect();
        match key.as_str() {
            "cn" => Ok(Self::Cn),
            "upn" | "subjectaltname:upn" => Ok(Self::Upn),
            "email" | "subjectaltemail" => Ok(Self::Email),
            _ => Err(UnknownSourceField(s.to_string())),
        }
    }
}

impl Serialize for SourceField {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SourceField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `Configuration.CertificateConfiguration` (admin-api.md §3.5).
///
/// `AuthorizedIssuerDns` holds the SHA-256 fingerprints (lowercase hex) of the trusted issuers
/// (see [`super::TrustedIssuers::authorized_issuer_dns`]): in TPP the field names vault objects,
/// and a fingerprint is vedauth's unambiguous name for an issuer certificate, where subject DNs
/// can repeat across a CA's key rollover. A `null` field reads as its default, as TPP clients send
/// whole objects with nulls in them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CertificateConfiguration {
    #[serde(
        rename = "AttemptSIDExtensionBeforeSourceField",
        deserialize_with = "null_is_default"
    )]
    pub attempt_sid_extension_before_source_field: bool,
    #[serde(rename = "SourceField", deserialize_with = "null_is_default")]
    pub source_field: SourceField,
    #[serde(rename = "AuthorizedIssuerDns", deserialize_with = "null_is_default")]
    pub authorized_issuer_dns: Vec<String>,
}

fn null_is_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn source_field_spellings() {
        for (s, f) in [
            ("CN", SourceField::Cn),
            ("cn", SourceField::Cn),
            ("UPN", SourceField::Upn),
            ("upn", SourceField::Upn),
            ("SubjectAltName: UPN", SourceField::Upn),
            ("subjectaltname:upn", SourceField::Upn),
            ("Email", SourceField::Email),
            ("EMAIL", SourceField::Email),
            ("SubjectAltEmail", SourceField::Email),
        ] {
            assert_eq!(s.parse::<SourceField>(), Ok(f), "{s}");
        }
        for bad in ["", "DN", "SubjectAltName", "mail", "UPN2"] {
            assert!(bad.parse::<SourceField>().is_err(), "{bad}");
        }
    }

    #[test]
    fn wire_shape_round_trips() {
        let c: CertificateConfiguration = serde_json::from_value(json!({
            "AttemptSIDExtensionBeforeSourceField": true,
            "SourceField": "SubjectAltName: UPN",
            "AuthorizedIssuerDns": ["ab", "cd"]
        }))
        .unwrap();
        assert!(c.attempt_sid_extension_before_source_field);
        assert_eq!(c.source_field, SourceField::Upn);
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!({
                "AttemptSIDExtensionBeforeSourceField": true,
                "SourceField": "UPN",
                "AuthorizedIssuerDns": ["ab", "cd"]
            })
        );
    }

    #[test]
    fn nulls_and_missing_fields_are_defaults() {
        let c: CertificateConfiguration = serde_json::from_value(json!({
            "AttemptSIDExtensionBeforeSourceField": null,
            "SourceField": null
        }))
        .unwrap();
        assert_eq!(c, CertificateConfiguration::default());
        assert_eq!(c.source_field, SourceField::Cn);
    }

    #[test]
    fn unknown_source_field_is_an_error_naming_the_choices() {
        let e = serde_json::from_value::<CertificateConfiguration>(json!({"SourceField": "DN"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown SourceField 'DN'"), "{e}");
        assert!(e.contains("SubjectAltEmail"), "{e}");
    }
}
