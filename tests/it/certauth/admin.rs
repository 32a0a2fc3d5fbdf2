//! Trusted issuers and `CertificateConfiguration` through the administration API
//! (get/setconfiguration) and the command line (`vedauth cert issuer ...`, `vedauth cert
//! explain`), on a running server's store.

use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::grant::{cert_grant, cert_server, client, switch, APP};
use super::pki::{expired_window, Ca, LeafSpec};
use crate::common::{Options, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_vedauth");

fn events(s: &TestServer) -> Vec<Value> {
    std::fs::read_to_string(s.dir.join("audit.log"))
        .expect("audit log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect()
}

#[tokio::test]
async fn certificate_configuration_through_get_and_setconfiguration() {
    let (s, ca) = cert_server(Options::default()).await;
    let fp = ca.trusted().authorized_issuer_dns()[0].clone();
    let t = s.admin_token("admin").await;
    let cfg = s.oauth("GetConfiguration", &t, &json!({})).await.ok();
    let mut cfg = cfg.json["Configuration"].clone();
    assert_eq!(cfg["AuthorizeByCertificate"], true);
    assert_eq!(
        cfg["CertificateConfiguration"],
        json!({"AttemptSIDExtensionBeforeSourceField": false, "SourceField": "CN", "AuthorizedIssuerDns": [fp]})
    );

    // The console's label is read; the canonical word comes back.
    cfg["CertificateConfiguration"]["SourceField"] = json!("SubjectAltName: UPN");
    cfg["CertificateConfiguration"]["AttemptSIDExtensionBeforeSourceField"] = json!(true);
    s.oauth(
        "SetConfiguration",
        &t,
        &json!({"Configuration": cfg.clone()}),
    )
    .await
    .ok();
    let back = s.oauth("GetConfiguration", &t, &json!({})).await.ok();
    assert_eq!(
        back.json["Configuration"]["CertificateConfiguration"],
        json!({"AttemptSIDExtensionBeforeSourceField": true, "SourceField": "UPN", "AuthorizedIssuerDns": [fp]})
    );

    // An unknown SourceField is the caller's mistake, named.
    cfg["CertificateConfiguration"]["SourceField"] = json!("DN");
    let r = s
        .oauth(
            "SetConfiguration",
            &t,
            &json!({"Configuration": cfg.clone()}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("unknown SourceField 'DN'"), "{}", r.text);

    // A fingerprint that names no issuer is refused (result 6, InvalidParameters).
    cfg["CertificateConfiguration"]["SourceField"] = json!("CN");
    cfg["CertificateConfiguration"]["AuthorizedIssuerDns"] = json!(["00".repeat(32)]);
    s.oauth(
        "SetConfiguration",
        &t,
        &json!({"Configuration": cfg.clone()}),
    )
    .await
    .refused(6);

    // Without a list, the issuers stay; with an empty one, they go (and the trail says so).
    s.oauth(
        "SetConfiguration",
        &t,
        &json!({"Configuration": {"AuthorizeByCertificate": true}}),
    )
    .await
    .ok();
    let back = s.oauth("GetConfiguration", &t, &json!({})).await.ok();
    assert_eq!(
        back.json["Configuration"]["CertificateConfiguration"]["AuthorizedIssuerDns"],
        json!([fp])
    );
    s.oauth(
        "SetConfiguration",
        &t,
        &json!({"Configuration": {"AuthorizeByCertificate": true,
            "CertificateConfiguration": {"AuthorizedIssuerDns": []}}}),
    )
    .await
    .ok();
    assert!(s.app.store.list_issuers().await.expect("list").is_empty());
    let change = events(&s)
        .into_iter()
        .rev()
        .find(|e| e["event"] == "admin_change" && e["cause"] == "set_configuration")
        .expect("audited");
    assert_eq!(change["detail"]["count"], 1, "one issuer removed: {change}");
}

fn vedauth(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run vedauth");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_registers_issuers_and_explains_what_a_certificate_gets() {
    let s = TestServer::start().await;
    s.setup_basic("alice", "Alice-Password-1", APP, "certificate:manage")
        .await;
    let ca = Ca::root("CLI Client CA");
    let dir = s.dir.clone();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p.to_string_lossy().into_owned()
    };
    let ca_file = write("ca.pem", &ca.pem());
    let alice = ca.issue(LeafSpec::cn("alice"));
    let alice_file = write("alice.pem", &format!("{}{}", alice.pem, alice.key_pem));
    let (from, to) = expired_window();
    let old_file = write(
        "old.pem",
        &ca.issue(LeafSpec::cn("alice").valid(from, to)).pem,
    );
    let nobody_file = write("nobody.pem", &ca.issue(LeafSpec::cn("nobody")).pem);

    let run = {
        let dir = dir.clone();
        move |args: Vec<String>| {
            let dir = dir.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    vedauth(&dir, &args)
                })
                .await
                .expect("join")
            }
        }
    };
    let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let (code, out, err) = run(a(&["--json", "cert", "issuer", "add", &ca_file])).await;
    assert_eq!(code, 0, "{err}");
    let added: Value = serde_json::from_str(&out).expect("json");
    let fp = ca.trusted().authorized_issuer_dns()[0].clone();
    assert_eq!(added[0]["fingerprint"], fp.as_str());
    assert_eq!(added[0]["added"], true);
    let (code, out, _) = run(a(&["--json", "cert", "issuer", "add", &ca_file])).await;
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")[0]["added"],
        false
    );
    // A client certificate is no issuer: refused with its subject.
    let (code, _, err) = run(a(&["cert", "issuer", "add", &nobody_file])).await;
    assert_ne!(code, 0);
    assert!(err.contains("not a CA certificate"), "{err}");
    let (_, out, _) = run(a(&["--json", "cert", "issuer", "list"])).await;
    let list: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{out}");
    assert!(list[0]["subject"]
        .as_str()
        .unwrap_or("")
        .contains("CLI Client CA"));

    // The switch is off: explain says so first, and refuses.
    let (code, out, _) = run(a(&["cert", "explain", "--cert", &alice_file])).await;
    assert_ne!(code, 0);
    assert!(out.contains("AuthorizeByCertificate is off"), "{out}");
    let (code, _, err) = run(a(&["config", "set", "AuthorizeByCertificate", "true"])).await;
    assert_eq!(code, 0, "{err}");
    // The field's value alone: the issuers stay (the list was not given), a bad field is named.
    let (code, _, err) = run(a(&[
        "config",
        "set",
        "CertificateConfiguration",
        r#"{"SourceField": "DN"}"#,
    ]))
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("unknown SourceField 'DN'"), "{err}");
    let (code, _, err) = run(a(&[
        "config",
        "set",
        "certificateconfiguration",
        r#"{"SourceField": "CN"}"#,
    ]))
    .await;
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = run(a(&["--json", "cert", "issuer", "list"])).await;
    let list: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "kept: {out}");

    let explain = |file: &str| {
        a(&[
            "--json",
            "cert",
            "explain",
            "--cert",
            file,
            "--client-id",
            APP,
        ])
    };
    let (code, out, err) = run(explain(&alice_file)).await;
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["accepted"], true, "{out}");
    let steps: Vec<&str> = v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["step"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        steps,
        [
            "switch",
            "trusted issuers",
            "chain",
            "identity field",
            "identity",
            "application",
            "rule"
        ]
    );
    for (file, refused_at, says) in [
        (&old_file, "chain", "expired"),
        (
            &nobody_file,
            "identity",
            "no identity provider knows CN=nobody",
        ),
    ] {
        let (code, out, _) = run(explain(file)).await;
        assert_ne!(code, 0, "{out}");
        let v: Value = serde_json::from_str(&out).expect("json");
        let last = v["steps"]
            .as_array()
            .and_then(|s| s.last())
            .expect("a step");
        assert_eq!(
            (last["step"].as_str(), last["ok"].as_bool()),
            (Some(refused_at), Some(false)),
            "{out}"
        );
        assert!(
            last["detail"].as_str().unwrap_or("").contains(says),
            "{out}"
        );
    }

    // The running server follows what the command line did (another process, same store).
    s.launched.refresh_client_auth().await.expect("refresh");
    let r = cert_grant(
        &client(&s, Some(&alice), None),
        &s.base,
        &json!({"client_id": APP, "scope": "certificate:manage"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Removed by fingerprint, in the colon-separated upper-case form openssl prints.
    let colons: Vec<String> = fp
        .to_ascii_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let (code, _, err) = run(a(&["cert", "issuer", "remove", &colons.join(":")])).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(a(&["cert", "issuer", "remove", &fp])).await;
    assert_ne!(code, 0);
    assert!(err.contains("not found"), "{err}");
    let (code, out, _) = run(a(&["cert", "explain", "--cert", &alice_file])).await;
    assert_ne!(code, 0);
    assert!(out.contains("none configured"), "{out}");
    let trail: Vec<Value> = events(&s)
        .into_iter()
        .filter(|e| e["event"] == "admin_change")
        .map(|e| e["cause"].clone())
        .collect();
    assert!(trail.contains(&json!("add_trusted_issuers")), "{trail:?}");
    assert!(trail.contains(&json!("remove_trusted_issuer")), "{trail:?}");
    switch(&s, false).await;
}
