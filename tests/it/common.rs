//! Starts a real vedauth in-process on a free loopback port, with a settable clock, cheap hash
//! parameters and a fresh data directory, and talks to it over HTTPS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;
use vedauth::assembly::Assembly;
use vedauth::clock::ManualClock;
use vedauth::config::Config;
use vedauth::password::HashParams;
use vedauth::runtime::{self, Runtime};
use vedauth::secret::Secret;
use vedauth::store::{Application, Rule, Settings, User};

pub struct TestServer {
    pub app: Arc<Assembly>,
    pub clock: Arc<ManualClock>,
    pub launched: Runtime,
    pub client: reqwest::Client,
    pub base: String,
    pub dir: PathBuf,
    // Removed when the last server on it is gone.
    _tmp: Option<Arc<tempfile::TempDir>>,
}

pub struct Options {
    pub config: Config,
    pub hash: HashParams,
}

impl Default for Options {
    fn default() -> Self {
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            // Short grace so tests that stop servers do not wait.
            shutdown_grace_secs: 5,
            ..Config::default()
        };
        // Load tests of other features come from one address; the rate-limit tests turn it on.
        config.rate_limit.enabled = false;
        Self {
            config,
            hash: HashParams::insecure_for_tests(),
        }
    }
}

impl Options {
    /// The default options, for a node on the database at `url` (`postgres://...`, `sqlite:...`).
    pub fn on_database(url: &str) -> Self {
        let mut o = Self::default();
        o.config.database_url = Some(url.to_string());
        o
    }
}

