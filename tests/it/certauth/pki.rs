//! Certificates made by the tests with rcgen: CAs, intermediates and client leaves with the
//! names the certificate grant reads.

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;
use vedauth::certauth::extract::OID_UPN;
use vedauth::certauth::TrustedIssuers;
use vedauth::clock::{Clock, SystemClock, UnixTime};

pub fn now() -> UnixTime {
    SystemClock.now()
}

fn at(t: UnixTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t).unwrap()
}

fn oid(dotted: &str) -> Vec<u64> {
    dotted.split('.').map(|p| p.parse().unwrap()).collect()
}

pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

impl Ca {
    /// A self-signed root valid from a day ago for ten years.
    pub fn root(name: &str) -> Ca {
        let t = now();
        Self::root_valid(name, t - 86_400, t + 3650 * 86_400)
    }

    pub fn root_valid(name: &str, from: UnixTime, to: UnixTime) -> Ca {
        let key = KeyPair::generate().unwrap();
        let cert = ca_params(name, from, to).self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A CA signed by this one.
    pub fn intermediate(&self, name: &str) -> Ca {
        let t = now();
        let key = KeyPair::generate().unwrap();
        let cert = ca_params(name, t - 86_400, t + 365 * 86_400)
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        Ca { cert, key }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    pub fn trusted(&self) -> TrustedIssuers {
        TrustedIssuers::from_pem(self.pem().as_bytes()).unwrap()
    }

    pub fn issue(&self, spec: LeafSpec) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = spec
            .params()
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        Leaf {
            der: cert.der().clone(),
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
            chain_pem: String::new(),
            intermediates: Vec::new(),
        }
    }
}

fn ca_params(name: &str, from: UnixTime, to: UnixTime) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    p.distinguished_name
        .push(DnType::OrganizationName, "vedauth tests");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = at(from);
    p.not_after = at(to);
    p
}

/// What a client certificate carries.
#[derive(Clone)]
pub struct LeafSpec {
    cn: Option<String>,
    org: Option<String>,
    upns: Vec<String>,
    emails: Vec<String>,
    sid: Option<Vec<u8>>,
    from: UnixTime,
    to: UnixTime,
    eku: Vec<ExtendedKeyUsagePurpose>,
    ca: bool,
    key_usages: Vec<KeyUsagePurpose>,
}

impl LeafSpec {
    /// Valid from a day ago for thirty days, clientAuth EKU, digitalSignature.
    pub fn new() -> Self {
        let t = now();
        LeafSpec {
            cn: None,
            org: None,
            upns: vec![],
            emails: vec![],
            sid: None,
            from: t - 86_400,
            to: t + 30 * 86_400,
            eku: vec![ExtendedKeyUsagePurpose::ClientAuth],
            ca: false,
            key_usages: vec![KeyUsagePurpose::DigitalSignature],
        }
    }
    pub fn cn(name: &str) -> Self {
        Self::new().with_cn(name)
    }
    pub fn with_cn(mut self, name: &str) -> Self {
        self.cn = Some(name.into());
        self
    }
    pub fn with_org(mut self, org: &str) -> Self {
        self.org = Some(org.into());
        self
    }
    pub fn with_upn(mut self, upn: &str) -> Self {
        self.upns.push(upn.into());
        self
    }
    pub fn with_email(mut self, email: &str) -> Self {
        self.emails.push(email.into());
        self
    }
    /// The AD security extension holding `sid`, encoded as AD CS writes it.
    pub fn with_sid(self, sid: &str) -> Self {
        self.with_sid_extension(ad_sid_extension(sid))
    }
    pub fn with_sid_extension(mut self, value: Vec<u8>) -> Self {
        self.sid = Some(value);
        self
    }
    pub fn valid(mut self, from: UnixTime, to: UnixTime) -> Self {
        self.from = from;
        self.to = to;
        self
    }
    pub fn eku(mut self, eku: Vec<ExtendedKeyUsagePurpose>) -> Self {
        self.eku = eku;
        self
    }
    pub fn key_usages(mut self, ku: Vec<KeyUsagePurpose>) -> Self {
        self.key_usages = ku;
        self
    }
    pub fn ca(mut self) -> Self {
        self.ca = true;
        self
    }

