//! Directory identity providers against real servers: OpenLDAP's slapd (one or two per test)
//! and a Samba Active Directory domain controller, all on loopback (see `dirsrv.rs`).

use std::time::Duration;

use reqwest::StatusCode;
use vedauth::identity::ldap::LdapConfig;

use crate::common::{Options, Reply, TestServer};
use crate::dirsrv::{self, SambaAd, Slapd};

const BAD_LOGIN: &str = "Username/password combination not valid";
const NOT_ALLOWED: &str = "Failed to issue grant: user is not allowed to use this application";
const SCOPE: &str = "certificate:manage";

fn alice_dn() -> String {
    format!("uid=alice,ou=people,{}", dirsrv::SUFFIX)
}

/// An `ldap` provider named `name` for `urls` of the given test servers, with short timeouts.
fn ldap_provider(name: &str, urls: &[String], slapd: &Slapd, extra: &str) -> LdapConfig {
    let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    let text = format!(
        r#"
kind = "ldap"
name = "{name}"
urls = [{urls}]
ca_file = {ca:?}
bind_dn = "{svc}"
bind_password_file = {pw:?}
base_dn = "{suffix}"
group_base_dn = "ou=groups,{suffix}"
connect_timeout_secs = 2
timeout_secs = 2
pool_size = 2
{extra}
"#,
        urls = urls.join(", "),
        ca = slapd.ca_file(),
        svc = dirsrv::SVC_DN,
        pw = slapd.svc_password_file(),
        suffix = dirsrv::SUFFIX,
    );
    toml::from_str(&text).expect("provider config")
}

async fn server_with(providers: Vec<LdapConfig>) -> TestServer {
    let mut opts = Options::default();
    opts.config.ldap = providers;
    TestServer::start_with(opts).await
}

/// Every row-7 failure must be the same reply, byte for byte.
fn assert_bad_login(r: &Reply, what: &str) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.text);
    r.assert_error(401, "invalid_grant", BAD_LOGIN);
}

#[tokio::test]
async fn ldap_users_get_tokens_in_every_username_form() {
    let slapd = Slapd::start();
    let s = server_with(vec![ldap_provider("TESTLDAP", &[slapd.url()], &slapd, "")]).await;
    s.add_app("ldap-app", SCOPE).await;
    s.allow("ldap-app", "everyone", None).await;
    let uuid = slapd.entry_uuid(&alice_dn()).await;
    let identity = format!("LDAP+TESTLDAP:{}", uuid.to_ascii_lowercase());

    for username in [
        "alice",
        "LDAP+TESTLDAP:alice",
        "ldap+testldap:alice",
        "LDAP+TESTLDAP:ALICE",
    ] {
        let r = s
            .password_grant("ldap-app", username, "alice-pw", SCOPE)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{username}: {}", r.text);
        assert_eq!(r.str("identity"), identity, "{username}");
    }

    let (access, refresh) = s.tokens("ldap-app", "alice", "alice-pw", SCOPE).await;
    let v = s.verify(&access).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text);
    assert_eq!(v.str("identity"), identity);
    let me = s.get_bearer("/vedsdk/Identity/Self", Some(&access)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    let id = &me.json["Identities"][0];
    assert_eq!(id["Prefix"], "LDAP+TESTLDAP");
    assert_eq!(id["Name"], "alice");
    assert_eq!(id["PrefixedName"], "LDAP+TESTLDAP:alice");
    assert_eq!(id["PrefixedUniversal"], identity.as_str());
    assert_eq!(id["Universal"], uuid.to_ascii_lowercase());
    assert_eq!(id["FullName"], alice_dn());
    // Refresh does not ask the directory again.
    let r = s.refresh("ldap-app", &refresh).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.str("identity"), identity);
}

#[tokio::test]
async fn ldap_identity_survives_a_rename() {
    let slapd = Slapd::start();
    let s = server_with(vec![ldap_provider("T", &[slapd.url()], &slapd, "")]).await;
    s.setup_basic("nobody-local", "x-pw", "ldap-app", SCOPE)
        .await;
    let before = s
        .password_grant("ldap-app", "alice", "alice-pw", SCOPE)
        .await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.text);

    let mut admin = slapd.admin().await;
    admin
        .modifydn(&alice_dn(), "uid=alicia", true, None)
        .await
        .and_then(|r| r.success())
        .expect("rename");

    let after = s
        .password_grant("ldap-app", "alicia", "alice-pw", SCOPE)
        .await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.text);
    assert_eq!(after.str("identity"), before.str("identity"));
    assert_bad_login(
        &s.password_grant("ldap-app", "alice", "alice-pw", SCOPE)
            .await,
        "old name",
    );
}

