//! The command line as a person or a script meets it, through the built binary: passwords at a
//! terminal (a real pseudo-terminal) and on stdin, configuration errors, `--json` errors,
//! `--help`, the JSON start-up banner, `status` against a server that never answers, and what
//! the build script watches.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::binary::{admin, grant, Served};
use crate::common::refused_within;

const BIN: &str = env!("CARGO_BIN_EXE_vedauth");

/// Runs a command on a new pseudo-terminal (Python's `pty`, which makes it the controlling
/// terminal, as a login shell's would be) and plays a dialogue: for each (prompt, reply), wait
/// for the prompt, then for the terminal's echo to be off, then type the reply. Returns what
/// the terminal showed and the exit code. Bounded: 60 s in all.
const PTY_DRIVER: &str = r#"
import json, os, pty, select, sys, termios, time
argv, dialogue = json.loads(sys.argv[1]), json.loads(sys.argv[2])
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
deadline = time.time() + 60
seen = b""
def read_some():
    global seen
    r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.time()))
    if not r:
        return False
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        chunk = b""
    seen += chunk
    return bool(chunk)
for prompt, reply in dialogue:
    while prompt.encode() not in seen:
        if not read_some():
            break
    # Type only once the program has turned echo off (the master reports the slave's modes).
    while termios.tcgetattr(fd)[3] & termios.ECHO and time.time() < deadline:
        time.sleep(0.01)
    os.write(fd, reply.encode())
while read_some():
    pass
if time.time() >= deadline:
    os.kill(pid, 9)
_, status = os.waitpid(pid, 0)
print(json.dumps({"screen": seen.decode("utf-8", "replace"), "code": os.waitstatus_to_exitcode(status)}))
"#;

