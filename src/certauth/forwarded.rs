//! Client certificates forwarded by a TLS-terminating proxy, in the header of one configured
//! proxy convention, believed only from trusted proxy addresses.
//!
//! One convention is configured, not "whichever header is present": proxies overwrite or remove
//! their own header but pass others through untouched, so reading a second convention's header
//! would let a client that sent it pose as anyone whose certificate it has seen.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use base64::Engine as _;
use http::{HeaderMap, HeaderName};
use rustls_pki_types::CertificateDer;

use super::chain::{ChainSource, PresentedChain};
use super::issuers::sha256_hex;
use super::validate::MAX_CHAIN_LEN;
use crate::net::Cidr;

/// Envoy's XFCC header.
pub const ENVOY_HEADER: &str = "x-forwarded-client-cert";
/// Traefik's `passTLSClientCert` (`pem: true`) header.
pub const TRAEFIK_HEADER: &str = "x-forwarded-tls-client-cert";
/// Traefik's `passTLSClientCert` (`info`) header: certificate details, never read.
pub const TRAEFIK_INFO_HEADER: &str = "x-forwarded-tls-client-cert-info";
/// ingress-nginx's header (`auth-tls-pass-certificate-to-upstream`).
pub const NGINX_INGRESS_HEADER: &str = "ssl-client-cert";
/// The name plain nginx set-ups commonly give `$ssl_client_escaped_cert`.
pub const NGINX_HEADER: &str = "x-ssl-client-cert";

/// Every header that carries a forwarded client certificate or its details in some convention.
pub const FORWARDED_CERT_HEADERS: [&str; 5] = [
    ENVOY_HEADER,
    TRAEFIK_HEADER,
    TRAEFIK_INFO_HEADER,
    NGINX_INGRESS_HEADER,
    NGINX_HEADER,
];

/// The proxy convention in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForwardedFormat {
    /// `x-forwarded-client-cert: …;Cert="<url-encoded PEM>";Chain="<url-encoded PEM>"`.
    Envoy,
    /// `x-forwarded-tls-client-cert: <base64 DER>,<base64 DER>` (URL-escaped PEM in old
    /// releases).
    Traefik,
    /// `ssl-client-cert: <url-escaped PEM>`.
    NginxIngress,
    /// `x-ssl-client-cert: <url-escaped PEM>` (or PEM with its line breaks turned into blanks).
    Nginx,
}

impl ForwardedFormat {
    /// The configuration word.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Envoy => "envoy",
            Self::Traefik => "traefik",
            Self::NginxIngress => "nginx-ingress",
            Self::Nginx => "nginx",
        }
    }

    /// The header this convention's proxy sets.
    pub const fn header(self) -> &'static str {
        match self {
            Self::Envoy => ENVOY_HEADER,
            Self::Traefik => TRAEFIK_HEADER,
            Self::NginxIngress => NGINX_INGRESS_HEADER,
            Self::Nginx => NGINX_HEADER,
        }
    }

    /// Headers a trusted proxy of this convention may pass on (the certificate header and, for
    /// Traefik, its details header).
    fn owned_headers(self) -> &'static [&'static str] {
        match self {
            Self::Envoy => &[ENVOY_HEADER],
            Self::Traefik => &[TRAEFIK_HEADER, TRAEFIK_INFO_HEADER],
            Self::NginxIngress => &[NGINX_INGRESS_HEADER],
            Self::Nginx => &[NGINX_HEADER],
        }
    }
}

impl fmt::Display for ForwardedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ForwardedFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "envoy" | "xfcc" => Ok(Self::Envoy),
            "traefik" => Ok(Self::Traefik),
            "nginx-ingress" | "ingress-nginx" => Ok(Self::NginxIngress),
            "nginx" => Ok(Self::Nginx),
            _ => Err(format!(
                "unknown proxy convention '{s}': expected envoy, traefik, nginx-ingress or nginx"
            )),
        }
    }
}