#[tokio::test]
async fn ldap_group_rules_admit_their_members() {
    let slapd = Slapd::start();
    // ldaps:// this time, with the CA file.
    let s = server_with(vec![ldap_provider("T", &[slapd.ldaps_url()], &slapd, "")]).await;
    let ops_uuid = slapd
        .entry_uuid(&format!("cn=ops,ou=groups,{}", dirsrv::SUFFIX))
        .await;
    s.add_app("by-name", SCOPE).await;
    s.allow("by-name", "LDAP+T:OPS", None).await;
    s.add_app("by-id", SCOPE).await;
    s.allow("by-id", &format!("LDAP+T:{ops_uuid}"), Some("certificate"))
        .await;

    let r = s
        .password_grant("by-name", "alice", "alice-pw", SCOPE)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s
        .password_grant("by-id", "alice", "alice-pw", "certificate")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The rule that admitted alice caps the scope.
    let r = s.password_grant("by-id", "alice", "alice-pw", SCOPE).await;
    r.assert_error(
        403,
        "invalid_scope",
        "Failed to issue grant: User is not authorized for the requested scope",
    );
    // bob is in devs, carol in no group: their passwords are right, the rules do not admit them.
    for (user, pw) in [("bob", "bob-pw"), ("carol", "carol-ldap-pw")] {
        for app in ["by-name", "by-id"] {
            let r = s.password_grant(app, user, pw, "certificate").await;
            r.assert_error(401, "invalid_grant", NOT_ALLOWED);
        }
    }
    // Joining the group admits bob at his next login.
    let mut admin = slapd.admin().await;
    let bob = format!("uid=bob,ou=people,{}", dirsrv::SUFFIX);
    admin
        .modify(
            &format!("cn=ops,ou=groups,{}", dirsrv::SUFFIX),
            vec![ldap3::Mod::Add(
                "member",
                std::collections::HashSet::from([bob.as_str()]),
            )],
        )
        .await
        .and_then(|r| r.success())
        .expect("add member");
    let r = s.password_grant("by-name", "bob", "bob-pw", SCOPE).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn ldap_bad_credentials_all_look_alike() {
    let slapd = Slapd::start();
    let s = server_with(vec![ldap_provider("T", &[slapd.url()], &slapd, "")]).await;
    s.add_app("ldap-app", SCOPE).await;
    s.allow("ldap-app", "everyone", None).await;

    let mut replies = Vec::new();
    for (user, pw) in [
        ("alice", "wrong"),
        ("alice", " "),
        ("LDAP+T:alice", "bob-pw"),
        ("nobody", "alice-pw"),
        ("LDAP+T:nobody", "alice-pw"),
        // Filter injection: had any of these reached the filter unescaped, they would match
        // alice (or everyone), and her password would let them in.
        ("*", "alice-pw"),
        ("al*", "alice-pw"),
        ("*)(uid=*", "alice-pw"),
        ("alice)(|(uid=*", "alice-pw"),
        ("LDAP+T:*", "alice-pw"),
        ("LDAP+T:*)(objectClass=*", "alice-pw"),
        // A DN is not a login name.
        ("uid=alice,ou=people,dc=vedauth,dc=test", "alice-pw"),
    ] {
        let r = s.password_grant("ldap-app", user, pw, SCOPE).await;
        assert_bad_login(&r, user);
        replies.push(r.text);
    }
    assert!(replies.windows(2).all(|w| w[0] == w[1]), "{replies:?}");

    // An empty password is a missing one (docs/protocol.md §2), answered before any provider is
    // asked; the providers' own guard is covered by the unit tests.
    let r = s.password_grant("ldap-app", "alice", "", SCOPE).await;
    r.assert_error(400, "invalid_request", "Missing username or password");
}

#[tokio::test]
async fn bare_names_try_local_users_first() {
    let slapd = Slapd::start();
    let s = server_with(vec![ldap_provider("T", &[slapd.url()], &slapd, "")]).await;
    // carol exists in both places, with different passwords.
    let local = s.add_user("carol", "carol-local-pw").await;
    s.add_app("app", SCOPE).await;
    s.allow("app", "everyone", None).await;

    let r = s
        .password_grant("app", "carol", "carol-local-pw", SCOPE)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.str("identity"), format!("local:{{{}}}", local.id));
    // The local user decides: the directory's password is wrong for her.
    assert_bad_login(
        &s.password_grant("app", "carol", "carol-ldap-pw", SCOPE)
            .await,
        "bare carol, directory password",
    );
    let r = s
        .password_grant("app", "LDAP+T:carol", "carol-ldap-pw", SCOPE)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.str("identity").starts_with("LDAP+T:"), "{}", r.text);
}

