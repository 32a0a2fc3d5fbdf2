//! The transport under attack: connections that say nothing (TCP, TLS, HTTP/2), idle and
//! stalled HTTP/2 connections, one address taking every slot, requests hyper cannot parse,
//! and the TLS files: a key that is not the certificate's, missing files, whole-file writes.
//!
//! Deadlines are set to a second or two in these tests; every wait for the server to act is
//! bounded by [`BOUND`], far above them (a bound, not a speed assertion).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use vedauth::assembly::Assembly;
use vedauth::clock::ManualClock;
use vedauth::config::{Config, HttpConfig};
use vedauth::password::HashParams;
use vedauth::runtime;
use vedauth::tls::{ensure_generated, TlsPaths};

use crate::common::{client_for, Options, Reply, TestServer};

const BOUND: Duration = Duration::from_secs(30);
const PROBE: &str = "/vedauth/authorize/isAuthServer";

/// Options with plain HTTP, no HTTP/2 pings (each test turns on what it exercises) and
/// `tune` applied.
fn plain(tune: impl FnOnce(&mut HttpConfig)) -> Options {
    let mut o = Options::default();
    o.config.tls = false;
    o.config.http.h2_keepalive_interval_secs = 0;
    tune(&mut o.config.http);
    o
}

fn tls(tune: impl FnOnce(&mut HttpConfig)) -> Options {
    let mut o = plain(tune);
    o.config.tls = true;
    o
}

