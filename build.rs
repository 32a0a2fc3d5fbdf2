//! Stamps the binary's version with the git revision it was built from.
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