#[tokio::test]
async fn logins_fail_over_to_the_next_server() {
    let first = Slapd::start();
    let second = Slapd::replica_of(&first);
    // Nothing listens on the first URL at all.
    let dead = format!("ldap://127.0.0.1:{}", closed_port());
    let s = server_with(vec![ldap_provider(
        "T",
        &[dead, first.url(), second.url()],
        &first,
        "",
    )])
    .await;
    s.add_app("app", SCOPE).await;
    s.allow("app", "everyone", None).await;

    let before = s.password_grant("app", "alice", "alice-pw", SCOPE).await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.text);
    first.stop();
    for _ in 0..3 {
        let r = s.password_grant("app", "alice", "alice-pw", SCOPE).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        // The replica has the same entryUUIDs: the same identity.
        assert_eq!(r.str("identity"), before.str("identity"));
    }
    assert_bad_login(
        &s.password_grant("app", "alice", "wrong", SCOPE).await,
        "wrong password via the second server",
    );
}

#[tokio::test]
async fn a_hung_server_is_set_aside_for_the_next() {
    let first = Slapd::start();
    let second = Slapd::replica_of(&first);
    let s = server_with(vec![ldap_provider(
        "T",
        &[first.url(), second.url()],
        &first,
        "",
    )])
    .await;
    s.add_app("app", SCOPE).await;
    s.allow("app", "everyone", None).await;
    // Leaves a pooled connection to the first server.
    let before = s.password_grant("app", "alice", "alice-pw", SCOPE).await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.text);

    first.pause();
    // The pooled connection hangs: this request is abandoned with 503...
    let hung = s.password_grant("app", "alice", "alice-pw", SCOPE).await;
    hung.assert_error(
        503,
        "temporarily_unavailable",
        "The service is temporarily unavailable; retry shortly",
    );
    // ...and the next ones go to the second server first.
    for _ in 0..2 {
        let r = s.password_grant("app", "alice", "alice-pw", SCOPE).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.str("identity"), before.str("identity"));
    }
    first.resume();
}

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