/// Reads until the server closes the connection. Returns whether it did within `bound`, and
/// what it sent meanwhile.
async fn closed_by_server<R: AsyncRead + Unpin>(r: &mut R, bound: Duration) -> (bool, Vec<u8>) {
    let mut seen = Vec::new();
    let done = tokio::time::timeout(bound, async {
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    (done.is_ok(), seen)
}

fn tls_connector(ca: &Path, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).expect("read CA");
    for c in rustls_pemfile_certs(&pem) {
        roots.add(c).expect("add CA");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .expect("PEM")
}

async fn tls_connect(s: &TestServer, alpn: &[&[u8]]) -> tokio_rustls::client::TlsStream<TcpStream> {
    let ca = s.launched.ca_file.clone().expect("generated CA");
    let tcp = TcpStream::connect(s.launched.handle.local_addr)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    tls_connector(&ca, alpn)
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

// --- TLS files ---

/// Opens an app on `dir` and launches it; the launch error's text, if it failed.
async fn try_launch(dir: &Path, config: Config) -> Result<TestServerLite, String> {
    let listen = config.listen_addr().expect("listen");
    let app = Arc::new(
        Assembly::open(
            config,
            dir,
            Arc::new(ManualClock::starting_now()),
            Some(HashParams::insecure_for_tests()),
        )
        .await
        .map_err(|e| e.to_string())?,
    );
    let launched = runtime::start(app, listen)
        .await
        .map_err(|e| format!("{e:#}"))?;
    Ok(TestServerLite { launched })
}

struct TestServerLite {
    launched: vedauth::runtime::Runtime,
}

impl TestServerLite {
    /// Whether a client trusting `ca` gets an answer.
    async fn serves_with(&self, ca: &Path) -> bool {
        let url = format!("{}{PROBE}", self.launched.handle.base_url());
        match client_for(Some(ca)).get(url).send().await {
            Ok(r) => r.status().as_u16() == 202,
            Err(_) => false,
        }
    }

    async fn stop(self) {
        self.launched.shutdown().await;
    }
}

fn test_config() -> Config {
    Options::default().config
}

/// A second, unrelated CA and server certificate.
fn other_pair(tmp: &Path) -> TlsPaths {
    let paths = TlsPaths::in_dir(&tmp.join("other"));
    assert!(ensure_generated(&paths, crate::common::wall_now()).expect("generate"));
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_is_not_the_certificates_is_refused_at_start() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = TlsPaths::in_dir(&tmp.path().join("a"));
    assert!(ensure_generated(&a, crate::common::wall_now()).expect("generate"));
    let b = other_pair(tmp.path());
    // Configured files.
    let mut config = test_config();
    config.tls_cert_file = Some(a.cert.clone());
    config.tls_key_file = Some(b.key.clone());
    let err = try_launch(&tmp.path().join("data1"), config)
        .await
        .err()
        .expect("a mismatched pair must not start");
    assert!(err.contains("does not belong"), "{err}");
    assert!(err.contains(&a.cert.display().to_string()), "{err}");
    assert!(err.contains(&b.key.display().to_string()), "{err}");
    // The generated files in the data directory.
    let data = tmp.path().join("data2");
    let started = try_launch(&data, test_config()).await.expect("first start");
    started.stop().await;
    let mine = TlsPaths::in_dir(&data);
    std::fs::copy(&b.key, &mine.key).expect("copy key");
    let err = try_launch(&data, test_config())
        .await
        .err()
        .expect("a mismatched pair must not start");
    assert!(err.contains("does not belong"), "{err}");
    assert!(err.contains("server.key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_is_not_the_certificates_is_refused_on_reload() {
    let s = TestServer::start().await;
    let certs = s.launched.certs.clone().expect("TLS");
    let ca = s.launched.ca_file.clone().expect("CA");
    let tmp = tempfile::tempdir().expect("tmp");
    let other = other_pair(tmp.path());
    std::fs::copy(&other.key, s.dir.join("tls/server.key")).expect("copy key");
    let err = certs.reload().expect_err("the reload must fail");
    assert!(err.to_string().contains("does not belong"), "{err}");
    // The old pair still serves new connections.
    let fresh = client_for(Some(&ca));
    let r = fresh.get(s.url(PROBE)).send().await.expect("handshake");
    assert_eq!(r.status().as_u16(), 202);
    // A pair that matches is taken.
    std::fs::copy(&other.cert, s.dir.join("tls/server.crt")).expect("copy cert");
    certs.reload().expect("a matching pair reloads");
    let r = client_for(Some(&other.ca_cert))
        .get(s.url(PROBE))
        .send()
        .await
        .expect("handshake with the new pair");
    assert_eq!(r.status().as_u16(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_server_key_or_certificate_is_reissued_by_the_same_ca() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let paths = TlsPaths::in_dir(&data);
    try_launch(&data, test_config())
        .await
        .expect("first start")
        .stop()
        .await;
    let ca_before = std::fs::read(&paths.ca_cert).expect("ca.crt");
    let ca_key_before = std::fs::read(&paths.ca_key).expect("ca.key");
    // A client that pinned the CA at first start.
    let pinned = tmp.path().join("pinned-ca.crt");
    std::fs::write(&pinned, &ca_before).expect("pin");
    for lost in [&paths.key, &paths.cert] {
        let leaf_before = std::fs::read(&paths.cert).expect("server.crt");
        std::fs::remove_file(lost).expect("remove");
        let s = try_launch(&data, test_config())
            .await
            .expect("starts with a new server certificate");
        assert_eq!(std::fs::read(&paths.ca_cert).expect("ca.crt"), ca_before);
        assert_eq!(std::fs::read(&paths.ca_key).expect("ca.key"), ca_key_before);
        assert_ne!(
            std::fs::read(&paths.cert).expect("server.crt"),
            leaf_before,
            "a new server certificate"
        );
        assert!(
            s.serves_with(&pinned).await,
            "the pinned CA still works after losing {}",
            lost.display()
        );
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incomplete_ca_stops_the_start_with_a_way_out() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (lost, names) in [
        (vec!["ca.crt"], "ca.crt"),
        (vec!["ca.key", "server.key"], "ca.key, server.key"),
    ] {
        let data = tmp.path().join(lost.join("-"));
        let paths = TlsPaths::in_dir(&data);
        try_launch(&data, test_config())
            .await
            .expect("first start")
            .stop()
            .await;
        let ca_key = std::fs::read(&paths.ca_key).expect("ca.key");
        for f in &lost {
            std::fs::remove_file(data.join("tls").join(f)).expect("remove");
        }
        let err = try_launch(&data, test_config())
            .await
            .err()
            .expect("must not make a new CA by itself");
        assert!(err.contains(&format!("{names} missing")), "{err}");
        assert!(err.contains("remove the directory"), "{err}");
        assert!(
            err.contains(&data.join("tls").display().to_string()),
            "{err}"
        );
        // Nothing was replaced.
        if !lost.contains(&"ca.key") {
            assert_eq!(std::fs::read(&paths.ca_key).expect("ca.key"), ca_key);
        }
        assert!(!paths.ca_cert.exists() || !lost.contains(&"ca.crt"));
        // The way out it names works: a new CA.
        std::fs::remove_dir_all(data.join("tls")).expect("remove tls");
        let s = try_launch(&data, test_config()).await.expect("starts over");
        assert!(s.serves_with(&paths.ca_cert).await);
        s.stop().await;
    }
}

#[test]
fn key_and_certificate_files_are_replaced_whole() {
    let tmp = tempfile::tempdir().expect("tmp");
    let target = tmp.path().join("server.key");
    std::fs::write(&target, "old").expect("write");
    // A second name for the same file: an in-place write would change it too.
    let twin = tmp.path().join("twin");
    std::fs::hard_link(&target, &twin).expect("link");
    vedauth::bootstrap::write_private_or_public(&target, b"new", true).expect("write");
    assert_eq!(std::fs::read_to_string(&target).expect("read"), "new");
    assert_eq!(std::fs::read_to_string(&twin).expect("read"), "old");
    let names: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .expect("list")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A first start writes the whole tls directory at once.
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    assert!(
        ensure_generated(&TlsPaths::in_dir(&data), crate::common::wall_now()).expect("generate")
    );
    let left: Vec<_> = std::fs::read_dir(&data)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("tls")]);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_data_directory_that_cannot_be_made_private_is_refused() {
    // procfs refuses chmod even to root: a directory whose mode cannot be set.
    let err = Assembly::open(
        test_config(),
        Path::new("/proc/self/fdinfo"),
        Arc::new(ManualClock::starting_now()),
        Some(HashParams::insecure_for_tests()),
    )
    .await
    .expect_err("must refuse")
    .to_string();
    assert!(err.contains("/proc/self/fdinfo"), "{err}");
    assert!(err.contains("0700"), "{err}");
}

// --- HTTP/2 frames, written by hand so that the client can misbehave exactly ---

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SETTINGS: u8 = 4;
const HEADERS: u8 = 1;
const DATA: u8 = 0;
const GOAWAY: u8 = 7;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small frame");
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (id, v) in pairs {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &p)
}

/// `GET path` on `stream`, the whole request in one HEADERS frame (HPACK without indexing).
fn get(stream: u32, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    for (name_index, value) in [(4u8, path), (1u8, "localhost")] {
        block.push(name_index); // literal without indexing, indexed name (:path, :authority)
        block.push(u8::try_from(value.len()).expect("short value"));
        block.extend_from_slice(value.as_bytes());
    }
    frame(HEADERS, 0x4 | 0x1, stream, &block) // END_HEADERS | END_STREAM
}

/// (type, stream) of each whole frame in what the server sent.
fn frames(mut bytes: &[u8]) -> Vec<(u8, u32)> {
    let mut out = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
        out.push((bytes[3], stream));
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    out
}

// --- Connections that say nothing ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_half_sent_tcp_connections_are_closed() {
    let s = TestServer::start_with(plain(|h| {
        h.header_read_timeout_secs = 1;
        h.idle_timeout_secs = 600;
    }))
    .await;
    let addr = s.launched.handle.local_addr;
    // Nothing; the start of the HTTP/2 preface; an HTTP/1.1 head that never ends.
    for sent in [
        &b""[..],
        b"PRI * HTTP/2.0\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n",
    ] {
        let mut c = TcpStream::connect(addr).await.expect("connect");
        c.write_all(sent).await.expect("write");
        let (closed, _) = closed_by_server(&mut c, BOUND).await;
        assert!(
            closed,
            "a connection that sent {:?} is still open",
            String::from_utf8_lossy(sent)
        );
    }
    // And the server still serves.
    let r = s.client.get(s.url(PROBE)).send().await.expect("send");
    assert_eq!(r.status().as_u16(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tls_connections_are_closed_after_the_handshake() {
    let s = TestServer::start_with(tls(|h| {
        h.header_read_timeout_secs = 1;
        h.idle_timeout_secs = 600;
        h.tls_handshake_timeout_secs = 1;
    }))
    .await;
    for alpn in [&[&b"h2"[..]][..], &[b"http/1.1"], &[]] {
        let mut c = tls_connect(&s, alpn).await;
        let (closed, _) = closed_by_server(&mut c, BOUND).await;
        assert!(
            closed,
            "a silent TLS connection (ALPN {alpn:?}) is still open"
        );
    }
    // A client that never starts the handshake.
    let mut c = TcpStream::connect(s.launched.handle.local_addr)
        .await
        .expect("connect");
    let (closed, _) = closed_by_server(&mut c, BOUND).await;
    assert!(closed, "a connection without a handshake is still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_that_sends_only_its_preface_is_closed() {
    let s = TestServer::start_with(plain(|h| {
        h.header_read_timeout_secs = 1;
        h.idle_timeout_secs = 600;
        h.request_timeout_secs = 1;
    }))
    .await;
    let mut c = TcpStream::connect(s.launched.handle.local_addr)
        .await
        .expect("connect");
    // The preface and settings with a zero flow-control window, then nothing (no ack either).
    let mut hello = PREFACE.to_vec();
    hello.extend(settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 0)]));
    c.write_all(&hello).await.expect("write");
    let (closed, seen) = closed_by_server(&mut c, BOUND).await;
    assert!(closed, "a silent HTTP/2 connection is still open");
    let kinds: Vec<u8> = frames(&seen).iter().map(|f| f.0).collect();
    assert_eq!(kinds.first(), Some(&SETTINGS), "spoke HTTP/2: {kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let s = TestServer::start_with(plain(|h| {
        h.header_read_timeout_secs = 600;
        h.idle_timeout_secs = 1;
        h.request_timeout_secs = 2;
    }))
    .await;
    let mut c = TcpStream::connect(s.launched.handle.local_addr)
        .await
        .expect("connect");
    let mut hello = PREFACE.to_vec();
    hello.extend(settings(&[]));
    hello.extend(frame(SETTINGS, 1, 0, &[])); // ack of the server's (sent before it arrives)
    hello.extend(get(1, PROBE));
    c.write_all(&hello).await.expect("write");
    let (closed, seen) = closed_by_server(&mut c, BOUND).await;
    assert!(closed, "an idle HTTP/2 connection is still open");
    let f = frames(&seen);
    assert!(f.contains(&(HEADERS, 1)), "the request was answered: {f:?}");
    assert!(f.contains(&(DATA, 1)), "the answer's body was sent: {f:?}");
    assert!(f.contains(&(GOAWAY, 0)), "the server said goodbye: {f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_answer_stuck_behind_a_zero_window_is_closed() {
    let s = TestServer::start_with(plain(|h| {
        h.header_read_timeout_secs = 600;
        h.idle_timeout_secs = 1;
        h.request_timeout_secs = 1;
    }))
    .await;
    let mut c = TcpStream::connect(s.launched.handle.local_addr)
        .await
        .expect("connect");
    let mut hello = PREFACE.to_vec();
    hello.extend(settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 0)]));
    hello.extend(get(1, PROBE));
    c.write_all(&hello).await.expect("write");
    let (closed, seen) = closed_by_server(&mut c, BOUND).await;
    assert!(
        closed,
        "a stream the client never lets finish keeps the connection open"
    );
    let f = frames(&seen);
    assert!(f.contains(&(HEADERS, 1)), "the answer began: {f:?}");
    assert!(
        !f.contains(&(DATA, 1)),
        "no body through a zero window: {f:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_does_not_answer_pings_is_closed() {
    let s = TestServer::start_with(plain(|h| {
        h.header_read_timeout_secs = 600;
        h.idle_timeout_secs = 600;
        h.h2_keepalive_interval_secs = 1;
        h.h2_keepalive_timeout_secs = 1;
    }))
    .await;
    let mut c = TcpStream::connect(s.launched.handle.local_addr)
        .await
        .expect("connect");
    let mut hello = PREFACE.to_vec();
    hello.extend(settings(&[]));
    c.write_all(&hello).await.expect("write");
    let (closed, seen) = closed_by_server(&mut c, BOUND).await;
    assert!(closed, "a client deaf to pings is still connected");
    let kinds: Vec<u8> = frames(&seen).iter().map(|f| f.0).collect();
    assert!(kinds.contains(&6), "the server pinged: {kinds:?}");
}

/// The header read timeout holds for every request of a keep-alive connection, not only the
/// first: after an answer, a connection that sends nothing more and one whose next head never
/// ends are both cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http1_connection_is_closed_after_the_header_timeout() {
    let s = TestServer::start_with(plain(|h| {
        h.header_read_timeout_secs = 1;
        h.idle_timeout_secs = 600;
    }))
    .await;
    let request = format!("GET {PROBE} HTTP/1.1\r\nHost: x\r\n\r\n");
    for then in ["", "GET / HTTP/1.1\r\nHost: x\r\n"] {
        let mut c = TcpStream::connect(s.launched.handle.local_addr)
            .await
            .expect("connect");
        c.write_all(format!("{request}{then}").as_bytes())
            .await
            .expect("write");
        let (closed, seen) = closed_by_server(&mut c, BOUND).await;
        assert!(closed, "still open after an answer and {then:?}");
        let seen = String::from_utf8_lossy(&seen);
        assert!(seen.starts_with("HTTP/1.1 202"), "{seen}");
        assert_eq!(seen.matches("HTTP/1.1 ").count(), 1, "{seen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_holding_every_slot_are_closed_and_a_real_client_is_served() {
    const N: usize = 4;
    let s = TestServer::start_with(plain(|h| {
        h.max_connections = N;
        h.header_read_timeout_secs = 1;
    }))
    .await;
    let addr = s.launched.handle.local_addr;
    let mut silent = Vec::new();
    for _ in 0..N {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // Queued behind them in the backlog: answered once the deadline has freed the slots.
    let r = tokio::time::timeout(BOUND, s.client.get(s.url(PROBE)).send())
        .await
        .expect("the request waited past the bound: silent sockets hold every slot")
        .expect("send");
    assert_eq!(r.status().as_u16(), 202);
    for mut c in silent {
        let (closed, _) = closed_by_server(&mut c, BOUND).await;
        assert!(closed);
    }
}

async fn connect_from(ip: &str, to: std::net::SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.bind(format!("{ip}:0").parse().expect("addr"))
        .expect("bind");
    sock.connect(to).await.expect("connect")
}

/// One HTTP/1.1 request on `c`; the answer's head and body.
async fn raw_request(c: &mut TcpStream, path: &str) -> String {
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let (closed, seen) = closed_by_server(c, BOUND).await;
    assert!(closed, "no complete answer");
    String::from_utf8_lossy(&seen).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_at_its_cap_is_refused_while_another_is_served() {
    let s = TestServer::start_with(plain(|h| {
        h.max_connections_per_address = 3;
        // Far beyond the waits below: only the cap can close a connection here.
        h.header_read_timeout_secs = 120;
    }))
    .await;
    let addr = s.launched.handle.local_addr;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.1", addr).await);
    }
    let mut fourth = connect_from("127.0.0.1", addr).await;
    let (closed, seen) = closed_by_server(&mut fourth, BOUND).await;
    assert!(closed, "a fourth connection from one address was kept");
    assert!(seen.is_empty(), "refused without an answer");
    // Another loopback address has its own budget.
    let mut other = connect_from("127.0.0.2", addr).await;
    let answer = raw_request(&mut other, PROBE).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    // Once one of the three leaves, the first address gets a slot again.
    drop(held.pop());
    let mut served = false;
    for _ in 0..50 {
        let mut c = connect_from("127.0.0.1", addr).await;
        if raw_request(&mut c, PROBE).await.starts_with("HTTP/1.1 202") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "the slot was never given back");
}

// --- Errors hyper answers by itself, and the configured header limits ---

/// Status, lower-cased head and body of a raw HTTP/1.1 answer.
fn parse_answer(raw: &[u8]) -> (u16, String, String) {
    let text = String::from_utf8_lossy(raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn assert_json_error(raw: &[u8], status: u16, hsts: bool) -> String {
    let (got, head, body) = parse_answer(raw);
    assert_eq!(got, status, "{head}\n{body}");
    assert!(
        head.contains("\r\ncontent-type: application/json; charset=utf-8\r\n"),
        "{head}"
    );
    assert_eq!(
        head.contains("\r\nstrict-transport-security: max-age="),
        hsts,
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
        "{head}"
    );
    let v: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(v["error"], "invalid_request", "{body}");
    v["error_description"]
        .as_str()
        .filter(|d| !d.is_empty())
        .expect("a description")
        .to_string()
}

async fn send_raw<S: AsyncRead + tokio::io::AsyncWrite + Unpin>(
    c: &mut S,
    bytes: &[u8],
) -> Vec<u8> {
    c.write_all(bytes).await.expect("write");
    let (closed, seen) = closed_by_server(c, BOUND).await;
    assert!(closed, "the server kept the connection after its answer");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_hyper_refuses_get_the_json_error() {
    let s = TestServer::start_with(plain(|_| {})).await;
    let addr = s.launched.handle.local_addr;
    let huge = format!(
        "GET {PROBE} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let many = format!(
        "GET {PROBE} HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..150)
            .map(|i| format!("X-{i}: 1\r\n"))
            .collect::<String>()
    );
    for (request, status) in [
        (b"GARBAGE\r\n\r\n".to_vec(), 400),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n".to_vec(),
            400,
        ),
        (huge.into_bytes(), 431),
        (many.into_bytes(), 431),
    ] {
        let mut c = TcpStream::connect(addr).await.expect("connect");
        let raw = send_raw(&mut c, &request).await;
        assert_json_error(&raw, status, false);
    }
    // Over HTTPS, with HSTS.
    let s = TestServer::start_with(tls(|_| {})).await;
    let mut c = tls_connect(&s, &[b"http/1.1"]).await;
    let raw = send_raw(&mut c, b"GARBAGE\r\n\r\n").await;
    let description = assert_json_error(&raw, 400, true);
    assert_eq!(description, "The request could not be parsed as HTTP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_header_limits_answer_431_in_json() {
    let s = TestServer::start_with(plain(|h| {
        h.max_header_bytes = 4096;
        h.max_headers = 16;
    }))
    .await;
    let addr = s.launched.handle.local_addr;
    let big = format!(
        "GET {PROBE} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(5000)
    );
    let many = format!(
        "GET {PROBE} HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
        (0..20).map(|i| format!("X-{i}: 1\r\n")).collect::<String>()
    );
    let within = format!(
        "GET {PROBE} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(3000)
    );
    let mut c = TcpStream::connect(addr).await.expect("connect");
    let d = assert_json_error(&send_raw(&mut c, big.as_bytes()).await, 431, false);
    assert_eq!(d, "The request header fields are too large");
    let mut c = TcpStream::connect(addr).await.expect("connect");
    let d = assert_json_error(&send_raw(&mut c, many.as_bytes()).await, 431, false);
    assert_eq!(d, "The request has too many header fields");
    let mut c = TcpStream::connect(addr).await.expect("connect");
    let (status, _, _) = parse_answer(&send_raw(&mut c, within.as_bytes()).await);
    assert_eq!(status, 202);

    // HTTP/2 the same.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let r = h2
        .get(s.url(PROBE))
        .header("x-big", "a".repeat(5000))
        .send()
        .await
        .expect("send");
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    Reply::read(r).await.assert_error(
        431,
        "invalid_request",
        "The request header fields are too large",
    );
    let r = h2
        .get(s.url(PROBE))
        .header("x-big", "a".repeat(3000))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 202);
}

#[tokio::test]
async fn the_json_431_carries_hsts_over_https() {
    // The JSON 431 of the configured limits goes through the same HSTS path as any answer.
    let s = TestServer::start_with(tls(|h| h.max_headers = 8)).await;
    let mut req = s.client.get(s.url(PROBE));
    for i in 0..12 {
        req = req.header(format!("x-{i}"), "1");
    }
    let r = Reply::read(req.send().await.expect("send")).await;
    assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(r.headers["strict-transport-security"], "max-age=31536000");
}
