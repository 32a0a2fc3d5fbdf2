//! Hostile input: random and malformed bodies, headers, scopes, usernames and paths through
//! every endpoint. Nothing may panic and nothing may answer 5xx.

use proptest::prelude::*;
use serde_json::json;

use crate::common::TestServer;

const POSTS: &[&str] = &[
    "/vedauth/authorize/oauth",
    "/vedauth/authorize/token",
    "/vedauth/authorize/certificate",
    "/vedauth/authorize/integrated",
    "/vedsdk/authorize/",
    "/vedsdk/oauth/createapplication",
    "/vedsdk/oauth/setconfiguration",
    "/vedsdk/oauth/createrule",
    "/vedsdk/oauth/revokegrants",
    "/vedsdk/oauth/getgrants",
    "/vedsdk/oauth/enumerateapplications",
    "/vedsdk/oauth/grantrole",
];
const GETS: &[&str] = &[
    "/vedauth/authorize/verify",
    "/vedauth/revoke/token",
    "/vedsdk/identity/self",
    "/vedsdk/systemstatus/version",
];
const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/json; charset=utf-16",
    "application/x-www-form-urlencoded",
    "text/plain",
    "multipart/form-data; boundary=x",
    "",
];

struct Fixture {
    rt: tokio::runtime::Runtime,
    s: TestServer,
    admin: String,
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (s, admin) = rt.block_on(async {
        let s = TestServer::start().await;
        s.setup_basic(
            "alice",
            "alice-pw",
            "vcert-sdk",
            "certificate:manage,revoke",
        )
        .await;
        let admin = s.admin_token("admin:delete").await;
        (s, admin)
    });
    Fixture { rt, s, admin }
}

impl Fixture {
    fn post(&self, path: &str, ct: &str, body: Vec<u8>, token: Option<&str>) -> u16 {
        self.rt.block_on(async {
            let mut req = self.s.client.post(self.s.url(path)).body(body);
            if !ct.is_empty() {
                req = req.header("content-type", ct);
            }
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send().await.expect("send").status().as_u16()
        })
    }

    fn get(&self, path: &str, auth: &str) -> u16 {
        self.rt.block_on(async {
            self.s
                .client
                .get(self.s.url(path))
                .header("authorization", auth)
                .send()
                .await
                .expect("send")
                .status()
                .as_u16()
        })
    }

    /// The server is still fine afterwards.
    fn still_serving(&self) {
        let status = self.rt.block_on(async {
            self.s
                .password_grant("vcert-sdk", "alice", "alice-pw", "certificate")
                .await
                .status
        });
        assert_eq!(status.as_u16(), 200);
    }
}

/// JSON-looking text: braces, quotes, keys the endpoints know, numbers, unicode.
fn jsonish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("{".to_string()),
            Just("}".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just("\"".to_string()),
            Just(":".to_string()),
            Just(",".to_string()),
            Just("null".to_string()),
            Just("\"client_id\"".to_string()),
            Just("\"refresh_token\"".to_string()),
            Just("\"Configuration\"".to_string()),
            Just("\"ApplicationId\"".to_string()),
            Just("\"scope\"".to_string()),
            "-?[0-9]{1,20}(\\.[0-9]+)?(e[0-9]{1,4})?",
            "\\PC{0,12}",
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

#[test]
fn random_bodies_on_every_post_endpoint() {
    let f = fixture();
    let admin = f.admin.clone();
    proptest!(ProptestConfig::with_cases(150), |(
        path in prop::sample::select(POSTS),
        ct in prop::sample::select(CONTENT_TYPES),
        body in prop_oneof![prop::collection::vec(any::<u8>(), 0..512), jsonish().prop_map(String::into_bytes)],
        with_token in any::<bool>(),
    )| {
        let status = f.post(path, ct, body, with_token.then_some(admin.as_str()));
        prop_assert!(status < 500, "{path} answered {status}");
    });
    f.still_serving();
}

#[test]
fn random_usernames_scopes_and_values() {
    let f = fixture();
    let admin = f.admin.clone();
    proptest!(ProptestConfig::with_cases(150), |(
        username in prop_oneof!["\\PC{0,40}", Just("*)(uid=*".to_string()), Just("local:".to_string()), Just("AD+:x".to_string()), "[a-z]{1,8}\\\\[a-z]{1,8}", "[a-z]{1,8}@[a-z]{1,8}\\.[a-z]{2,3}"],
        scope in prop_oneof!["\\PC{0,40}", "[a-zA-Z:;, ]{0,40}"],
        client_id in prop_oneof![Just("vcert-sdk".to_string()), "\\PC{0,20}"],
        password in "\\PC{0,40}",
        validity in any::<i64>(),
        renew in any::<bool>(),
    )| {
        let body = json!({"client_id": client_id, "username": username, "password": password, "scope": scope});
        let status = f.post("/vedauth/authorize/oauth", "application/json", body.to_string().into_bytes(), None);
        prop_assert!(status < 500, "authorize answered {status}");
        let app = json!({"ApplicationId": client_id, "Scope": scope, "MaximumScope": scope, "AccessValidity": validity, "GrantValidity": validity, "Renewable": renew});
        let status = f.post("/vedsdk/oauth/createapplication", "application/json", app.to_string().into_bytes(), Some(&admin));
        prop_assert!(status < 500, "createapplication answered {status}");
        let rule = json!({"ApplicationId": "vcert-sdk", "TrusteePrefixedUniversal": username, "MaximumScope": scope, "AccessValidity": validity});
        let status = f.post("/vedsdk/oauth/createrule", "application/json", rule.to_string().into_bytes(), Some(&admin));
        prop_assert!(status < 500, "createrule answered {status}");
        let cfg = json!({"Configuration": {"DefaultAccessTokenValidity": validity, "DefaultGrantValidity": validity, "AuthorizeByPassword": true}});
        let status = f.post("/vedsdk/oauth/setconfiguration", "application/json", cfg.to_string().into_bytes(), Some(&admin));
        prop_assert!(status < 500, "setconfiguration answered {status}");
    });
    // Restore sane settings, then check the server still works.
    f.post(
        "/vedsdk/oauth/setconfiguration",
        "application/json",
        b"{\"Configuration\":{}}".to_vec(),
        Some(&admin),
    );
    f.still_serving();
}

#[test]
fn random_authorization_headers_and_paths() {
    let f = fixture();
    proptest!(ProptestConfig::with_cases(150), |(
        path in prop::sample::select(GETS),
        auth in prop_oneof!["[ -~]{0,80}", "Bearer [ -~]{0,40}", "Bearer [A-Za-z0-9+/]{22}==", "bearer\\t[ -~]{0,30}"],
        junk_path in "/(vedauth|vedsdk|VEDSDK)/[a-zA-Z0-9/%._~-]{0,40}",
    )| {
        let status = f.get(path, &auth);
        prop_assert!(status < 500, "{path} answered {status}");
        let status = f.get(&junk_path, &auth);
        prop_assert!(status < 500, "{junk_path} answered {status}");
    });
    f.still_serving();
}
