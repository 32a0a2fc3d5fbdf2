//! The identity a certificate names: its CN, UPN SAN, Email SAN or AD SID extension.

use std::fmt;

use x509_parser::asn1_rs::{Any, Class, Tag};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::config::{CertificateConfiguration, SourceField};
use super::error::CertAuthError;

/// Microsoft's user principal name otherName (szOID_NT_PRINCIPAL_NAME).
pub const OID_UPN: &str = "1.3.6.1.4.1.311.20.2.3";
/// Microsoft's SID extension (szOID_NTDS_CA_SECURITY_EXT), added by AD CS since 2022.
pub const OID_NTDS_CA_SECURITY_EXT: &str = "1.3.6.1.4.1.311.25.2";
/// The otherName inside that extension that carries the SID string (szOID_NTDS_OBJECTSID).
pub const OID_NTDS_OBJECTSID: &str = "1.3.6.1.4.1.311.25.2.1";

/// Which field named the identity, and the value it gave.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CertIdentity {
    /// The subject's common name.
    Cn(String),
    /// The UPN otherName SAN, e.g. `alice@corp.example`.
    Upn(String),
    /// The rfc822Name SAN.
    Email(String),
    /// The SID from the AD security extension, e.g. `S-1-5-21-…-1104`.
    Sid(String),
}

impl CertIdentity {
    /// The field's name: `CN`, `UPN`, `Email` or `SID`.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Cn(_) => "CN",
            Self::Upn(_) => "UPN",
            Self::Email(_) => "Email",
            Self::Sid(_) => "SID",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            Self::Cn(v) | Self::Upn(v) | Self::Email(v) | Self::Sid(v) => v,
        }
    }
}

impl fmt::Display for CertIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.field(), self.value())
    }
}

/// The identity `cert` names under `config`: the SID extension first when
/// `AttemptSIDExtensionBeforeSourceField` is set and the certificate has a readable one, else the
/// `SourceField`. A field that appears with two different values is refused rather than picked
/// from: which user a certificate maps to must not depend on the order of its names.
pub fn extract_identity(
    cert: &X509Certificate<'_>,
    config: &CertificateConfiguration,
) -> Result<CertIdentity, CertAuthError> {
    let mut sid_note = None;
    if config.attempt_sid_extension_before_source_field {
        match sid(cert) {
            Ok(Some(s)) => return Ok(CertIdentity::Sid(s)),
            Ok(None) => sid_note = Some("it has no SID extension".to_string()),
            // A broken SID extension does not block the configured fallback; the reason is kept
            // for the audit trail in case the fallback fails too.
            Err(e) => sid_note = Some(format!("its SID extension is unusable ({e})")),
        }
    }
    let found = match config.source_field {
        SourceField::Cn => common_name(cert).map(|v| v.map(CertIdentity::Cn)),
        SourceField::Upn => upn(cert).map(|v| v.map(CertIdentity::Upn)),
        SourceField::Email => email(cert).map(|v| v.map(CertIdentity::Email)),
    };
    let why = match found {
        Ok(Some(id)) => return Ok(id),
        Ok(None) => match config.source_field {
            SourceField::Cn => "the subject has no common name (CN)".to_string(),
            SourceField::Upn => "the certificate has no UPN subject alternative name".to_string(),
            SourceField::Email => {
                "the certificate has no email subject alternative name".to_string()
            }
        },
        Err(e) => e,
    };
    Err(CertAuthError::NoIdentity(match sid_note {
        Some(note) => format!("{why}; {note}"),
        None => why,
    }))
}

/// The one value in `values`, refusing none-but-empty, two different ones and control characters.
fn single(values: Vec<String>, what: &str) -> Result<Option<String>, String> {
    let mut distinct: Vec<String> = Vec::new();
    for v in values {
        if !distinct.contains(&v) {
            distinct.push(v);
        }
    }
    match distinct.len() {
        0 => Ok(None),
        1 => {
            let v = distinct.remove(0);
            if v.is_empty() {
                Err(format!("its {what} is empty"))
            } else if v.chars().any(char::is_control) {
                Err(format!("its {what} contains control characters"))
            } else {
                Ok(Some(v))
            }
        }
        n => Err(format!(
            "it carries {n} different {what} values ({}); vedauth maps only one",
            distinct.join(", ")
        )),
    }
}

