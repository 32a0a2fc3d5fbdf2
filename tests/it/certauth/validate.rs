//! Grant-time validation of client certificates made by the tests: validity window, chain to a
//! trusted issuer, and the identity from CN, UPN, Email or the AD SID extension.

use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};
use rustls_pki_types::CertificateDer;
use vedauth::certauth::{
    validate, CertAuthError, CertIdentity, CertificateConfiguration, ChainSource, IssuerError,
    PresentedChain, Refusal, SourceField, TrustedIssuers,
};

use super::pki::{expired_window, future_window, now, Ca, Leaf, LeafSpec};

fn cfg(field: SourceField, sid_first: bool) -> CertificateConfiguration {
    CertificateConfiguration {
        attempt_sid_extension_before_source_field: sid_first,
        source_field: field,
        authorized_issuer_dns: vec![],
    }
}

fn presented(leaf: &Leaf) -> PresentedChain {
    PresentedChain::new(leaf.chain(), ChainSource::Tls).unwrap()
}

fn check(
    leaf: &Leaf,
    issuers: &TrustedIssuers,
    c: &CertificateConfiguration,
) -> Result<CertIdentity, CertAuthError> {
    validate(Some(&presented(leaf)), issuers, c, now()).map(|v| v.identity)
}

#[test]
fn cn_leaf_gives_its_common_name_and_the_audit_facts() {
    let ca = Ca::root("Test Root CA");
    let leaf = ca.issue(LeafSpec::cn("alice").with_org("Acme"));
    let issuers = ca.trusted();
    let v = validate(
        Some(&presented(&leaf)),
        &issuers,
        &cfg(SourceField::Cn, false),
        now(),
    )
    .unwrap();
    assert_eq!(v.identity, CertIdentity::Cn("alice".into()));
    assert_eq!(v.identity.field(), "CN");
    assert_eq!(v.subject, "CN=alice, O=Acme");
    assert_eq!(v.issuer, "CN=Test Root CA, O=vedauth tests");
    assert_eq!(v.trusted_issuer, issuers.issuers()[0].fingerprint());
    assert_eq!(v.fingerprint, presented(&leaf).leaf_fingerprint());
    assert_eq!(v.fingerprint.len(), 64);
    assert_eq!(v.source, ChainSource::Tls);
}

#[test]
fn upn_san_is_read_when_configured() {
    let ca = Ca::root("Test Root CA");
    let leaf = ca.issue(LeafSpec::cn("Alice Smith").with_upn("alice@corp.example"));
    let issuers = ca.trusted();
    assert_eq!(
        check(&leaf, &issuers, &cfg(SourceField::Upn, false)),
        Ok(CertIdentity::Upn("alice@corp.example".into()))
    );
    // The same certificate under CN names the common name.
    assert_eq!(
        check(&leaf, &issuers, &cfg(SourceField::Cn, false)),
        Ok(CertIdentity::Cn("Alice Smith".into()))
    );
    // Email is not the UPN.
    let e = check(&leaf, &issuers, &cfg(SourceField::Email, false)).unwrap_err();
    assert_eq!(e.cause(), "no_mappable_identity");
    assert!(
        e.to_string().contains("no email subject alternative name"),
        "{e}"
    );
}

#[test]
fn email_san_is_read_when_configured() {
    let ca = Ca::root("Test Root CA");
    let leaf = ca.issue(LeafSpec::cn("Bob").with_email("bob@example.com"));
    assert_eq!(
        check(&leaf, &ca.trusted(), &cfg(SourceField::Email, false)),
        Ok(CertIdentity::Email("bob@example.com".into()))
    );
}

#[test]
fn sid_extension_first_when_asked_else_the_source_field() {
    let ca = Ca::root("Test Root CA");
    let sid = "S-1-5-21-3623811015-3361044348-30300820-1013";
    let leaf = ca.issue(
        LeafSpec::cn("carol")
            .with_upn("carol@corp.example")
            .with_sid(sid),
    );
    let issuers = ca.trusted();
    assert_eq!(
        check(&leaf, &issuers, &cfg(SourceField::Upn, true)),
        Ok(CertIdentity::Sid(sid.into()))
    );
    assert_eq!(
        check(&leaf, &issuers, &cfg(SourceField::Upn, false)),
        Ok(CertIdentity::Upn("carol@corp.example".into()))
    );
    // Without the extension, "SID first" falls back to the source field.
    let plain = ca.issue(LeafSpec::cn("dave"));
    assert_eq!(
        check(&plain, &issuers, &cfg(SourceField::Cn, true)),
        Ok(CertIdentity::Cn("dave".into()))
    );
}

