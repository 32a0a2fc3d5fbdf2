//! docs/openapi.json against the running server: every documented operation is served, and
//! answers an unauthenticated, empty request with one of its documented statuses.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::TestServer;

fn spec() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
        .expect("docs/openapi.json");
    serde_json::from_str(&text).expect("valid JSON")
}

/// Every (method, lower-cased path) the router serves.
const SERVED: &[(&str, &str)] = &[
    ("post", "/vedauth/authorize/oauth"),
    ("post", "/vedauth/authorize/token"),
    ("post", "/vedauth/authorize/device"),
    ("post", "/vedauth/authorize/jwt"),
    ("post", "/vedauth/authorize/certificate"),
    ("post", "/vedauth/authorize/integrated"),
    ("get", "/vedauth/authorize/verify"),
    ("get", "/vedauth/revoke/token"),
    ("delete", "/vedauth/revoke/token"),
    ("get", "/vedauth/authorize/isauthserver"),
    ("get", "/vedsdk/"),
    ("get", "/vedsdk/systemstatus/version"),
    ("get", "/vedsdk/identity/self"),
    ("post", "/vedsdk/authorize/"),
    ("post", "/oauth2/token"),
    ("post", "/oauth2/introspect"),
    ("post", "/oauth2/revoke"),
    ("get", "/.well-known/oauth-authorization-server"),
    ("get", "/gateway/check"),
    ("post", "/gateway/check"),
];

#[tokio::test]
async fn every_documented_operation_is_served_as_documented() {
    let s = TestServer::start().await;
    let spec = spec();
    let paths = spec["paths"].as_object().expect("paths");
    let mut documented = BTreeSet::new();
    for (path, ops) in paths {
        for (method, op) in ops.as_object().expect("operations") {
            documented.insert((method.clone(), path.to_ascii_lowercase()));
            let statuses: BTreeSet<u16> = op["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .filter_map(|k| k.parse().ok())
                .collect();
            let url = s.url(path);
            let req = match method.as_str() {
                "get" => s.client.get(&url),
                "post" => s
                    .client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body("{}"),
                "delete" => s.client.delete(&url),
                other => panic!("unexpected method {other}"),
            };
            let r = req.send().await.expect("send");
            let status = r.status().as_u16();
            assert!(
                statuses.contains(&status),
                "{method} {path} answered {status}, documented {statuses:?}"
            );
            assert!(
                status != 404 && status != 405,
                "{method} {path} is not served"
            );
        }
    }
    let mut expected: BTreeSet<(String, String)> = SERVED
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    for op in vedauth::http::vedauth::admin::OPERATIONS {
        expected.insert(("post".into(), format!("/vedsdk/oauth/{op}")));
    }
    assert_eq!(
        documented, expected,
        "docs/openapi.json and the served routes differ"
    );
}