fn on_terminal(args: &[&str], dialogue: &[(&str, &str)]) -> (String, i64) {
    let argv: Vec<&str> = std::iter::once(BIN).chain(args.iter().copied()).collect();
    let out = Command::new("python3")
        .args([
            "-c",
            PTY_DRIVER,
            &serde_json::to_string(&argv).expect("json"),
            &serde_json::to_string(dialogue).expect("json"),
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "pty driver: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("driver output");
    (
        v["screen"].as_str().unwrap_or_default().to_string(),
        v["code"].as_i64().unwrap_or(-1),
    )
}

/// The binary with stdin closed; (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run vedauth");
    triple(out)
}

fn triple(out: Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn data(dir: &Path) -> &str {
    dir.to_str().expect("utf-8 path")
}

/// A client, an application everyone may use, and a user with a password, for checking which
/// password a user has: a wrong one is 401 with row 7's text, the right one 200.
async fn password_works(s: &Served, user: &str, pw: &str) -> bool {
    let r = grant(&s.client(), &s.base, "pw-app", user, pw, "certificate").await;
    match r.status {
        StatusCode::OK => true,
        StatusCode::UNAUTHORIZED => false,
        other => panic!("unexpected {other}: {}", r.text),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_terminal_user_add_and_passwd_prompt_twice_without_echo_and_refuse_a_mismatch() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let s = Served::start(&dir, &[]);
    admin(
        &dir,
        &["app", "add", "pw-app", "--scope", "certificate"],
        None,
    );
    admin(&dir, &["app", "allow", "pw-app", "everyone"], None);

    let (screen, code) = on_terminal(
        &["--data-dir", data(&dir), "user", "add", "carol"],
        &[
            ("New password for carol: ", "Carol-First-Pw-1\r"),
            ("Type it again: ", "Carol-First-Pw-1\r"),
        ],
    );
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("created carol"), "{screen}");
    assert!(!screen.contains("Carol-First-Pw-1"), "echoed: {screen}");
    assert!(password_works(&s, "carol", "Carol-First-Pw-1").await);

    // Two different entries: refused, and the password stays what it was.
    let (screen, code) = on_terminal(
        &["--data-dir", data(&dir), "user", "passwd", "carol"],
        &[
            ("New password for carol: ", "Carol-Second-Pw-2\r"),
            ("Type it again: ", "Carol-Typo-Pw-2\r"),
        ],
    );
    assert_ne!(code, 0, "{screen}");
    assert!(screen.contains("do not match"), "{screen}");
    assert!(password_works(&s, "carol", "Carol-First-Pw-1").await);

    let (screen, code) = on_terminal(
        &["--data-dir", data(&dir), "user", "passwd", "carol"],
        &[
            ("New password for carol: ", "Carol-Second-Pw-2\r"),
            ("Type it again: ", "Carol-Second-Pw-2\r"),
        ],
    );
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("password of carol changed"), "{screen}");
    assert!(!screen.contains("Carol-Second-Pw-2"), "echoed: {screen}");
    assert!(password_works(&s, "carol", "Carol-Second-Pw-2").await);
    assert!(!password_works(&s, "carol", "Carol-First-Pw-1").await);

    // A mismatch on `user add` creates nobody.
    let (screen, code) = on_terminal(
        &["--data-dir", data(&dir), "user", "add", "dan"],
        &[
            ("New password for dan: ", "Dan-Pw-1\r"),
            ("Type it again: ", "Dan-Pw-2\r"),
        ],
    );
    assert_ne!(code, 0, "{screen}");
    let users = admin(&dir, &["user", "list"], None);
    assert!(!users.contains("dan"), "{users}");
    s.sigterm();
    assert!(s.wait().0.success());
}

/// `--password-stdin` with the writer's end left open: the command must finish on the first
/// line, not wait for the end of input.
fn with_one_line_on_open_stdin(args: &[&str], line: &str) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(line.as_bytes()).expect("write");
    stdin.flush().expect("flush");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("vedauth {args:?} still waits for the end of stdin after one line");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    drop(stdin);
    triple(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_stdin_reads_one_line_while_the_input_stays_open() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let s = Served::start(&dir, &[]);
    admin(
        &dir,
        &["app", "add", "pw-app", "--scope", "certificate"],
        None,
    );
    admin(&dir, &["app", "allow", "pw-app", "everyone"], None);
    let d = data(&dir);
    let (code, out, err) = with_one_line_on_open_stdin(
        &["--data-dir", d, "user", "add", "erin", "--password-stdin"],
        "Erin-Password-1\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(password_works(&s, "erin", "Erin-Password-1").await);
    let (code, out, err) = with_one_line_on_open_stdin(
        &[
            "--data-dir",
            d,
            "user",
            "passwd",
            "erin",
            "--password-stdin",
        ],
        "Erin-Password-2\r\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(password_works(&s, "erin", "Erin-Password-2").await);
    s.sigterm();
    assert!(s.wait().0.success());
}

#[test]
fn without_a_terminal_or_password_stdin_no_password_is_made_up() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path().join("data");
    let d = data(&d);
    let (code, out, err) = run(&["--data-dir", d, "user", "add", "frank"]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("--password-stdin"), "{err}");
    assert!(!out.contains("created"), "{out}");
    let (_, list, _) = run(&["--data-dir", d, "user", "list", "--json"]);
    let users: Value = serde_json::from_str(&list).expect("json");
    assert_eq!(users.as_array().map(Vec::len), Some(0), "{users}");
    let (code, _, err) = run(&["--data-dir", d, "user", "passwd", "frank"]);
    assert_ne!(code, 0);
    assert!(err.contains("User 'frank' not found"), "{err}");
}

#[test]
fn config_errors_name_the_key_the_file_the_line_and_the_column() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("vedauth.toml");
    let f = file.to_str().expect("utf-8");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9443\"\n[tokens]\nsweep_batch = \"five\"\n",
    )
    .expect("write");
    let (code, _, err) = run(&["config", "check", f]);
    assert_ne!(code, 0);
    assert_eq!(
        err.trim(),
        format!(
            "vedauth: {f}:3:15: tokens.sweep_batch: invalid type: string \"five\", expected u32"
        )
    );
    std::fs::write(&file, "listen = \"127.0.0.1:9443\" 9443\n").expect("write");
    let (code, _, err) = run(&["config", "check", f]);
    assert_ne!(code, 0);
    assert!(
        err.starts_with(&format!("vedauth: {f}:1:27: listen: ")),
        "{err}"
    );
    // The same through --config on any command.
    let (code, _, err) = run(&["--config", f, "user", "list"]);
    assert_ne!(code, 0);
    assert!(
        err.starts_with(&format!("vedauth: {f}:1:27: listen: ")),
        "{err}"
    );
}

