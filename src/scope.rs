//! The scope grammar of docs/protocol.md §4:
//! `name[:priv[,priv]*][;name[:priv...]]*`, case-insensitive, whitespace trimmed, empty items
//! ignored, duplicates merged. A bare name means read; `name:priv` implies the bare name.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Every scope name and the privileges it accepts (docs/protocol.md §4).
pub const CATALOGUE: &[(&str, &[&str])] = &[
    (
        "admin",
        &["algorithms", "delete", "recyclebin", "rotate", "viewlogs"],
    ),
    ("agent", &["delete"]),
    (
        "certificate",
        &["approve", "delete", "discover", "manage", "revoke"],
    ),
    ("codesign", &["admin", "approve", "delete", "manage"]),
    ("codesignclient", &[]),
    ("configuration", &["delete", "manage"]),
    ("restricted", &["delete", "manage"]),
    ("security", &["delete", "manage"]),
    ("ssh", &["approve", "delete", "discover", "manage"]),
    ("statistics", &["delete", "manage"]),
];

/// A parsed, validated scope: scope name to its privileges (empty set = read only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope(BTreeMap<&'static str, BTreeSet<&'static str>>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope is empty")]
    Empty,
    /// The offending item, as the caller wrote it (trimmed).
    #[error("scope '{0}' is not valid")]
    Invalid(String),
}

impl ScopeError {
    /// The text to quote back to the caller.
    pub fn item(&self) -> &str {
        match self {
            ScopeError::Empty => "",
            ScopeError::Invalid(s) => s,
        }
    }
}

fn lookup_name(name: &str) -> Option<(&'static str, &'static [&'static str])> {
    CATALOGUE
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(n, p)| (*n, *p))
}

impl Scope {
    /// Parses and validates; an empty scope (nothing but separators) is an error.
    pub fn parse(input: &str) -> Result<Self, ScopeError> {
        let mut map: BTreeMap<&'static str, BTreeSet<&'static str>> = BTreeMap::new();
        for raw_item in input.split(';') {
            let item = raw_item.trim();
            if item.is_empty() {
                continue;
            }
            let (name_part, privs_part) = match item.split_once(':') {
                Some((n, p)) => (n.trim(), Some(p)),
                None => (item, None),
            };
            let Some((name, allowed)) = lookup_name(name_part) else {
                return Err(ScopeError::Invalid(item.to_string()));
            };
            let entry = map.entry(name).or_default();
            if let Some(privs) = privs_part {
                let mut any = false;
                for raw_priv in privs.split(',') {
                    let p = raw_priv.trim();
                    if p.is_empty() {
                        continue;
                    }
                    let Some(known) = allowed.iter().find(|a| a.eq_ignore_ascii_case(p)) else {
                        return Err(ScopeError::Invalid(item.to_string()));
                    };
                    entry.insert(known);
                    any = true;
                }
                // `certificate:` names no privilege at all: a malformed item, not a read.
                if !any {
                    return Err(ScopeError::Invalid(item.to_string()));
                }
            }
        }
        if map.is_empty() {
            return Err(ScopeError::Empty);
        }
        Ok(Scope(map))
    }

    /// Every scope with every privilege: what the bootstrap `vedauth-admin` application holds.
    pub fn everything() -> Self {
        Scope(
            CATALOGUE
                .iter()
                .map(|(n, p)| (*n, p.iter().copied().collect()))
                .collect(),
        )
    }

    /// Whether every (name, privilege) of `self` is in `other`. A bare name is covered by any
    /// entry for that name, since `name:priv` implies read.
    pub fn is_subset_of(&self, other: &Scope) -> bool {
        self.0.iter().all(|(name, privs)| {
            other
                .0
                .get(name)
                .is_some_and(|theirs| privs.is_subset(theirs))
        })
    }

    /// Whether this scope grants `name` with `privilege` (None = read).
    pub fn allows(&self, name: &str, privilege: Option<&str>) -> bool {
        let Some(privs) = self
            .0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, p)| p)
        else {
            return false;
        };
        match privilege {
            None => true,
            Some(p) => privs.iter().any(|x| x.eq_ignore_ascii_case(p)),
        }
    }

    /// Whether any scope item carries `privilege` (the "any scope + manage" requirements).
    pub fn any_with_privilege(&self, privilege: &str) -> bool {
        self.0
            .values()
            .any(|ps| ps.iter().any(|x| x.eq_ignore_ascii_case(privilege)))
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.keys().copied()
    }
}

