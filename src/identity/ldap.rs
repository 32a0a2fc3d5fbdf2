//! Directory identity providers: LDAP and Active Directory (docs/protocol.md §11).
//!
//! A login searches the user with the service account (pooled connections), then binds as the
//! DN found, with the given password, on a connection of its own. The identity's universal part
//! is the entry's rename-proof id (entryUUID, objectGUID), so renaming a user keeps their grants
//! and rules. Every step has a timeout: a directory that hangs makes its own requests fail with
//! 503 and holds up nothing else.

mod ad;
mod certificate;
mod config;
mod conn;
pub mod escape;
mod lookup;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use self::config::Settings;
pub use self::config::{DirectoryConfigError, DirectoryKind, LdapConfig};
use self::conn::{Connector, Entry, Failure, Pool};
use super::{
    AuthOutcome, Candidate, Credential, Identify, IdentityProvider, IdpError, Principal,
    RejectCause,
};

/// Member DNs per group search: keeps filters small when many groups are walked at once.
const MEMBERS_PER_SEARCH: usize = 32;

/// An LDAP or Active Directory provider.
#[derive(Debug)]
pub struct DirectoryProvider {
    s: Settings,
    connector: Arc<Connector>,
    pool: Pool,
    /// Searches sent to the directory since start (users and groups).
    searches: AtomicU64,
}

/// What `identify` found for a login name, checked by `authenticate` without searching again.
#[derive(Debug)]
enum Found {
    /// Exactly one entry; its universal when it has a usable id attribute.
    One {
        entry: Entry,
        universal: Option<String>,
        typed: String,
    },
    /// Several entries match the name: refused rather than guessed.
    Ambiguous,
}

/// Builds the configured directory providers, in configured order. Nothing is contacted yet: a
/// directory that is down at start only fails the logins that need it.
pub fn providers(
    configs: &[LdapConfig],
) -> Result<Vec<Arc<dyn IdentityProvider>>, DirectoryConfigError> {
    let mut seen = HashSet::new();
    let mut out: Vec<Arc<dyn IdentityProvider>> = Vec::with_capacity(configs.len());
    for c in configs {
        let p = DirectoryProvider::new(c)?;
        if !seen.insert(p.s.prefix.to_ascii_lowercase()) {
            return Err(DirectoryConfigError {
                provider: c.name.clone(),
                message: format!("{} is configured twice", p.s.prefix),
            });
        }
        out.push(Arc::new(p));
    }
    Ok(out)
}

/// What a refused bind means for the user. AD puts the reason in the diagnostic message of
/// result 49 (`data 52e` wrong password, `533` disabled, `775` locked out, ...). `Err` means the
/// refusal is about the directory or its configuration, not the user: 503.
fn refusal_cause(rc: u32, text: &str) -> Result<RejectCause, String> {
    match rc {
        49 => {
            let lower = text.to_ascii_lowercase();
            Ok(if lower.contains("data 533") || lower.contains("data 701") {
                RejectCause::Disabled
            } else if lower.contains("data 775") {
                RejectCause::Locked
            } else {
                RejectCause::WrongPassword
            })
        }
        // strongerAuthRequired, confidentialityRequired: the directory wants TLS for binds.
        8 | 13 => Err(format!(
            "the directory refuses simple binds on this connection (result {rc}: {text}); use ldaps:// or starttls"
        )),
        // busy, unavailable, other
        51 | 52 | 80 => Err(format!("the directory refused the bind (result {rc}: {text})")),
        _ => {
            tracing::warn!(rc, %text, "directory refused a user's bind");
            Ok(RejectCause::WrongPassword)
        }
    }
}

impl DirectoryProvider {
    pub fn new(config: &LdapConfig) -> Result<Self, DirectoryConfigError> {
        let s = config.resolve()?;
        let connector = Arc::new(Connector::new(&s));
        let pool = Pool::new(connector.clone(), &s);
        Ok(Self {
            s,
            connector,
            pool,
            searches: AtomicU64::new(0),
        })
    }

    /// Searches sent to the directory since start (user lookups and group walks).
    pub fn searches(&self) -> u64 {
        self.searches.load(Ordering::Relaxed)
    }

    async fn search(
        &self,
        base: &str,
        filter: &str,
        attrs: &[&str],
        limit: i32,
    ) -> Result<Vec<Entry>, IdpError> {
        self.searches.fetch_add(1, Ordering::Relaxed);
        self.pool
            .search(base, filter, attrs, limit)
            .await
            .map_err(|m| self.unavailable(m))
    }

