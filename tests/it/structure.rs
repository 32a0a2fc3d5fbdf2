//! The import direction, checked on the source (ARCHITECTURE.md, "Invariants"): the rooms of
//! `src/` (a top-level file or folder) form no circle, and nothing below the faces names a face,
//! the runtime or the configuration file's shape. A test rather than a convention, so that a
//! wrong import fails CI where it is made.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Rooms that only the composition root, the runtime and the faces may name.
const UPPER: &[&str] = &[
    "assembly",
    "bootstrap",
    "cli",
    "config",
    "http",
    "runtime",
    "server",
    "services",
    "telemetry",
    "tls",
];

/// Rooms of the core and below: the domain words, the use cases and the adapters behind ports.
const LOWER: &[&str] = &[
    "admin",
    "audit",
    "certauth",
    "clock",
    "domain",
    "grants",
    "heap",
    "identity",
    "jwt",
    "lockout",
    "net",
    "password",
    "scope",
    "secret",
    "store",
    "token",
    "version",
    "wire_time",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let p = entry.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The room of a file: its top-level file or folder under `src/`.
fn room(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

/// The code of a file without its unit tests (they may use anything to set things up).
fn non_test_code(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// `file: text` for each file of `src/` but those ending in one of `exempt` whose `code` (the
/// whole file, or `non_test_code`) contains one of `texts`.
fn files_containing(exempt: &[&str], code: fn(&str) -> &str, texts: &[&str]) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    for f in files {
        if exempt.iter().any(|e| f.ends_with(e)) {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("read");
        let code = code(&text);
        for t in texts {
            if code.contains(t) {
                found.push(format!("{}: {t}", f.display()));
            }
        }
    }
    found
}

/// The rooms a piece of code names through `crate::room` (comments aside).
fn named_rooms(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `crate::{a, b}` lists several rooms.
        if name.is_empty() && after.starts_with('{') {
            if let Some(end) = after.find('}') {
                for part in after[1..end].split(',') {
                    let n: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !n.is_empty() {
                        out.insert(n);
                    }
                }
            }
        } else if !name.is_empty() {
            out.insert(name);
        }
        rest = after;
    }
    out
}

fn graph() -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut g: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for f in files {
        let from = room(&src, &f);
        if from == "lib" || from == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("read");
        let rel = f
            .strip_prefix(&src)
            .expect("under src")
            .display()
            .to_string();
        for to in named_rooms(non_test_code(&text)) {
            if to != from {
                g.entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .push(rel.clone());
            }
        }
        g.entry(from).or_default();
    }
    g
}

#[test]
fn nothing_below_the_faces_names_a_face_the_runtime_or_the_configuration() {
    let g = graph();
    let mut wrong = Vec::new();
    for (from, tos) in &g {
        if !LOWER.contains(&from.as_str()) {
            continue;
        }
        for (to, files) in tos {
            if UPPER.contains(&to.as_str()) {
                wrong.push(format!("{from} -> {to} (in {})", files.join(", ")));
            }
        }
    }
    assert!(wrong.is_empty(), "upward imports:\n{}", wrong.join("\n"));
    // Every room is placed in one of the two lists, so a new one is a decision.
    let unplaced: Vec<&String> = g
        .keys()
        .filter(|r| !UPPER.contains(&r.as_str()) && !LOWER.contains(&r.as_str()))
        .collect();
    assert!(unplaced.is_empty(), "rooms in neither list: {unplaced:?}");
}

#[test]
fn storage_is_reached_only_through_the_domain_ports() {
    let g = graph();
    // The core asks the ports it owns (`domain`); the faces go through the services facade.
    let rules: &[(&str, &[&str])] = &[
        ("grants", &["store"]),
        ("admin", &["store"]),
        ("identity", &["store"]),
        ("lockout", &["store"]),
        ("audit", &["store"]),
        ("http", &["store", "audit"]),
    ];
    let mut wrong = Vec::new();
    for (from, banned) in rules {
        for (to, files) in g.get(*from).into_iter().flatten() {
            if banned.contains(&to.as_str()) {
                wrong.push(format!("{from} -> {to} (in {})", files.join(", ")));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The names given to the `metrics` macros in the code of `src/` (a literal first argument).
fn recorded_metrics() -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut names = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        let code = non_test_code(&text);
        for mac in ["counter!(", "gauge!(", "histogram!("] {
            for (i, _) in code.match_indices(mac) {
                let rest = code[i + mac.len()..].trim_start();
                if let Some(name) = rest
                    .strip_prefix('"')
                    .and_then(|r| r.split_once('"'))
                    .map(|(n, _)| n)
                {
                    names.insert(name.to_string());
                }
            }
        }
    }
    names
}

/// Every metric the server records is in docs/metrics.md's table, and every metric the table
/// lists is recorded somewhere: an operator's dashboard is built from that page.
#[test]
fn every_metric_is_documented() {
    let recorded = recorded_metrics();
    assert!(
        recorded.contains("vedauth_http_requests_total") && recorded.len() > 10,
        "the scanner finds the metrics: {recorded:?}"
    );
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md"))
            .expect("read docs/metrics.md");
    let listed: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(name, _)| name.to_string())
        .collect();
    let undocumented: Vec<_> = recorded.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&recorded).collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/metrics.md: {undocumented:?}"
    );
    assert!(
        stale.is_empty(),
        "in docs/metrics.md but never recorded: {stale:?}"
    );
}