/// The canonical form: lower case, names sorted, privileges sorted, `;` and `,` separators.
impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, privs) in &self.0 {
            if !first {
                f.write_str(";")?;
            }
            first = false;
            f.write_str(name)?;
            let mut sep = ":";
            for p in privs {
                f.write_str(sep)?;
                f.write_str(p)?;
                sep = ",";
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canon(s: &str) -> String {
        Scope::parse(s).map(|s| s.to_string()).unwrap_or_default()
    }

    #[test]
    fn canonical_form_examples_from_the_field() {
        assert_eq!(
            canon("certificate:manage,revoke"),
            "certificate:manage,revoke"
        );
        assert_eq!(
            canon("Certificate:manage,discover;Configuration:manage"),
            "certificate:discover,manage;configuration:manage"
        );
        assert_eq!(
            canon("certificate:manage,revoke;"),
            "certificate:manage,revoke"
        );
        assert_eq!(
            canon(" ssh : manage , delete ; certificate ;certificate:revoke"),
            "certificate:revoke;ssh:delete,manage"
        );
        assert_eq!(canon("statistics;statistics"), "statistics");
        // The freekb example round-trips to the form the server printed.
        assert_eq!(
            canon("agent:delete;certificate:manage,revoke,approve,discover,delete;restricted:manage,delete;security:manage,delete;ssh:manage,delete,discover,approve;configuration:manage,delete;codesign:delete,manage;statistics"),
            "agent:delete;certificate:approve,delete,discover,manage,revoke;codesign:delete,manage;configuration:delete,manage;restricted:delete,manage;security:delete,manage;ssh:approve,delete,discover,manage;statistics"
        );
    }

    #[test]
    fn errors_name_the_offending_item() {
        assert_eq!(
            Scope::parse("certificate:manage;bogus:read"),
            Err(ScopeError::Invalid("bogus:read".into()))
        );
        assert_eq!(
            Scope::parse("certificate:fly"),
            Err(ScopeError::Invalid("certificate:fly".into()))
        );
        assert_eq!(
            Scope::parse("certificate:"),
            Err(ScopeError::Invalid("certificate:".into()))
        );
        assert_eq!(Scope::parse(""), Err(ScopeError::Empty));
        assert_eq!(Scope::parse(" ; ;"), Err(ScopeError::Empty));
        assert_eq!(
            Scope::parse("codesignclient:manage"),
            Err(ScopeError::Invalid("codesignclient:manage".into()))
        );
    }

    #[test]
    fn subset_semantics() {
        let app = Scope::parse("certificate:manage,revoke;ssh").unwrap_or_default();
        let ok = |s: &str| Scope::parse(s).is_ok_and(|r| r.is_subset_of(&app));
        assert!(ok("certificate"));
        assert!(ok("certificate:manage"));
        assert!(ok("certificate:revoke,manage;ssh"));
        assert!(!ok("certificate:delete"));
        assert!(!ok("ssh:manage"));
        assert!(!ok("configuration"));
    }

    #[test]
    fn allows_and_privileges() {
        let s = Scope::parse("certificate:manage;admin").unwrap_or_default();
        assert!(s.allows("certificate", None));
        assert!(s.allows("Certificate", Some("MANAGE")));
        assert!(!s.allows("certificate", Some("revoke")));
        assert!(s.allows("admin", None));
        assert!(!s.allows("ssh", None));
        assert!(s.any_with_privilege("manage"));
        assert!(!s.any_with_privilege("approve"));
    }

    fn arb_scope_text() -> impl Strategy<Value = String> {
        let item = (
            0..CATALOGUE.len(),
            prop::collection::vec(0usize..6, 0..4),
            any::<bool>(),
        )
            .prop_map(|(i, ps, upper)| {
                let (name, privs) = CATALOGUE[i];
                let mut s = if upper {
                    name.to_uppercase()
                } else {
                    name.to_string()
                };
                let chosen: Vec<&str> = ps.iter().filter_map(|p| privs.get(*p).copied()).collect();
                if !chosen.is_empty() {
                    s.push(':');
                    s.push_str(&chosen.join(" , "));
                }
                s
            });
        prop::collection::vec(item, 1..6).prop_map(|items| items.join(" ;"))
    }

    /// Drops items and privileges of `s` according to the bits of `mask`.
    fn thin(s: &Scope, mask: u64) -> Scope {
        let mut bit = 0;
        let mut next = || {
            bit = (bit + 1) % 64;
            mask & (1 << bit) != 0
        };
        let mut out = BTreeMap::new();
        for (name, privs) in &s.0 {
            if next() {
                continue;
            }
            let kept: BTreeSet<&'static str> = privs.iter().copied().filter(|_| !next()).collect();
            out.insert(*name, kept);
        }
        Scope(out)
    }

    proptest! {
        #[test]
        fn canonical_form_parses_back_to_itself(text in arb_scope_text()) {
            let parsed = Scope::parse(&text);
            prop_assert!(parsed.is_ok());
            let parsed = parsed.unwrap_or_default();
            let canonical = parsed.to_string();
            let again = Scope::parse(&canonical);
            prop_assert_eq!(again.as_ref().map(|s| s.to_string()).ok(), Some(canonical.clone()));
            prop_assert_eq!(again.ok(), Some(parsed));
        }

        #[test]
        fn subset_is_reflexive_and_transitive(c in arb_scope_text(), m1 in any::<u64>(), m2 in any::<u64>()) {
            let c = Scope::parse(&c).unwrap_or_default();
            // b is c with some items and privileges dropped, a is b likewise: a ⊆ b ⊆ c by construction.
            let b = thin(&c, m1);
            let a = thin(&b, m2);
            prop_assert!(a.is_subset_of(&a));
            prop_assert!(b.is_subset_of(&b));
            prop_assert!(a.is_subset_of(&b));
            prop_assert!(b.is_subset_of(&c));
            prop_assert!(a.is_subset_of(&c));
            prop_assert!(c.is_subset_of(&Scope::everything()));
            // Adding a privilege c lacks breaks the subset relation.
            if let Some((name, privs)) = CATALOGUE.iter().find(|(n, ps)| c.0.get(n).is_some_and(|have| ps.iter().any(|p| !have.contains(p)))) {
                let missing = privs.iter().find(|p| !c.0.get(name).is_some_and(|have| have.contains(*p)));
                if let Some(p) = missing {
                    let mut bigger = c.clone();
                    bigger.0.entry(name).or_default().insert(p);
                    prop_assert!(!bigger.is_subset_of(&c));
                }
            }
        }

        #[test]
        fn arbitrary_input_never_panics(s in "\\PC*") {
            let _ = Scope::parse(&s);
        }

        #[test]
        fn near_miss_input_never_panics(s in "[a-zA-Z:;, ]{0,64}") {
            if let Ok(parsed) = Scope::parse(&s) {
                prop_assert_eq!(Scope::parse(&parsed.to_string()).ok(), Some(parsed));
            }
        }
    }
}