#[test]
fn a_missing_configuration_file_is_an_error_said_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let missing = tmp.path().join("nope.toml");
    let m = missing.to_str().expect("utf-8");
    let d = tmp.path().join("data");
    let d = data(&d);
    for args in [
        vec!["config", "check", m],
        vec!["--config", m, "config", "check"],
        vec!["--data-dir", d, "--config", m, "user", "list"],
    ] {
        let (code, out, err) = run(&args);
        assert_ne!(code, 0, "{args:?}: {out}");
        assert!(!out.contains("ok"), "{out}");
        assert_eq!(
            err.matches("No such file or directory").count(),
            1,
            "{args:?}: {err}"
        );
        assert!(err.contains(m), "{err}");
    }
    // No file at the default place is not an error (defaults apply), and is not called "ok".
    let (code, out, err) = run(&["--data-dir", d, "config", "check"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("no configuration file at"), "{out}");
    let (_, out, _) = run(&["--data-dir", d, "config", "check", "--json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        (v["exists"].clone(), v["valid"].clone()),
        (false.into(), true.into())
    );
    let (_, out, _) = run(&[
        "--data-dir",
        d,
        "config",
        "set",
        "RefreshEndpointEnabled",
        "true",
        "--json",
    ]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["name"], "RefreshEndpointEnabled");
}

/// What `build.rs` told cargo to watch, from this very build's record of it: the files that
/// name the revision (HEAD, the branch, packed-refs), never the index, which `git status`
/// rewrites (a rebuild of the whole binary after the first admin command on a fresh clone).
#[test]
fn the_build_script_watches_what_names_the_revision_not_the_index() {
    let out_dir = Path::new(env!("OUT_DIR"));
    let record = out_dir
        .parent()
        .map(|d| d.join("output"))
        .expect("build directory");
    let record = std::fs::read_to_string(&record).expect("the build script's output");
    let watched: Vec<std::path::PathBuf> = record
        .lines()
        .filter_map(|l| {
            l.strip_prefix("cargo:rerun-if-changed=")
                .or_else(|| l.strip_prefix("cargo::rerun-if-changed="))
        })
        .map(|p| Path::new(env!("CARGO_MANIFEST_DIR")).join(p))
        .collect();
    assert!(!watched.is_empty(), "{record}");
    assert!(
        !watched.iter().any(|p| p.ends_with("index")),
        "the index is watched:\n{record}"
    );
    let git = |args: &[&str]| -> Option<String> {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let watched: Vec<_> = watched.iter().map(|p| canonical(p)).collect();
    let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) else {
        return; // not built from a git checkout: nothing else to watch
    };
    let head = canonical(&Path::new(env!("CARGO_MANIFEST_DIR")).join(head));
    assert!(watched.contains(&head), "{head:?} not in\n{record}");
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        let file = git(&["rev-parse", "--git-path", &branch]).expect("git-path");
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let expect = if file.exists() {
            canonical(&file)
        } else {
            canonical(file.parent().expect("refs directory"))
        };
        assert!(watched.contains(&expect), "{expect:?} not in\n{record}");
    }
    // The version names the revision it was built from, and only that.
    let rev = git(&["rev-parse", "--short=12", "HEAD"]).expect("rev");
    let (_, version, _) = run(&["--version"]);
    assert_eq!(version.trim(), format!("vedauth 0.1.0 (git {rev})"));
}