/// Passwords are hashed and checked only by the hashing pool's threads (`password.rs`): a
/// direct call elsewhere would run argon2 on a runtime thread and stall every request on it.
#[test]
fn passwords_are_hashed_only_on_the_pool() {
    let wrong = files_containing(
        &["password.rs"],
        non_test_code,
        &[
            "hash_now",
            "verify_now",
            "hash_password(",
            "verify_password(",
        ],
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Unsafe code stays in `heap.rs` (one call into glibc): `lib.rs` denies it crate-wide and
/// names the lint nowhere else, and no other file names the lint (an `allow` in any form) or
/// writes an unsafe block, function or impl.
#[test]
fn unsafe_code_is_only_in_heap() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("read lib.rs");
    assert!(
        lib.contains("#![deny(unsafe_code)]") && lib.matches("unsafe_code").count() == 1,
        "lib.rs no longer only denies unsafe code"
    );
    let mut wrong = files_containing(
        &["src/heap.rs", "src/lib.rs"],
        |text| text,
        &["unsafe_code"],
    );
    wrong.extend(files_containing(
        &["src/heap.rs"],
        |text| text,
        &["unsafe {", "unsafe fn", "unsafe impl", "unsafe extern"],
    ));
    assert!(
        wrong.is_empty(),
        "unsafe code outside heap.rs:\n{}",
        wrong.join("\n")
    );
}

/// Access and refresh tokens are minted in one place, the grant pipeline's `issue`: a flow
/// that minted its own would skip policy, the audit trail or the metrics.
#[test]
fn tokens_are_minted_only_by_issue() {
    let wrong = files_containing(
        &["grants/issue.rs", "src/token.rs"],
        non_test_code,
        &["token::generate"],
    );
    assert!(
        wrong.is_empty(),
        "tokens minted outside grants/issue.rs: {wrong:?}"
    );
}

#[test]
fn the_rooms_of_src_form_no_circle() {
    let g = graph();
    // Depth-first search for a back edge; reports the circle it finds.
    fn visit(
        g: &BTreeMap<String, BTreeMap<String, Vec<String>>>,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut circle = path[i..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in g.get(node).map(|m| m.keys()).into_iter().flatten() {
            if let Some(c) = visit(g, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for start in g.keys() {
        if let Some(circle) = visit(&g, start, &mut Vec::new(), &mut done) {
            let edges: Vec<String> = circle
                .windows(2)
                .map(|w| {
                    let files = g
                        .get(&w[0])
                        .and_then(|m| m.get(&w[1]))
                        .map(|f| f.join(", "))
                        .unwrap_or_default();
                    format!("{} -> {} (in {files})", w[0], w[1])
                })
                .collect();
            panic!("a circle between rooms:\n{}", edges.join("\n"));
        }
    }
}

#[test]
fn the_scanner_sees_imports() {
    let names = named_rooms(
        "use crate::store::Grant;\nuse crate::{audit::Event, clock};\nfn f() { crate::http::x() }\n/// See crate::cli.",
    );
    let want: BTreeSet<String> = ["store", "audit", "clock", "http"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, want);
    assert_eq!(
        non_test_code("a\n#[cfg(test)]\nmod tests { crate::cli }"),
        "a\n"
    );
}
