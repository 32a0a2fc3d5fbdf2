//! Which scope a proxied request needs: the operator's `[[gateway.route]]` rules (longest
//! prefix first), then the `/vedsdk` scope map (`vedsdk_scopes.tsv`). Paths are normalized
//! (percent-decoding, `.`/`..` and empty segments) and matched case-insensitively, so that a
//! spelling the upstream treats as the same path cannot dodge a rule.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::config::GatewayConfig;
use crate::scope::{Scope, CATALOGUE};

/// What a request needs of its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Any valid token.
    Any,
    /// Every item of this scope.
    Scope(Scope),
    /// This privilege on any scope name (the map's `:approve`, `:manage`).
    Privilege(&'static str),
}

impl Need {
    /// Parses a rule's or the map's scope column: empty or `-` = any valid token.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.is_empty() || t == "-" {
            return Ok(Need::Any);
        }
        if let Some(p) = t.strip_prefix(':') {
            return CATALOGUE
                .iter()
                .flat_map(|(_, privs)| privs.iter())
                .find(|known| known.eq_ignore_ascii_case(p))
                .map(|known| Need::Privilege(known))
                .ok_or_else(|| format!("'{t}' names no privilege"));
        }
        Scope::parse(&t.replace(' ', ";"))
            .map(Need::Scope)
            .map_err(|e| e.to_string())
    }

    /// Whether a grant's scope meets it.
    pub fn met_by(&self, held: &Scope) -> bool {
        match self {
            Need::Any => true,
            Need::Scope(s) => s.is_subset_of(held),
            Need::Privilege(p) => CATALOGUE.iter().any(|(name, _)| held.allows(name, Some(p))),
        }
    }

    /// For `WWW-Authenticate: Bearer error="insufficient_scope", scope="..."`.
    pub fn describe(&self) -> String {
        match self {
            Need::Any => String::new(),
            Need::Scope(s) => s.to_string(),
            Need::Privilege(p) => format!(":{p}"),
        }
    }
}

/// A path segment of the scope map: a literal (its number in [`Routes::words`]) or a
/// `{placeholder}`.
#[derive(Debug, Clone, Copy)]
enum Seg {
    Lit(u32),
    Any,
}

/// No scope map entry is longer (checked when the map is read): a check numbers its path's
/// segments in an array on the stack.
const MAX_SEGS: usize = 16;

#[derive(Debug, Clone)]
struct MapEntry {
    segs: Vec<Seg>,
    /// Literal segments: the more, the more specific.
    literals: usize,
    /// Index into [`Routes::needs`].
    need: usize,
}

#[derive(Debug, Clone)]
struct Rule {
    /// Normalized segments of the prefix.
    segs: Vec<String>,
    /// Upper case; empty = every method.
    methods: Vec<String>,
    need: Need,
}

/// The gateway's routing, built once at start.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    rules: Vec<Rule>,
    /// The scope map by method and segment count: a check compares its path with the few
    /// entries of its shape, not with all 368.
    /// (method, entries by segment count): a handful of methods, searched in order, and an
    /// index by count, so that a check hashes nothing to find them.
    map: Vec<(String, Vec<Vec<MapEntry>>)>,
    /// The map's distinct needs, each parsed once: its 368 entries name a few dozen scopes,
    /// and a parsed scope is a few hundred bytes a server holds for its lifetime.
    needs: Vec<Need>,
    /// The map's literal segments (lower case), numbered. A check looks each segment of its
    /// path up once and compares numbers: comparing the text with every entry of the path's
    /// shape was 26 string comparisons for a `GET /vedsdk/certificates/{guid}`.
    words: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    pub require_route: bool,
}

const VEDSDK_SCOPES: &str = include_str!("vedsdk_scopes.tsv");

/// Percent-decodes, drops empty and `.` segments, resolves `..`, lower-cases. The query is
/// not part of it.
pub fn normalize(path: &str) -> Vec<String> {
    segments(&decode(path))
        .into_iter()
        .map(Cow::into_owned)
        .collect()
}