/// Why a forwarded certificate header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardedError {
    #[error("the {0} header appears more than once")]
    Repeated(&'static str),
    #[error("the {0} header is not visible ASCII text")]
    NotText(&'static str),
    #[error("the {header} header is malformed: {reason}")]
    Malformed {
        header: &'static str,
        reason: String,
    },
}

/// The forwarding set-up: which proxies are believed and which convention they follow.
#[derive(Debug, Clone)]
pub struct ForwardedCertConfig {
    pub format: ForwardedFormat,
    pub trusted_proxies: Vec<Cidr>,
}

impl ForwardedCertConfig {
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(peer))
    }
}

/// The chain the request presents, from wherever it legitimately comes:
/// - the peer is a trusted proxy (forwarding configured): the forwarded header, or none. The TLS
///   chain is ignored then, for it is the proxy's own certificate, not its client's;
/// - otherwise: the TLS chain (`tls`), and any forwarded header is ignored.
pub fn client_chain(
    peer: IpAddr,
    forwarding: Option<&ForwardedCertConfig>,
    headers: &HeaderMap,
    tls: Option<PresentedChain>,
) -> Result<Option<PresentedChain>, ForwardedError> {
    match forwarding {
        Some(f) if f.trusts(peer) => read_header(f.format, headers),
        _ => Ok(tls),
    }
}

/// The forwarded chain, when `peer` is one of `trusted` and the header of `format` is present;
/// `None` otherwise.
pub fn forwarded_chain(
    peer: IpAddr,
    trusted: &[Cidr],
    format: ForwardedFormat,
    headers: &HeaderMap,
) -> Result<Option<PresentedChain>, ForwardedError> {
    if !trusted.iter().any(|c| c.contains(peer)) {
        return Ok(None);
    }
    read_header(format, headers)
}

/// Removes the forwarded-certificate headers that must not reach anything downstream: all of
/// them (in any spelling with `_` for `-`) unless `peer` is a trusted proxy, and from a trusted
/// proxy all but its own convention's. Returns how many were removed.
pub fn strip_forwarded_headers(
    peer: IpAddr,
    forwarding: Option<&ForwardedCertConfig>,
    headers: &mut HeaderMap,
) -> usize {
    let keep: &[&str] = match forwarding {
        Some(f) if f.trusts(peer) => f.format.owned_headers(),
        _ => &[],
    };
    // Every request passes here: the common case (no such header) allocates nothing.
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_forwarded_cert_header(name.as_str()) && !keep.contains(&name.as_str()))
        .cloned()
        .collect();
    let mut removed = 0;
    for name in doomed {
        removed += headers.get_all(&name).iter().count();
        headers.remove(&name);
    }
    removed
}

/// Whether a (lower-case) header name is one of [`FORWARDED_CERT_HEADERS`], with `_` read as `-`.
fn is_forwarded_cert_header(name: &str) -> bool {
    FORWARDED_CERT_HEADERS.iter().any(|h| {
        h.len() == name.len()
            && h.bytes()
                .zip(name.bytes())
                .all(|(a, b)| a == b || (a == b'-' && b == b'_'))
    })
}

/// Reads `format`'s header, trusting whoever sent it (callers check the peer first).
pub fn read_header(
    format: ForwardedFormat,
    headers: &HeaderMap,
) -> Result<Option<PresentedChain>, ForwardedError> {
    let header = format.header();
    let values: Vec<&str> = headers
        .get_all(header)
        .iter()
        .map(|v| v.to_str().map_err(|_| ForwardedError::NotText(header)))
        .collect::<Result<_, _>>()?;
    if values.is_empty() {
        return Ok(None);
    }
    let malformed = |reason: String| ForwardedError::Malformed { header, reason };
    let certs = match format {
        // XFCC is a list header: repeated lines are one comma-separated list.
        ForwardedFormat::Envoy => parse_xfcc(&values.join(",")).map_err(malformed)?,
        _ if values.len() > 1 => return Err(ForwardedError::Repeated(header)),
        ForwardedFormat::Traefik => parse_traefik(values[0]).map_err(malformed)?,
        ForwardedFormat::NginxIngress | ForwardedFormat::Nginx => {
            parse_nginx(values[0]).map_err(malformed)?
        }
    };
    Ok(PresentedChain::new(certs, ChainSource::Forwarded(format)))
}

