//! The command line as a person or a script meets it, through the built binary.

use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_vedauth");

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
