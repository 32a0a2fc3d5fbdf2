//! Client certificates forwarded by TLS-terminating proxies: the header shapes Envoy, Traefik
//! and nginx produce (built here the way each proxy encodes), believed only from trusted peers,
//! and stripped from everyone else.

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use vedauth::certauth::forwarded::{
    parse_nginx, parse_traefik, parse_xfcc, read_header, ENVOY_HEADER, NGINX_HEADER,
    NGINX_INGRESS_HEADER, TRAEFIK_HEADER, TRAEFIK_INFO_HEADER,
};
use vedauth::certauth::issuers::sha256_hex;
use vedauth::certauth::{
    client_chain, forwarded_chain, strip_forwarded_headers, validate, CertAuthError, CertIdentity,
    CertificateConfiguration, ChainSource, ForwardedCertConfig, ForwardedError, ForwardedFormat,
    PresentedChain, Refusal,
};
use vedauth::net::{parse_cidr, Cidr};

use super::pki::{now, Ca, Leaf, LeafSpec};

/// Envoy writes the PEM with these five characters escaped (its
/// `urlEncodedPemEncodedPeerCertificate`).
fn envoy_escape(pem: &str) -> String {
    pem.chars()
        .map(|c| match c {
            '\n' => "%0A".to_string(),
            ' ' => "%20".to_string(),
            '+' => "%2B".to_string(),
            '/' => "%2F".to_string(),
            '=' => "%3D".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// Every byte but letters, digits and `-._~` as %XX: nginx's `$ssl_client_escaped_cert`.
fn escape_all(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Go's `url.QueryEscape` (Traefik 1.x): like the above, but a blank becomes `+`.
fn query_escape(s: &str) -> String {
    escape_all(s).replace("%20", "+")
}

/// Traefik 2.x/3.x: each certificate's base64 DER without armour or line breaks, joined by `,`.
fn traefik_value(leaf: &Leaf) -> String {
    leaf.chain()
        .iter()
        .map(|c| base64::engine::general_purpose::STANDARD.encode(c.as_ref()))
        .collect::<Vec<_>>()
        .join(",")
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn cidrs(list: &[&str]) -> Vec<Cidr> {
    list.iter().map(|c| parse_cidr(c).unwrap()).collect()
}

fn proxy(format: ForwardedFormat) -> ForwardedCertConfig {
    ForwardedCertConfig {
        format,
        trusted_proxies: cidrs(&["10.0.0.0/8", "::1"]),
    }
}

const PROXY: &str = "10.1.2.3";
const STRANGER: &str = "192.0.2.7";

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

fn xfcc(leaf: &Leaf) -> String {
    format!(
        r#"By=spiffe://cluster.local/ns/auth/sa/vedauth;Hash={};Cert="{}";Chain="{}";Subject="CN=alice,O=Acme";URI=;DNS=alice.example"#,
        sha256_hex(leaf.der.as_ref()),
        envoy_escape(&leaf.pem),
        envoy_escape(&leaf.presented_pem()),
    )
}

#[test]
fn envoy_xfcc_gives_the_chain_that_validates() {
    let root = Ca::root("Root CA");
    let issuing = root.intermediate("Issuing CA");
    let leaf = issuing
        .issue(LeafSpec::cn("alice").with_upn("alice@corp.example"))
        .with_intermediate(&issuing);
    let h = headers(&[(ENVOY_HEADER, &xfcc(&leaf))]);
    let chain = client_chain(ip(PROXY), Some(&proxy(ForwardedFormat::Envoy)), &h, None)
        .unwrap()
        .unwrap();
    assert_eq!(chain.certs(), leaf.chain().as_slice());
    assert_eq!(
        chain.source(),
        ChainSource::Forwarded(ForwardedFormat::Envoy)
    );
    let cfg = CertificateConfiguration {
        source_field: "SubjectAltName: UPN".parse().unwrap(),
        ..Default::default()
    };
    let v = validate(Some(&chain), &root.trusted(), &cfg, now()).unwrap();
    assert_eq!(v.identity, CertIdentity::Upn("alice@corp.example".into()));
}

#[test]
fn envoy_rightmost_element_is_the_nearest_proxys_client() {
    let ca = Ca::root("Root CA");
    let far = ca.issue(LeafSpec::cn("edge-proxy"));
    let near = ca.issue(LeafSpec::cn("bob"));
    // APPEND_FORWARD: an earlier hop's element first, the proxy in front of vedauth's last.
    let value = format!("{},{}", xfcc(&far), xfcc(&near));
    assert_eq!(parse_xfcc(&value).unwrap(), vec![near.der.clone()]);
    // The same list split over two header lines.
    let h = headers(&[(ENVOY_HEADER, &xfcc(&far)), (ENVOY_HEADER, &xfcc(&near))]);
    let chain = read_header(ForwardedFormat::Envoy, &h).unwrap().unwrap();
    assert_eq!(chain.leaf(), &near.der);
}

#[test]
fn envoy_cert_alone_and_integrity_checks() {
    let ca = Ca::root("Root CA");
    let leaf = ca.issue(LeafSpec::cn("carol"));
    let other = ca.issue(LeafSpec::cn("dave"));
    let cert_only = format!(r#"By=spiffe://x;Cert="{}""#, envoy_escape(&leaf.pem));
    assert_eq!(parse_xfcc(&cert_only).unwrap(), vec![leaf.der.clone()]);

    let wrong_hash = format!(
        r#"Hash={};Cert="{}""#,
        sha256_hex(other.der.as_ref()),
        envoy_escape(&leaf.pem)
    );
    assert!(parse_xfcc(&wrong_hash).unwrap_err().contains("Hash"));

    let mismatch = format!(
        r#"Cert="{}";Chain="{}""#,
        envoy_escape(&leaf.pem),
        envoy_escape(&other.pem)
    );
    assert!(parse_xfcc(&mismatch)
        .unwrap_err()
        .contains("Chain does not begin with Cert"));

    // A hash-only set-up (no `cert: true` in Envoy's config) cannot be used.
    let h = headers(&[(
        ENVOY_HEADER,
        &format!("Hash={}", sha256_hex(leaf.der.as_ref())),
    )]);
    let e = read_header(ForwardedFormat::Envoy, &h).unwrap_err();
    assert!(
        matches!(
            e,
            ForwardedError::Malformed {
                header: ENVOY_HEADER,
                ..
            }
        ),
        "{e:?}"
    );
    let e = CertAuthError::from(e);
    assert_eq!(e.cause(), "bad_forwarded_certificate");
    assert_eq!(e.refusal(), Refusal::NotTrusted);
}

#[test]
fn traefik_base64_der_and_the_old_escaped_pem() {
    let root = Ca::root("Root CA");
    let issuing = root.intermediate("Issuing CA");
    let leaf = issuing
        .issue(LeafSpec::cn("erin"))
        .with_intermediate(&issuing);
    assert_eq!(parse_traefik(&traefik_value(&leaf)).unwrap(), leaf.chain());
    assert_eq!(
        parse_traefik(&query_escape(&leaf.presented_pem())).unwrap(),
        leaf.chain()
    );
    let h = headers(&[(TRAEFIK_HEADER, &traefik_value(&leaf))]);
    let chain = forwarded_chain(
        ip(PROXY),
        &cidrs(&["10.0.0.0/8"]),
        ForwardedFormat::Traefik,
        &h,
    )
    .unwrap()
    .unwrap();
    let v = validate(Some(&chain), &root.trusted(), &Default::default(), now()).unwrap();
    assert_eq!(v.identity, CertIdentity::Cn("erin".into()));
    assert_eq!(v.source, ChainSource::Forwarded(ForwardedFormat::Traefik));
}

#[test]
fn nginx_escaped_and_folded_pem() {
    let ca = Ca::root("Root CA");
    let leaf = ca.issue(LeafSpec::cn("frank").with_email("frank@example.com"));
    let want = vec![leaf.der.clone()];
    assert_eq!(parse_nginx(&escape_all(&leaf.pem)).unwrap(), want);
    // `$ssl_client_cert`-style values whose line breaks arrive as blanks or tabs.
    assert_eq!(
        parse_nginx(&leaf.pem.trim().replace('\n', " ")).unwrap(),
        want
    );
    assert_eq!(
        parse_nginx(&leaf.pem.trim().replace('\n', "\t")).unwrap(),
        want
    );

    for (format, header) in [
        (ForwardedFormat::NginxIngress, NGINX_INGRESS_HEADER),
        (ForwardedFormat::Nginx, NGINX_HEADER),
    ] {
        let h = headers(&[(header, &escape_all(&leaf.pem))]);
        let chain = client_chain(ip(PROXY), Some(&proxy(format)), &h, None)
            .unwrap()
            .unwrap();
        assert_eq!(chain.certs(), want.as_slice());
        // A repeated single-value header is refused rather than guessed at.
        let twice = headers(&[
            (header, &escape_all(&leaf.pem)),
            (header, &escape_all(&leaf.pem)),
        ]);
        assert_eq!(
            read_header(format, &twice).unwrap_err(),
            ForwardedError::Repeated(header)
        );
    }
    let mut h = HeaderMap::new();
    h.insert(NGINX_HEADER, HeaderValue::from_bytes(b"\xff\xfe").unwrap());
    assert_eq!(
        read_header(ForwardedFormat::Nginx, &h).unwrap_err(),
        ForwardedError::NotText(NGINX_HEADER)
    );
    let h = headers(&[(NGINX_HEADER, "-----BEGIN%20CERTIFICATE-----%0Agarbage")]);
    assert!(matches!(
        read_header(ForwardedFormat::Nginx, &h),
        Err(ForwardedError::Malformed { .. })
    ));
}

#[test]
fn a_forwarded_certificate_is_believed_only_from_a_trusted_proxy() {
    let ca = Ca::root("Root CA");
    let victim = ca.issue(LeafSpec::cn("admin"));
    let own = ca.issue(LeafSpec::cn("mallory"));
    let own_tls = PresentedChain::new(own.chain(), ChainSource::Tls);
    let h = headers(&[(ENVOY_HEADER, &xfcc(&victim))]);
    let envoy = proxy(ForwardedFormat::Envoy);

    // A direct client's header is ignored: its own TLS certificate (or none) counts.
    let got = client_chain(ip(STRANGER), Some(&envoy), &h, own_tls.clone()).unwrap();
    assert_eq!(got.unwrap().leaf(), &own.der);
    assert!(client_chain(ip(STRANGER), Some(&envoy), &h, None)
        .unwrap()
        .is_none());
    assert!(forwarded_chain(
        ip(STRANGER),
        &envoy.trusted_proxies,
        ForwardedFormat::Envoy,
        &h
    )
    .unwrap()
    .is_none());
    // Without forwarding configured, nobody's header counts.
    assert_eq!(
        client_chain(ip(PROXY), None, &h, own_tls.clone())
            .unwrap()
            .unwrap()
            .leaf(),
        &own.der
    );

    // From the proxy (IPv4, or IPv6 loopback), the header is the client's certificate.
    for peer in [PROXY, "::1", "::ffff:10.9.9.9"] {
        let got = client_chain(ip(peer), Some(&envoy), &h, own_tls.clone()).unwrap();
        assert_eq!(got.unwrap().leaf(), &victim.der, "{peer}");
    }
    // A trusted proxy that forwards nothing: no certificate. Its own TLS certificate is not the
    // client's and must not be taken for it.
    let none = client_chain(ip(PROXY), Some(&envoy), &HeaderMap::new(), own_tls).unwrap();
    assert!(none.is_none());
}

#[test]
fn only_the_configured_conventions_header_is_read() {
    let ca = Ca::root("Root CA");
    let victim = ca.issue(LeafSpec::cn("admin"));
    // Envoy passes headers it does not own through untouched: a client behind it could add an
    // nginx-style header. With Envoy configured, that header means nothing.
    let h = headers(&[
        (NGINX_HEADER, &escape_all(&victim.pem)),
        (TRAEFIK_HEADER, &traefik_value(&victim)),
    ]);
    assert!(
        client_chain(ip(PROXY), Some(&proxy(ForwardedFormat::Envoy)), &h, None)
            .unwrap()
            .is_none()
    );
}

#[test]
fn stripping_forwarded_headers() {
    let all = [
        (ENVOY_HEADER, "Cert=x"),
        (TRAEFIK_HEADER, "x"),
        (TRAEFIK_INFO_HEADER, "Subject%3D%22CN%3Dadmin%22"),
        (NGINX_INGRESS_HEADER, "x"),
        (NGINX_HEADER, "x"),
        ("x_forwarded_client_cert", "Cert=y"),
        ("x-forwarded-for", "203.0.113.9"),
    ];
    let traefik = proxy(ForwardedFormat::Traefik);

    // From a stranger: every one of them goes, in either spelling; other headers stay.
    let mut h = headers(&all);
    assert_eq!(
        strip_forwarded_headers(ip(STRANGER), Some(&traefik), &mut h),
        6
    );
    assert_eq!(h.len(), 1);
    assert!(h.contains_key("x-forwarded-for"));

    // From the trusted Traefik: its two headers stay, the rest go.
    let mut h = headers(&all);
    assert_eq!(
        strip_forwarded_headers(ip(PROXY), Some(&traefik), &mut h),
        4
    );
    let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
    left.sort();
    assert_eq!(
        left,
        vec!["x-forwarded-for", TRAEFIK_HEADER, TRAEFIK_INFO_HEADER]
    );

    // Forwarding not configured: stripped from everyone, repeated lines included.
    let mut h = headers(&[(ENVOY_HEADER, "a"), (ENVOY_HEADER, "b")]);
    assert_eq!(strip_forwarded_headers(ip(PROXY), None, &mut h), 2);
    assert!(h.is_empty());
}