#[tokio::test]
async fn a_hung_directory_gets_503_and_holds_up_nobody_else() {
    let slapd = Slapd::start();
    let s = server_with(vec![ldap_provider("T", &[slapd.url()], &slapd, "")]).await;
    s.setup_basic("local-lu", "lu-pw", "app", SCOPE).await;
    let (local_token, _) = s.tokens("app", "local-lu", "lu-pw", SCOPE).await;
    // A first login leaves a pooled connection, which will hang.
    s.tokens("app", "alice", "alice-pw", SCOPE).await;

    slapd.pause();
    // Bounded, so that a hang fails the test instead of stalling it.
    let guard = Duration::from_secs(60);
    let directory_login = s.password_grant("app", "alice", "alice-pw", SCOPE);
    let others = async {
        let login = s.password_grant("app", "local-lu", "lu-pw", SCOPE).await;
        let verify = s.verify(&local_token).await;
        (login, verify)
    };
    let (hung, (login, verify)) =
        tokio::time::timeout(guard, async { tokio::join!(directory_login, others) })
            .await
            .expect("requests finish while the directory hangs");
    hung.assert_error(
        503,
        "temporarily_unavailable",
        "The service is temporarily unavailable; retry shortly",
    );
    assert!(hung.headers.contains_key("retry-after"));
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    assert_eq!(verify.status, StatusCode::OK, "{}", verify.text);

    // With no pooled connection left, a new one hangs in StartTLS: 503 again.
    let again = tokio::time::timeout(
        guard,
        s.password_grant("app", "LDAP+T:alice", "alice-pw", SCOPE),
    )
    .await
    .expect("bounded");
    again.assert_error(
        503,
        "temporarily_unavailable",
        "The service is temporarily unavailable; retry shortly",
    );

    slapd.resume();
    let r = s.password_grant("app", "alice", "alice-pw", SCOPE).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// Active Directory semantics against a real Samba AD domain controller (provisioned by
/// `scripts/samba-ad` from Debian's packages, on 127.0.0.1 over ldaps): objectGUID as 32 hex
/// characters, sAMAccountName, UPN, `DOMAIN\name`, nested groups, disabled accounts. One test
/// for it all: Samba's ports are fixed, so only one domain controller can run at a time.
#[tokio::test]
async fn active_directory_against_samba() {
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
    let config: LdapConfig = toml::from_str(&text).expect("config");
    let s = server_with(vec![config]).await;
    s.add_app("everyone-app", SCOPE).await;
    s.allow("everyone-app", "everyone", None).await;

    let guid = ad.object_guid("(sAMAccountName=alice)").await;
    assert_eq!(guid.len(), 16);
    let hex: String = guid.iter().map(|b| format!("{b:02x}")).collect();
    let identity = format!("AD+corp:{hex}");

    for username in [
        "alice",
        "AD+corp:alice",
        "ad+CORP:Alice",
        "VEDTEST\\alice",
        "vedtest\\alice",
        "alice@vedtest.example",
        "ALICE@VEDTEST.EXAMPLE",
        "AD+corp:alice@vedtest.example",
    ] {
        let r = s
            .password_grant("everyone-app", username, "Alice-Passw0rd!", SCOPE)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{username}: {}", r.text);
        assert_eq!(r.str("identity"), identity, "{username}");
    }
    let (access, _) = s
        .tokens("everyone-app", "alice", "Alice-Passw0rd!", SCOPE)
        .await;
    let me = s.get_bearer("/vedsdk/Identity/Self", Some(&access)).await;
    let id = &me.json["Identities"][0];
    assert_eq!(id["PrefixedUniversal"], identity.as_str(), "{}", me.text);
    assert_eq!(id["PrefixedName"], "AD+corp:alice");
    assert_eq!(id["Universal"], hex.as_str());

    // Dept contains the group Team, which contains alice: nested membership admits her.
    s.add_app("dept-app", SCOPE).await;
    s.allow("dept-app", "AD+corp:Dept", None).await;
    let team = ad.object_guid("(&(objectClass=group)(cn=Team))").await;
    let team_hex: String = team.iter().map(|b| format!("{b:02x}")).collect();
    s.add_app("team-app", SCOPE).await;
    s.allow("team-app", &format!("AD+corp:{team_hex}"), None)
        .await;
    for app in ["dept-app", "team-app"] {
        let r = s
            .password_grant(app, "VEDTEST\\alice", "Alice-Passw0rd!", SCOPE)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{app}: {}", r.text);
        let r = s.password_grant(app, "bob", "Bob-Passw0rd!", SCOPE).await;
        r.assert_error(401, "invalid_grant", NOT_ALLOWED);
    }

    for (user, pw) in [
        ("alice", "wrong"),
        ("dan", "Dan-Passw0rd!"), // disabled
        ("OTHERDOM\\alice", "Alice-Passw0rd!"),
        ("alice@other.example", "Alice-Passw0rd!"),
        ("nobody", "Alice-Passw0rd!"),
        ("*", "Alice-Passw0rd!"),
        ("ali*", "Alice-Passw0rd!"),
    ] {
        assert_bad_login(
            &s.password_grant("everyone-app", user, pw, SCOPE).await,
            user,
        );
    }

    // Rules name identities (docs/protocol.md §11): every AD name form resolves to the objectGUID.
    let t = s.admin_token("admin").await;
    for (given, stored) in [
        ("VEDTEST\\alice", identity.clone()),
        ("alice@vedtest.example", identity.clone()),
        ("AD+corp:Team", format!("AD+corp:{team_hex}")),
    ] {
        let r = s
            .oauth(
                "CreateRule",
                &t,
                &serde_json::json!({"ApplicationId": "team-app", "TrusteePrefixedUniversal": given}),
            )
            .await;
        if given == "AD+corp:Team" {
            // The same group the rule above names by universal.
            r.refused(20);
            continue;
        }
        let r = r.ok();
        assert_eq!(
            r.json["Rule"]["TrusteePrefixedUniversal"], stored,
            "{given}"
        );
        s.oauth(
            "DeleteRule",
            &t,
            &serde_json::json!({"ApplicationId": "team-app", "TrusteePrefixedUniversal": given}),
        )
        .await
        .ok();
    }
    s.oauth(
        "CreateRule",
        &t,
        &serde_json::json!({"ApplicationId": "team-app", "TrusteePrefixedUniversal": "OTHERDOM\\alice"}),
    )
    .await
    .refused(18);
}

#[tokio::test]
async fn directory_users_are_locked_out_in_vedauths_store() {
    let dir = Slapd::start();
    let s = server_with(vec![ldap_provider("T", &[dir.url()], &dir, "")]).await;
    s.add_app("app", SCOPE).await;
    s.allow("app", "everyone", None).await;
    for _ in 0..5 {
        assert_bad_login(
            &s.password_grant("app", "LDAP+T:alice", "wrong", SCOPE)
                .await,
            "wrong password",
        );
    }
    // Locked: the right password is refused like a wrong one, without reaching the directory.
    assert_bad_login(
        &s.password_grant("app", "alice", "alice-pw", SCOPE).await,
        "locked directory user",
    );
    let audit = std::fs::read_to_string(s.dir.join("audit.log")).expect("audit");
    let lockouts: Vec<serde_json::Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "lockout")
        .collect();
    assert_eq!(lockouts.len(), 1);
    assert!(lockouts[0]["identity"]
        .as_str()
        .is_some_and(|i| i.starts_with("LDAP+T:")));
    assert!(audit.contains("\"cause\":\"locked\""));
    s.clock.advance(901);
    let r = s.password_grant("app", "alice", "alice-pw", SCOPE).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.str("identity"),
        lockouts[0]["identity"].as_str().unwrap_or_default()
    );
}