/// Envoy's XFCC: comma-separated elements, one per proxy hop, each of `;`-separated `key=value`
/// pairs (values with `,;=` in double quotes). The rightmost element is read: the one the proxy
/// in front of vedauth wrote about its own client. Its `Chain` (leaf first) is used when
/// present, else its `Cert`; a `Hash`, when present, must be the SHA-256 of the leaf.
pub fn parse_xfcc(value: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let elements = xfcc_elements(value)?;
    let last = elements
        .last()
        .ok_or_else(|| "the header is empty".to_string())?;
    let get = |key: &str| {
        last.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    };
    let cert = get("Cert").map(decode_certs).transpose()?;
    let chain = get("Chain").map(decode_certs).transpose()?;
    let certs = match (chain, cert) {
        (Some(chain), Some(cert)) => {
            if chain.first() != cert.first() {
                return Err("Chain does not begin with Cert".into());
            }
            chain
        }
        (Some(c), None) | (None, Some(c)) => c,
        (None, None) => {
            return Err(
                "the last element has neither Cert nor Chain (set the proxy to forward them)"
                    .into(),
            )
        }
    };
    if let (Some(hash), Some(leaf)) = (get("Hash"), certs.first()) {
        if !hash.eq_ignore_ascii_case(&sha256_hex(leaf.as_ref())) {
            return Err("Hash is not the SHA-256 of the certificate".into());
        }
    }
    Ok(certs)
}

/// Splits XFCC into elements of (key, value) pairs, honouring double quotes and `\` escapes
/// inside them.
fn xfcc_elements(value: &str) -> Result<Vec<Vec<(String, String)>>, String> {
    let mut elements = Vec::new();
    let mut pairs: Vec<(String, String)> = Vec::new();
    let (mut key, mut val) = (String::new(), String::new());
    let (mut in_value, mut quoted) = (false, false);
    let mut chars = value.chars();

    fn end_pair(
        key: &mut String,
        val: &mut String,
        in_value: &mut bool,
        pairs: &mut Vec<(String, String)>,
    ) -> Result<(), String> {
        let k = key.trim().to_string();
        if !*in_value {
            if !k.is_empty() {
                return Err(format!("'{k}' has no value"));
            }
        } else {
            if k.is_empty() {
                return Err("a value without a key".into());
            }
            pairs.push((k, val.trim().to_string()));
        }
        key.clear();
        val.clear();
        *in_value = false;
        Ok(())
    }

    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '\\' => val.push(chars.next().ok_or("an escape at the end of the header")?),
                '"' => quoted = false,
                _ => val.push(c),
            }
            continue;
        }
        match c {
            '"' if in_value => quoted = true,
            '=' if !in_value => in_value = true,
            ';' => end_pair(&mut key, &mut val, &mut in_value, &mut pairs)?,
            ',' => {
                end_pair(&mut key, &mut val, &mut in_value, &mut pairs)?;
                elements.push(std::mem::take(&mut pairs));
            }
            _ if in_value => val.push(c),
            _ => key.push(c),
        }
    }
    if quoted {
        return Err("an unterminated quoted value".into());
    }
    end_pair(&mut key, &mut val, &mut in_value, &mut pairs)?;
    elements.push(pairs);
    // Blank elements (a stray comma) carry nothing.
    elements.retain(|e| !e.is_empty());
    Ok(elements)
}

/// Traefik: the chain as comma-separated base64 DER without PEM armour (current releases), or
/// URL-escaped PEM (1.x).
pub fn parse_traefik(value: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    decode_certs(value)
}

/// nginx: `$ssl_client_escaped_cert` (URL-escaped PEM), or PEM whose line breaks became blanks
/// or tabs on the way (`$ssl_client_cert`, folded).
pub fn parse_nginx(value: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    decode_certs(value)
}

