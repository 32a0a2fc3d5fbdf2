//! Stamps the binary's version with the git revision it was built from, and lays out the release
//! binary's code by use (`lay_out_code`).
//!
//! Cargo reruns this script (and rebuilds the crate) when a watched file changes, so it watches
//! only the files that name the revision: HEAD, the branch it points to, and packed-refs. Not
//! the index, which `git status` rewrites: that made a fresh clone's first admin command rebuild
//! the release binary. Without the index the script cannot know whether the working tree has
//! uncommitted changes, so the version carries no "-dirty" marker.
use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    lay_out_code();
    let rev = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!(
        "cargo:rustc-env=VEDAUTH_VERSION={} (git {rev})",
        env!("CARGO_PKG_VERSION")
    );
    // `--git-path` resolves each name where git keeps it: HEAD in this worktree's git directory,
    // branches and packed-refs in the common one (`.git` may be a file in a worktree).
    let mut names = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        names.push(branch);
    }
    for name in names {
        let Some(path) = git(&["rev-parse", "--git-path", &name]) else {
            continue;
        };
        // As git gives it: relative to the package (`.git/HEAD`) in a plain checkout. Cargo keeps
        // paths inside the package relative, so a copy of the tree with a `.git` link to the
        // same directory, built into the same target directory (scripts/readme-smoke), watches
        // the same files; an absolute path printed here was kept relative all the same and no
        // longer matched in the copy, which rebuilt the binary (with "git unknown").
        let path = Path::new(&path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        } else if let Some(dir) = path.parent().filter(|_| name.starts_with("refs/")) {
            // A branch kept only in packed-refs gets a file of its own at its next commit:
            // watch the directory it will appear in (cargo reruns on a missing file every time).
            if dir.exists() {
                println!("cargo:rerun-if-changed={}", dir.display());
            }
        }
    }
}

/// The code a running server executes is placed together at the start of the release binary's
/// text. The kernel maps a binary's code in 64 KiB runs around each page touched, and the
/// functions a server runs were spread over nearly all of its 12.6 MB of text: an idle server
/// held about 13.4 MB of it. Packed, they fill about 4 MB (docs/BENCHMARKS.md, "Hashing memory
/// that really goes back, and code laid out by use").
///
/// The list is made by `scripts/hot-functions`. A name no longer in the binary is skipped, so
/// a stale list costs memory, never correctness. Only for the `vedauth` binary of an optimised
/// build for x86_64-unknown-linux-gnu by rustc 1.90 or later, which links with LLD there by
/// default (the option is LLD's); not when the build chose its linker itself.
fn lay_out_code() {
    const LIST: &str = "link/hot-functions.txt";
    println!("cargo:rerun-if-changed={LIST}");
    let var = |name| std::env::var(name).unwrap_or_default();
    let own_linker = var("CARGO_ENCODED_RUSTFLAGS")
        .split('\x1f')
        .any(|f| f.contains("linker"));
    let lld = rustc_minor().is_some_and(|m| m >= 90);
    if var("PROFILE") != "release"
        || var("TARGET") != "x86_64-unknown-linux-gnu"
        || own_linker
        || !lld
        || !Path::new(LIST).exists()
    {
        return;
    }
    // Relative, as the paths above: rustc, and so the linker, runs in the package's directory.
    println!("cargo:rustc-link-arg-bin=vedauth=-Wl,--symbol-ordering-file={LIST}");
    println!("cargo:rustc-link-arg-bin=vedauth=-Wl,--no-warn-symbol-ordering");
}

/// The minor version of the rustc building this (`rustc 1.95.0 (...)` gives 95).
fn rustc_minor() -> Option<u32> {
    let out = Command::new(std::env::var("RUSTC").ok()?)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.split_whitespace()
        .nth(1)?
        .split('.')
        .nth(1)?
        .parse()
        .ok()
}
