//! Login names are normalised before lookup (RFC 8265 UsernameCaseMapped): fullwidth,
//! padded, differently cased and decomposed spellings reach the same user; names with
//! invisible or control characters reach nobody, with the usual refusal.

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::TestServer;

const BAD_LOGIN: &str = "Username/password combination not valid";

fn audit_causes(s: &TestServer) -> Vec<String> {
    std::fs::read_to_string(s.dir.join("audit.log"))
        .expect("audit log")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .filter(|e| e["event"] == "login_failed")
        .map(|e| e["cause"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn lookalike_spellings_log_in_as_the_same_user() {
    let s = TestServer::start().await;
    s.setup_basic("alice", "alice-password", "vcert-sdk", "certificate")
        .await;
    // Stored in NFC, as user creation stores it.
    s.add_user("jos\u{e9}", "jose-password").await;
    let identity = s
        .password_grant("vcert-sdk", "alice", "alice-password", "certificate")
        .await
        .str("identity");
    for spelling in [
        "ａｌｉｃｅ",
        "ＡＬＩＣＥ",
        " alice ",
        "alice\u{3000}",
        "ALICE",
        "local:ａｌｉｃｅ",
    ] {
        let r = s
            .password_grant("vcert-sdk", spelling, "alice-password", "certificate")
            .await;
        assert_eq!(r.status, StatusCode::OK, "{spelling:?}: {}", r.text);
        assert_eq!(r.str("identity"), identity, "{spelling:?}");
    }
    // Decomposed (NFD) input finds the composed name.
    let r = s
        .password_grant("vcert-sdk", "jose\u{301}", "jose-password", "certificate")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // The bootstrap administrator, spelled in fullwidth letters.
    let pw = std::fs::read_to_string(s.dir.join("initial-admin-password")).expect("pw");
    let r = s
        .password_grant("vedauth-admin", "ａｄｍｉｎ", &pw, "admin")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn hidden_characters_reach_nobody() {
    let s = TestServer::start().await;
    s.setup_basic("alice", "alice-password", "vcert-sdk", "certificate")
        .await;
    let unknown = s
        .password_grant("vcert-sdk", "nobody", "alice-password", "certificate")
        .await;
    unknown.assert_error(401, "invalid_grant", BAD_LOGIN);
    for spelling in [
        "al\u{200B}ice",
        "alice\u{200D}",
        "\u{FEFF}alice",
        "alice\n",
        "al\tice",
    ] {
        let r = s
            .password_grant("vcert-sdk", spelling, "alice-password", "certificate")
            .await;
        r.assert_error(401, "invalid_grant", BAD_LOGIN);
        assert_eq!(r.text, unknown.text, "{spelling:?}: the same bytes");
    }
    let causes = audit_causes(&s);
    assert_eq!(causes.iter().filter(|c| *c == "invalid_name").count(), 5);
    assert_eq!(causes.iter().filter(|c| *c == "unknown_user").count(), 1);
}
