//! Certificates naming directory users: slapd users found by their `mail` (Email SAN) or login
//! name (CN), Samba AD users by `userPrincipalName` (UPN SAN) and `objectSid` (the SID
//! extension); a disabled AD account and an ambiguous value are refused.

use std::collections::HashSet;

use serde_json::json;
use vedauth::admin::Caller;
use vedauth::certauth::SourceField;
use vedauth::identity::ldap::LdapConfig;

use super::grant::{cert_grant, client, switch, APP, SCOPE};
use super::pki::{Ca, LeafSpec};
use crate::common::{Options, TestServer};
use crate::dirsrv::{self, SambaAd, Slapd};

async fn server(providers: Vec<LdapConfig>) -> (TestServer, Ca) {
    let mut opts = Options::default();
    opts.config.ldap = providers;
    let s = TestServer::start_with(opts).await;
    s.add_app(APP, SCOPE).await;
    s.allow(APP, "everyone", None).await;
    let ca = Ca::root("Directory Client CA");
    s.app
        .admin
        .add_issuers(&Caller::Operator, &ca.pem())
        .await
        .expect("issuer");
    switch(&s, true).await;
    (s, ca)
}

async fn source_field(s: &TestServer, field: SourceField, sid_first: bool) {
    let mut st = s
        .app
        .admin
        .get_settings(&Caller::Operator)
        .await
        .expect("get");
    st.certificate_configuration.source_field = field;
    st.certificate_configuration
        .attempt_sid_extension_before_source_field = sid_first;
    s.app
        .admin
        .set_settings(&Caller::Operator, st)
        .await
        .expect("set");
}

fn body() -> serde_json::Value {
    json!({"client_id": APP, "scope": SCOPE})
}

#[tokio::test]
async fn slapd_users_are_found_by_mail_and_by_login_name() {
    let slapd = Slapd::start();
    let text = format!(
        r#"
kind = "ldap"
name = "dir"
urls = ["{url}"]
ca_file = {ca:?}
bind_dn = "{svc}"
bind_password_file = {pw:?}
base_dn = "{suffix}"
group_base_dn = "ou=groups,{suffix}"
connect_timeout_secs = 2
timeout_secs = 2
"#,
        url = slapd.url(),
        ca = slapd.ca_file(),
        svc = dirsrv::SVC_DN,
        pw = slapd.svc_password_file(),
        suffix = dirsrv::SUFFIX,
    );
    let (s, ca) = server(vec![toml::from_str(&text).expect("config")]).await;
    // Mail addresses, set as a directory administrator would: bob's is his own, carol and
    // alice share one.
    let mut admin = slapd.admin().await;
    for (uid, mail) in [
        ("bob", "bob@vedauth.test"),
        ("carol", "shared@vedauth.test"),
        ("alice", "shared@vedauth.test"),
    ] {
        admin
            .modify(
                &format!("uid={uid},ou=people,{}", dirsrv::SUFFIX),
                vec![ldap3::Mod::Add("mail", HashSet::from([mail]))],
            )
            .await
            .and_then(|r| r.success())
            .expect("add mail");
    }
    let bob = format!(
        "LDAP+dir:{}",
        slapd
            .entry_uuid(&format!("uid=bob,ou=people,{}", dirsrv::SUFFIX))
            .await
    );

    source_field(&s, SourceField::Email, false).await;
    let leaf = ca.issue(LeafSpec::cn("someone else").with_email("bob@vedauth.test"));
    let r = cert_grant(&client(&s, Some(&leaf), None), &s.base, &body()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.str("identity"), bob);
    let me = s
        .get_bearer("/vedsdk/Identity/Self", Some(&r.str("access_token")))
        .await;
    assert_eq!(
        me.json["Identities"][0]["PrefixedName"], "LDAP+dir:bob",
        "{}",
        me.text
    );

    // Two entries carry the address: refused, not guessed.
    let leaf = ca.issue(LeafSpec::cn("x").with_email("shared@vedauth.test"));
    let r = cert_grant(&client(&s, Some(&leaf), None), &s.base, &body()).await;
    r.assert_error(
        401,
        "invalid_grant",
        "Certificate does not map to a known identity",
    );

    // By CN: the login attribute, as for a password login.
    source_field(&s, SourceField::Cn, false).await;
    let leaf = ca.issue(LeafSpec::cn("bob"));
    let r = cert_grant(&client(&s, Some(&leaf), None), &s.base, &body()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.str("identity"), bob);
}