/// PostgreSQL over TLS trusts the system's certificate authorities, as the directory
/// connections do: an enterprise CA installed on the machine works for both. The CA here is
/// made for the test and named by `SSL_CERT_FILE`, which the system-store loader honours in
/// place of the distribution's bundle (so the test leaves the machine's store alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tls_trusts_the_systems_certificate_authorities() {
    use sqlx::{Connection, Executor, Row};
    use std::os::unix::fs::MetadataExt;
    let cluster = tokio::task::spawn_blocking(crate::pg::Cluster::start)
        .await
        .expect("cluster");
    // A CA and a certificate for 127.0.0.1, installed in the cluster's data directory.
    let tmp = tempfile::tempdir().expect("tmp");
    let paths = vedauth::tls::TlsPaths::in_dir(tmp.path());
    assert!(vedauth::tls::ensure_generated(&paths, crate::common::wall_now()).expect("generate"));
    let mut conn = sqlx::PgConnection::connect(&cluster.url)
        .await
        .expect("connect");
    let data_dir: String = conn
        .fetch_one("SHOW data_directory")
        .await
        .expect("data_directory")
        .get(0);
    let owner = std::fs::metadata(&data_dir).expect("stat");
    for (from, to) in [
        (&paths.cert, "test-server.crt"),
        (&paths.key, "test-server.key"),
    ] {
        let dest = Path::new(&data_dir).join(to);
        std::fs::copy(from, &dest).expect("copy");
        std::os::unix::fs::chown(&dest, Some(owner.uid()), Some(owner.gid())).expect("chown");
        std::fs::set_permissions(&dest, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
    }
    for sql in [
        "ALTER SYSTEM SET ssl_cert_file = 'test-server.crt'",
        "ALTER SYSTEM SET ssl_key_file = 'test-server.key'",
        "ALTER SYSTEM SET ssl = on",
        "SELECT pg_reload_conf()",
    ] {
        conn.execute(sql).await.expect(sql);
    }
    let _ = conn.close().await;
    let url = format!("{}?sslmode=verify-full", cluster.url);
    let dir = tmp.path().join("data");
    let list = |ca: Option<&Path>| {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "--data-dir",
            data(&dir),
            "--database-url",
            &url,
            "app",
            "list",
            "--json",
        ])
        .stdin(Stdio::null());
        match ca {
            Some(ca) => cmd.env("SSL_CERT_FILE", ca),
            // An empty bundle: nothing trusted.
            None => cmd.env("SSL_CERT_FILE", "/dev/null"),
        };
        triple(cmd.output().expect("run"))
    };
    // The reload is asynchronous: wait (bounded) until TLS is on.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out, err) = list(Some(&paths.ca_cert));
        if code == 0 {
            let apps: Value = serde_json::from_str(&out).expect("json");
            assert!(apps.is_array(), "{out}");
            break;
        }
        assert!(Instant::now() < deadline, "never connected over TLS: {err}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, _, err) = list(None);
    assert_ne!(code, 0, "connected without trusting the CA");
    assert!(
        err.to_lowercase().contains("certificate") || err.to_lowercase().contains("tls"),
        "{err}"
    );
}