pub fn client_for(ca: Option<&Path>) -> reqwest::Client {
    let mut b = reqwest::Client::builder().use_rustls_tls();
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).expect("read CA");
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA PEM"));
    }
    b.build().expect("client")
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Self {
        let tmp = Arc::new(tempfile::tempdir().expect("tempdir"));
        let dir = tmp.path().to_path_buf();
        Self::start_in(dir, Some(tmp), opts, Arc::new(ManualClock::starting_now())).await
    }

    async fn start_in(
        dir: PathBuf,
        tmp: Option<Arc<tempfile::TempDir>>,
        opts: Options,
        clock: Arc<ManualClock>,
    ) -> Self {
        let listen = opts.config.listen_addr().expect("listen");
        let app = Arc::new(
            Assembly::open(opts.config, &dir, clock.clone(), Some(opts.hash))
                .await
                .expect("open app"),
        );
        let launched = runtime::start(app.clone(), listen).await.expect("start");
        let client = client_for(launched.ca_file.as_deref());
        let base = launched.handle.base_url();
        Self {
            app,
            clock,
            launched,
            client,
            base,
            dir,
            _tmp: tmp,
        }
    }

    /// Stops the server and starts a new one on the same data directory (and clock).
    pub async fn restart(self) -> Self {
        let TestServer {
            app,
            clock,
            launched,
            dir,
            _tmp,
            ..
        } = self;
        let config = app.config.clone();
        let hash = app.pool.params();
        launched.shutdown().await;
        drop(app);
        Self::start_in(dir, _tmp, Options { config, hash }, clock).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn add_user(&self, name: &str, password: &str) -> User {
        let hash = self
            .app
            .pool
            .hash(Secret::new(password))
            .await
            .expect("hash");
        let u = User {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.into(),
            full_name: None,
            email: None,
            password_hash: hash,
            disabled: false,
            created_at: self.clock.now_secs(),
        };
        self.app.store.create_user(&u).await.expect("create user");
        u
    }

    /// A user with a password nobody knows (no hashing): for listings of many users.
    pub async fn add_user_fast(&self, name: &str) -> User {
        let u = User {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.into(),
            full_name: None,
            email: None,
            password_hash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
            disabled: false,
            created_at: self.clock.now_secs(),
        };
        self.app.store.create_user(&u).await.expect("create user");
        u
    }

    pub async fn add_app(&self, client_id: &str, scope: &str) -> Application {
        let a = app_record(client_id, scope, self.clock.now_secs());
        self.app
            .store
            .create_application(&a)
            .await
            .expect("create app");
        // Written past the administration core: announced as it would (the grant core keeps
        // applications, rules and settings).
        self.app.engine.policy_changed().await;
        a
    }

    /// An application changed straight in the store, then announced.
    pub async fn update_app(&self, a: &Application) {
        assert!(self
            .app
            .store
            .update_application(a)
            .await
            .expect("update app"));
        self.app.engine.policy_changed().await;
    }

    /// The settings written straight in the store, then announced.
    pub async fn put_settings(&self, settings: &Settings) {
        self.app
            .store
            .put_settings(settings)
            .await
            .expect("settings");
        self.app.engine.policy_changed().await;
    }

    pub async fn allow(&self, client_id: &str, trustee: &str, max_scope: Option<&str>) -> Rule {
        let r = rule_record(
            client_id,
            trustee,
            max_scope.map(canon),
            self.clock.now_secs(),
        );
        self.app.store.create_rule(&r).await.expect("create rule");
        self.app.engine.policy_changed().await;
        r
    }

    /// A user `name` with password `pw`, an application `app` with `scope`, and a rule for
    /// everyone.
    pub async fn setup_basic(&self, name: &str, pw: &str, app: &str, scope: &str) {
        self.add_user(name, pw).await;
        self.add_app(app, scope).await;
        self.allow(app, "everyone", None).await;
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        let r = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("send");
        Reply::read(r).await
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: &str) -> Reply {
        let r = self
            .client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .expect("send");
        Reply::read(r).await
    }

    pub async fn get_bearer(&self, path: &str, token: Option<&str>) -> Reply {
        Reply::get(&self.client, &self.url(path), token).await
    }

    pub async fn password_grant(
        &self,
        client_id: &str,
        user: &str,
        pw: &str,
        scope: &str,
    ) -> Reply {
        self.post_json(
            "/vedauth/authorize/oauth",
            &serde_json::json!({"client_id": client_id, "username": user, "password": pw, "scope": scope}),
        )
        .await
    }

    /// A password grant that must succeed; returns (access, refresh).
    pub async fn tokens(
        &self,
        client_id: &str,
        user: &str,
        pw: &str,
        scope: &str,
    ) -> (String, String) {
        let r = self.password_grant(client_id, user, pw, scope).await;
        assert_eq!(r.status, StatusCode::OK, "grant failed: {}", r.text);
        (r.str("access_token"), r.str("refresh_token"))
    }

    pub async fn refresh(&self, client_id: &str, refresh: &str) -> Reply {
        self.post_json(
            "/vedauth/authorize/token",
            &serde_json::json!({"client_id": client_id, "refresh_token": refresh}),
        )
        .await
    }

    /// A token of the bootstrap `admin` (Admin role) with the given scope.
    pub async fn admin_token(&self, scope: &str) -> String {
        let pw = std::fs::read_to_string(self.dir.join("initial-admin-password"))
            .expect("admin password");
        self.tokens("vedauth-admin", "admin", &pw, scope).await.0
    }

    /// `POST /vedsdk/oauth/{op}` with a bearer token and a JSON body.
    pub async fn oauth(&self, op: &str, token: &str, body: &Value) -> Reply {
        let r = self
            .client
            .post(self.url(&format!("/vedsdk/oauth/{op}")))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("send");
        Reply::read(r).await
    }

    pub async fn verify(&self, token: &str) -> Reply {
        self.get_bearer("/vedauth/authorize/verify", Some(token))
            .await
    }

    /// Verifies twice, asserting both: the verify cache keeps a grant from its second verify
    /// on, so after this the grant is cached here.
    pub async fn verify_twice(&self, token: &str) {
        for _ in 0..2 {
            let r = self.verify(token).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    /// `GET url`, with `token` as the bearer if given.
    pub async fn get(client: &reqwest::Client, url: &str, token: Option<&str>) -> Self {
        let mut req = client.get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Self::read(req.send().await.expect("send")).await
    }

    pub async fn read(r: reqwest::Response) -> Self {
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            json,
        }
    }

    /// Asserts the admin API's success envelope and returns the reply.
    pub fn ok(self) -> Self {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text);
        assert_eq!(self.json["Success"], true, "{}", self.text);
        assert_eq!(self.json["Result"], 0, "{}", self.text);
        assert!(self.json["Error"].is_null(), "{}", self.text);
        self
    }

    /// Asserts a refusal in the envelope: HTTP 200, `Success: false`, the result code.
    pub fn refused(&self, code: i64) {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text);
        assert_eq!(self.json["Success"], false, "{}", self.text);
        assert_eq!(self.json["Result"], code, "{}", self.text);
        assert!(
            self.json["Error"].as_str().is_some_and(|e| !e.is_empty()),
            "{}",
            self.text
        );
    }

    pub fn str(&self, key: &str) -> String {
        self.json[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} missing in {}", self.text))
            .to_string()
    }

    /// Asserts a VEDauth error reply: status, `error`, `error_description`, JSON content type.
    pub fn assert_error(&self, status: u16, error: &str, description: &str) {
        assert_eq!(self.status.as_u16(), status, "status of {}", self.text);
        assert_eq!(self.json["error"], error, "error of {}", self.text);
        assert_eq!(
            self.json["error_description"], description,
            "description of {}",
            self.text
        );
        assert_eq!(
            self.headers["content-type"], "application/json; charset=utf-8",
            "content type"
        );
    }
}

