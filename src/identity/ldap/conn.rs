//! Connections to a directory: failover across the URLs, TLS, a timeout on every step, the
//! service account's pool, and a panic-free reading of search results.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ldap3::asn1::StructureTag;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchOptions, SearchResult};
use tokio::time::Instant;

use super::config::Settings;
use crate::secret::Secret;

/// Why a bind did not produce a connection.
#[derive(Debug)]
pub(super) enum Failure {
    /// No server could be reached, or the one reached stopped answering: the request gets 503.
    Unavailable(String),
    /// The server answered the bind with result code `rc`; `text` is its diagnostic message.
    Refused { rc: u32, text: String },
}

/// An open connection. Dropping it stops its driver task, so that a connection abandoned to a
/// server that hangs does not linger.
pub(super) struct Conn {
    ldap: Ldap,
    driver: tokio::task::AbortHandle,
    /// Index of the server's URL.
    server: usize,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// How long a server that failed goes to the back of the line. Without it, every new
/// connection would first wait out the connect timeout on a hung first server.
const SET_ASIDE: Duration = Duration::from_secs(30);

/// Opens connections: the URLs in order, TLS as configured, bounded in time.
#[derive(Debug)]
pub(super) struct Connector {
    urls: Vec<String>,
    starttls: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
    timeout: Duration,
    /// When each server last failed to connect or answer, if it did recently.
    failed_at: Mutex<Vec<Option<Instant>>>,
}

/// The order to try servers in: configured order, except that those that failed within
/// [`SET_ASIDE`] come last (still in configured order), so that they are tried when all else fails.
fn try_order(failed_at: &[Option<Instant>], now: Instant) -> Vec<usize> {
    let recent = |i: &usize| {
        failed_at
            .get(*i)
            .copied()
            .flatten()
            .is_some_and(|t| now.saturating_duration_since(t) < SET_ASIDE)
    };
    let (mut order, late): (Vec<usize>, Vec<usize>) =
        (0..failed_at.len()).partition(|i| !recent(i));
    order.extend(late);
    order
}

impl Connector {
    pub fn new(s: &Settings) -> Self {
        Self {
            urls: s.urls.clone(),
            starttls: s.starttls,
            tls: s.tls.clone(),
            connect_timeout: s.connect_timeout,
            timeout: s.timeout,
            failed_at: Mutex::new(vec![None; s.urls.len()]),
        }
    }

    pub fn mark(&self, server: usize, failed: bool) {
        let mut f = self
            .failed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = f.get_mut(server) {
            *slot = failed.then(Instant::now);
        }
    }

    /// A connection bound as `dn`. A server that refuses the connection, fails TLS or does not
    /// answer in time is skipped for the next; a server's answer to the bind, even a refusal,
    /// decides.
    pub async fn bind(&self, dn: &str, password: &Secret) -> Result<Conn, Failure> {
        let order = {
            let f = self
                .failed_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            try_order(&f, Instant::now())
        };
        let mut last = String::from("no server URL");
        for i in order {
            let Some(url) = self.urls.get(i) else {
                continue;
            };
            // A connection abandoned here is dropped with its driver; ldap3's own StartTLS
            // helper task ends when the server answers or closes.
            let mut conn = match tokio::time::timeout(self.connect_timeout, self.open(i, url)).await
            {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::warn!(%url, error = %e, "directory server unreachable");
                    last = format!("{url}: {e}");
                    self.mark(i, true);
                    continue;
                }
                Err(_) => {
                    tracing::warn!(%url, "directory server did not answer the connection");
                    last = format!("{url}: no answer within {:?}", self.connect_timeout);
                    self.mark(i, true);
                    continue;
                }
            };
            let bound =
                tokio::time::timeout(self.timeout, conn.ldap.simple_bind(dn, password.expose()))
                    .await;
            match bound {
                Ok(Ok(res)) => {
                    self.mark(i, false);
                    if res.rc == 0 {
                        return Ok(conn);
                    }
                    return Err(Failure::Refused {
                        rc: res.rc,
                        text: res.text,
                    });
                }
                Ok(Err(e)) => {
                    tracing::warn!(%url, error = %e, "directory bind failed");
                    last = format!("{url}: {e}");
                }
                Err(_) => {
                    tracing::warn!(%url, "directory server did not answer a bind");
                    last = format!("{url}: bind got no answer within {:?}", self.timeout);
                }
            }
            self.mark(i, true);
        }
        Err(Failure::Unavailable(last))
    }

