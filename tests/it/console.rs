//! The console over plain HTTP forms (what a browser with JavaScript off sends): sign-in through
//! the password grant, the session as a revocable grant in a `__Host-` cookie, CSRF on every
//! form, the security headers, roles deciding what is shown, and no store call per listed row.
//! `browser.rs` drives the same pages in a real Chromium.

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use vedauth::admin::Caller;
use vedauth::store::{Grant, GrantFilter};
use vedauth::token::TokenDigest;

use crate::common::{ClockExt, TestServer};

/// A browser without JavaScript: no redirects followed, cookies kept by hand.
pub struct Form {
    pub client: reqwest::Client,
    pub base: String,
    pub cookie: String,
}

fn hidden(html: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let at = html
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + key.len();
    html[at..].split('"').next().unwrap_or_default().to_string()
}

fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_string())
}

impl Form {
    pub fn new(s: &TestServer) -> Self {
        let pem = std::fs::read(s.launched.ca_file.as_ref().expect("ca")).expect("ca");
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            client,
            base: s.base.clone(),
            cookie: String::new(),
        }
    }

    pub async fn get(&self, path: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .expect("get");
        let (st, h) = (r.status(), r.headers().clone());
        (st, h, r.text().await.expect("body"))
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .form(form)
            .send()
            .await
            .expect("post")
    }

    /// Signs in; returns where the console sent us, or the error page's location.
    pub async fn sign_in(&mut self, user: &str, pw: &str) -> String {
        let r = self
            .client
            .get(format!("{}/console/signin", self.base))
            .send()
            .await
            .expect("get");
        let pre = set_cookie(&r, "__Host-vedauth-signin").expect("signin cookie");
        let html = r.text().await.expect("body");
        let csrf = hidden(&html, "csrf");
        self.cookie = pre;
        let r = self
            .post(
                "/console/signin",
                &[
                    ("csrf", &csrf),
                    ("next", "/console"),
                    ("username", user),
                    ("password", pw),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        if let Some(c) = set_cookie(&r, "__Host-vedauth") {
            self.cookie = c;
        }
        location(&r)
    }

    pub fn session(&self) -> String {
        self.cookie
            .strip_prefix("__Host-vedauth=")
            .unwrap_or_default()
            .to_string()
    }

    pub async fn csrf(&self) -> String {
        let (_, _, html) = self.get("/console").await;
        hidden(&html, "csrf")
    }
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn admin_password(s: &TestServer) -> String {
    std::fs::read_to_string(s.dir.join("initial-admin-password")).expect("admin password")
}

#[tokio::test]
async fn sign_in_session_csrf_headers_and_sign_out() {
    let s = TestServer::start().await;
    let mut b = Form::new(&s);
    // Not signed in: every page sends to the sign-in page, coming back afterwards.
    let (st, h, _) = b.get("/console/grants?client_id=x").await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(
        h.get(LOCATION).and_then(|v| v.to_str().ok()),
        Some("/console/signin?next=%2Fconsole%2Fgrants%3Fclient%5Fid%3Dx")
    );
    // A wrong password: back to the form, and the trail has the real cause.
    let back = b.sign_in("admin", "not-the-password").await;
    assert!(back.starts_with("/console/signin?next="), "{back}");
    assert!(back.contains("error="), "{back}");
    assert!(b.session().is_empty());
    let (_, _, html) = b.get(&back).await;
    assert!(
        html.contains("The user name or password is not valid."),
        "{html}"
    );
    // The right one: a session cookie that is a grant of vedauth-admin.
    let pw = admin_password(&s);
    assert_eq!(b.sign_in("admin", &pw).await, "/console");
    let token = b.session();
    let v = s.verify(&token).await;
    assert_eq!(v.status, StatusCode::OK);
    assert_eq!(v.json["application"], "vedauth-admin");

    // The headers of every page.
    let (st, h, html) = b.get("/console/integrations").await;
    assert_eq!(st, StatusCode::OK, "{html}");
    let csp = h
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(
        h.get("x-frame-options").and_then(|v| v.to_str().ok()),
        Some("DENY")
    );
    assert!(html.contains("vedauth-admin"));
    assert!(!html.contains("<script"));

    // A forged form without (or with a wrong) CSRF token changes nothing.
    for forged in [vec![], vec![("csrf", "0".repeat(64))]] {
        let mut form: Vec<(&str, &str)> = forged.iter().map(|(k, v)| (*k, v.as_str())).collect();
        form.extend([("client_id", "forged"), ("scope", "certificate")]);
        let r = b.post("/console/integrations", &form).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    assert!(s
        .app
        .store
        .application("forged")
        .await
        .expect("read")
        .is_none());
    // With the token it works, through the audited core.
    let csrf = b.csrf().await;
    let r = b
        .post(
            "/console/integrations",
            &[
                ("csrf", &csrf),
                ("client_id", "made-here"),
                ("name", "Made here"),
                ("vendor", "Acme"),
                ("scope", "certificate:manage"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        location(&r).starts_with("/console/integrations/made%2Dhere?notice="),
        "{}",
        location(&r)
    );
    assert!(s
        .app
        .store
        .application("made-here")
        .await
        .expect("read")
        .is_some());
    let trail = std::fs::read_to_string(s.dir.join("audit.log")).expect("trail");
    assert!(trail.contains("\"create_application\""), "{trail}");

    // The notice of our own redirect shows; words put in a link made elsewhere do not.
    let (_, _, html) = b.get(&location(&r)).await;
    assert!(html.contains("Created made-here"), "{html}");
    let (_, _, html) = b
        .get("/console/integrations?notice=Your%20session%20expired%2C%20sign%20in%20at%20evil.example&error=Call%20us&sig=00")
        .await;
    assert!(
        !html.contains("evil.example") && !html.contains("Call us"),
        "{html}"
    );

    // A session ends after 8 hours whatever the grant's lifetime.
    s.clock.advance(8 * 3600);
    let (st, _, _) = b.get("/console").await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(s.verify(&token).await.status, StatusCode::UNAUTHORIZED);

    // Sign out revokes the grant: the cookie no longer works.
    assert_eq!(b.sign_in("admin", &pw).await, "/console");
    let token = b.session();
    let csrf = b.csrf().await;
    let r = b.post("/console/signout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(s.verify(&token).await.status, StatusCode::UNAUTHORIZED);
    let (st, _, _) = b.get("/console").await;
    assert_eq!(st, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_person_without_a_role_sees_no_administration() {
    let s = TestServer::start().await;
    s.add_user("bob", "bob-password-12").await;
    let mut b = Form::new(&s);
    // No rule of vedauth-admin admits bob: no session at all.
    let back = b.sign_in("bob", "bob-password-12").await;
    assert!(back.contains("error="), "{back}");
    // Admitted (as anyone would be, to approve devices), bob has a session but no role.
    s.allow("vedauth-admin", "everyone", None).await;
    assert_eq!(b.sign_in("bob", "bob-password-12").await, "/console");
    let (st, _, html) = b.get("/console").await;
    assert_eq!(st, StatusCode::OK);
    for admin_link in [
        "/console/integrations",
        "/console/grants",
        "/console/users",
        "/console/settings",
        "/console/audit",
        "/console/jwt-mappings",
        "/console/issuers",
    ] {
        assert!(
            !html.contains(admin_link),
            "{admin_link} shown to bob: {html}"
        );
    }
    assert!(html.contains("/console/device"));
    for page in [
        "/console/integrations",
        "/console/grants",
        "/console/users",
        "/console/settings",
        "/console/audit",
        "/console/integrations/vedauth-admin",
        "/console/jwt-mappings",
        "/console/issuers",
    ] {
        let (st, _, html) = b.get(page).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{page}: {html}");
    }
    let csrf = b.csrf().await;
    let r = b
        .post(
            "/console/integrations",
            &[
                ("csrf", &csrf),
                ("client_id", "bobs"),
                ("scope", "certificate"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).contains("error="));
    assert!(s
        .app
        .store
        .application("bobs")
        .await
        .expect("read")
        .is_none());
}

/// The grants page lists 1,000 grants of 1,000 people with a fixed number of store calls.
#[tokio::test]
async fn the_grants_page_makes_no_store_call_per_row() {
    let s = TestServer::start().await;
    s.add_app("many", "certificate").await;
    let now = s.clock.now_secs();
    for i in 0..1000 {
        let u = s.add_user_fast(&format!("user{i:04}")).await;
        let g = Grant {
            id: format!("g{i:04}").into(),
            client_id: "many".into(),
            identity: u.identity(),
            granted_to: "everyone".into(),
            scope: crate::common::canon("certificate"),
            issued_at: now,
            expires_at: Some(now + 3600),
            renewable: false,
            access_validity: 3600,
            access_digest: TokenDigest::of(&format!("a{i}")),
            access_issued_at: now,
            access_expires_at: now + 3600,
            refresh_digest: None,
        };
        s.app.store.insert_grant(&g).await.expect("grant");
    }
    let services = s.app.services();
    let ((rows, calls), _) = (
        vedauth::store::metered::counting(vedauth::http::console::grants_view(
            &services,
            &Caller::Operator,
            Some("many"),
            None,
        ))
        .await,
        (),
    );
    let rows = rows.expect("rows");
    assert_eq!(rows.len(), 1000);
    assert!(
        rows.iter().all(|r| r.name.starts_with("local:user")),
        "{:?}",
        rows.first()
    );
    // One listing of the grants, one of the users.
    assert_eq!(calls, 2, "store calls for 1,000 rows");
    assert_eq!(
        s.app
            .store
            .list_grants(&GrantFilter::default())
            .await
            .expect("list")
            .len(),
        1000
    );
}

/// The users page's actions and the integration page's edit, rule removal and delete, each
/// through the administration core and its audit trail.
#[tokio::test]
async fn users_and_integrations_are_changed_through_the_core() {
    let s = TestServer::start().await;
    let mut b = Form::new(&s);
    let pw = admin_password(&s);
    assert_eq!(b.sign_in("admin", &pw).await, "/console");
    let csrf = b.csrf().await;

    // Add a user, who then gets a token.
    let r = b
        .post(
            "/console/users",
            &[
                ("csrf", &csrf),
                ("name", "erin"),
                ("full_name", "Erin E"),
                ("password", "erin-password-12"),
            ],
        )
        .await;
    assert!(
        location(&r).contains("notice=Added%20erin"),
        "{}",
        location(&r)
    );
    s.add_app("edit-me", "certificate:manage").await;
    s.allow("edit-me", "everyone", None).await;
    let (token, _) = s
        .tokens("edit-me", "erin", "erin-password-12", "certificate")
        .await;
    // A short password is refused with the policy's words.
    let r = b
        .post(
            "/console/users/action",
            &[
                ("csrf", &csrf),
                ("name", "erin"),
                ("action", "password"),
                ("password", "short"),
            ],
        )
        .await;
    assert!(location(&r).contains("error="), "{}", location(&r));
    // Disabling revokes her grants.
    let r = b
        .post(
            "/console/users/action",
            &[("csrf", &csrf), ("name", "erin"), ("action", "disable")],
        )
        .await;
    assert!(
        location(&r).contains("notice=Disabled%20erin"),
        "{}",
        location(&r)
    );
    assert_eq!(s.verify(&token).await.status, StatusCode::UNAUTHORIZED);
    let (_, _, html) = b.get("/console/users").await;
    assert!(html.contains("disabled"), "{html}");
    for action in ["enable", "unlock"] {
        let r = b
            .post(
                "/console/users/action",
                &[("csrf", &csrf), ("name", "erin"), ("action", action)],
            )
            .await;
        assert!(
            location(&r).contains("notice="),
            "{action}: {}",
            location(&r)
        );
    }
    let r = b
        .post(
            "/console/users/action",
            &[
                ("csrf", &csrf),
                ("name", "erin"),
                ("action", "password"),
                ("password", "erin-password-new"),
            ],
        )
        .await;
    assert!(
        location(&r).contains("notice=New%20password"),
        "{}",
        location(&r)
    );
    s.tokens("edit-me", "erin", "erin-password-new", "certificate")
        .await;

    // Edit the integration: its scope narrows.
    let r = b
        .post(
            "/console/integrations/edit-me",
            &[
                ("csrf", &csrf),
                ("name", "Edited"),
                ("vendor", "V"),
                ("scope", "certificate"),
                ("grant_validity", "never"),
            ],
        )
        .await;
    assert!(location(&r).contains("notice=Saved"), "{}", location(&r));
    let app = s
        .app
        .store
        .application("edit-me")
        .await
        .expect("read")
        .expect("there");
    assert_eq!(
        (app.name.as_str(), app.max_scope.as_str()),
        ("Edited", "certificate")
    );
    assert_eq!(app.grant_validity, Some(vedauth::store::Lifetime::Never));
    // A bad lifetime is refused with its reason.
    let r = b
        .post(
            "/console/integrations/edit-me",
            &[
                ("csrf", &csrf),
                ("scope", "certificate"),
                ("access_validity", "soon"),
            ],
        )
        .await;
    assert!(location(&r).contains("error="), "{}", location(&r));
    // Rules: an unknown name is refused; the rule for everyone is removed.
    let r = b
        .post(
            "/console/integrations/edit-me/rules",
            &[("csrf", &csrf), ("trustee", "nobody-here")],
        )
        .await;
    assert!(location(&r).contains("error=Identity"), "{}", location(&r));
    let r = b
        .post(
            "/console/integrations/edit-me/rules/delete",
            &[("csrf", &csrf), ("trustee", "everyone")],
        )
        .await;
    assert!(
        location(&r).contains("notice=Rule%20removed"),
        "{}",
        location(&r)
    );
    assert!(s
        .app
        .store
        .rules(Some("edit-me"))
        .await
        .expect("rules")
        .is_empty());
    // Delete it: its grants go.
    let r = b
        .post("/console/integrations/edit-me/delete", &[("csrf", &csrf)])
        .await;
    assert!(
        location(&r).contains("notice=Deleted%20edit%2Dme%3B%201%20grants"),
        "{}",
        location(&r)
    );
    assert!(s
        .app
        .store
        .application("edit-me")
        .await
        .expect("read")
        .is_none());
    let trail = std::fs::read_to_string(s.dir.join("audit.log")).expect("trail");
    for change in [
        "\"add_user\"",
        "\"disable_user\"",
        "\"enable_user\"",
        "\"change_password\"",
        "\"update_application\"",
        "\"delete_rule\"",
        "\"delete_application\"",
    ] {
        assert!(trail.contains(change), "{change} not audited");
    }
}

/// Sign-in is the password grant: the per-address rate limit answers first, and the lockout
/// refuses a locked account even with its right password.
#[tokio::test]
async fn sign_in_has_the_rate_limit_and_the_lockout() {
    let mut opts = crate::common::Options::default();
    opts.config.rate_limit.enabled = true;
    opts.config.rate_limit.per_second = 1;
    opts.config.rate_limit.burst = 3;
    let s = TestServer::start_with(opts).await;
    let b = Form::new(&s);
    let mut limited = 0;
    for _ in 0..12 {
        let r = b
            .post(
                "/console/signin",
                &[("username", "admin"), ("password", "x")],
            )
            .await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().contains_key("retry-after"));
            let html = r.text().await.expect("body");
            assert!(html.contains("Too many attempts"), "{html}");
            limited += 1;
        }
    }
    assert!(limited > 0, "no sign-in was rate limited");

    let s = TestServer::start().await;
    let mut b = Form::new(&s);
    for _ in 0..5 {
        b.sign_in("admin", "wrong-password").await;
    }
    let pw = admin_password(&s);
    let back = b.sign_in("admin", &pw).await;
    assert!(
        back.contains("error="),
        "a locked account signed in: {back}"
    );
    let trail = std::fs::read_to_string(s.dir.join("audit.log")).expect("trail");
    assert!(trail.contains("\"lockout\""), "{trail}");
}

/// The JWT mappings and trusted issuers pages: a forged form changes nothing, a refused one
/// comes back with what was typed, and each role sees what the administration core lets it
/// read (mappings: Admin and Auditor; issuers: Admin, GrantAdmin and Auditor).
#[tokio::test]
async fn jwt_mappings_and_issuers_pages_check_csrf_and_roles() {
    use vedauth::admin::{Role, RoleGrant};
    let s = TestServer::start().await;
    let mut b = Form::new(&s);
    let pw = admin_password(&s);
    assert_eq!(b.sign_in("admin", &pw).await, "/console");
    let (st, _, html) = b.get("/console/jwt-mappings").await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains("href=\"/console/issuers\""), "{html}");
    let ca = crate::certauth::pki::Ca::root("Console Test CA");
    let mapping = [
        ("name", "corp-idp"),
        ("issuer_uri", "https://idp.corp.example"),
        ("jwks_uri", ""),
        ("purpose_field", "aud"),
        ("purpose_match", "vedauth"),
        ("id_field", "sub"),
        ("id_match", "(.*)"),
        ("grantee", ""),
    ];

    // Forged: without the CSRF token, or with another one, nothing is added.
    for forged in [vec![], vec![("csrf", "0".repeat(64))]] {
        let mut form: Vec<(&str, &str)> = forged.iter().map(|(k, v)| (*k, v.as_str())).collect();
        form.extend(mapping);
        let r = b.post("/console/jwt-mappings", &form).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = b.post("/console/issuers", &[("pem", &ca.pem())]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r
            .text()
            .await
            .expect("body")
            .contains("did not come from the console"));
    }
    assert!(s
        .app
        .store
        .list_jwt_mappings()
        .await
        .expect("list")
        .is_empty());
    assert!(s.app.store.list_issuers().await.expect("list").is_empty());

    // With the token: created through the core.
    let csrf = b.csrf().await;
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend(mapping);
    let r = b.post("/console/jwt-mappings", &form).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).contains("notice="), "{}", location(&r));
    let stored = s.app.store.list_jwt_mappings().await.expect("list");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].issuer_uri, "https://idp.corp.example");
    assert_eq!(stored[0].jwks_uri, None, "an empty field is absent");
    // Refused (a second key source for the same issuer): the page again, with the error and
    // what was typed.
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend(mapping);
    form[1] = ("name", "corp-idp-2");
    form[3] = ("jwks_uri", "https://keys.corp.example/jwks");
    let r = b.post("/console/jwt-mappings", &form).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.expect("body");
    assert!(
        html.contains("class=\"error\"") && html.contains("same JwksUri"),
        "{html}"
    );
    assert!(
        html.contains("value=\"https://keys.corp.example/jwks\""),
        "{html}"
    );
    assert_eq!(
        s.app.store.list_jwt_mappings().await.expect("list").len(),
        1
    );
    // A PEM that is no certificate: refused, kept in the text area.
    let r = b
        .post(
            "/console/issuers",
            &[("csrf", &csrf), ("pem", "not a certificate")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r
        .text()
        .await
        .expect("body")
        .contains(">not a certificate</textarea>"));
    let r = b
        .post("/console/issuers", &[("csrf", &csrf), ("pem", &ca.pem())])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(s.app.store.list_issuers().await.expect("list").len(), 1);

    // An Auditor reads both pages, and changes nothing; a GrantAdmin reads only the issuers.
    for (user, role) in [("audrey", Role::Auditor), ("gary", Role::GrantAdmin)] {
        s.add_user(user, &format!("{user}-password-12")).await;
        s.app
            .admin
            .grant_role(
                &Caller::Operator,
                RoleGrant {
                    grantee: user.into(),
                    role,
                    client_id: None,
                },
            )
            .await
            .expect("role");
    }
    s.allow("vedauth-admin", "everyone", None).await;
    let mut auditor = Form::new(&s);
    assert_eq!(
        auditor.sign_in("audrey", "audrey-password-12").await,
        "/console"
    );
    let (_, _, home) = auditor.get("/console").await;
    assert!(
        home.contains("href=\"/console/jwt-mappings\"")
            && home.contains("href=\"/console/issuers\""),
        "{home}"
    );
    let (st, _, html) = auditor.get("/console/jwt-mappings/corp%2Didp").await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(
        html.contains("readonly") && !html.contains("id=\"save-mapping\""),
        "{html}"
    );
    let (st, _, html) = auditor.get("/console/issuers").await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(
        html.contains("Console Test CA") && !html.contains("<textarea"),
        "{html}"
    );
    let csrf = auditor.csrf().await;
    let r = auditor
        .post("/console/jwt-mappings/corp-idp/delete", &[("csrf", &csrf)])
        .await;
    assert!(location(&r).contains("error="), "{}", location(&r));
    assert_eq!(
        s.app.store.list_jwt_mappings().await.expect("list").len(),
        1
    );

    let mut grant_admin = Form::new(&s);
    assert_eq!(
        grant_admin.sign_in("gary", "gary-password-12").await,
        "/console"
    );
    let (_, _, home) = grant_admin.get("/console").await;
    assert!(
        !home.contains("/console/jwt-mappings") && home.contains("href=\"/console/issuers\""),
        "{home}"
    );
    let (st, _, _) = grant_admin.get("/console/jwt-mappings").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _, _) = grant_admin.get("/console/issuers").await;
    assert_eq!(st, StatusCode::OK);
}

/// Both pages list from one store call, however many rows.
#[tokio::test]
async fn the_jwt_mappings_and_issuers_pages_make_no_store_call_per_row() {
    let s = TestServer::start().await;
    for i in 0..300 {
        let m = vedauth::domain::JwtMapping {
            name: format!("m{i:03}"),
            issuer_uri: format!("https://idp{i}.example"),
            jwks_uri: None,
            purpose_field: "aud".into(),
            purpose_match: "vedauth".into(),
            id_field: "sub".into(),
            id_match: "(.*)".into(),
            grantee_prefixed_universal: None,
        };
        s.app.store.create_jwt_mapping(&m).await.expect("mapping");
    }
    let pems: String = (0..20)
        .map(|i| crate::certauth::pki::Ca::root(&format!("CA {i}")).pem())
        .collect();
    s.app
        .admin
        .add_issuers(&Caller::Operator, &pems)
        .await
        .expect("issuers");
    let services = s.app.services();
    let (rows, calls) = vedauth::store::metered::counting(
        vedauth::http::console::jwt_mappings_view(&services, &Caller::Operator),
    )
    .await;
    assert_eq!(rows.expect("rows").len(), 300);
    assert_eq!(calls, 1, "store calls for 300 mappings");
    let (rows, calls) = vedauth::store::metered::counting(vedauth::http::console::issuers_view(
        &services,
        &Caller::Operator,
    ))
    .await;
    let rows = rows.expect("rows");
    assert_eq!(rows.len(), 20);
    assert!(
        rows.iter().all(|r| r.subject.contains("CA ") && !r.expired),
        "{:?}",
        rows[0]
    );
    assert_eq!(calls, 1, "store calls for 20 issuers");
}