/// Extension for reading the manual clock as plain seconds.
pub trait ClockExt {
    fn now_secs(&self) -> i64;
}

impl ClockExt for ManualClock {
    fn now_secs(&self) -> i64 {
        use vedauth::clock::Clock;
        self.now()
    }
}

impl ManualClockExt for Arc<ManualClock> {
    fn now_secs_for_tests(&self) -> i64 {
        self.now_secs()
    }
}

/// The same, callable on the `Arc` the server holds without importing the trait.
pub trait ManualClockExt {
    fn now_secs_for_tests(&self) -> i64;
}

/// The wall clock, for what tests make outside a server (certificates, files).
pub fn wall_now() -> i64 {
    vedauth::clock::Clock::now(&vedauth::clock::SystemClock)
}

/// A scope in its canonical form, for records the tests write straight into a store.
pub fn canon(s: &str) -> vedauth::domain::CanonicalScope {
    vedauth::domain::CanonicalScope::parse(s).expect("a valid scope")
}

/// An application with this scope and nothing else set, as the tests store one.
pub fn app_record(client_id: &str, scope: &str, created_at: i64) -> Application {
    Application {
        client_id: client_id.into(),
        name: client_id.into(),
        vendor: "tests".into(),
        description: String::new(),
        url: String::new(),
        scope: scope.into(),
        max_scope: canon(scope),
        access_validity: None,
        grant_validity: None,
        renewable: None,
        unused_expiration: None,
        created_at,
    }
}

/// An application with this scope that everyone may use, written straight into a store (for
/// tests that assemble an engine of their own).
pub async fn app_for_everyone(store: &vedauth::store::SharedStore, client_id: &str, scope: &str) {
    store
        .create_application(&app_record(client_id, scope, 0))
        .await
        .expect("app");
    store
        .create_rule(&rule_record(client_id, "everyone", None, 0))
        .await
        .expect("rule");
}

/// A rule for `trustee` with nothing but its scope limit set, as the tests store one.
pub fn rule_record(
    client_id: &str,
    trustee: &str,
    max_scope: Option<vedauth::domain::CanonicalScope>,
    created_at: i64,
) -> Rule {
    Rule {
        client_id: client_id.into(),
        trustee: trustee.into(),
        description: String::new(),
        max_scope,
        access_validity: None,
        grant_validity: None,
        renewable: None,
        created_at,
    }
}

/// Asks every 20 ms until the answer is 401, for at most `limit` from now; every answer before
/// it must be 200. For changes that reach a server asynchronously (another node, the CLI).
pub async fn refused_within<F, Fut>(limit: std::time::Duration, what: &str, ask: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = StatusCode>,
{
    settles_within(limit, what, StatusCode::UNAUTHORIZED, StatusCode::OK, ask).await
}

/// The other way round: until the answer is 200, every answer before it 401.
pub async fn accepted_within<F, Fut>(limit: std::time::Duration, what: &str, ask: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = StatusCode>,
{
    settles_within(limit, what, StatusCode::OK, StatusCode::UNAUTHORIZED, ask).await
}

async fn settles_within<F, Fut>(
    limit: std::time::Duration,
    what: &str,
    want: StatusCode,
    before: StatusCode,
    ask: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = StatusCode>,
{
    let start = std::time::Instant::now();
    loop {
        let status = ask().await;
        if status == want {
            return;
        }
        assert_eq!(status, before, "{what}");
        assert!(
            start.elapsed() < limit,
            "{what}: still {before} after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