    fn unavailable(&self, message: String) -> IdpError {
        IdpError::Unavailable(format!("{}: {message}", self.s.prefix))
    }

    /// The entry's id as it appears in identities: entryUUID's text in lower case; for AD the
    /// objectGUID's raw bytes in hex (see `ad`).
    fn universal_of(&self, e: &Entry) -> Option<String> {
        let raw = e.first(&self.s.id_attribute)?;
        match self.s.kind {
            DirectoryKind::Ad => ad::guid_hex(raw),
            DirectoryKind::Ldap => std::str::from_utf8(raw)
                .ok()
                .filter(|s| !s.is_empty())
                .map(str::to_ascii_lowercase),
        }
    }

    /// The filter for a login name. For AD a UPN matches too: `name@dns_domain`, or the name
    /// itself when it contains `@` (`AD+N:user@domain`).
    fn login_filter(&self, name: &str) -> String {
        let v = ldap3::ldap_escape(name);
        let mut alternatives = vec![format!("({}={v})", self.s.login_attribute)];
        if self.s.kind == DirectoryKind::Ad {
            if let Some(dns) = &self.s.dns_domain {
                alternatives.push(format!(
                    "(userPrincipalName={v}@{})",
                    ldap3::ldap_escape(dns.as_str())
                ));
            }
            if name.contains('@') {
                alternatives.push(format!("(userPrincipalName={v})"));
            }
        }
        let matched = if alternatives.len() == 1 {
            alternatives.concat()
        } else {
            format!("(|{})", alternatives.concat())
        };
        format!("(&{}{matched})", self.s.user_filter)
    }

    /// Users matching `filter`; two at most, which is already one too many.
    async fn find_users(&self, filter: &str) -> Result<Vec<Entry>, IdpError> {
        let attrs = [
            self.s.login_attribute.as_str(),
            self.s.id_attribute.as_str(),
        ];
        self.search(&self.s.base_dn, filter, &attrs, 2).await
    }

    /// Prefixed names and prefixed universals of the groups that list `dn` as a member; with
    /// nested groups, also of the groups that list those, level by level up to the configured
    /// depth (a search per level rather than AD's in-chain matching rule, which not every
    /// server has).
    async fn groups_of(&self, dn: &str) -> Result<Vec<String>, IdpError> {
        let attrs = [
            self.s.group_name_attribute.as_str(),
            self.s.id_attribute.as_str(),
        ];
        let rounds = if self.s.nested_groups {
            self.s.max_group_depth.saturating_add(1)
        } else {
            1
        };
        let mut groups = Vec::new();
        let mut seen = HashSet::new();
        let mut frontier = vec![dn.to_string()];
        for _ in 0..rounds {
            if frontier.is_empty() {
                break;
            }
            let mut next = Vec::new();
            for chunk in frontier.chunks(MEMBERS_PER_SEARCH) {
                let members: String = chunk
                    .iter()
                    .map(|d| {
                        format!(
                            "({}={})",
                            self.s.group_member_attribute,
                            ldap3::ldap_escape(d.as_str())
                        )
                    })
                    .collect();
                let filter = format!("(&{}(|{members}))", self.s.group_filter);
                let found = self
                    .search(&self.s.group_base_dn, &filter, &attrs, 0)
                    .await?;
                for g in found {
                    // A cycle of groups, or a group reached twice, is walked once.
                    if !seen.insert(g.dn.to_ascii_lowercase()) {
                        continue;
                    }
                    if let Some(n) = g.first_str(&self.s.group_name_attribute) {
                        groups.push(format!("{}:{n}", self.s.prefix));
                    }
                    if let Some(id) = self.universal_of(&g) {
                        groups.push(format!("{}:{id}", self.s.prefix));
                    }
                    next.push(g.dn);
                }
            }
            frontier = next;
        }
        Ok(groups)
    }

    async fn principal(
        &self,
        e: &Entry,
        universal: String,
        typed: &str,
    ) -> Result<Principal, IdpError> {
        let groups = self.groups_of(&e.dn).await?;
        Ok(Principal {
            prefix: self.s.prefix.clone(),
            universal,
            name: e
                .first_str(&self.s.login_attribute)
                .unwrap_or(typed)
                .to_string(),
            // TPP reports a directory identity's DN as its full name.
            full_name: e.dn.clone(),
            groups,
            checked_hash: None,
        })
    }
}