#[test]
fn a_broken_sid_extension_falls_back_and_is_named_if_the_fallback_fails() {
    let ca = Ca::root("Test Root CA");
    let issuers = ca.trusted();
    let broken = super::pki::ad_sid_extension("not-a-sid");
    let with_cn = ca.issue(LeafSpec::cn("erin").with_sid_extension(broken.clone()));
    assert_eq!(
        check(&with_cn, &issuers, &cfg(SourceField::Cn, true)),
        Ok(CertIdentity::Cn("erin".into()))
    );
    let without = ca.issue(LeafSpec::new().with_org("Acme").with_sid_extension(broken));
    let e = check(&without, &issuers, &cfg(SourceField::Cn, true)).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("no common name"), "{text}");
    assert!(text.contains("SID extension is unusable"), "{text}");
}

#[test]
fn expired_and_not_yet_valid_leaves_are_not_trusted() {
    let ca = Ca::root("Test Root CA");
    let issuers = ca.trusted();
    let (from, to) = expired_window();
    let expired = ca.issue(LeafSpec::cn("old").valid(from, to));
    let e = check(&expired, &issuers, &cfg(SourceField::Cn, false)).unwrap_err();
    assert!(matches!(e, CertAuthError::Expired { .. }), "{e:?}");
    assert_eq!(e.cause(), "certificate_expired");
    assert_eq!(e.refusal(), Refusal::NotTrusted);
    assert!(e.to_string().contains("expired at 20"), "{e}");

    let (from, to) = future_window();
    let early = ca.issue(LeafSpec::cn("early").valid(from, to));
    let e = check(&early, &issuers, &cfg(SourceField::Cn, false)).unwrap_err();
    assert!(matches!(e, CertAuthError::NotYetValid { .. }), "{e:?}");
    assert_eq!(e.cause(), "certificate_not_yet_valid");
    assert_eq!(
        e.refusal().description(),
        "Client certificate is not trusted"
    );
}

#[test]
fn time_is_the_callers() {
    let ca = Ca::root("Test Root CA");
    let leaf = ca.issue(LeafSpec::cn("alice"));
    let chain = presented(&leaf);
    let c = cfg(SourceField::Cn, false);
    let issuers = ca.trusted();
    assert!(validate(Some(&chain), &issuers, &c, now()).is_ok());
    // The leaf lives thirty days from yesterday: in sixty days it has expired, two days ago
    // it was not yet valid.
    assert!(matches!(
        validate(Some(&chain), &issuers, &c, now() + 60 * 86_400),
        Err(CertAuthError::Expired { .. })
    ));
    assert!(matches!(
        validate(Some(&chain), &issuers, &c, now() - 2 * 86_400),
        Err(CertAuthError::NotYetValid { .. })
    ));
}

#[test]
fn a_leaf_from_another_ca_is_untrusted() {
    let trusted = Ca::root("Trusted CA");
    let other = Ca::root("Other CA");
    let leaf = other.issue(LeafSpec::cn("mallory"));
    let e = check(&leaf, &trusted.trusted(), &cfg(SourceField::Cn, false)).unwrap_err();
    assert_eq!(
        e,
        CertAuthError::UntrustedIssuer {
            subject: "CN=mallory".into(),
            issuer: "CN=Other CA, O=vedauth tests".into()
        }
    );
    assert_eq!(e.cause(), "untrusted_issuer");
    let r = e.refusal();
    assert_eq!((r.status(), r.error()), (401, "invalid_grant"));
}

#[test]
fn a_ca_with_the_same_name_but_another_key_is_untrusted() {
    let trusted = Ca::root("Corp CA");
    let impostor = Ca::root("Corp CA");
    let leaf = impostor.issue(LeafSpec::cn("alice"));
    let e = check(&leaf, &trusted.trusted(), &cfg(SourceField::Cn, false)).unwrap_err();
    assert_eq!(e.cause(), "bad_chain");
    assert!(e.to_string().contains("not its key"), "{e}");
    assert_eq!(e.refusal(), Refusal::NotTrusted);
}

