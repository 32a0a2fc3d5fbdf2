//! The /vedsdk/oauth administration API (docs/protocol.md §13) over real HTTPS, and the
//! command line's `config` commands.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{ManualClockExt, TestServer};

async fn setup() -> (TestServer, String) {
    let s = TestServer::start().await;
    s.add_user("alice", "alice-pw").await;
    let token = s.admin_token("admin:delete").await;
    (s, token)
}

fn app_body(id: &str) -> Value {
    json!({
        "ApplicationId": id, "Name": format!("{id} name"), "Vendor": "Acme", "Description": "desc",
        "Url": "https://acme.invalid", "Scope": "certificate:manage", "MaximumScope": "certificate:manage,revoke;ssh",
        "AccessValidity": 3600, "GrantValidity": 86400, "Renewable": true
    })
}

#[tokio::test]
async fn applications_create_read_update_delete() {
    let (s, t) = setup().await;
    let created = s
        .oauth("CreateApplication", &t, &app_body("acme-app"))
        .await
        .ok();
    let a = &created.json["Application"];
    assert_eq!(a["ID"], "acme-app");
    assert_eq!(a["Name"], "acme-app name");
    assert_eq!(a["Vendor"], "Acme");
    assert_eq!(a["Description"], "desc");
    assert_eq!(a["Url"], "https://acme.invalid");
    assert_eq!(a["Scope"], "certificate:manage");
    assert_eq!(a["MaximumScope"], "certificate:manage,revoke;ssh");
    assert_eq!(a["AccessValidity"], 3600);
    assert_eq!(a["GrantValidity"], 86400);
    assert_eq!(a["Renewable"], true);
    assert_eq!(a["GrantCount"], 0);
    assert_eq!(a["UserCount"], 0);
    assert!(a["UnusedExpiration"].is_null());
    assert_eq!(a.as_object().map(|o| o.len()), Some(13));

    let got = s
        .oauth("GetApplication", &t, &json!({"ApplicationId": "acme-app"}))
        .await
        .ok();
    assert_eq!(got.json["Application"], *a);
    assert_eq!(got.json["Applications"][0], *a);

    let all = s
        .oauth(
            "EnumerateApplications",
            &t,
            &json!({"Start": 0, "Count": 10, "OrderBy": 1}),
        )
        .await
        .ok();
    let ids: Vec<&str> = all.json["Applications"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|a| a["ID"].as_str())
        .collect();
    assert_eq!(ids, ["acme-app", "vedauth-admin"]);
    let paged = s
        .oauth(
            "EnumerateApplications",
            &t,
            &json!({"Start": 1, "Count": 1, "OrderBy": 1}),
        )
        .await
        .ok();
    assert_eq!(paged.json["Applications"].as_array().map(Vec::len), Some(1));
    assert_eq!(paged.json["Applications"][0]["ID"], "vedauth-admin");

    let found = s
        .oauth(
            "GetApplications",
            &t,
            &json!({"ApplicationIds": ["acme-app", "nope"]}),
        )
        .await
        .ok();
    assert_eq!(found.json["Applications"].as_array().map(Vec::len), Some(1));
    let filtered = s
        .oauth("GetApplications", &t, &json!({"Filter": "ACME"}))
        .await
        .ok();
    assert_eq!(filtered.json["Applications"][0]["ID"], "acme-app");

    // Full replacement: what is left out takes its default.
    let mut updated = a.clone();
    updated["Description"] = json!("new");
    updated
        .as_object_mut()
        .expect("object")
        .remove("AccessValidity");
    s.oauth("UpdateApplication", &t, &json!({"Application": updated}))
        .await
        .ok();
    let after = s
        .oauth("GetApplication", &t, &json!({"ApplicationId": "acme-app"}))
        .await
        .ok();
    assert_eq!(after.json["Application"]["Description"], "new");
    assert!(after.json["Application"]["AccessValidity"].is_null());
    assert_eq!(after.json["Application"]["Vendor"], "Acme");

    let scopes = s.oauth("GetScopes", &t, &json!({})).await.ok();
    let cert = scopes.json["Scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .find(|x| x["Scope"] == "certificate")
        .cloned()
        .expect("certificate");
    assert_eq!(
        cert["RestrictionList"],
        json!(["approve", "delete", "discover", "manage", "revoke"])
    );

    s.oauth(
        "DeleteApplication",
        &t,
        &json!({"ApplicationId": "acme-app"}),
    )
    .await
    .ok();
    s.oauth("GetApplication", &t, &json!({"ApplicationId": "acme-app"}))
        .await
        .refused(2);
}

#[tokio::test]
async fn invalid_input_changes_nothing() {
    let (s, t) = setup().await;
    s.oauth("CreateApplication", &t, &app_body("acme-app"))
        .await
        .ok();
    let before = s
        .oauth("GetApplication", &t, &json!({"ApplicationId": "acme-app"}))
        .await
        .ok()
        .json;
    // Unknown application.
    s.oauth("GetApplication", &t, &json!({"ApplicationId": "nope"}))
        .await
        .refused(2);
    let mut ghost = app_body("nope");
    ghost["ID"] = json!("nope");
    s.oauth("UpdateApplication", &t, &json!({"Application": ghost}))
        .await
        .refused(2);
    s.oauth(
        "CreateRule",
        &t,
        &json!({"ApplicationId": "nope", "TrusteePrefixedUniversal": "everyone"}),
    )
    .await
    .refused(2);
    // Duplicate application, with different contents: the original stays.
    let mut dup = app_body("acme-app");
    dup["Vendor"] = json!("Other");
    s.oauth("CreateApplication", &t, &dup).await.refused(19);
    // Bad scopes.
    let mut bad = app_body("bad-app");
    bad["MaximumScope"] = json!("certificate:fly");
    s.oauth("CreateApplication", &t, &bad).await.refused(17);
    s.oauth("CreateRule", &t, &json!({"ApplicationId": "acme-app", "TrusteePrefixedUniversal": "everyone", "MaximumScope": "bogus"})).await.refused(17);
    // A rule beyond the application's scope.
    s.oauth("CreateRule", &t, &json!({"ApplicationId": "acme-app", "TrusteePrefixedUniversal": "everyone", "MaximumScope": "configuration"})).await.refused(23);
    // Duplicate rule.
    s.oauth("CreateRule", &t, &json!({"ApplicationId": "acme-app", "TrusteePrefixedUniversal": "local:alice", "MaximumScope": "certificate"})).await.ok();
    s.oauth("CreateRule", &t, &json!({"ApplicationId": "acme-app", "TrusteePrefixedUniversal": "local:alice", "MaximumScope": "ssh"})).await.refused(20);
    // Unknown identity.
    s.oauth(
        "CreateRule",
        &t,
        &json!({"ApplicationId": "acme-app", "TrusteePrefixedUniversal": "local:nobody"}),
    )
    .await
    .refused(18);
    // Malformed bodies: 400 in the OAuth error shape.
    for raw in ["{", "[1]", "\"x\""] {
        let r = s
            .client
            .post(s.url("/vedsdk/oauth/createapplication"))
            .bearer_auth(&t)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .expect("send");
        let r = crate::common::Reply::read(r).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert_eq!(r.json["error"], "invalid_request");
    }
    let wrong_type = s
        .oauth(
            "CreateApplication",
            &t,
            &json!({"ApplicationId": "x", "Scope": "certificate", "AccessValidity": "soon"}),
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
    // Read back: nothing changed.
    let after = s
        .oauth("GetApplication", &t, &json!({"ApplicationId": "acme-app"}))
        .await
        .ok()
        .json;
    assert_eq!(before["Application"], after["Application"]);
    let apps = s.oauth("EnumerateApplications", &t, &json!({})).await.ok();
    assert_eq!(apps.json["Applications"].as_array().map(Vec::len), Some(2));
    let rules = s
        .oauth("GetRules", &t, &json!({"ApplicationId": "acme-app"}))
        .await
        .ok();
    assert_eq!(rules.json["Rules"].as_array().map(Vec::len), Some(1));
    assert_eq!(rules.json["Rules"][0]["MaximumScope"], "certificate");
}

#[tokio::test]
async fn rules_grants_and_counts() {
    let (s, t) = setup().await;
    s.add_user("bob", "bob-pw").await;
    s.oauth("CreateApplication", &t, &app_body("acme-app"))
        .await
        .ok();
    let rule = s
        .oauth("CreateRule", &t, &json!({"ApplicationId": "acme-app", "TrusteePrefixedUniversal": "everyone", "Description": "all", "MaximumScope": "certificate:manage,revoke", "AccessValidity": 600}))
        .await
        .ok();
    let r = &rule.json["Rule"];
    assert_eq!(r["ApplicationId"], "acme-app");
    assert_eq!(r["TrusteePrefixedUniversal"], "everyone");
    assert_eq!(r["Description"], "all");
    assert_eq!(r["MaximumScope"], "certificate:manage,revoke");
    assert_eq!(r["AccessValidity"], 600);
    assert!(r["GrantValidity"].is_null());
    assert!(r["Renewable"].is_null());
    // The application created through the API issues tokens, with the rule's validity.
    let now = s.clock.now_secs_for_tests();
    let alice = s
        .password_grant("acme-app", "alice", "alice-pw", "certificate:manage")
        .await;
    assert_eq!(alice.status, StatusCode::OK, "{}", alice.text);
    assert_eq!(alice.json["expires"].as_i64(), Some(now + 600));
    let bob = s
        .password_grant("acme-app", "bob", "bob-pw", "certificate:revoke")
        .await;
    assert_eq!(bob.status, StatusCode::OK);
    let (alice_at, bob_at) = (alice.str("access_token"), bob.str("access_token"));

    let count = s
        .oauth("GrantCount", &t, &json!({"ApplicationId": "acme-app"}))
        .await
        .ok();
    assert_eq!(count.json["Count"], 2);
    let users = s
        .oauth("UserCount", &t, &json!({"ApplicationId": "acme-app"}))
        .await
        .ok();
    assert_eq!(users.json["Count"], 2);
    let listed = s
        .oauth(
            "EnumerateGrants",
            &t,
            &json!({"ApplicationId": "acme-app", "Count": 10}),
        )
        .await
        .ok();
    let grants = listed.json["Grants"].as_array().expect("grants");
    assert_eq!(grants.len(), 2);
    let g = &grants[0];
    assert!(g["AccessToken"].is_null() && g["RefreshToken"].is_null());
    assert_eq!(g["Application"], "acme-app");
    assert_eq!(g["GrantedToPrefixedUniversal"], "everyone");
    assert_eq!(g["ValidFor"], 600);
    for k in [
        "AccessIssuedOn",
        "AccessIssuedOnISO8601",
        "Expires",
        "ExpiresISO8601",
        "GrantIssuedOn",
        "GrantIssuedOnISO8601",
    ] {
        assert!(g[k].is_string(), "{k}");
    }
    for k in [
        "AccessIssuedOnUnixTime",
        "ExpiresUnixTime",
        "GrantIssuedOnUnixTime",
    ] {
        assert!(g[k].is_i64(), "{k}");
    }
    assert_eq!(g.as_object().map(|o| o.len()), Some(16));
    let alice_id = alice.str("identity");
    let mine = s
        .oauth(
            "GetGrants",
            &t,
            &json!({"GranteePrefixedUniversal": alice_id}),
        )
        .await
        .ok();
    assert_eq!(mine.json["Grants"].as_array().map(Vec::len), Some(1));
    assert_eq!(mine.json["Grants"][0]["GranteePrefixedUniversal"], alice_id);

    // UpdateRule replaces the rule; GetRules and EnumerateRules read it back.
    s.oauth("UpdateRule", &t, &json!({"Rule": {"ApplicationId": "acme-app", "TrusteePrefixedUniversal": "everyone", "MaximumScope": "certificate:manage"}})).await.ok();
    let rules = s
        .oauth("EnumerateRules", &t, &json!({"ApplicationId": "acme-app"}))
        .await
        .ok();
    assert_eq!(rules.json["Rules"][0]["MaximumScope"], "certificate:manage");
    assert!(rules.json["Rules"][0]["AccessValidity"].is_null());
    s.oauth(
        "UpdateRule",
        &t,
        &json!({"Rule": {"ApplicationId": "acme-app", "TrusteePrefixedUniversal": "local:bob"}}),
    )
    .await
    .refused(4);
    let by_trustee = s
        .oauth(
            "GetRules",
            &t,
            &json!({"TrusteePrefixedUniversals": ["everyone"]}),
        )
        .await
        .ok();
    assert_eq!(by_trustee.json["Rules"].as_array().map(Vec::len), Some(1));

    // Deleting the rule stops new grants; existing grants keep working.
    s.oauth(
        "DeleteRule",
        &t,
        &json!({"ApplicationId": "acme-app", "TrusteePrefixedUniversal": "everyone"}),
    )
    .await
    .ok();
    s.oauth(
        "DeleteRule",
        &t,
        &json!({"ApplicationId": "acme-app", "TrusteePrefixedUniversal": "everyone"}),
    )
    .await
    .refused(4);
    s.password_grant("acme-app", "alice", "alice-pw", "certificate:manage")
        .await
        .assert_error(
            401,
            "invalid_grant",
            "Failed to issue grant: user is not allowed to use this application",
        );
    assert_eq!(s.verify(&alice_at).await.status, StatusCode::OK);

    // RevokeGrants by identity: that identity's tokens fail verify, others' don't.
    s.oauth(
        "RevokeGrants",
        &t,
        &json!({"GranteePrefixedUniversal": alice_id}),
    )
    .await
    .ok();
    assert_eq!(s.verify(&alice_at).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.verify(&bob_at).await.status, StatusCode::OK);
    let none = s.oauth("RevokeGrants", &t, &json!({})).await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
    // By application.
    s.oauth("RevokeGrants", &t, &json!({"ApplicationId": "acme-app"}))
        .await
        .ok();
    assert_eq!(s.verify(&bob_at).await.status, StatusCode::UNAUTHORIZED);
    // DeleteRules by application.
    s.oauth(
        "CreateRule",
        &t,
        &json!({"ApplicationId": "acme-app", "TrusteePrefixedUniversal": "local:bob"}),
    )
    .await
    .ok();
    s.oauth("DeleteRules", &t, &json!({"ApplicationId": "acme-app"}))
        .await
        .ok();
    let left = s
        .oauth("GetRules", &t, &json!({"ApplicationId": "acme-app"}))
        .await
        .ok();
    assert_eq!(left.json["Rules"], json!([]));
}

#[tokio::test]
async fn configuration_drives_behaviour_at_once() {
    let (s, t) = setup().await;
    s.add_app("vcert-sdk", "certificate").await;
    s.allow("vcert-sdk", "everyone", None).await;
    let got = s.oauth("GetConfiguration", &t, &json!({})).await.ok();
    let mut cfg = got.json["Configuration"].clone();
    assert_eq!(cfg["AuthorizeByPassword"], true);
    assert_eq!(cfg["RefreshEndpointEnabled"], true);
    assert_eq!(cfg["DefaultAccessTokenValidity"], 7_776_000);
    assert_eq!(cfg["DefaultGrantValidity"], 31_536_000);
    assert_eq!(cfg["DefaultGrantRefreshable"], true);
    let (_, refresh) = s
        .tokens("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;

    cfg["AuthorizeByPassword"] = json!(false);
    cfg["RefreshEndpointEnabled"] = json!(false);
    cfg["SessionPoolSize"] = json!(123);
    s.oauth("SetConfiguration", &t, &json!({"Configuration": cfg}))
        .await
        .ok();
    s.password_grant("vcert-sdk", "alice", "alice-pw", "certificate")
        .await
        .assert_error(
            400,
            "unauthorized_client",
            "Username/Password authentication not enabled",
        );
    let r = s.refresh("vcert-sdk", &refresh).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["error"], "unauthorized_client");
    // Fields vedauth does not use are kept as given.
    let back = s.oauth("GetConfiguration", &t, &json!({})).await.ok();
    assert_eq!(back.json["Configuration"]["SessionPoolSize"], 123);

    // Full replacement: an empty configuration means the defaults, and service resumes.
    s.oauth(
        "SetConfiguration",
        &t,
        &json!({"Configuration": {"DefaultAccessTokenValidity": 60}}),
    )
    .await
    .ok();
    let now = s.clock.now_secs_for_tests();
    let r = s
        .password_grant("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["expires"].as_i64(), Some(now + 60));
    assert_eq!(
        s.refresh("vcert-sdk", &refresh).await.status,
        StatusCode::OK
    );
    let back = s.oauth("GetConfiguration", &t, &json!({})).await.ok();
    assert!(back.json["Configuration"].get("SessionPoolSize").is_none());
    s.oauth(
        "SetConfiguration",
        &t,
        &json!({"Configuration": {"DefaultAccessTokenValidity": 0}}),
    )
    .await
    .refused(6);
    assert_eq!(
        s.oauth("SetConfiguration", &t, &json!({})).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn two_layers_of_authorization() {
    let (s, admin_token) = setup().await;
    s.add_app("vcert-sdk", "certificate;admin").await;
    s.allow("vcert-sdk", "everyone", None).await;
    // Layer 1: a token without the admin scope gets 403 insufficient_scope.
    let (cert_only, _) = s
        .tokens("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;
    let r = s.oauth("GetApplications", &cert_only, &json!({})).await;
    r.assert_error(
        403,
        "insufficient_scope",
        "Grant rejected scope 'admin'. Call POST Authorize/OAuth with the correct scope and restriction. Update the header with the new token and retry.",
    );
    // A bad token: 401 invalid_token.
    let r = s
        .oauth("GetApplications", "AAAAAAAAAAAAAAAAAAAAAA==", &json!({}))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json["error"], "invalid_token");
    // Layer 2: an admin-scoped token of an identity without a role gets 401 insufficient_rights.
    let (no_role, _) = s.tokens("vcert-sdk", "alice", "alice-pw", "admin").await;
    for op in [
        "CreateApplication",
        "EnumerateApplications",
        "SetConfiguration",
        "ListRoles",
        "EnumerateGrants",
    ] {
        let r = s
            .oauth(
                op,
                &no_role,
                &json!({"ApplicationId": "vcert-sdk", "Configuration": {}}),
            )
            .await;
        r.assert_error(
            401,
            "insufficient_rights",
            "The underlying user account does not have sufficient permissions for this request",
        );
    }
    // Without a role an identity still sees its own role and may revoke its own grants.
    let role = s.oauth("GetRole", &no_role, &json!({})).await.ok();
    assert_eq!(role.json["Role"]["Role"], 0);
    let alice_id = s.verify(&no_role).await.str("identity");
    // Roles: the bootstrap admin holds Admin; grant alice Auditor, then Owner of one app.
    let roles = s.oauth("ListRoles", &admin_token, &json!({})).await.ok();
    assert_eq!(roles.json["Roles"].as_array().map(Vec::len), Some(1));
    assert_eq!(roles.json["Roles"][0]["Role"], 6);
    s.oauth(
        "GrantRole",
        &admin_token,
        &json!({"GranteePrefixedUniversal": alice_id, "Role": 1}),
    )
    .await
    .ok();
    let listed = s
        .oauth("EnumerateApplications", &no_role, &json!({}))
        .await
        .ok();
    assert_eq!(
        listed.json["Applications"].as_array().map(Vec::len),
        Some(2)
    );
    // An auditor reads but does not change: refused in the envelope with result 9.
    s.oauth("CreateApplication", &no_role, &app_body("x"))
        .await
        .refused(9);
    let role = s.oauth("GetRole", &no_role, &json!({})).await.ok();
    assert_eq!(role.json["Role"]["Role"], 1);
    s.oauth(
        "RevokeRole",
        &admin_token,
        &json!({"GranteePrefixedUniversal": alice_id, "Role": 1}),
    )
    .await
    .ok();
    s.oauth(
        "RevokeRole",
        &admin_token,
        &json!({"GranteePrefixedUniversal": alice_id, "Role": 1}),
    )
    .await
    .refused(1);
    s.oauth(
        "GrantRole",
        &admin_token,
        &json!({"GranteePrefixedUniversal": alice_id, "Role": 3}),
    )
    .await
    .refused(6);
    s.oauth(
        "GrantRole",
        &admin_token,
        &json!({"GranteePrefixedUniversal": alice_id, "Role": 3, "ApplicationId": "vcert-sdk"}),
    )
    .await
    .ok();
    let role = s.oauth("GetRole", &no_role, &json!({})).await.ok();
    assert_eq!(role.json["Role"]["Role"], 3);
    assert_eq!(
        role.json["Role"]["OwnedApplications"][0]["ApplicationId"],
        "vcert-sdk"
    );
    // An owner manages its application but not another.
    let mine = s
        .oauth("EnumerateApplications", &no_role, &json!({}))
        .await
        .ok();
    assert_eq!(mine.json["Applications"].as_array().map(Vec::len), Some(1));
    s.oauth(
        "GetApplication",
        &no_role,
        &json!({"ApplicationId": "vedauth-admin"}),
    )
    .await
    .refused(9);
    s.oauth(
        "CreateRule",
        &no_role,
        &json!({"ApplicationId": "vcert-sdk", "TrusteePrefixedUniversal": "local:admin"}),
    )
    .await
    .ok();
    s.oauth("GrantRole", &admin_token, &json!({"GranteePrefixedUniversal": "local:{00000000-0000-0000-0000-000000000000}", "Role": 1})).await.refused(18);
}

#[tokio::test]
async fn deleting_an_application_revokes_its_grants() {
    let (s, t) = setup().await;
    s.oauth("CreateApplication", &t, &app_body("acme-app"))
        .await
        .ok();
    s.oauth(
        "CreateRule",
        &t,
        &json!({"ApplicationId": "acme-app", "TrusteePrefixedUniversal": "everyone"}),
    )
    .await
    .ok();
    let (at, rt) = s
        .tokens("acme-app", "alice", "alice-pw", "certificate:manage")
        .await;
    assert_eq!(s.verify(&at).await.status, StatusCode::OK);
    s.oauth(
        "DeleteApplication",
        &t,
        &json!({"ApplicationId": "acme-app"}),
    )
    .await
    .ok();
    assert_eq!(s.verify(&at).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        s.refresh("acme-app", &rt).await.status,
        StatusCode::BAD_REQUEST
    );
    s.oauth(
        "DeleteApplication",
        &t,
        &json!({"ApplicationId": "acme-app"}),
    )
    .await
    .refused(2);
}

#[tokio::test]
async fn disabling_a_user_revokes_their_grants() {
    let (s, _) = setup().await;
    s.add_app("vcert-sdk", "certificate").await;
    s.allow("vcert-sdk", "everyone", None).await;
    let (at, _) = s
        .tokens("vcert-sdk", "alice", "alice-pw", "certificate")
        .await;
    assert_eq!(s.verify(&at).await.status, StatusCode::OK);
    let admin = s.app.admin.clone();
    let n = admin
        .set_user_disabled(&vedauth::admin::Caller::Operator, "alice", true)
        .await
        .expect("disable");
    assert_eq!(n, 1);
    assert_eq!(s.verify(&at).await.status, StatusCode::UNAUTHORIZED);
    s.password_grant("vcert-sdk", "alice", "alice-pw", "certificate")
        .await
        .assert_error(
            401,
            "invalid_grant",
            "Username/password combination not valid",
        );
}

#[tokio::test]
async fn role_numbers_out_of_range_are_refused_not_truncated() {
    let (s, t) = setup().await;
    let alice = s
        .app
        .store
        .user_by_name("alice")
        .await
        .expect("store")
        .expect("alice");
    // 4294967297 is 2^32 + 1: as an i32 it would be 1, the Auditor role.
    for role in [
        json!(4_294_967_297_i64),
        json!(4_294_967_302_i64),
        json!(-1),
        json!(i64::MAX),
    ] {
        s.oauth(
            "GrantRole",
            &t,
            &json!({"GranteePrefixedUniversal": alice.identity(), "Role": role}),
        )
        .await
        .refused(6);
        s.oauth(
            "RevokeRole",
            &t,
            &json!({"GranteePrefixedUniversal": alice.identity(), "Role": role}),
        )
        .await
        .refused(6);
    }
    let roles = s.oauth("ListRoles", &t, &json!({})).await.ok();
    assert_eq!(
        roles.json["Roles"].as_array().map(Vec::len),
        Some(1),
        "{}",
        roles.text
    );
    // Numbers that are roles but cannot be assigned.
    for role in [0, 4, 7] {
        s.oauth(
            "GrantRole",
            &t,
            &json!({"GranteePrefixedUniversal": alice.identity(), "Role": role}),
        )
        .await
        .refused(6);
    }
}

/// 100 years of 365.25 days: the longest access or grant validity.
const BOUND: i64 = 3_155_760_000;

#[tokio::test]
async fn validities_are_bounded_everywhere() {
    let (s, t) = setup().await;
    for (key, value) in [
        ("AccessValidity", i64::MAX),
        ("GrantValidity", i64::MAX),
        ("AccessValidity", BOUND + 1),
        ("GrantValidity", BOUND + 1),
        ("UnusedExpiration", i64::MAX),
    ] {
        let mut body = app_body("long-app");
        body[key] = json!(value);
        let r = s.oauth("CreateApplication", &t, &body).await;
        r.refused(6);
        assert!(
            r.json["Error"]
                .as_str()
                .is_some_and(|e| e.contains("100 years")),
            "{}",
            r.text
        );
    }
    let mut body = app_body("long-app");
    body["AccessValidity"] = json!(BOUND);
    body["GrantValidity"] = json!(BOUND);
    let created = s.oauth("CreateApplication", &t, &body).await.ok();
    // Replacing it with an unbounded value changes nothing.
    let mut app = created.json["Application"].clone();
    app["GrantValidity"] = json!(i64::MAX);
    s.oauth("UpdateApplication", &t, &json!({"Application": app}))
        .await
        .refused(6);
    for (key, value) in [("AccessValidity", i64::MAX), ("GrantValidity", BOUND + 1)] {
        let mut rule = json!({"ApplicationId": "long-app", "TrusteePrefixedUniversal": "everyone"});
        rule[key] = json!(value);
        s.oauth("CreateRule", &t, &rule).await.refused(6);
    }
    s.oauth(
        "CreateRule",
        &t,
        &json!({"ApplicationId": "long-app", "TrusteePrefixedUniversal": "everyone", "GrantValidity": BOUND}),
    )
    .await
    .ok();
    s.oauth(
        "UpdateRule",
        &t,
        &json!({"Rule": {"ApplicationId": "long-app", "TrusteePrefixedUniversal": "everyone", "AccessValidity": i64::MAX}}),
    )
    .await
    .refused(6);
    // A grant at the bound has real dates.
    let now = s.clock.now_secs_for_tests();
    let r = s
        .password_grant("long-app", "alice", "alice-pw", "certificate:manage")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["refresh_until"].as_i64(), Some(now + BOUND));
    let listed = s
        .oauth("EnumerateGrants", &t, &json!({"ApplicationId": "long-app"}))
        .await
        .ok();
    let g = &listed.json["Grants"][0];
    assert!(
        g["ExpiresISO8601"].as_str().is_some_and(|d| d.len() == 20),
        "{}",
        listed.text
    );
    // The global defaults too.
    let cfg = s.oauth("GetConfiguration", &t, &json!({})).await.ok();
    for (key, value) in [
        ("DefaultAccessTokenValidity", i64::MAX),
        ("DefaultGrantValidity", i64::MAX),
        ("DefaultGrantValidity", BOUND + 1),
        ("UnusedAccessTokenExpiration", i64::MAX),
    ] {
        let mut c = cfg.json["Configuration"].clone();
        c[key] = json!(value);
        s.oauth("SetConfiguration", &t, &json!({"Configuration": c}))
            .await
            .refused(6);
    }
    let mut c = cfg.json["Configuration"].clone();
    c["DefaultGrantValidity"] = json!(BOUND);
    s.oauth("SetConfiguration", &t, &json!({"Configuration": c}))
        .await
        .ok();
    let after = s.oauth("GetConfiguration", &t, &json!({})).await.ok();
    assert_eq!(after.json["Configuration"]["DefaultGrantValidity"], BOUND);
}

#[tokio::test]
async fn every_admin_error_is_json() {
    let (s, t) = setup().await;
    let is_json = |r: &crate::common::Reply| {
        assert_eq!(
            r.headers["content-type"], "application/json; charset=utf-8",
            "{} {}",
            r.status, r.text
        );
        assert!(r.json["error"].is_string(), "{}", r.text);
    };
    // A path that is not UTF-8 once decoded.
    let r = crate::common::Reply::read(
        s.client
            .post(s.url("/vedsdk/oauth/%ff"))
            .bearer_auth(&t)
            .json(&json!({}))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    is_json(&r);
    // Bodies over 64 KiB: 413 with a token, 401 without one (the token is checked first).
    let big = format!("{{\"Filter\": \"{}\"}}", "x".repeat(3 << 20));
    let medium = format!("{{\"Filter\": \"{}\"}}", "x".repeat(100 << 10));
    for (body, token, status) in [
        (&big, Some(t.as_str()), 413),
        (&medium, Some(t.as_str()), 413),
        (&big, None, 401),
        (&big, Some("AAAAAAAAAAAAAAAAAAAAAA=="), 401),
    ] {
        let mut req = s
            .client
            .post(s.url("/vedsdk/oauth/getapplications"))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = crate::common::Reply::read(req.send().await.expect("send")).await;
        assert_eq!(r.status.as_u16(), status, "{}", r.text);
        is_json(&r);
    }
    // Just under the limit is served.
    let fits = format!("{{\"Filter\": \"{}\"}}", "x".repeat((64 << 10) - 20));
    let r = crate::common::Reply::read(
        s.client
            .post(s.url("/vedsdk/oauth/getapplications"))
            .bearer_auth(&t)
            .header("content-type", "application/json")
            .body(fits)
            .send()
            .await
            .expect("send"),
    )
    .await;
    r.ok();
}

#[tokio::test]
async fn a_disabled_or_removed_administrator_is_refused_at_once() {
    let (s, t) = setup().await;
    let eve = s.add_user("eve", "Eve-Password-1").await;
    s.allow("vedauth-admin", &eve.identity(), None).await;
    s.oauth(
        "GrantRole",
        &t,
        &json!({"GranteePrefixedUniversal": eve.identity(), "Role": 6}),
    )
    .await
    .ok();
    let (eve_token, _) = s
        .tokens("vedauth-admin", "eve", "Eve-Password-1", "admin")
        .await;
    s.oauth("EnumerateApplications", &eve_token, &json!({}))
        .await
        .ok();
    // Disabled by another process: nothing revoked her grant in this one yet, and her token
    // still verifies; the administration API refuses it all the same.
    s.app
        .store
        .set_user_disabled(&eve.id, true)
        .await
        .expect("disable");
    assert_eq!(s.verify(&eve_token).await.status, StatusCode::OK);
    let r = s
        .oauth("CreateApplication", &eve_token, &app_body("eves-app"))
        .await;
    r.assert_error(
        401,
        "invalid_token",
        "The access token provided is expired, revoked, malformed, or invalid for other reasons",
    );
    s.oauth("GetApplication", &t, &json!({"ApplicationId": "eves-app"}))
        .await
        .refused(2);
    s.app
        .store
        .set_user_disabled(&eve.id, false)
        .await
        .expect("enable");
    s.oauth("EnumerateApplications", &eve_token, &json!({}))
        .await
        .ok();
    s.app.store.delete_user(&eve.id).await.expect("remove");
    s.oauth("EnumerateApplications", &eve_token, &json!({}))
        .await
        .assert_error(
            401,
            "invalid_token",
            "The access token provided is expired, revoked, malformed, or invalid for other reasons",
        );
}

const BIN: &str = env!("CARGO_BIN_EXE_vedauth");

#[test]
fn config_check_names_unknown_keys_and_defaults_match_the_docs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "listen = \"127.0.0.1:9443\"\n[tokens]\nverify_cache_ttl = 5\n",
    )
    .expect("write");
    let out = std::process::Command::new(BIN)
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("verify_cache_ttl"), "{err}");
    let good = tmp.path().join("good.toml");
    std::fs::write(
        &good,
        "listen = \"127.0.0.1:9443\"\n[tokens]\nverify_cache_ttl_secs = 5\n",
    )
    .expect("write");
    let out = std::process::Command::new(BIN)
        .args(["config", "check"])
        .arg(&good)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // `config defaults` and docs/configuration.md name the same keys.
    let out = std::process::Command::new(BIN)
        .args(["config", "defaults"])
        .output()
        .expect("run");
    let defaults = String::from_utf8_lossy(&out.stdout).to_string();
    let mut section = String::new();
    let mut from_defaults = std::collections::BTreeMap::new();
    for line in defaults.lines() {
        let line = line.trim();
        if let Some(t) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = t.to_string();
        } else if !line.starts_with('#') {
            if let Some((k, v)) = line.split_once(" = ") {
                let key = if section.is_empty() {
                    k.to_string()
                } else {
                    format!("{section}.{k}")
                };
                from_defaults.insert(key, v.to_string());
            }
        }
    }
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .expect("docs");
    // Keys are documented as the first cell of a table row, their default as the second:
    // | `key` | `default` | ...
    let from_docs: std::collections::BTreeMap<String, String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| {
            let (k, rest) = l.split_once('`')?;
            let v = rest.strip_prefix(" | `")?.split_once("` |")?.0;
            Some((k.to_string(), v.to_string()))
        })
        .filter(|(k, _)| {
            !k.starts_with("ldap.")
                && !k.starts_with("VEDAUTH_")
                && !k.starts_with("gateway.route.")
        })
        .collect();
    assert!(from_defaults.len() > 10, "{defaults}");
    // The same keys, each with the default the server uses: a default changed in the code
    // alone fails here.
    assert_eq!(
        from_defaults, from_docs,
        "config defaults against docs/configuration.md"
    );
}

