//! Rules and roles name identities, not names (docs/protocol.md §11): a trustee or grantee given by
//! name is resolved once, when the rule or role is made; removing a user removes what named it;
//! a new user who reuses the name inherits nothing. Through the administration API, with the
//! command line working on the same store, and against a real slapd.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::binary::{admin, admin_outcome};
use crate::common::{Options, TestServer};
use crate::dirsrv::{self, Slapd};

const NOT_ALLOWED: &str = "Failed to issue grant: user is not allowed to use this application";
const NO_RIGHTS: &str =
    "The underlying user account does not have sufficient permissions for this request";

fn rules_of(r: &Value) -> Vec<Value> {
    r["Rules"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_who_reuses_a_name_inherits_nothing_through_the_api() {
    let s = TestServer::start().await;
    let t = s.admin_token("admin").await;
    s.add_app("vcert-sdk", "certificate").await;
    let old = s.add_user("mallory", "Mallory-Old-Pw-1").await;
    // The rule is made by name and stored by identity.
    let rule = s
        .oauth(
            "CreateRule",
            &t,
            &json!({"ApplicationId": "vcert-sdk", "TrusteePrefixedUniversal": "local:mallory"}),
        )
        .await
        .ok();
    assert_eq!(
        rule.json["Rule"]["TrusteePrefixedUniversal"],
        old.identity().as_str(),
        "{}",
        rule.text
    );
    s.tokens("vcert-sdk", "mallory", "Mallory-Old-Pw-1", "certificate")
        .await;

    // Removed and added again on the command line, on the same store.
    admin(&s.dir, &["user", "remove", "mallory"], None);
    admin(
        &s.dir,
        &["user", "add", "mallory", "--password-stdin"],
        Some("Mallory-New-Pw-2\n"),
    );
    s.password_grant("vcert-sdk", "mallory", "Mallory-New-Pw-2", "certificate")
        .await
        .assert_error(401, "invalid_grant", NOT_ALLOWED);
    // The old rule went with the old user.
    let rules = s
        .oauth("GetRules", &t, &json!({"ApplicationId": "vcert-sdk"}))
        .await
        .ok();
    assert_eq!(rules_of(&rules.json), Vec::<Value>::new(), "{}", rules.text);
    let gone = s.app.store.lockout(&old.identity()).await.expect("store");
    assert!(gone.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trustees_and_grantees_are_resolved_when_rules_and_roles_are_made() {
    let s = TestServer::start().await;
    let t = s.admin_token("admin").await;
    s.add_app("vcert-sdk", "certificate").await;
    s.add_app("admin-app", "admin").await;
    s.allow("admin-app", "everyone", None).await;
    let alice = s.add_user("alice", "Alice-Password-1").await;
    let frank = s.add_user("frank", "Frank-Password-1").await;

    // The bootstrap administrator's rule and role name its identity, not the name `admin`.
    let admin_id = s
        .app
        .store
        .user_by_name("admin")
        .await
        .expect("store")
        .expect("admin")
        .identity();
    let boot = s
        .oauth("GetRules", &t, &json!({"ApplicationId": "vedauth-admin"}))
        .await
        .ok();
    assert_eq!(
        boot.json["Rules"][0]["TrusteePrefixedUniversal"],
        admin_id.as_str()
    );
    let roles = s.oauth("ListRoles", &t, &json!({})).await.ok();
    assert_eq!(roles.json["Roles"][0]["Grantee"], admin_id.as_str());

    // A bare user name is a trustee.
    let r = s
        .oauth(
            "CreateRule",
            &t,
            &json!({"ApplicationId": "vcert-sdk", "TrusteePrefixedUniversal": "alice"}),
        )
        .await
        .ok();
    assert_eq!(
        r.json["Rule"]["TrusteePrefixedUniversal"],
        alice.identity().as_str()
    );
    s.tokens("vcert-sdk", "alice", "Alice-Password-1", "certificate")
        .await;
    // The same identity named another way is the same rule.
    s.oauth(
        "CreateRule",
        &t,
        &json!({"ApplicationId": "vcert-sdk", "TrusteePrefixedUniversal": alice.identity()}),
    )
    .await
    .refused(20);
    // Unknown names are refused with the accepted forms.
    let unknown = s
        .oauth(
            "CreateRule",
            &t,
            &json!({"ApplicationId": "vcert-sdk", "TrusteePrefixedUniversal": "nobody"}),
        )
        .await;
    unknown.refused(18);
    assert!(
        unknown.json["Error"]
            .as_str()
            .is_some_and(|e| e.contains("everyone") && e.contains("local:")),
        "{}",
        unknown.text
    );

    // A role given to `local:frank` takes effect.
    let (frank_token, _) = s
        .tokens("admin-app", "frank", "Frank-Password-1", "admin")
        .await;
    s.oauth("EnumerateApplications", &frank_token, &json!({}))
        .await
        .assert_error(401, "insufficient_rights", NO_RIGHTS);
    s.oauth(
        "GrantRole",
        &t,
        &json!({"GranteePrefixedUniversal": "local:frank", "Role": 6}),
    )
    .await
    .ok();
    s.oauth("EnumerateApplications", &frank_token, &json!({}))
        .await
        .ok();
    // Listings show the identity, and with ResolveIdentities its current name.
    let roles = s
        .oauth("ListRoles", &t, &json!({"ResolveIdentities": true}))
        .await
        .ok();
    let grantees: Vec<&str> = roles.json["Roles"]
        .as_array()
        .expect("roles")
        .iter()
        .filter_map(|r| r["Grantee"].as_str())
        .collect();
    assert!(
        grantees.contains(&frank.identity().as_str()),
        "{}",
        roles.text
    );
    let entries = roles.json["IdentityEntries"].as_array().expect("entries");
    let entry = entries
        .iter()
        .find(|e| e["PrefixedUniversal"] == frank.identity().as_str())
        .expect("frank's entry");
    assert_eq!(entry["PrefixedName"], "local:frank");
    assert_eq!(entry["Name"], "frank");
    let rules = s
        .oauth(
            "GetRules",
            &t,
            &json!({"ApplicationId": "vcert-sdk", "ResolveIdentities": true}),
        )
        .await
        .ok();
    assert_eq!(
        rules.json["IdentityEntries"][0]["PrefixedName"],
        "local:alice"
    );
    // Revoking by name finds the role made by name.
    s.oauth(
        "RevokeRole",
        &t,
        &json!({"GranteePrefixedUniversal": "frank", "Role": 6}),
    )
    .await
    .ok();
    s.oauth("EnumerateApplications", &frank_token, &json!({}))
        .await
        .assert_error(401, "insufficient_rights", NO_RIGHTS);

    // A role dies with its user: a new frank holds none.
    s.oauth(
        "GrantRole",
        &t,
        &json!({"GranteePrefixedUniversal": "local:frank", "Role": 1}),
    )
    .await
    .ok();
    admin(&s.dir, &["user", "remove", "frank"], None);
    admin(
        &s.dir,
        &["user", "add", "frank", "--password-stdin"],
        Some("Frank-Password-2\n"),
    );
    let (new_frank, _) = s
        .tokens("admin-app", "frank", "Frank-Password-2", "admin")
        .await;
    s.oauth("EnumerateApplications", &new_frank, &json!({}))
        .await
        .assert_error(401, "insufficient_rights", NO_RIGHTS);
    let roles = s.oauth("ListRoles", &t, &json!({})).await.ok();
    assert_eq!(
        roles.json["Roles"].as_array().map(Vec::len),
        Some(1),
        "only the bootstrap admin's role is left: {}",
        roles.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mallory_sequence_on_the_command_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let s = crate::binary::Served::start(&dir, &[]);
    let client = s.client();
    let grant = |app: &'static str, user: &'static str, pw: &'static str, scope: &'static str| {
        let (client, url) = (
            client.clone(),
            format!("{}/vedauth/authorize/oauth", s.base),
        );
        async move {
            crate::common::Reply::read(
                client
                    .post(url)
                    .json(&json!({"client_id": app, "username": user, "password": pw, "scope": scope}))
                    .send()
                    .await
                    .expect("send"),
            )
            .await
        }
    };
    admin(
        &dir,
        &["app", "add", "vcert-sdk", "--scope", "certificate"],
        None,
    );
    admin(
        &dir,
        &["user", "add", "mallory", "--password-stdin"],
        Some("Mallory-Old-Pw-1\n"),
    );
    admin(&dir, &["app", "allow", "vcert-sdk", "local:mallory"], None);
    let r = grant("vcert-sdk", "mallory", "Mallory-Old-Pw-1", "certificate").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let old_identity = r.str("identity");
    // The listing shows the identity and its current name.
    let shown: Value =
        serde_json::from_str(&admin(&dir, &["app", "show", "vcert-sdk", "--json"], None))
            .expect("json");
    assert_eq!(shown["rules"][0]["trustee"], old_identity.as_str());
    assert_eq!(shown["rules"][0]["trustee_name"], "local:mallory");
    admin(&dir, &["user", "remove", "mallory"], None);
    admin(
        &dir,
        &["user", "add", "mallory", "--password-stdin"],
        Some("Mallory-New-Pw-2\n"),
    );
    let r = grant("vcert-sdk", "mallory", "Mallory-New-Pw-2", "certificate").await;
    r.assert_error(401, "invalid_grant", NOT_ALLOWED);
    let shown: Value =
        serde_json::from_str(&admin(&dir, &["app", "show", "vcert-sdk", "--json"], None))
            .expect("json");
    assert_eq!(shown["rules"], json!([]), "{shown}");

    // `role grant local:erin admin` takes effect.
    admin(
        &dir,
        &["user", "add", "erin", "--password-stdin"],
        Some("Erin-Password-1\n"),
    );
    admin(&dir, &["app", "add", "admin-app", "--scope", "admin"], None);
    admin(&dir, &["app", "allow", "admin-app", "erin"], None);
    admin(&dir, &["role", "grant", "local:erin", "admin"], None);
    let erin = grant("admin-app", "erin", "Erin-Password-1", "admin").await;
    assert_eq!(erin.status, StatusCode::OK, "{}", erin.text);
    let listed = crate::common::Reply::read(
        client
            .post(format!("{}/vedsdk/oauth/enumerateapplications", s.base))
            .bearer_auth(erin.str("access_token"))
            .json(&json!({}))
            .send()
            .await
            .expect("send"),
    )
    .await
    .ok();
    assert_eq!(
        listed.json["Applications"].as_array().map(Vec::len),
        Some(3)
    );
    let roles: Value =
        serde_json::from_str(&admin(&dir, &["role", "list", "--json"], None)).expect("json");
    let erin_role = roles
        .as_array()
        .expect("roles")
        .iter()
        .find(|r| r["identity_name"] == "local:erin")
        .cloned()
        .expect("erin's role");
    assert_eq!(erin_role["identity"], erin.str("identity"));
    // An unknown name is refused with result 18 and the accepted forms.
    let (ok, _, err) = admin_outcome(&dir, &["app", "allow", "vcert-sdk", "nobody"], None);
    assert!(!ok);
    assert!(
        err.contains("result 18") && err.contains("everyone"),
        "{err}"
    );
    s.sigterm();
    assert!(s.wait().0.success());
}

fn ldap_provider(slapd: &Slapd) -> vedauth::identity::ldap::LdapConfig {
    let text = format!(
        r#"
kind = "ldap"
name = "T"
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
    toml::from_str(&text).expect("provider config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_users_and_groups_are_resolved_by_name() {
    let slapd = Slapd::start();
    let mut opts = Options::default();
    opts.config.ldap = vec![ldap_provider(&slapd)];
    let s = TestServer::start_with(opts).await;
    let t = s.admin_token("admin").await;
    s.add_app("dir-app", "certificate").await;
    let ops = slapd
        .entry_uuid(&format!("cn=ops,ou=groups,{}", dirsrv::SUFFIX))
        .await
        .to_ascii_lowercase();
    let alice = slapd
        .entry_uuid(&format!("uid=alice,ou=people,{}", dirsrv::SUFFIX))
        .await
        .to_ascii_lowercase();
    let carol = slapd
        .entry_uuid(&format!("uid=carol,ou=people,{}", dirsrv::SUFFIX))
        .await
        .to_ascii_lowercase();
    for (given, stored) in [
        ("LDAP+T:ops", format!("LDAP+T:{ops}")),
        ("ldap+t:alice", format!("LDAP+T:{alice}")),
        // A bare name no local user has: the directory knows it.
        ("carol", format!("LDAP+T:{carol}")),
    ] {
        let r = s
            .oauth(
                "CreateRule",
                &t,
                &json!({"ApplicationId": "dir-app", "TrusteePrefixedUniversal": given}),
            )
            .await
            .ok();
        assert_eq!(
            r.json["Rule"]["TrusteePrefixedUniversal"], stored,
            "{given}"
        );
    }
    // A universal is accepted as it is.
    s.oauth(
        "DeleteRule",
        &t,
        &json!({"ApplicationId": "dir-app", "TrusteePrefixedUniversal": format!("LDAP+T:{carol}")}),
    )
    .await
    .ok();
    s.oauth(
        "CreateRule",
        &t,
        &json!({"ApplicationId": "dir-app", "TrusteePrefixedUniversal": format!("LDAP+T:{carol}")}),
    )
    .await
    .ok();
    s.oauth(
        "CreateRule",
        &t,
        &json!({"ApplicationId": "dir-app", "TrusteePrefixedUniversal": "LDAP+T:nobody"}),
    )
    .await
    .refused(18);
    // The group rule admits its member bob once he joins; the listing names the group.
    let rules = s
        .oauth(
            "GetRules",
            &t,
            &json!({"ApplicationId": "dir-app", "ResolveIdentities": true}),
        )
        .await
        .ok();
    let names: Vec<&str> = rules.json["IdentityEntries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["PrefixedName"].as_str())
        .collect();
    for n in ["LDAP+T:ops", "LDAP+T:alice", "LDAP+T:carol"] {
        assert!(names.contains(&n), "{n} in {}", rules.text);
    }
    let r = s
        .password_grant("dir-app", "alice", "alice-pw", "certificate")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    s.password_grant("dir-app", "bob", "bob-pw", "certificate")
        .await
        .assert_error(401, "invalid_grant", NOT_ALLOWED);
}