/// The SID as AD shows it, from objectSid's bytes.
fn sid_string(raw: &[u8]) -> String {
    let subs = raw[1] as usize;
    let mut authority = [0u8; 8];
    authority[2..].copy_from_slice(&raw[2..8]);
    let mut out = format!("S-{}-{}", raw[0], u64::from_be_bytes(authority));
    for i in 0..subs {
        let b = &raw[8 + 4 * i..12 + 4 * i];
        out.push_str(&format!(
            "-{}",
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        ));
    }
    out
}

#[tokio::test]
async fn samba_ad_users_are_found_by_upn_and_by_sid_and_a_disabled_account_is_refused() {
    let ad = SambaAd::start();
    let text = format!(
        r#"
kind = "ad"
name = "corp"
urls = ["{url}"]
ca_file = {ca:?}
bind_dn = "{svc}"
bind_password_file = {pw:?}
base_dn = "{base}"
connect_timeout_secs = 5
timeout_secs = 5
"#,
        url = ad.ldaps_url(),
        ca = ad.ca_file(),
        svc = dirsrv::AD_SVC_DN,
        pw = ad.svc_password_file(),
        base = dirsrv::AD_BASE,
    );
    let (s, ca) = server(vec![toml::from_str(&text).expect("config")]).await;
    let guid = ad.object_guid("(sAMAccountName=alice)").await;
    let alice: String = format!(
        "AD+corp:{}",
        guid.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );

    source_field(&s, SourceField::Upn, false).await;
    let leaf = ca.issue(LeafSpec::cn("not-a-name").with_upn("alice@vedtest.example"));
    let r = cert_grant(&client(&s, Some(&leaf), None), &s.base, &body()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.str("identity"), alice);
    // The AD groups come along, as at a password login: a rule for the nested group Dept admits.
    s.add_app("dept-app", SCOPE).await;
    s.allow("dept-app", "AD+corp:Dept", None).await;
    let r = cert_grant(
        &client(&s, Some(&leaf), None),
        &s.base,
        &json!({"client_id": "dept-app", "scope": SCOPE}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // dan is disabled in AD: nobody binds here, so the account flag is what refuses him.
    let dan = ca.issue(LeafSpec::cn("dan").with_upn("dan@vedtest.example"));
    let r = cert_grant(&client(&s, Some(&dan), None), &s.base, &body()).await;
    r.assert_error(
        401,
        "invalid_grant",
        "Certificate does not map to a known identity",
    );

    // The SID extension first: found by objectSid, whatever the UPN says.
    let sid = sid_string(
        &ad.binary_attribute("(sAMAccountName=alice)", "objectSid")
            .await,
    );
    assert!(sid.starts_with("S-1-5-21-"), "{sid}");
    source_field(&s, SourceField::Upn, true).await;
    let leaf = ca.issue(
        LeafSpec::cn("x")
            .with_upn("bob@vedtest.example")
            .with_sid(&sid),
    );
    let r = cert_grant(&client(&s, Some(&leaf), None), &s.base, &body()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.str("identity"), alice, "the SID decides");
    // Without an extension, the UPN.
    let leaf = ca.issue(LeafSpec::cn("x").with_upn("bob@vedtest.example"));
    let r = cert_grant(&client(&s, Some(&leaf), None), &s.base, &body()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_ne!(r.str("identity"), alice);
    assert!(r.str("identity").starts_with("AD+corp:"));
}