/// Certificates from text in any of the forms above: percent-decoded first if escaped, then PEM
/// blocks (whitespace anywhere inside ignored) or, without PEM armour, comma-separated base64.
fn decode_certs(value: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = if value.contains('%') {
        percent_encoding::percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| "the URL-escaped value is not UTF-8".to_string())?
            .into_owned()
    } else {
        value.to_string()
    };
    // Form-style escaping writes the blank in the armour as '+'; base64 keeps its own '+'.
    let text = text
        .replace("-----BEGIN+CERTIFICATE-----", "-----BEGIN CERTIFICATE-----")
        .replace("-----END+CERTIFICATE-----", "-----END CERTIFICATE-----");
    let certs = if text.contains("-----BEGIN") {
        pem_blocks(&text)?
    } else {
        text.split(',')
            .map(|part| base64_der(part).map(CertificateDer::from))
            .collect::<Result<Vec<_>, _>>()?
    };
    if certs.is_empty() {
        return Err("no certificate in the value".into());
    }
    if certs.len() > MAX_CHAIN_LEN {
        return Err(format!(
            "{} certificates; at most {MAX_CHAIN_LEN} are accepted",
            certs.len()
        ));
    }
    Ok(certs)
}

fn pem_blocks(text: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        let before = rest.trim_start();
        if before.is_empty() {
            break;
        }
        let body = before
            .strip_prefix(BEGIN)
            .ok_or_else(|| "text outside CERTIFICATE blocks".to_string())?;
        let end = body
            .find(END)
            .ok_or_else(|| "a CERTIFICATE block without its end line".to_string())?;
        out.push(CertificateDer::from(base64_der(&body[..end])?));
        rest = &body[end + END.len()..];
    }
    Ok(out)
}

fn base64_der(text: &str) -> Result<Vec<u8>, String> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err("an empty certificate".into());
    }
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| format!("bad base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xfcc_tokenizer_handles_quotes_escapes_and_several_elements() {
        let v =
            r#"By=spiffe://a;Hash=00;Subject="/C=US/CN=Test, \"Client\"";URI=,By=b;DNS=x;DNS=y"#;
        let e = xfcc_elements(v).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[0][2],
            ("Subject".into(), r#"/C=US/CN=Test, "Client""#.into())
        );
        assert_eq!(e[0][3], ("URI".into(), "".into()));
        assert_eq!(
            e[1],
            vec![
                ("By".into(), "b".into()),
                ("DNS".into(), "x".into()),
                ("DNS".into(), "y".into())
            ]
        );
        assert!(xfcc_elements(r#"Cert="abc"#).is_err());
        assert!(xfcc_elements("Cert").is_err());
        assert!(xfcc_elements("=abc").is_err());
    }

    #[test]
    fn an_element_without_a_certificate_is_an_error() {
        // The shape of the sample in Envoy's documentation: a hash and a subject, no Cert.
        let v = r#"By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com"#;
        assert!(parse_xfcc(v)
            .unwrap_err()
            .contains("neither Cert nor Chain"));
    }

    #[test]
    fn decode_refuses_garbage() {
        assert!(decode_certs("").is_err());
        assert!(decode_certs("not base64!").is_err());
        assert!(decode_certs("-----BEGIN CERTIFICATE-----\nAAAA").is_err());
        assert!(
            decode_certs("junk -----BEGIN CERTIFICATE-----AAAA-----END CERTIFICATE-----").is_err()
        );
        assert!(decode_certs("%FF%FE").is_err());
        assert!(decode_certs(&["AAAA"; MAX_CHAIN_LEN + 1].join(",")).is_err());
    }

    #[test]
    fn format_words() {
        for f in [
            ForwardedFormat::Envoy,
            ForwardedFormat::Traefik,
            ForwardedFormat::NginxIngress,
            ForwardedFormat::Nginx,
        ] {
            assert_eq!(f.as_str().parse::<ForwardedFormat>(), Ok(f));
        }
        assert_eq!(
            "XFCC".parse::<ForwardedFormat>(),
            Ok(ForwardedFormat::Envoy)
        );
        assert!("haproxy".parse::<ForwardedFormat>().is_err());
    }
}