    async fn open(&self, server: usize, url: &str) -> Result<Conn, ldap3::LdapError> {
        let plain = url
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("ldap://"));
        let mut settings = LdapConnSettings::new().set_starttls(plain && self.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, ldap) = LdapConnAsync::with_settings(settings, url).await?;
        let driver = tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "directory connection ended");
            }
        })
        .abort_handle();
        Ok(Conn {
            ldap,
            driver,
            server,
        })
    }
}

/// Why a search failed.
enum SearchError {
    /// No answer in time: the server hangs, the connection is dropped.
    Timeout,
    /// The connection broke.
    Transport(String),
    /// The server answered with an error result.
    Result(u32, String),
}

impl SearchError {
    fn describe(&self, timeout: Duration) -> String {
        match self {
            SearchError::Timeout => format!("search got no answer within {timeout:?}"),
            SearchError::Transport(e) => format!("search failed: {e}"),
            SearchError::Result(rc, text) => format!("search failed with result {rc}: {text}"),
        }
    }
}

/// Service-account connections for searches, at most `pool_size` at once.
pub(super) struct Pool {
    connector: Arc<Connector>,
    bind_dn: String,
    password: Secret,
    idle: Mutex<Vec<Conn>>,
    permits: tokio::sync::Semaphore,
    timeout: Duration,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("bind_dn", &self.bind_dn)
            .field("available", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Pool {
    pub fn new(connector: Arc<Connector>, s: &Settings) -> Self {
        Self {
            connector,
            bind_dn: s.bind_dn.clone(),
            password: s.bind_password.clone(),
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(s.pool_size),
            timeout: s.timeout,
        }
    }

    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(mut c) = idle.pop() {
            if !c.ldap.is_closed() {
                return Some(c);
            }
        }
        None
    }

    fn put_back(&self, conn: Conn) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
    }

    /// Searches the subtree under `base`; at most `size_limit` entries (0 = the server's limit).
    /// The error is the reason the directory counts as unavailable.
    pub async fn search(
        &self,
        base: &str,
        filter: &str,
        attrs: &[&str],
        size_limit: i32,
    ) -> Result<Vec<Entry>, String> {
        // Waiting for a free connection counts against the operation's time as well.
        let _permit = match tokio::time::timeout(self.timeout, self.permits.acquire()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err("connection pool closed".into()),
            Err(_) => {
                return Err(format!(
                    "no free directory connection within {:?}",
                    self.timeout
                ))
            }
        };
        if let Some(mut conn) = self.take_idle() {
            match run_search(
                &mut conn.ldap,
                self.timeout,
                base,
                filter,
                attrs,
                size_limit,
            )
            .await
            {
                Ok(entries) => {
                    self.put_back(conn);
                    return Ok(entries);
                }
                // The server broke the connection since it was last used (restarted, idle
                // timeout): one more try on a fresh connection.
                Err(SearchError::Transport(e)) => {
                    tracing::debug!(error = %e, "pooled directory connection broken; reconnecting");
                }
                Err(e @ SearchError::Result(..)) => {
                    self.put_back(conn);
                    return Err(e.describe(self.timeout));
                }
                Err(e @ SearchError::Timeout) => {
                    self.connector.mark(conn.server, true);
                    // Other idle connections to that server would hang the same way.
                    self.idle
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .retain(|c| c.server != conn.server);
                    return Err(e.describe(self.timeout));
                }
            }
        }
        let mut conn = match self.connector.bind(&self.bind_dn, &self.password).await {
            Ok(c) => c,
            Err(Failure::Unavailable(m)) => return Err(m),
            Err(Failure::Refused { rc, text }) => {
                return Err(format!(
                    "the service account's bind was refused (result {rc}: {text})"
                ))
            }
        };
        match run_search(
            &mut conn.ldap,
            self.timeout,
            base,
            filter,
            attrs,
            size_limit,
        )
        .await
        {
            Ok(entries) => {
                self.put_back(conn);
                Ok(entries)
            }
            Err(e) => Err(e.describe(self.timeout)),
        }
    }
}

async fn run_search(
    ldap: &mut Ldap,
    timeout: Duration,
    base: &str,
    filter: &str,
    attrs: &[&str],
    size_limit: i32,
) -> Result<Vec<Entry>, SearchError> {
    let search = ldap
        .with_search_options(SearchOptions::new().sizelimit(size_limit))
        .search(base, Scope::Subtree, filter, attrs);
    let SearchResult(raw, res) = match tokio::time::timeout(timeout, search).await {
        Err(_) => return Err(SearchError::Timeout),
        Ok(Err(e)) => return Err(SearchError::Transport(e.to_string())),
        Ok(Ok(r)) => r,
    };
    match res.rc {
        // 4, sizeLimitExceeded, comes with the entries up to the limit: callers ask for one more
        // than they accept.
        0 | 4 => {}
        // noSuchObject: the base does not exist, so nothing under it matches.
        32 => return Ok(Vec::new()),
        rc => return Err(SearchError::Result(rc, res.text)),
    }
    Ok(raw.into_iter().filter_map(|e| Entry::parse(e.0)).collect())
}

