//! The console in a real headless Chromium (Debian's `chromium` and `chromium-driver`), driven
//! over WebDriver (W3C JSON over HTTP, with the reqwest the tests already use): sign-in, an
//! integration, a rule by name, the grant it yields, revocation, a setting, a JWT mapping
//! created and edited, certificate issuers added and removed, the audit trail,
//! a forged form, sign-out, a person without a role, and the device flow approved and denied on
//! `/device` while the device polls. axe-core runs in the browser on every page (no serious or
//! critical violation), and every page is photographed (into `docs/console/` with
//! `VEDAUTH_UPDATE_SCREENSHOTS=1`).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{Reply, TestServer};
use crate::device::{enable_device, poll, start};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver child and one browser session; both end when this is dropped.
struct Browser {
    http: reqwest::Client,
    url: String,
    driver: Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
    axe: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn axe_source() -> String {
    let path = std::env::var("VEDAUTH_AXE_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/axe-core/package/axe.min.js")
        });
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "axe-core not found at {} ({e}): run scripts/browser-deps (scripts/test does)",
            path.display()
        )
    })
}

impl Browser {
    async fn start() -> Self {
        let port = free_port();
        let driver_bin =
            std::env::var("VEDAUTH_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // A process group of its own: the browser it starts is stopped with it (below).
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{driver_bin}: {e} (scripts/browser-deps installs it)"));
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        // Bounded wait for the driver to listen.
        let mut ready = false;
        for _ in 0..100 {
            if let Ok(r) = http.get(format!("{base}/status")).send().await {
                if r.status().is_success() {
                    ready = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "chromedriver did not start");
        let profile = tempfile::tempdir().expect("profile");
        let chromium =
            std::env::var("VEDAUTH_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // The test server's certificate comes from its own throwaway CA.
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session json");
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_string();
        let shots = if std::env::var("VEDAUTH_UPDATE_SCREENSHOTS").is_ok() {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/console")
        } else {
            profile.path().join("shots")
        };
        std::fs::create_dir_all(&shots).expect("shots dir");
        Self {
            http,
            url: format!("{base}/session/{id}"),
            driver,
            _profile: profile,
            shots,
            axe: axe_source(),
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r: Value = req
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("webdriver json");
        if let Some(err) = r["value"]["error"].as_str() {
            panic!("webdriver {path}: {err}: {}", r["value"]["message"]);
        }
        r["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn current(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn source(&self) -> String {
        self.cmd(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("{css}: {v}"))
            .to_string()
    }

    async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/clear"),
            Some(json!({})),
        )
        .await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn click_only(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Clicks something that loads a new page, and waits (bounded) until the new document has
    /// loaded: the old one carries a mark the new one lacks.
    async fn click(&self, css: &str) {
        self.script("window.__vedauthOld = true; return true;")
            .await;
        self.click_only(css).await;
        for _ in 0..200 {
            let done = self
                .script(
                    "return window.__vedauthOld !== true && document.readyState === 'complete';",
                )
                .await;
            if done == json!(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no new page after clicking {css}");
    }

    async fn script(&self, js: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
        .await
    }

    async fn cookie(&self, name: &str) -> Option<Value> {
        let all = self.cmd(reqwest::Method::GET, "/cookie", None).await;
        all.as_array()?.iter().find(|c| c["name"] == name).cloned()
    }

    /// axe-core on the page: no serious or critical violation.
    async fn accessible(&self, page: &str) {
        let list = self.violations().await;
        assert!(list.is_empty(), "{page}: {list:?}");
    }

    /// axe-core's serious and critical violations on the page.
    async fn violations(&self) -> Vec<Value> {
        self.script(&format!("{};\nreturn typeof axe;", self.axe))
            .await;
        let found = self
            .cmd(
                reqwest::Method::POST,
                "/execute/async",
                Some(json!({"script": "const done = arguments[arguments.length - 1];
                    axe.run(document, {resultTypes: ['violations']})
                      .then(r => done(r.violations
                        .filter(v => v.impact === 'serious' || v.impact === 'critical')
                        .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.map(n => n.target.join(' ')).join(', '))))
                      .catch(e => done(['axe failed: ' + e]));", "args": []})),
            )
            .await;
        found.as_array().cloned().unwrap_or_default()
    }

    async fn shot(&self, name: &str) {
        let b64 = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .expect("png");
        assert!(png.starts_with(b"\x89PNG"), "{name} is no PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("write shot");
    }

    /// Presses a key (WebDriver actions), as a keyboard user would.
    async fn press(&self, key: &str) {
        self.cmd(
            reqwest::Method::POST,
            "/actions",
            Some(
                json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                    {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}
                ]}]}),
            ),
        )
        .await;
    }

    async fn window(&self, width: u32, height: u32) {
        self.cmd(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Checks, photographs and tests a page in one go.
    async fn page(&self, name: &str) -> String {
        self.accessible(name).await;
        self.shot(name).await;
        self.source().await
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: killing chromedriver alone leaves Chromium running, orphaned.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// pyVenafi's device calls in a child process (tests/clients/pyvenafi_device.py), one poll per
/// line asked.
struct PyDevice {
    child: Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl PyDevice {
    fn start(s: &TestServer, client_id: &str, scope: &str) -> Self {
        let host = s.base.trim_start_matches("https://").to_string();
        let mut child = Command::new(crate::clients::client_python())
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/pyvenafi_device.py"))
            .args([
                "--host",
                &host,
                "--client-id",
                client_id,
                "--scope",
                scope,
                "--ca",
            ])
            .arg(s.launched.ca_file.as_ref().expect("ca"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run pyvenafi_device.py");
        let out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        Self { child, out }
    }

    /// The child's next line, as JSON (the server answers it on other threads meanwhile).
    fn read(&mut self) -> Value {
        use std::io::BufRead;
        let mut line = String::new();
        tokio::task::block_in_place(|| self.out.read_line(&mut line)).expect("read");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    fn poll(&mut self) -> Value {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(b"poll\n")
            .and_then(|_| stdin.flush())
            .expect("write");
        self.read()
    }
}

impl Drop for PyDevice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn sign_in(b: &Browser, s: &TestServer, user: &str, pw: &str) {
    b.go(&s.url("/console")).await;
    assert!(
        b.current().await.contains("/console/signin"),
        "{}",
        b.current().await
    );
    b.fill("#username", user).await;
    b.fill("#password", pw).await;
    b.click("button[type=submit]").await;
}

fn notice(html: &str) -> String {
    html.split("class=\"notice\"")
        .nth(1)
        .and_then(|r| r.split("</p>").next())
        .unwrap_or_default()
        .to_string()
}

fn ok(r: Reply) -> Reply {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let s = TestServer::start().await;
    s.add_user("carol", "carol-password-1").await;
    let admin_pw =
        std::fs::read_to_string(s.dir.join("initial-admin-password")).expect("admin password");
    let b = Browser::start().await;

    // Sign-in page, then the console.
    b.go(&s.url("/console")).await;
    b.page("signin").await;
    sign_in(&b, &s, "admin", &admin_pw).await;
    assert!(
        b.current().await.ends_with("/console"),
        "{}",
        b.current().await
    );
    let html = b.page("home").await;
    assert!(html.contains("local:admin"), "{html}");
    // The check can fail: an input without a label is a critical violation.
    b.script("document.querySelector('main').insertAdjacentHTML('beforeend', '<input id=unlabelled>'); return true;").await;
    let found = b.violations().await;
    assert!(
        found
            .iter()
            .any(|v| v.as_str().is_some_and(|t| t.starts_with("label"))),
        "{found:?}"
    );
    let session = b.cookie("__Host-vedauth").await.expect("session cookie");
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["secure"], true);
    assert_eq!(session["sameSite"], "Strict");
    let session_token = session["value"].as_str().expect("value").to_string();

    // A new integration.
    b.go(&s.url("/console/integrations")).await;
    b.page("integrations-empty").await;
    b.fill("#client_id", "browser-app").await;
    b.fill("#name", "Browser App").await;
    b.fill("#vendor", "Acme").await;
    b.fill("#description", "Made in a browser").await;
    b.fill("#scope", "certificate:manage").await;
    b.click("#create").await;
    assert!(
        b.current()
            .await
            .contains("/console/integrations/browser%2Dapp"),
        "{}",
        b.current().await
    );
    // A rule for a user by name; the page shows the name and the identity it resolved to.
    b.fill("#trustee", "carol").await;
    b.click("#add-rule").await;
    let html = b.source().await;
    assert!(notice(&html).contains("local:carol"), "{html}");
    b.fill("#trustee", "admin").await;
    b.click("#add-rule").await;
    b.page("integration").await;

    // Carol gets a token; the grants page shows it; revoking it ends the token.
    let (carol_token, _) = s
        .tokens("browser-app", "carol", "carol-password-1", "certificate")
        .await;
    b.go(&s.url("/console/integrations")).await;
    let html = b.page("integrations").await;
    assert!(
        html.contains("Browser App") && html.contains("Acme"),
        "{html}"
    );
    b.go(&s.url("/console/grants?client_id=browser-app")).await;
    let html = b.page("grants").await;
    assert!(html.contains("local:carol"), "{html}");
    b.click("form[action='/console/grants/revoke'] button")
        .await;
    let html = b.source().await;
    assert!(notice(&html).contains("Revoked 1 grants"), "{html}");
    assert_eq!(
        s.verify(&carol_token).await.status,
        StatusCode::UNAUTHORIZED
    );

    // A setting: the device switch on, a shorter default access validity.
    b.go(&s.url("/console/settings")).await;
    b.page("settings").await;
    b.click_only("#device").await;
    b.fill("#access", "3600").await;
    b.click("#save-settings").await;
    let html = b.source().await;
    assert!(notice(&html).contains("Settings saved"), "{html}");
    let st = s.app.store.settings().await.expect("settings");
    assert!(st.authorize_device);
    assert_eq!(st.default_access_token_validity, 3600);

    // Local users: add one.
    b.go(&s.url("/console/users")).await;
    b.fill("#new-name", "dave").await;
    b.fill("#new-full", "Dave Device").await;
    b.fill("#new-pw", "dave-password-12").await;
    b.click("#add-user").await;
    let html = b.page("users").await;
    assert!(notice(&html).contains("Added dave"), "{html}");

    // JWT mappings: one created, then edited to name a fixed grantee.
    b.go(&s.url("/console/jwt-mappings")).await;
    b.fill("#name", "corp-idp").await;
    b.fill("#issuer_uri", "https://idp.corp.example").await;
    b.fill("#jwks_uri", "https://idp.corp.example/keys").await;
    b.fill("#purpose_match", "vedauth").await;
    b.fill("#id_match", "^svc-(.+)$").await;
    b.click("#create-mapping").await;
    assert!(
        notice(&b.source().await).contains("Created the JWT mapping corp-idp"),
        "{}",
        b.source().await
    );
    b.click("a[href='/console/jwt-mappings/corp-idp']").await;
    b.page("jwt-mapping").await;
    b.fill("#grantee", "carol").await;
    b.click("#save-mapping").await;
    let html = b.page("jwt-mappings").await;
    assert!(
        notice(&html).contains("Saved the JWT mapping corp-idp"),
        "{html}"
    );
    let m = s
        .app
        .store
        .jwt_mapping("corp-idp")
        .await
        .expect("read")
        .expect("mapping");
    assert_eq!(
        (
            m.jwks_uri.as_deref(),
            m.purpose_field.as_str(),
            m.id_match.as_str()
        ),
        (Some("https://idp.corp.example/keys"), "aud", "^svc-(.+)$")
    );
    assert_eq!(m.grantee_prefixed_universal.as_deref(), Some("carol"));

    // Trusted issuers: a bundle of two pasted in, then one removed.
    let (ca1, ca2) = (
        crate::certauth::pki::Ca::root("Browser Root CA One"),
        crate::certauth::pki::Ca::root("Browser Root CA Two"),
    );
    b.go(&s.url("/console/issuers")).await;
    // Pasted, as a person would: typed key by key, a bundle takes WebDriver seconds.
    let bundle = json!(format!("{}{}", ca1.pem(), ca2.pem()));
    b.script(&format!(
        "document.querySelector('#pem').value = {bundle}; return true;"
    ))
    .await;
    b.click("#add-issuers").await;
    let html = b.page("issuers").await;
    assert!(notice(&html).contains("Now trusted (2)"), "{html}");
    let fp = vedauth::certauth::TrustedIssuers::from_pem(ca2.pem().as_bytes())
        .expect("pem")
        .issuers()[0]
        .fingerprint()
        .to_string();
    assert!(html.contains(&fp), "{fp} not listed: {html}");
    b.click(&format!(
        "form[action='/console/issuers/remove']:has(input[value='{fp}']) button"
    ))
    .await;
    assert!(notice(&b.source().await).contains("No longer trusted"));
    let left = s.app.store.list_issuers().await.expect("issuers");
    assert_eq!(left.len(), 1);
    assert!(left[0].subject.contains("One"), "{:?}", left[0].subject);

    // The device flow: pyVenafi's device calls poll while the browser approves.
    let mut device = PyDevice::start(&s, "browser-app", "certificate");
    let started = device.read();
    let user_code = started["user_code"]
        .as_str()
        .expect("user code")
        .to_string();
    assert_eq!(device.poll()["error"], "authorization_pending");
    // Polling again at once: slow_down.
    assert_eq!(device.poll()["error"], "slow_down");
    // The verification URI the device shows, as the person opens it.
    let complete = started["verification_uri_complete"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let path = complete
        .split_once("/device")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    b.go(&s.url(&format!("/device{path}"))).await;
    let html = b.page("device-confirm").await;
    for shown in ["Browser App", "Acme", "certificate", user_code.as_str()] {
        assert!(html.contains(shown), "{shown} not on the page: {html}");
    }
    b.click("#approve").await;
    assert!(notice(&b.source().await).contains("Approved"));
    s.clock.advance(20);
    let got = device.poll();
    let token = got["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{got}"))
        .to_string();
    assert_eq!(got["scope"], "certificate");
    let v = s.verify(&token).await;
    assert_eq!(v.json["application"], "browser-app");
    assert!(v.json["identity"]
        .as_str()
        .is_some_and(|i| i.starts_with("local:{")));
    // Used once.
    s.clock.advance(20);
    assert_eq!(device.poll()["error"], "invalid_grant");
    drop(device);

    // Denied, with the code typed in.
    let r = ok(start(&s, "browser-app", "certificate").await);
    let (device_code, user_code) = (r.str("device_code"), r.str("user_code"));
    b.go(&s.url("/console/device")).await;
    b.page("device").await;
    b.fill("#user_code", &user_code.to_lowercase()).await;
    b.click("#lookup").await;
    b.click("#deny").await;
    assert!(notice(&b.source().await).contains("Denied"));
    assert_eq!(
        poll(&s, "browser-app", &device_code).await.json["error"],
        "access_denied"
    );

    // Expired: the page no longer finds it, the device hears expired_token.
    let r = ok(start(&s, "browser-app", "certificate").await);
    let (device_code, user_code) = (r.str("device_code"), r.str("user_code"));
    s.clock.advance(301);
    b.go(&s.url(&format!("/console/device?user_code={user_code}")))
        .await;
    assert!(b
        .source()
        .await
        .contains("No pending request has this code"));
    assert_eq!(
        poll(&s, "browser-app", &device_code).await.json["error"],
        "expired_token"
    );

    // The audit trail shows each change, newest first.
    b.go(&s.url("/console/audit")).await;
    let html = b.page("audit").await;
    for event in [
        "create_application",
        "create_rule",
        "revoke_grants",
        "set_configuration",
        "add_user",
        "device_approved",
        "device_denied",
        "create_jwt_mapping",
        "update_jwt_mapping",
        "add_trusted_issuers",
        "remove_trusted_issuer",
    ] {
        assert!(html.contains(event), "{event} not in the trail page");
    }
    b.fill("#q", "set_configuration").await;
    b.click("form[action='/console/audit'] button").await;
    let html = b.source().await;
    assert!(
        html.contains("set_configuration") && !html.contains(">create_rule<"),
        "{html}"
    );

    // A forged form: the same form without its CSRF token is refused and changes nothing.
    b.go(&s.url("/console/integrations")).await;
    b.script("document.querySelector(\"form[action='/console/integrations'] input[name=csrf]\").remove(); return true;").await;
    b.fill("#client_id", "forged-app").await;
    b.fill("#scope", "certificate").await;
    b.click("#create").await;
    assert!(b.source().await.contains("did not come from the console"));
    assert!(s
        .app
        .store
        .application("forged-app")
        .await
        .expect("read")
        .is_none());

    // The keyboard: Tab reaches the skip link first, and Enter on it moves to the content.
    b.go(&s.url("/console/grants")).await;
    b.press("\u{E004}").await;
    let focused = b.script("return document.activeElement.textContent;").await;
    assert_eq!(focused, json!("Skip to content"));
    b.press("\u{E007}").await;
    assert!(
        b.current().await.ends_with("#main"),
        "{}",
        b.current().await
    );
    b.press("\u{E004}").await;
    let focused = b
        .script("return document.activeElement.id || document.activeElement.tagName;")
        .await;
    assert_eq!(focused, json!("client_id"), "the first control of the page");

    // A phone-sized window.
    b.window(390, 844).await;
    b.go(&s.url("/console/grants")).await;
    b.page("grants-phone").await;
    b.window(1280, 900).await;

    // Sign out: the session's grant is revoked, the cookie no longer works.
    b.go(&s.url("/console")).await;
    b.click(".signout button").await;
    assert!(b.current().await.contains("/console/signin"));
    assert_eq!(
        s.verify(&session_token).await.status,
        StatusCode::UNAUTHORIZED
    );
    b.go(&s.url("/console/grants")).await;
    assert!(b.current().await.contains("/console/signin"));

    // A person without a role sees no administration.
    s.allow("vedauth-admin", "everyone", None).await;
    sign_in(&b, &s, "carol", "carol-password-1").await;
    let html = b.page("home-no-role").await;
    assert!(html.contains("/console/device"));
    for link in [
        "/console/integrations",
        "/console/grants",
        "/console/users",
        "/console/settings",
        "/console/audit",
        "/console/jwt-mappings",
        "/console/issuers",
    ] {
        assert!(!html.contains(link), "{link} shown without a role");
    }
    b.go(&s.url("/console/grants")).await;
    assert!(b.source().await.contains("Your role does not allow"));
    // Carol can still approve a device on her own behalf.
    enable_device(&s).await;
    let r = ok(start(&s, "browser-app", "certificate").await);
    b.go(&s.url(&format!("/console/device?user_code={}", r.str("user_code"))))
        .await;
    b.click("#approve").await;
    s.clock.advance(10);
    let got = ok(poll(&s, "browser-app", &r.str("device_code")).await);
    assert!(got.str("identity").starts_with("local:{"));
}