/// The path without its query, percent-decoded (borrowed when nothing was encoded), with `\`
/// read as `/`. A gateway check does this on every call: each byte looked for (`?`, `#`, `%`,
/// `\`, all ASCII, so every index found is a character boundary) is found by a vectorised
/// scan rather than a loop over the bytes.
fn decode(path: &str) -> Cow<'_, str> {
    let b = path.as_bytes();
    let end = memchr::memchr2(b'?', b'#', b).unwrap_or(b.len());
    let path = path.get(..end).unwrap_or(path);
    let percent = memchr::memchr(b'%', path.as_bytes()).is_some();
    let decoded = if percent {
        percent_encoding::percent_decode_str(path).decode_utf8_lossy()
    } else {
        Cow::Borrowed(path)
    };
    // A `\` counts as `/`; decoding may have made one (`%5C`).
    if memchr::memchr(b'\\', decoded.as_bytes()).is_some() {
        Cow::Owned(decoded.replace('\\', "/"))
    } else {
        decoded
    }
}

/// Whether a text has nothing to lower-case: no ASCII capital, nothing beyond ASCII. Without an
/// early exit, so that the compiler can test many bytes at once.
fn is_lower_ascii(s: &str) -> bool {
    s.bytes().fold(0u8, |acc, b| {
        acc | u8::from(b.wrapping_sub(b'A') < 26) | (b & 0x80)
    }) == 0
}

/// [`normalize`]'s segments, borrowed from the decoded path where they are lower-case already:
/// a check on a gateway's hot path allocates one vector, not a string per segment.
fn segments(decoded: &str) -> Vec<Cow<'_, str>> {
    let mut out: Vec<Cow<'_, str>> = Vec::with_capacity(8);
    let lower = is_lower_ascii(decoded);
    let mut start = 0;
    // `/` is ASCII: each index is a character boundary. A `/` after the last byte ends the
    // last segment.
    let ends = memchr::memchr_iter(b'/', decoded.as_bytes()).chain(std::iter::once(decoded.len()));
    for i in ends {
        match decoded.get(start..i).unwrap_or_default() {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s if lower || is_lower_ascii(s) => out.push(Cow::Borrowed(s)),
            s => out.push(Cow::Owned(s.to_lowercase())),
        }
        start = i + 1;
    }
    out
}