#[test]
fn no_mappable_identity() {
    let ca = Ca::root("Test Root CA");
    let issuers = ca.trusted();
    let nameless = ca.issue(LeafSpec::new().with_org("Acme"));
    for field in [SourceField::Cn, SourceField::Upn, SourceField::Email] {
        let e = check(&nameless, &issuers, &cfg(field, false)).unwrap_err();
        assert!(matches!(e, CertAuthError::NoIdentity(_)), "{field}: {e:?}");
        let r = e.refusal();
        assert_eq!(
            (r.status(), r.error(), r.description()),
            (
                401,
                "invalid_grant",
                "Certificate does not map to a known identity"
            )
        );
    }
    // Two different emails: which user it means would depend on their order.
    let two = ca.issue(
        LeafSpec::cn("x")
            .with_email("a@example.com")
            .with_email("b@example.com"),
    );
    let e = check(&two, &issuers, &cfg(SourceField::Email, false)).unwrap_err();
    assert!(e.to_string().contains("2 different email values"), "{e}");
}

#[test]
fn no_certificate_is_its_own_answer() {
    let ca = Ca::root("Test Root CA");
    let e = validate(None, &ca.trusted(), &cfg(SourceField::Cn, false), now()).unwrap_err();
    assert_eq!(e, CertAuthError::NoCertificate);
    let r = e.refusal();
    assert_eq!(
        (r.status(), r.error(), r.description()),
        (
            400,
            "invalid_request",
            "No client certificate was presented"
        )
    );
}

#[test]
fn chains_through_an_intermediate() {
    let root = Ca::root("Root CA");
    let issuing = root.intermediate("Issuing CA");
    let bare = issuing.issue(LeafSpec::cn("frank"));
    let with_chain = issuing
        .issue(LeafSpec::cn("frank"))
        .with_intermediate(&issuing);
    let c = cfg(SourceField::Cn, false);

    // Trusting the root: the client must send the intermediate.
    let v = validate(Some(&presented(&with_chain)), &root.trusted(), &c, now()).unwrap();
    assert_eq!(v.identity, CertIdentity::Cn("frank".into()));
    assert_eq!(v.trusted_issuer, root.trusted().issuers()[0].fingerprint());
    assert_eq!(presented(&with_chain).intermediates().len(), 1);
    assert_eq!(
        check(&bare, &root.trusted(), &c).unwrap_err().cause(),
        "untrusted_issuer"
    );

    // Trusting the issuing CA itself: the leaf alone is enough.
    assert_eq!(
        check(&bare, &issuing.trusted(), &c),
        Ok(CertIdentity::Cn("frank".into()))
    );
}

#[test]
fn an_expired_trusted_issuer_no_longer_vouches() {
    let t = now();
    let root = Ca::root_valid("Old Root", t - 400 * 86_400, t - 86_400);
    // A leaf whose own window is current, signed by the now expired root.
    let leaf = root.issue(LeafSpec::cn("gina"));
    let e = check(&leaf, &root.trusted(), &cfg(SourceField::Cn, false)).unwrap_err();
    assert_eq!(e.cause(), "bad_chain");
    assert!(e.to_string().contains("Old Root"), "{e}");
    assert!(e.to_string().contains("expired"), "{e}");
}

#[test]
fn usage_restrictions_are_enforced() {
    let ca = Ca::root("Test Root CA");
    let issuers = ca.trusted();
    let c = cfg(SourceField::Cn, false);
    let server_only = ca.issue(LeafSpec::cn("web").eku(vec![ExtendedKeyUsagePurpose::ServerAuth]));
    let e = check(&server_only, &issuers, &c).unwrap_err();
    assert_eq!(e.cause(), "bad_chain");
    assert!(e.to_string().contains("client authentication"), "{e}");

    // No EKU at all is accepted (RFC 5280: no restriction).
    let any = ca.issue(LeafSpec::cn("any").eku(vec![]));
    assert_eq!(
        check(&any, &issuers, &c),
        Ok(CertIdentity::Cn("any".into()))
    );

    let encipher_only =
        ca.issue(LeafSpec::cn("enc").key_usages(vec![KeyUsagePurpose::KeyEncipherment]));
    let e = check(&encipher_only, &issuers, &c).unwrap_err();
    assert!(e.to_string().contains("digital signatures"), "{e}");

    let ca_leaf = ca.issue(LeafSpec::cn("sub-ca").ca().key_usages(vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ]));
    let e = check(&ca_leaf, &issuers, &c).unwrap_err();
    assert!(e.to_string().contains("CA certificate"), "{e}");
}