#[test]
fn with_json_errors_are_one_json_object_on_stderr() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path().join("data");
    let d = data(&d);
    let one_object = |err: &str| -> Value {
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{err}");
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {err}"))
    };
    let (code, out, err) = run(&["--data-dir", d, "--json", "app", "show", "nope"]);
    assert_eq!(code, 1);
    assert_eq!(out, "", "stdout carries results only");
    let e = one_object(&err);
    assert!(
        e["error"].as_str().is_some_and(|m| m.contains("nope")),
        "{e}"
    );
    // An administration refusal keeps its result code as a number.
    admin(
        Path::new(d),
        &["app", "add", "x-app", "--scope", "certificate"],
        None,
    );
    let (code, out, err) = run(&[
        "--data-dir",
        d,
        "app",
        "update",
        "x-app",
        "--scope",
        "bogus",
        "--json",
    ]);
    assert_eq!((code, out.as_str()), (1, ""));
    let e = one_object(&err);
    assert_eq!(e["result"], 17, "{e}");
    assert!(
        e["error"].as_str().is_some_and(|m| !m.contains("(result")),
        "{e}"
    );
    // A command-line mistake: the message and the usage, exit status 2.
    let (code, out, err) = run(&["--json", "app", "show"]);
    assert_eq!((code, out.as_str()), (2, ""));
    let e = one_object(&err);
    assert!(
        e["error"].as_str().is_some_and(|m| m.contains("CLIENT_ID")),
        "{e}"
    );
    assert!(
        e["usage"].as_str().is_some_and(|u| u.contains("app show")),
        "{e}"
    );
    // The same for a server started with JSON logs.
    let (code, out, err) = run(&["serve", "--log-format", "json", "--bogus"]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(
        one_object(&err)["error"]
            .as_str()
            .is_some_and(|m| m.contains("--bogus")),
        "{err}"
    );
    // A bad configuration file, too.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "listen = 3\n").expect("write");
    let (code, _, err) = run(&[
        "--json",
        "--config",
        bad.to_str().expect("utf-8"),
        "user",
        "list",
    ]);
    assert_eq!(code, 1);
    let e = one_object(&err);
    assert!(
        e["error"]
            .as_str()
            .is_some_and(|m| m.contains(":1:10: listen")),
        "{e}"
    );
    // Without --json: text for a person.
    let (_, _, err) = run(&["--data-dir", d, "app", "show", "nope"]);
    assert!(err.starts_with("vedauth: "), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_list_shows_iso_8601_dates_beside_unix_times() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let s = Served::start(&dir, &[]);
    let r = grant(
        &s.client(),
        &s.base,
        "vedauth-admin",
        "admin",
        "Initial-Admin-Pw-123",
        "admin",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let iso = |unix: i64| {
        time::OffsetDateTime::from_unix_timestamp(unix)
            .expect("time")
            .format(&time::format_description::well_known::Rfc3339)
            .expect("format")
    };
    let listed: Value =
        serde_json::from_str(&admin(&dir, &["grant", "list", "--json"], None)).expect("json");
    let g = &listed[0];
    for field in ["issued_at", "expires_at", "access_expires_at"] {
        let unix = g[field].as_i64().unwrap_or_else(|| panic!("{field}: {g}"));
        assert_eq!(g[format!("{field}_iso")], iso(unix), "{g}");
    }
    assert!(g["expires_at_iso"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    let human = admin(&dir, &["grant", "list"], None);
    let issued = g["issued_at"].as_i64().expect("issued");
    let expires = g["expires_at"].as_i64().expect("expires");
    assert!(
        human.contains(&format!("issued {} ({issued})", iso(issued)))
            && human.contains(&format!("expires {} ({expires})", iso(expires))),
        "{human}"
    );
    s.sigterm();
    assert!(s.wait().0.success());
}

/// Every command, subcommand, argument and option says what it is in `-h`: walks the whole
/// command tree through the binary's own help.
#[test]
fn every_command_and_option_has_a_help_line() {
    let mut missing = Vec::new();
    let mut todo = vec![Vec::<String>::new()];
    let mut seen = 0;
    while let Some(path) = todo.pop() {
        seen += 1;
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("-h");
        let (code, help, err) = run(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
        let lines: Vec<&str> = help.lines().collect();
        let indent = |l: &str| l.len() - l.trim_start().len();
        let mut section = "";
        for (i, line) in lines.iter().enumerate() {
            if !line.starts_with(' ') {
                section = line.trim_end_matches(':');
                continue;
            }
            // Entries are indented by at most 6; help text put on the next line, by more.
            if !matches!(section, "Commands" | "Arguments" | "Options") || indent(line) > 6 {
                continue;
            }
            // An entry is its name, two or more spaces and its help text, or its name alone
            // with the help text on the next line, further indented.
            let entry = line.trim();
            let (name, same_line) = match entry.split_once("  ") {
                Some((n, h)) => (n.trim(), h.trim()),
                None => (entry, ""),
            };
            let next_line = lines
                .get(i + 1)
                .filter(|n| n.starts_with(' ') && indent(n) > 6)
                .map(|n| n.trim())
                .unwrap_or("");
            if same_line.is_empty() && next_line.is_empty() {
                missing.push(format!("{} {name}", path.join(" ")));
            }
            if section == "Commands" && name != "help" {
                let mut sub = path.clone();
                sub.push(name.to_string());
                todo.push(sub);
            }
        }
    }
    assert!(seen > 30, "walked only {seen} commands");
    assert!(missing.is_empty(), "no help text: {missing:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_json_logs_everything_the_server_prints_is_json_the_banner_too() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let s = Served::start(&dir, &["--log-format", "json"]);
    let stdout = s.stdout.clone();
    let stderr = s.err.clone();
    s.sigterm();
    let (status, _) = s.wait();
    assert!(status.success());
    let stdout = stdout.lock().map(|s| s.clone()).unwrap_or_default();
    let stderr = stderr.lock().map(|s| s.clone()).unwrap_or_default();
    let events: Vec<Value> = stdout
        .lines()
        .chain(stderr.lines())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let message = |m: &str| events.iter().find(|e| e["fields"]["message"] == m).cloned();
    let banner = message("vedauth is listening").unwrap_or_else(|| panic!("{stderr}"));
    let f = &banner["fields"];
    assert!(
        f["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://127.0.0.1:")),
        "{f}"
    );
    assert!(
        f["ca_file"].as_str().is_some_and(|p| p.ends_with("ca.crt")),
        "{f}"
    );
    assert!(
        f["admin_password_file"]
            .as_str()
            .is_some_and(|p| p.ends_with("initial-admin-password")),
        "{f}"
    );
    assert!(
        f["get_token"]
            .as_str()
            .is_some_and(|c| c.starts_with("curl ")),
        "{f}"
    );
    assert_eq!(f["first_start"], true);
    // The last line before exit was written (the log thread is flushed at shutdown).
    assert!(message("stopped").is_some(), "{stderr}");

    // A server that cannot start says why in JSON too.
    let out = Command::new(BIN)
        .args(["--data-dir", data(&dir), "serve", "--log-format", "json"])
        .args(["--listen", "not-an-address"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let (code, stdout, stderr) = triple(out);
    assert_ne!(code, 0);
    assert_eq!(stdout, "");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|e| e["level"] == "ERROR"
            && e["fields"]["error"]
                .as_str()
                .is_some_and(|m| m.contains("listen"))),
        "{stderr}"
    );
}

/// `status` against a listener that accepts connections and never answers (a stopped process
/// that still holds its socket, a saturated server): one timeout covers the whole call, TLS
/// handshake included, and the report says what happened.
#[test]
fn status_gives_up_on_a_server_that_accepts_and_never_answers() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Accepted connections are kept open, unanswered, until the test ends.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().take(16).flatten() {
            held.push(conn);
        }
        std::thread::sleep(Duration::from_secs(120));
    });
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path().join("data");
    for scheme in ["http", "https"] {
        let url = format!("{scheme}://{addr}");
        let mut child = Command::new(BIN)
            .args([
                "--data-dir",
                data(&d),
                "status",
                "--url",
                &url,
                "--timeout",
                "1",
            ])
            .arg("--json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("status still waits on {url}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let (code, out, err) = triple(child.wait_with_output().expect("output"));
        assert_eq!(code, 0, "{err}");
        let report: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(report["server"]["reachable"], false, "{report}");
        assert_eq!(
            report["server"]["error"], "no answer within 1 s",
            "{report}"
        );
    }
    let (code, out, _) = run(&[
        "--data-dir",
        data(&d),
        "status",
        "--url",
        &format!("http://{addr}"),
        "--timeout",
        "0.5",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("not reachable: no answer within 0.5 s"),
        "{out}"
    );
}

/// `vedauth app secret`: a new client secret printed once (on a running server's store), the
/// old one dead at once on rotation, none after `--remove`; only its hash in the store.
#[tokio::test]
async fn app_secret_sets_rotates_and_removes_a_client_secret() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let s = Served::start(&dir, &[]);
    admin(&dir, &["app", "add", "svc", "--scope", "certificate"], None);
    let cc = |secret: String| {
        let client = s.client();
        let url = format!("{}/oauth2/token", s.base);
        async move {
            client
                .post(url)
                .basic_auth("svc", Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .expect("send")
                .status()
        }
    };
    let out: Value = serde_json::from_str(&admin(&dir, &["app", "secret", "svc", "--json"], None))
        .expect("json");
    assert_eq!(out["rotated"], false, "{out}");
    let first = out["client_secret"].as_str().expect("secret").to_string();
    assert_eq!(first.len(), 43, "{first}");
    assert_eq!(cc(first.clone()).await, StatusCode::OK);
    // The human form shows the secret once, with a warning to keep it.
    let human = admin(&dir, &["app", "secret", "svc"], None);
    let second = human
        .lines()
        .last()
        .expect("secret line")
        .trim()
        .to_string();
    assert!(human.contains("shown this once"), "{human}");
    assert_ne!(second, first);
    // The server caches client authentications; the CLI's change reaches it over the store's
    // invalidation feed (about a second), not on its next request.
    refused_within(Duration::from_secs(10), "the rotated secret", || {
        cc(first.clone())
    })
    .await;
    assert_eq!(cc(second.clone()).await, StatusCode::OK);
    // Nowhere else: not in the listings, not in the database file. `app show` says when it
    // was set.
    let shown = admin(&dir, &["app", "show", "svc", "--json"], None);
    assert!(!shown.contains(&second), "{shown}");
    let v: Value = serde_json::from_str(&shown).expect("json");
    assert!(v["client_secret_set_at"].as_i64().is_some(), "{shown}");
    assert!(admin(&dir, &["app", "show", "svc"], None).contains("client secret: set "));
    let db = std::fs::read(dir.join("vedauth.db")).expect("db");
    assert!(!String::from_utf8_lossy(&db).contains(&second));
    let out = admin(&dir, &["app", "secret", "svc", "--remove"], None);
    assert!(out.contains("public client"), "{out}");
    assert!(admin(&dir, &["app", "show", "svc"], None).contains("client secret: none"));
    refused_within(Duration::from_secs(10), "the removed secret", || {
        cc(second.clone())
    })
    .await;
    let (code, _, err) = run(&["--data-dir", data(&dir), "app", "secret", "nope"]);
    assert_ne!(code, 0);
    assert!(err.contains("nope"), "{err}");
    s.sigterm();
    assert!(s.wait().0.success());
}