impl Routes {
    pub fn new(cfg: &GatewayConfig) -> Result<Self, String> {
        let mut rules = Vec::new();
        for r in &cfg.route {
            rules.push(Rule {
                segs: normalize(&r.prefix),
                methods: r.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
                need: Need::parse(&r.scope)
                    .map_err(|e| format!("[[gateway.route]] {}: {e}", r.prefix))?,
            });
        }
        // Longest prefix first: the first rule that matches is the most specific.
        rules.sort_by_key(|r| std::cmp::Reverse(r.segs.len()));
        let mut map: Vec<(String, Vec<Vec<MapEntry>>)> = Vec::new();
        let mut needs: Vec<(&str, Need)> = Vec::new();
        let mut words = HashMap::<Box<str>, u32, _>::default();
        for line in VEDSDK_SCOPES.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let mut cols = line.split('\t');
            let (Some(method), Some(path), Some(scope)) = (cols.next(), cols.next(), cols.next())
            else {
                return Err(format!("scope map line '{line}' has not three columns"));
            };
            let segs: Vec<Seg> = path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| {
                    if s.starts_with('{') && s.ends_with('}') {
                        Seg::Any
                    } else {
                        let next = u32::try_from(words.len()).unwrap_or(u32::MAX);
                        Seg::Lit(*words.entry(s.to_lowercase().into()).or_insert(next))
                    }
                })
                .collect();
            if segs.len() > MAX_SEGS {
                return Err(format!("scope map {path}: more than {MAX_SEGS} segments"));
            }
            let literals = segs.iter().filter(|s| matches!(s, Seg::Lit(_))).count();
            let method = method.to_ascii_uppercase();
            let at = match map.iter().position(|(m, _)| *m == method) {
                Some(i) => i,
                None => {
                    map.push((method, Vec::new()));
                    map.len() - 1
                }
            };
            let Some((_, by_count)) = map.get_mut(at) else {
                continue;
            };
            if by_count.len() <= segs.len() {
                by_count.resize_with(segs.len() + 1, Vec::new);
            }
            let Some(entries) = by_count.get_mut(segs.len()) else {
                continue;
            };
            let need = match needs.iter().position(|(text, _)| *text == scope) {
                Some(i) => i,
                None => {
                    let n = Need::parse(scope).map_err(|e| format!("scope map {path}: {e}"))?;
                    needs.push((scope, n));
                    needs.len() - 1
                }
            };
            entries.push(MapEntry {
                segs,
                literals,
                need,
            });
        }
        Ok(Self {
            rules,
            map,
            needs: needs.into_iter().map(|(_, n)| n).collect(),
            words,
            require_route: cfg.require_route,
        })
    }

    /// What a request with this method and (raw) path needs; None when nothing matches.
    pub fn need(&self, method: &str, path: &str) -> Option<&Need> {
        let decoded = decode(path);
        let segs = segments(&decoded);
        let rule = self.rules.iter().find(|r| {
            segs.len() >= r.segs.len()
                && segs[..r.segs.len()] == r.segs[..]
                && (r.methods.is_empty()
                    || r.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
        });
        if let Some(r) = rule {
            return Some(&r.need);
        }
        // HEAD is answered like GET by the upstream, so it needs what GET needs.
        let method = if method.eq_ignore_ascii_case("HEAD") {
            "GET"
        } else {
            method
        };
        let entries = self
            .map
            .iter()
            .find(|(m, _)| m.eq_ignore_ascii_case(method))?
            .1
            .get(segs.len())?;
        // None for a segment no entry names, which only a placeholder matches.
        let mut words = [None; MAX_SEGS];
        for (word, s) in words.iter_mut().zip(&segs) {
            *word = self.words.get(s.as_ref()).copied();
        }
        entries
            .iter()
            .filter(|e| {
                e.segs.iter().zip(&words).all(|(p, w)| match p {
                    Seg::Lit(l) => Some(*l) == *w,
                    Seg::Any => true,
                })
            })
            // A literal segment beats a placeholder (`certificates/retrieve` over `{guid}`).
            .max_by_key(|e| e.literals)
            .and_then(|e| self.needs.get(e.need))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GatewayRoute;

    fn routes() -> Routes {
        Routes::new(&GatewayConfig {
            require_route: false,
            route: vec![
                GatewayRoute {
                    prefix: "/api".into(),
                    scope: "".into(),
                    methods: vec![],
                },
                GatewayRoute {
                    prefix: "/api/orders".into(),
                    scope: "certificate:manage".into(),
                    methods: vec!["post".into()],
                },
                GatewayRoute {
                    prefix: "/api/orders".into(),
                    scope: "certificate".into(),
                    methods: vec![],
                },
            ],
        })
        .unwrap()
    }

    fn scope(s: &str) -> Need {
        Need::Scope(Scope::parse(s).unwrap())
    }

    #[test]
    fn longest_prefix_and_method_decide() {
        let r = routes();
        assert_eq!(
            r.need("POST", "/api/orders/7"),
            Some(&scope("certificate:manage"))
        );
        assert_eq!(
            r.need("GET", "/api/orders/7?x=1"),
            Some(&scope("certificate"))
        );
        assert_eq!(r.need("GET", "/api/other"), Some(&Need::Any));
        // Not at a segment boundary: /api/ordersX is under /api only.
        assert_eq!(r.need("GET", "/api/ordersX"), Some(&Need::Any));
        assert_eq!(r.need("GET", "/elsewhere"), None);
    }

    #[test]
    fn spellings_cannot_dodge_a_rule() {
        let r = routes();
        for p in [
            "/API/Orders/7",
            "//api//orders/7",
            "/api/./orders/7",
            "/x/../api/orders/7",
            "/api/%6frders/7",
            "/api%2forders/7",
            "\\api\\orders/7",
            "/api%5Corders/7",
            "/api/orders/7?x=/elsewhere#y",
            "/api/ORDERS/7",
            "/api/orders/7#x?/",
        ] {
            assert_eq!(r.need("GET", p), Some(&scope("certificate")), "{p}");
        }
        // Beyond ASCII, lower-cased as text (only that segment is copied).
        assert_eq!(normalize("/\u{c0}B/c/%C3%89"), ["\u{e0}b", "c", "\u{e9}"]);
    }

    #[test]
    fn the_vedsdk_map_applies_with_placeholders_and_literal_preference() {
        let r = routes();
        assert_eq!(
            r.need("GET", "/vedsdk/certificates/{abc-123}"),
            Some(&scope("certificate"))
        );
        assert_eq!(
            r.need("DELETE", "/vedsdk/Certificates/abc"),
            Some(&scope("certificate:delete"))
        );
        assert_eq!(
            r.need("POST", "/vedsdk/certificates/checkpolicy"),
            Some(&scope("certificate:manage"))
        );
        assert_eq!(
            r.need("POST", "/vedsdk/metadata/set"),
            Some(&Need::Privilege("manage"))
        );
        assert_eq!(r.need("GET", "/vedsdk/nothing/here"), None);
        // Methods in any case; HEAD needs what GET needs; non-ASCII segments are lower-cased.
        assert_eq!(
            r.need("delete", "/vedsdk/certificates/abc"),
            Some(&scope("certificate:delete"))
        );
        assert_eq!(
            r.need("head", "/VEDSDK/certificates/ÄBC"),
            Some(&scope("certificate"))
        );
        assert_eq!(
            r.need("post", "/api/orders/7"),
            Some(&scope("certificate:manage"))
        );
        assert_eq!(normalize("/A/Ä%C3%96/b"), ["a", "äö", "b"]);
    }

    /// Every entry of the map, with its placeholders filled in, needs what a plain reading of
    /// the file says: among the lines of its method and length that match, the one with the
    /// most literal segments (the last of equals).
    #[test]
    fn each_map_entry_needs_what_the_file_says() {
        let r = Routes::new(&GatewayConfig::default()).unwrap();
        let lines: Vec<Vec<&str>> = VEDSDK_SCOPES
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split('\t').collect())
            .collect();
        let segs = |p: &str| -> Vec<String> {
            p.split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_lowercase)
                .collect()
        };
        let mut checked = 0;
        for l in &lines {
            let path: Vec<String> = segs(l[1])
                .into_iter()
                .map(|s| if s.starts_with('{') { "zz-9".into() } else { s })
                .collect();
            let expected = lines
                .iter()
                .filter(|o| o[0].eq_ignore_ascii_case(l[0]))
                .map(|o| (segs(o[1]), o[2]))
                .filter(|(o, _)| {
                    o.len() == path.len()
                        && o.iter()
                            .zip(&path)
                            .all(|(a, b)| a.starts_with('{') || a == b)
                })
                .max_by_key(|(o, _)| o.iter().filter(|s| !s.starts_with('{')).count())
                .map(|(_, scope)| Need::parse(scope).unwrap());
            let method = if l[0] == "GET" { "get" } else { l[0] };
            let asked = format!("/{}", path.join("/").to_uppercase());
            assert_eq!(r.need(method, &asked), expected.as_ref(), "{l:?}");
            checked += 1;
        }
        assert_eq!(checked, 368);
    }

    #[test]
    fn needs_are_met_by_scopes() {
        let held = Scope::parse("certificate:manage;ssh").unwrap();
        assert!(scope("certificate").met_by(&held));
        assert!(scope("certificate:manage").met_by(&held));
        assert!(!scope("certificate:delete").met_by(&held));
        assert!(Need::Privilege("manage").met_by(&held));
        assert!(!Need::Privilege("approve").met_by(&held));
        assert!(Need::Any.met_by(&held));
    }
}