/// One directory search finds the user; the bind checks that same entry. A wrong password
/// costs exactly one search, a right one the search plus the group walk (which resolving the
/// identity by its id also does, after its own single search).
#[tokio::test]
async fn one_directory_search_per_login() {
    use std::sync::Arc;
    use vedauth::clock::ManualClock;
    use vedauth::identity::ldap::DirectoryProvider;
    use vedauth::identity::{AuthOutcome, Identities, IdentityProvider, RejectCause};
    use vedauth::lockout::{Lockout, LockoutPolicy};
    use vedauth::password::{HashParams, HashPool};
    use vedauth::secret::Secret;

    let slapd = Slapd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let store: vedauth::store::SharedStore = Arc::new(
        vedauth::store::sqlite::SqliteStore::open(&dir.path().join("t.db"), 4)
            .await
            .expect("store"),
    );
    let provider = Arc::new(
        DirectoryProvider::new(&ldap_provider("T", &[slapd.url()], &slapd, "")).expect("provider"),
    );
    let pool = HashPool::start(HashParams::insecure_for_tests(), 1, 0).expect("pool");
    let lockout = Lockout::new(
        store,
        Arc::new(ManualClock::starting_now()),
        LockoutPolicy::default(),
    );
    let as_dyn: Arc<dyn IdentityProvider> = provider.clone();
    let ids = Identities::new(vec![as_dyn], pool, Some(lockout));

    let before = provider.searches();
    let wrong = ids
        .authenticate("alice", &Secret::new("not-alice-pw"))
        .await
        .expect("login");
    assert!(
        matches!(
            wrong.outcome,
            AuthOutcome::Rejected(RejectCause::WrongPassword)
        ),
        "{wrong:?}"
    );
    assert_eq!(provider.searches() - before, 1, "a wrong password");

    let before = provider.searches();
    let unknown = ids
        .authenticate("nobody", &Secret::new("pw"))
        .await
        .expect("login");
    assert!(matches!(
        unknown.outcome,
        AuthOutcome::Rejected(RejectCause::UnknownUser)
    ));
    assert_eq!(provider.searches() - before, 1, "an unknown name");

    let before = provider.searches();
    let ok = ids
        .authenticate("alice", &Secret::new("alice-pw"))
        .await
        .expect("login");
    let login = provider.searches() - before;
    let AuthOutcome::Authenticated(principal) = ok.outcome else {
        panic!("{:?}", ok.outcome)
    };
    let before = provider.searches();
    let resolved = provider
        .resolve(&principal.universal)
        .await
        .expect("resolve")
        .expect("alice");
    assert_eq!(resolved.groups, principal.groups);
    let resolve = provider.searches() - before;
    assert!(resolve >= 2, "a search and a group walk: {resolve}");
    assert_eq!(login, resolve, "a right password: one search and the walk");
}