#[async_trait]
impl IdentityProvider for DirectoryProvider {
    fn prefix(&self) -> &str {
        &self.s.prefix
    }

    fn claims_domain(&self, domain: &str) -> bool {
        [&self.s.netbios_domain, &self.s.dns_domain]
            .into_iter()
            .flatten()
            .any(|d| d.eq_ignore_ascii_case(domain))
    }

    async fn health(&self) -> Option<bool> {
        // A search that can match nothing proves the service account reaches a server.
        let filter = format!("(&{}(!(objectClass=*)))", self.s.user_filter);
        Some(self.find_users(&filter).await.is_ok())
    }

    fn accepts(&self, credential: &Credential) -> bool {
        matches!(credential, Credential::Password(_))
    }

    /// The one search of a login: the entry found here is the one whose password is checked.
    async fn identify(&self, name: &str) -> Result<Identify, IdpError> {
        if name.is_empty() {
            return Ok(Identify::Unknown);
        }
        let mut found = self.find_users(&self.login_filter(name)).await?;
        Ok(match found.len() {
            0 => Identify::Unknown,
            1 => {
                let entry = found.remove(0);
                let universal = self.universal_of(&entry);
                let identity = universal
                    .as_ref()
                    .map(|u| crate::domain::Identity::of(&self.s.prefix, u));
                Identify::Found(Candidate::new(
                    identity,
                    Found::One {
                        entry,
                        universal,
                        typed: name.to_string(),
                    },
                ))
            }
            _ => Identify::Found(Candidate::new(None, Found::Ambiguous)),
        })
    }

    async fn authenticate(
        &self,
        candidate: Candidate,
        credential: &Credential,
    ) -> Result<AuthOutcome, IdpError> {
        let Credential::Password(password) = credential;
        // A simple bind with an empty password is an anonymous bind that succeeds on many
        // directories (RFC 4513 §5.1.2). `Identities` stops it too; this keeps the provider
        // safe on its own.
        if password.is_empty() {
            return Ok(AuthOutcome::Rejected(RejectCause::EmptyPassword));
        }
        // Lockout of directory users is kept in vedauth's store and checked by `Identities`
        // before this runs, so a locked user's password never reaches the directory.
        let (entry, universal, typed) = match candidate.into_handle::<Found>()? {
            Found::One {
                entry,
                universal,
                typed,
            } => (entry, universal, typed),
            Found::Ambiguous => {
                tracing::warn!(provider = %self.s.prefix, "a login name matches several directory entries; refused");
                return Ok(AuthOutcome::Rejected(RejectCause::UnknownUser));
            }
        };
        let Some(universal) = universal else {
            tracing::warn!(provider = %self.s.prefix, dn = %entry.dn, attribute = %self.s.id_attribute, "directory entry has no usable id; refused");
            return Ok(AuthOutcome::Rejected(RejectCause::UnknownUser));
        };
        match self.connector.bind(&entry.dn, password).await {
            // The user's connection has served its purpose: checking the password.
            Ok(conn) => drop(conn),
            Err(Failure::Refused { rc, text }) => {
                return match refusal_cause(rc, &text) {
                    Ok(cause) => Ok(AuthOutcome::Rejected(cause)),
                    Err(m) => Err(self.unavailable(m)),
                }
            }
            Err(Failure::Unavailable(m)) => return Err(self.unavailable(m)),
        }
        Ok(AuthOutcome::Authenticated(
            self.principal(&entry, universal, &typed).await?,
        ))
    }

    async fn resolve(&self, universal: &str) -> Result<Option<Principal>, IdpError> {
        let value = match self.s.kind {
            DirectoryKind::Ad => match ad::guid_bytes(universal) {
                Some(raw) => escape::filter_bytes(&raw),
                None => return Ok(None),
            },
            DirectoryKind::Ldap if universal.is_empty() => return Ok(None),
            DirectoryKind::Ldap => ldap3::ldap_escape(universal).into_owned(),
        };
        let filter = format!("(&{}({}={value}))", self.s.user_filter, self.s.id_attribute);
        let found = self.find_users(&filter).await?;
        let [entry] = found.as_slice() else {
            return Ok(None);
        };
        let Some(id) = self.universal_of(entry) else {
            return Ok(None);
        };
        Ok(Some(self.principal(entry, id, "").await?))
    }