fn common_name(cert: &X509Certificate<'_>) -> Result<Option<String>, String> {
    let mut values = Vec::new();
    for attr in cert.subject().iter_common_name() {
        let v = attr.attr_value();
        let s = if v.tag() == Tag::BmpString {
            // UCS-2 big-endian; some Windows CAs write names this way.
            if v.data.len() % 2 != 0 {
                return Err("its CN is not valid text".into());
            }
            let units: Vec<u16> = v
                .data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).map_err(|_| "its CN is not valid text".to_string())?
        } else {
            attr.as_str()
                .map_err(|_| "its CN is not a text string".to_string())?
                .to_string()
        };
        values.push(s);
    }
    single(values, "CN")
}

fn san_names<'a>(cert: &'a X509Certificate<'a>) -> Result<Vec<&'a GeneralName<'a>>, String> {
    match cert.subject_alternative_name() {
        Ok(Some(san)) => Ok(san.value.general_names.iter().collect()),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(format!("its subject alternative names cannot be read: {e}")),
    }
}

fn upn(cert: &X509Certificate<'_>) -> Result<Option<String>, String> {
    let mut values = Vec::new();
    for name in san_names(cert)? {
        if let GeneralName::OtherName(oid, value) = name {
            if oid.to_id_string() == OID_UPN {
                values.push(
                    other_name_string(value).map_err(|e| format!("its UPN cannot be read: {e}"))?,
                );
            }
        }
    }
    single(values, "UPN")
}

fn email(cert: &X509Certificate<'_>) -> Result<Option<String>, String> {
    let values = san_names(cert)?
        .into_iter()
        .filter_map(|n| match n {
            GeneralName::RFC822Name(s) => Some(s.to_string()),
            _ => None,
        })
        .collect();
    single(values, "email")
}

/// The string in an otherName's `[0] EXPLICIT` value (what x509-parser leaves after the type id).
fn other_name_string(value: &[u8]) -> Result<String, String> {
    let (_, outer) = Any::from_der(value).map_err(|e| e.to_string())?;
    if outer.class() != Class::ContextSpecific || outer.tag() != Tag(0) {
        return Err("the value is not tagged [0]".into());
    }
    let (_, inner) = Any::from_der(outer.data).map_err(|e| e.to_string())?;
    match inner.tag() {
        Tag::Utf8String | Tag::Ia5String | Tag::PrintableString | Tag::OctetString => {
            String::from_utf8(inner.data.to_vec()).map_err(|_| "the value is not UTF-8".into())
        }
        t => Err(format!("the value has the unexpected type {t}")),
    }
}

/// The SID in the AD security extension, if the certificate has one. Its value is a SEQUENCE of
/// GeneralName holding an otherName of type szOID_NTDS_OBJECTSID whose value is the SID string.
fn sid(cert: &X509Certificate<'_>) -> Result<Option<String>, String> {
    let Some(ext) = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == OID_NTDS_CA_SECURITY_EXT)
    else {
        return Ok(None);
    };
    sid_from_extension_value(ext.value).map(Some)
}

/// Parses the extension's value (the contents of its extnValue OCTET STRING).
pub fn sid_from_extension_value(value: &[u8]) -> Result<String, String> {
    let (_, seq) = Any::from_der(value).map_err(|e| e.to_string())?;
    if seq.tag() != Tag::Sequence {
        return Err("the value is not a SEQUENCE".into());
    }
    let mut rest = seq.data;
    while !rest.is_empty() {
        let (next, name) = GeneralName::from_der(rest).map_err(|e| e.to_string())?;
        rest = next;
        if let GeneralName::OtherName(oid, v) = name {
            if oid.to_id_string() == OID_NTDS_OBJECTSID {
                let s = other_name_string(v)?;
                return if is_sid(&s) {
                    Ok(s)
                } else {
                    Err(format!("'{}' is not a SID", s.escape_debug()))
                };
            }
        }
    }
    Err("it holds no objectSid name".into())
}