/// The grant core keeps the settings, applications and rules in memory: every change made
/// through the administration core (the API, the console and the CLI share it) applies to the
/// next grant, with nothing to wait for on the node that made it.
#[tokio::test]
async fn a_change_through_the_administration_applies_at_the_next_grant() {
    use vedauth::admin::{ApplicationInput, Caller, RuleInput};
    let s = TestServer::start().await;
    s.setup_basic("alice", "alice-pw", "app", "certificate:manage,revoke")
        .await;
    let admin = &s.app.admin;
    let op = Caller::Operator;
    let login = |scope: &'static str| s.password_grant("app", "alice", "alice-pw", scope);
    assert_eq!(login("certificate:manage").await.status, StatusCode::OK);

    // The rule goes: refused; a narrower one comes: that scope only.
    admin
        .delete_rules(&op, Some("app"), Some("everyone"))
        .await
        .expect("delete rule");
    login("certificate:manage").await.assert_error(
        401,
        "invalid_grant",
        "Failed to issue grant: user is not allowed to use this application",
    );
    let rule = RuleInput {
        client_id: "app".into(),
        trustee: "everyone".into(),
        max_scope: Some("certificate:revoke".into()),
        ..RuleInput::default()
    };
    admin.create_rule(&op, rule).await.expect("create rule");
    assert_eq!(login("certificate:revoke").await.status, StatusCode::OK);
    let scope_refused = "Failed to issue grant: User is not authorized for the requested scope";
    login("certificate:manage")
        .await
        .assert_error(403, "invalid_scope", scope_refused);

    // The application's own limit narrows further.
    let app = ApplicationInput {
        client_id: "app".into(),
        max_scope: Some("certificate:manage".into()),
        ..ApplicationInput::default()
    };
    admin
        .update_application(&op, app)
        .await
        .expect("update app");
    login("certificate:revoke")
        .await
        .assert_error(403, "invalid_scope", scope_refused);

    // Password grants switched off, then on again.
    let off = vedauth::store::Settings {
        authorize_by_password: false,
        ..vedauth::store::Settings::default()
    };
    admin.set_settings(&op, off).await.expect("settings");
    login("certificate:revoke").await.assert_error(
        400,
        "unauthorized_client",
        "Username/Password authentication not enabled",
    );
    admin
        .set_settings(&op, vedauth::store::Settings::default())
        .await
        .expect("settings");
    admin
        .update_application(
            &op,
            ApplicationInput {
                client_id: "app".into(),
                max_scope: Some("certificate:manage,revoke".into()),
                ..ApplicationInput::default()
            },
        )
        .await
        .expect("update app");
    assert_eq!(login("certificate:revoke").await.status, StatusCode::OK);
}