    fn params(&self) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = DistinguishedName::new();
        if let Some(cn) = &self.cn {
            p.distinguished_name.push(DnType::CommonName, cn.as_str());
        }
        if let Some(org) = &self.org {
            p.distinguished_name
                .push(DnType::OrganizationName, org.as_str());
        }
        for upn in &self.upns {
            p.subject_alt_names
                .push(SanType::OtherName((oid(OID_UPN), upn.clone().into())));
        }
        for e in &self.emails {
            p.subject_alt_names
                .push(SanType::Rfc822Name(e.clone().try_into().unwrap()));
        }
        if let Some(value) = &self.sid {
            p.custom_extensions.push(CustomExtension::from_oid_content(
                &oid(vedauth::certauth::extract::OID_NTDS_CA_SECURITY_EXT),
                value.clone(),
            ));
        }
        p.extended_key_usages = self.eku.clone();
        p.key_usages = self.key_usages.clone();
        if self.ca {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        p.use_authority_key_identifier_extension = true;
        p.not_before = at(self.from);
        p.not_after = at(self.to);
        p
    }
}

/// The SID extension's value: SEQUENCE { [0] { OID szOID_NTDS_OBJECTSID, [0] { OCTET STRING
/// sid } } }, short-form lengths (a SID is well under 128 bytes).
pub fn ad_sid_extension(sid: &str) -> Vec<u8> {
    let oid = [
        0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x19, 0x02, 0x01,
    ];
    let tlv = |tag: u8, body: Vec<u8>| {
        let mut v = vec![tag, body.len() as u8];
        v.extend(body);
        v
    };
    let octets = tlv(0x04, sid.as_bytes().to_vec());
    let explicit = tlv(0xa0, octets);
    let mut other = oid.to_vec();
    other.extend(explicit);
    tlv(0x30, tlv(0xa0, other))
}

/// A client certificate and its key.
pub struct Leaf {
    pub der: CertificateDer<'static>,
    pub pem: String,
    pub key_pem: String,
    key_der: Vec<u8>,
    /// The leaf and its intermediates as PEM, when issued through `with_intermediate`.
    pub chain_pem: String,
    pub intermediates: Vec<CertificateDer<'static>>,
}

impl Leaf {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// The leaf plus the intermediate that issued it, as a client sends them.
    pub fn with_intermediate(mut self, intermediate: &Ca) -> Self {
        self.intermediates = vec![intermediate.der()];
        self.chain_pem = format!("{}{}", self.pem, intermediate.pem());
        self
    }

    /// What the client presents: the leaf, then its intermediates.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        let mut v = vec![self.der.clone()];
        v.extend(self.intermediates.iter().cloned());
        v
    }

    /// PEM of everything presented.
    pub fn presented_pem(&self) -> String {
        if self.chain_pem.is_empty() {
            self.pem.clone()
        } else {
            self.chain_pem.clone()
        }
    }
}

/// Validity windows relative to now.
pub fn expired_window() -> (UnixTime, UnixTime) {
    let t = now();
    (t - 10 * 86_400, t - 86_400)
}

pub fn future_window() -> (UnixTime, UnixTime) {
    let t = now();
    (t + 86_400, t + 10 * 86_400)
}

impl Ca {
    /// A TLS server certificate for `localhost` and 127.0.0.1, signed by this CA.
    pub fn server_leaf(&self) -> Leaf {
        let t = now();
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::V4(
                std::net::Ipv4Addr::LOCALHOST,
            )));
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, "localhost");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.not_before = at(t - 86_400);
        p.not_after = at(t + 30 * 86_400);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            der: cert.der().clone(),
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
            chain_pem: String::new(),
            intermediates: Vec::new(),
        }
    }
}