/// `S-1-<authority>-<sub>…`: revision 1, a decimal authority, one to fifteen 32-bit
/// sub-authorities.
fn is_sid(s: &str) -> bool {
    let mut parts = s.split('-');
    if parts.next() != Some("S") || parts.next() != Some("1") {
        return false;
    }
    let Some(authority) = parts.next() else {
        return false;
    };
    if authority.parse::<u64>().map_or(true, |a| a >= 1 << 48) {
        return false;
    }
    let subs: Vec<&str> = parts.collect();
    (1..=15).contains(&subs.len()) && subs.iter().all(|p| p.parse::<u32>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The extension value as AD CS writes it, for `sid`: SEQUENCE { [0] { OID 1.3.6.1.4.1.311.25.2.1,
    /// [0] { OCTET STRING sid } } }.
    fn ad_extension(sid: &str) -> Vec<u8> {
        let oid = [
            0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x19, 0x02, 0x01,
        ];
        let mut octets = vec![0x04, sid.len() as u8];
        octets.extend_from_slice(sid.as_bytes());
        let mut explicit = vec![0xa0, octets.len() as u8];
        explicit.extend(octets);
        let mut other = vec![0xa0, (oid.len() + explicit.len()) as u8];
        other.extend_from_slice(&oid);
        other.extend(explicit);
        let mut seq = vec![0x30, other.len() as u8];
        seq.extend(other);
        seq
    }

    #[test]
    fn sid_from_the_ad_cs_encoding() {
        let sid = "S-1-5-21-3623811015-3361044348-30300820-1013";
        let value = ad_extension(sid);
        // SEQUENCE, [0] otherName, the objectSid OID, [0] EXPLICIT, OCTET STRING of 44 bytes.
        assert_eq!(&value[..4], &[0x30, 0x3e, 0xa0, 0x3c]);
        assert_eq!(&value[4..6], &[0x06, 0x0a]);
        assert_eq!(&value[16..20], &[0xa0, 0x2e, 0x04, 0x2c]);
        assert_eq!(sid_from_extension_value(&value).unwrap(), sid);
    }

    #[test]
    fn bad_sid_values_are_refused() {
        assert!(sid_from_extension_value(&ad_extension("not-a-sid")).is_err());
        assert!(sid_from_extension_value(&ad_extension("S-1-5")).is_err());
        assert!(sid_from_extension_value(&[0x04, 0x00]).is_err());
        assert!(sid_from_extension_value(&[0x30, 0x00]).is_err());
        assert!(sid_from_extension_value(&[0x30, 0x05, 0x01]).is_err());
    }

    #[test]
    fn sid_syntax() {
        assert!(is_sid("S-1-5-18"));
        assert!(is_sid("S-1-5-21-1-2-3-500"));
        assert!(!is_sid("S-1-5"));
        assert!(!is_sid("S-2-5-18"));
        assert!(!is_sid("s-1-5-18"));
        assert!(!is_sid("S-1-5-18-"));
        assert!(!is_sid("S-1-5-99999999999"));
    }

    #[test]
    fn one_value_only() {
        assert_eq!(single(vec![], "CN"), Ok(None));
        assert_eq!(
            single(vec!["a".into(), "a".into()], "CN"),
            Ok(Some("a".into()))
        );
        assert!(single(vec!["a".into(), "b".into()], "CN")
            .unwrap_err()
            .contains("2 different CN values"));
        assert!(single(vec!["".into()], "CN").is_err());
        assert!(single(vec!["ad\0min".into()], "CN").is_err());
    }
}