#[test]
fn unreadable_and_overlong_chains() {
    let ca = Ca::root("Test Root CA");
    let issuers = ca.trusted();
    let c = cfg(SourceField::Cn, false);
    let junk = PresentedChain::new(
        vec![CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00])],
        ChainSource::Tls,
    )
    .unwrap();
    let e = validate(Some(&junk), &issuers, &c, now()).unwrap_err();
    assert_eq!(e.cause(), "malformed_certificate");
    assert_eq!(e.refusal(), Refusal::NotTrusted);

    let leaf = ca.issue(LeafSpec::cn("long"));
    let mut certs = vec![leaf.der.clone()];
    certs.extend(std::iter::repeat_n(ca.der(), 8));
    let long = PresentedChain::new(certs, ChainSource::Tls).unwrap();
    let e = validate(Some(&long), &issuers, &c, now()).unwrap_err();
    assert_eq!(e.cause(), "bad_chain");
    assert!(PresentedChain::new(vec![], ChainSource::Tls).is_none());
}

#[test]
fn issuer_bundles() {
    let a = Ca::root("CA A");
    let b = Ca::root("CA B");
    let bundle = format!("{}\n{}{}", a.pem(), b.pem(), a.pem());
    let set = TrustedIssuers::from_pem(bundle.as_bytes()).unwrap();
    assert_eq!(set.len(), 2, "the duplicate collapses");
    assert_eq!(set.issuers()[0].subject(), "CN=CA A, O=vedauth tests");
    let fps = set.authorized_issuer_dns();
    assert_eq!(fps[0], set.issuers()[0].fingerprint());
    assert!(fps.iter().all(|f| f.len() == 64
        && f.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))));

    // Storage round trip.
    let again = TrustedIssuers::from_pem(set.to_pem().as_bytes()).unwrap();
    assert_eq!(again.authorized_issuer_dns(), fps);

    // setconfiguration with AuthorizedIssuerDns: a subset, in any fingerprint spelling.
    let colons = fps[1]
        .as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p).to_uppercase())
        .collect::<Vec<_>>()
        .join(":");
    let only_b = set.select(&[colons]).unwrap();
    assert_eq!(only_b.authorized_issuer_dns(), vec![fps[1].clone()]);
    let leaf_a = a.issue(LeafSpec::cn("from-a"));
    assert_eq!(
        check(&leaf_a, &only_b, &cfg(SourceField::Cn, false))
            .unwrap_err()
            .cause(),
        "untrusted_issuer"
    );
    assert_eq!(
        set.select(&["00".repeat(32)]).unwrap_err(),
        IssuerError::UnknownIssuer("00".repeat(32))
    );
    let merged = only_b.merged(&a.trusted());
    assert_eq!(merged.len(), 2);
    assert!(check(&leaf_a, &merged, &cfg(SourceField::Cn, false)).is_ok());

    // A client certificate is not an issuer.
    let leaf = a.issue(LeafSpec::cn("not-a-ca"));
    let e = TrustedIssuers::from_pem(leaf.pem.as_bytes()).unwrap_err();
    assert!(
        matches!(&e, IssuerError::NotCa { index: 1, subject, .. } if subject == "CN=not-a-ca"),
        "{e:?}"
    );
    // Nor a private key.
    let e =
        TrustedIssuers::from_pem(format!("{}{}", a.pem(), leaf.key_pem).as_bytes()).unwrap_err();
    assert!(matches!(e, IssuerError::NotACertificate(_)), "{e:?}");
}

#[test]
fn certificate_configuration_carries_the_issuer_fingerprints() {
    let a = Ca::root("CA A");
    let set = a.trusted();
    let c = CertificateConfiguration {
        authorized_issuer_dns: set.authorized_issuer_dns(),
        ..CertificateConfiguration::default()
    };
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(
        json["AuthorizedIssuerDns"][0].as_str(),
        Some(set.issuers()[0].fingerprint())
    );
    assert_eq!(json["SourceField"], "CN");
    assert_eq!(json["AttemptSIDExtensionBeforeSourceField"], false);
    let back: CertificateConfiguration = serde_json::from_value(json).unwrap();
    assert_eq!(set.select(&back.authorized_issuer_dns).unwrap().len(), 1);
}