    async fn by_certificate(
        &self,
        field: super::certificate::CertField,
        value: &str,
    ) -> Result<super::certificate::CertMatch, IdpError> {
        self.by_certificate_value(field, value).await
    }

    async fn lookup(
        &self,
        query: crate::identity::lookup::Query<'_>,
    ) -> Result<crate::identity::lookup::Lookup, IdpError> {
        self.lookup_entry(query).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn provider(kind: &str, extra: &str) -> DirectoryProvider {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "x").expect("write");
        let text = format!(
            r#"
kind = "{kind}"
name = "T"
# Nothing listens here: these tests must not need a directory.
urls = ["ldap://127.0.0.1:9"]
starttls = false
bind_dn = "cn=svc,dc=corp,dc=example"
bind_password_file = "{}"
base_dn = "dc=corp,dc=example"
{extra}
"#,
            pw.display()
        );
        let c: LdapConfig = toml::from_str(&text).expect("config");
        DirectoryProvider::new(&c).expect("provider")
    }

    #[test]
    fn login_filters_escape_the_name() {
        let p = provider("ldap", "");
        assert_eq!(
            p.login_filter("*)(uid=*"),
            "(&(objectClass=person)(uid=\\2a\\29\\28uid=\\2a))"
        );
        let p = provider("ad", "");
        assert_eq!(
            p.login_filter("al*"),
            "(&(&(objectClass=user)(!(objectClass=computer)))(|(sAMAccountName=al\\2a)(userPrincipalName=al\\2a@corp.example)))"
        );
        assert!(p
            .login_filter("a@b.c")
            .contains("(userPrincipalName=a@b.c)"));
        for name in ["*", "a)(b", "x\\", "(|(uid=*))"] {
            assert!(ldap3::parse_filter(p.login_filter(name)).is_ok(), "{name}");
        }
    }

    #[test]
    fn domains_are_claimed_by_ad_providers() {
        let p = provider("ad", "");
        assert!(p.claims_domain("CORP") && p.claims_domain("corp"));
        assert!(p.claims_domain("Corp.Example"));
        assert!(!p.claims_domain("other") && !p.claims_domain("example"));
        let p = provider(
            "ad",
            "netbios_domain = \"VENQA\"\ndns_domain = \"venqa.test\"",
        );
        assert!(p.claims_domain("venqa") && p.claims_domain("VENQA.test"));
        assert!(!p.claims_domain("corp"));
        assert!(!provider("ldap", "").claims_domain("corp"));
    }

    #[test]
    fn ad_refusals_are_classified() {
        let ad = |data: &str| {
            format!("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data {data}, v1db1")
        };
        assert_eq!(
            refusal_cause(49, &ad("52e")).ok(),
            Some(RejectCause::WrongPassword)
        );
        assert_eq!(
            refusal_cause(49, &ad("533")).ok(),
            Some(RejectCause::Disabled)
        );
        assert_eq!(
            refusal_cause(49, &ad("775")).ok(),
            Some(RejectCause::Locked)
        );
        assert_eq!(refusal_cause(49, "").ok(), Some(RejectCause::WrongPassword));
        assert!(refusal_cause(8, "BindSimple: Transport encryption required.").is_err());
        assert!(refusal_cause(52, "").is_err());
    }

    #[tokio::test]
    async fn an_empty_password_never_reaches_the_directory() {
        // The URL has no server: reaching it would be `Unavailable`, not a rejection.
        let p = provider("ldap", "");
        let empty = Credential::Password(Secret::new(""));
        let out = p
            .authenticate(Candidate::new(None, Found::Ambiguous), &empty)
            .await;
        assert!(
            matches!(out, Ok(AuthOutcome::Rejected(RejectCause::EmptyPassword))),
            "{out:?}"
        );
        let out = p.identify("alice").await;
        assert!(matches!(out, Err(IdpError::Unavailable(_))), "{out:?}");
    }

    #[tokio::test]
    async fn malformed_universals_resolve_to_nobody_without_a_search() {
        let p = provider("ad", "");
        assert!(matches!(p.resolve("not-a-guid").await, Ok(None)));
        assert!(matches!(p.resolve("").await, Ok(None)));
    }
}