/// A search result entry: its DN and its attributes' raw values, by lower-cased name.
#[derive(Debug, Clone, Default)]
pub(super) struct Entry {
    pub dn: String,
    attrs: HashMap<String, Vec<Vec<u8>>>,
}

impl Entry {
    /// Reads a SearchResultEntry (RFC 4511 §4.5.2). Values stay bytes: objectGUID is binary.
    /// Anything malformed gives `None` rather than the panic of `SearchEntry::construct`.
    fn parse(tag: StructureTag) -> Option<Entry> {
        let mut parts = tag.match_id(4)?.expect_constructed()?.into_iter();
        let dn = String::from_utf8(parts.next()?.expect_primitive()?).ok()?;
        let mut attrs: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        for attr in parts.next()?.expect_constructed()? {
            let mut pair = attr.expect_constructed()?.into_iter();
            let name = String::from_utf8(pair.next()?.expect_primitive()?).ok()?;
            let values = pair
                .next()?
                .expect_constructed()?
                .into_iter()
                .map(StructureTag::expect_primitive)
                .collect::<Option<Vec<_>>>()?;
            attrs
                .entry(name.to_ascii_lowercase())
                .or_default()
                .extend(values);
        }
        Some(Entry { dn, attrs })
    }

    /// The first value of `attr` (case-insensitive name).
    pub fn first(&self, attr: &str) -> Option<&[u8]> {
        self.attrs
            .get(&attr.to_ascii_lowercase())
            .and_then(|v| v.first())
            .map(Vec::as_slice)
    }

    /// The first value of `attr` as text, if it is UTF-8.
    pub fn first_str(&self, attr: &str) -> Option<&str> {
        self.first(attr).and_then(|v| std::str::from_utf8(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3::asn1::{TagClass, PL};

    fn prim(id: u64, v: &[u8]) -> StructureTag {
        StructureTag {
            class: TagClass::Universal,
            id,
            payload: PL::P(v.to_vec()),
        }
    }
    fn cons(id: u64, class: TagClass, inner: Vec<StructureTag>) -> StructureTag {
        StructureTag {
            class,
            id,
            payload: PL::C(inner),
        }
    }

    #[test]
    fn servers_that_failed_recently_are_tried_last() {
        let now = Instant::now();
        let long_ago = now.checked_sub(SET_ASIDE * 2);
        assert_eq!(try_order(&[None, None, None], now), vec![0, 1, 2]);
        assert_eq!(try_order(&[Some(now), None, None], now), vec![1, 2, 0]);
        assert_eq!(try_order(&[Some(now), None, Some(now)], now), vec![1, 0, 2]);
        assert_eq!(try_order(&[long_ago, None], now), vec![0, 1]);
        assert_eq!(try_order(&[], now), Vec::<usize>::new());
    }

    #[test]
    fn entries_parse_and_bad_ones_are_skipped() {
        let guid = [0xffu8, 0x00, 0x10, 0x80];
        let attr = |name: &str, vals: &[&[u8]]| {
            cons(
                16,
                TagClass::Universal,
                vec![
                    prim(4, name.as_bytes()),
                    cons(
                        17,
                        TagClass::Universal,
                        vals.iter().map(|v| prim(4, v)).collect(),
                    ),
                ],
            )
        };
        let tag = cons(
            4,
            TagClass::Application,
            vec![
                prim(4, b"uid=a,dc=x"),
                cons(
                    16,
                    TagClass::Universal,
                    vec![attr("objectGUID", &[&guid]), attr("cn", &[b"A", b"B"])],
                ),
            ],
        );
        let e = Entry::parse(tag).expect("parses");
        assert_eq!(e.dn, "uid=a,dc=x");
        assert_eq!(e.first("OBJECTGUID"), Some(&guid[..]));
        assert_eq!(e.first_str("cn"), Some("A"));
        assert_eq!(e.first_str("objectguid"), None);
        assert_eq!(e.first("mail"), None);

        // A referral, or an entry whose DN is not a string: skipped, no panic.
        assert!(Entry::parse(prim(19, b"ldap://elsewhere")).is_none());
        let broken = cons(
            4,
            TagClass::Application,
            vec![cons(16, TagClass::Universal, vec![])],
        );
        assert!(Entry::parse(broken).is_none());
    }
}
