//! The version this binary reports.

/// The version with the git revision it was built from: for logs, `--version` and `status`.
pub const VERSION: &str = env!("VEDAUTH_VERSION");
/// What unauthenticated endpoints say: the release, without the revision (which would tell an
/// attacker exactly which code to study).
pub const PUBLIC_VERSION: &str = env!("CARGO_PKG_VERSION");
