//! The JWT grant's settings as the admin API carries them (`OAuthJwtMapping`,
//! `Configuration.JwtConfiguration`), their validation, and the compiled form the verifier uses.

use std::collections::BTreeMap;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use super::jws::clip;

/// The mapping record is the domain's (it is stored); its checks are here.
pub use crate::domain::JwtMapping;

impl JwtMapping {
    /// `JwksUri` with an empty string read as absent.
    pub fn jwks_uri(&self) -> Option<&str> {
        self.jwks_uri.as_deref().filter(|s| !s.trim().is_empty())
    }

    /// `GranteePrefixedUniversal` with an empty string read as absent.
    pub fn grantee(&self) -> Option<&str> {
        self.grantee_prefixed_universal
            .as_deref()
            .filter(|s| !s.trim().is_empty())
    }

    /// Checks one mapping on its own: required fields, URIs (HTTPS unless `NoHttps`), the
    /// regular expression. Returns it compiled.
    pub fn validate(&self, cache: &CacheConfiguration) -> Result<CompiledMapping, MappingError> {
        let bad = |field: &'static str, reason: String| MappingError::Invalid {
            name: self.name.clone(),
            field,
            reason,
        };
        for (field, value, max) in [
            ("Name", &self.name, 256),
            ("IssuerUri", &self.issuer_uri, 2048),
            ("PurposeField", &self.purpose_field, 256),
            ("PurposeMatch", &self.purpose_match, 2048),
            ("IdField", &self.id_field, 256),
            ("IdMatch", &self.id_match, MAX_PATTERN_LEN),
        ] {
            if value.trim().is_empty() {
                return Err(bad(field, "required".into()));
            }
            if value.len() > max {
                return Err(bad(field, format!("longer than {max} bytes")));
            }
        }
        if self.name.trim() != self.name {
            return Err(bad("Name", "leading or trailing spaces".into()));
        }
        for (field, value) in [
            ("PurposeField", &self.purpose_field),
            ("IdField", &self.id_field),
        ] {
            if value.starts_with('/') {
                // A JSON Pointer (RFC 6901): '~' must be followed by 0 or 1.
                let mut chars = value.chars().peekable();
                while let Some(c) = chars.next() {
                    if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                        return Err(bad(field, "bad JSON Pointer escape (~0 or ~1)".into()));
                    }
                }
            }
        }
        let source = match self.jwks_uri() {
            Some(j) => {
                check_url(j, cache.no_https).map_err(|r| bad("JwksUri", r))?;
                KeySource::Jwks(j.to_string())
            }
            None => {
                // Discovery needs an issuer that is a URL; with a JwksUri any string will do
                // (old Kubernetes clusters use `kubernetes/serviceaccount`).
                check_url(&self.issuer_uri, cache.no_https).map_err(|r| {
                    bad(
                        "IssuerUri",
                        format!("{r} (needed for OIDC discovery; or set JwksUri)"),
                    )
                })?;
                KeySource::Discovery
            }
        };
        let id_match = compile_id_match(&self.id_match).map_err(|r| bad("IdMatch", r))?;
        if self.grantee().is_none() && id_match.captures_len() < 2 {
            return Err(bad(
                "IdMatch",
                "has no capture group, and GranteePrefixedUniversal is empty: one of them must give the identity".into(),
            ));
        }
        Ok(CompiledMapping {
            mapping: self.clone(),
            source,
            id_match,
        })
    }
}

/// The longest `IdMatch` accepted.
pub const MAX_PATTERN_LEN: usize = 1024;

/// `IdMatch` in the `regex` crate's dialect, made to match the whole value: `\A(?:…)\z`. The
/// pattern is first compiled alone so that an unbalanced `)` cannot slip out of the anchors.
fn compile_id_match(pattern: &str) -> Result<Regex, String> {
    let build = |p: &str| {
        RegexBuilder::new(p)
            .size_limit(256 * 1024)
            .nest_limit(64)
            .build()
            .map_err(|e| match e {
                regex::Error::Syntax(s) => format!("not a valid regular expression: {s}"),
                other => format!("not a valid regular expression: {other}"),
            })
    };
    build(pattern)?;
    build(&format!(r"\A(?:{pattern})\z"))
}

fn check_url(s: &str, no_https: bool) -> Result<(), String> {
    let url = Url::parse(s).map_err(|e| format!("{:?} is not a URL: {e}", clip(s)))?;
    match url.scheme() {
        "https" => {}
        "http" if no_https => {}
        "http" => return Err("must be https (NoHttps is off)".into()),
        other => return Err(format!("scheme {other:?} (https only)")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment".into());
    }
    Ok(())
}

/// Checks that `candidate` agrees with the other mappings of its issuer on `JwksUri` ("only
/// one JWKS URI can be used per issuer"). `existing` may include a mapping of the same name
/// (the one an update replaces); it is not compared.
pub fn check_issuer_agreement(
    candidate: &JwtMapping,
    existing: &[JwtMapping],
) -> Result<(), MappingError> {
    for other in existing {
        if other.name != candidate.name
            && other.issuer_uri == candidate.issuer_uri
            && other.jwks_uri() != candidate.jwks_uri()
        {
            return Err(MappingError::JwksUriDisagrees {
                name: candidate.name.clone(),
                issuer: candidate.issuer_uri.clone(),
                other: other.name.clone(),
                other_jwks_uri: other.jwks_uri().unwrap_or("").to_string(),
            });
        }
    }
    Ok(())
}

/// A mapping refused by validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("JWT mapping {name:?}: {field}: {reason}")]
    Invalid {
        name: String,
        field: &'static str,
        reason: String,
    },
    #[error("JWT mapping {name:?}: issuer {issuer:?} already takes its keys from {} (mapping {other:?}); all mappings of one issuer must use the same JwksUri", if other_jwks_uri.is_empty() { "OIDC discovery".to_string() } else { format!("{other_jwks_uri:?}") })]
    JwksUriDisagrees {
        name: String,
        issuer: String,
        other: String,
        other_jwks_uri: String,
    },
    #[error("JWT mapping {0:?} exists twice")]
    Duplicate(String),
}

impl MappingError {
    /// The mapping the error is about.
    pub fn name(&self) -> &str {
        match self {
            MappingError::Invalid { name, .. }
            | MappingError::JwksUriDisagrees { name, .. }
            | MappingError::Duplicate(name) => name,
        }
    }
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeySource {
    /// `JwksUri`.
    Jwks(String),
    /// `{IssuerUri}/.well-known/openid-configuration` → `jwks_uri`.
    Discovery,
}

/// A validated mapping with its regular expression compiled.
#[derive(Debug, Clone)]
pub struct CompiledMapping {
    pub mapping: JwtMapping,
    pub source: KeySource,
    id_match: Regex,
}

/// Where an accepted token's identity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    /// The mapping's `GranteePrefixedUniversal`.
    Fixed,
    /// `IdMatch`'s first capture group.
    Captured,
}

/// Looks a claim up: a name, or, starting with `/`, a JSON Pointer into the claims
/// (`/kubernetes.io/namespace`).
fn claim<'a>(claims: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    if let Some(pointer) = field.strip_prefix('/') {
        let mut parts = pointer.split('/');
        let first = unescape_pointer(parts.next()?);
        let mut v = claims.get(first.as_str())?;
        for p in parts {
            let p = unescape_pointer(p);
            v = match v {
                Value::Object(m) => m.get(p.as_str())?,
                Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(v)
    } else {
        claims.get(field)
    }
}

fn unescape_pointer(s: &str) -> String {
    s.replace("~1", "/").replace("~0", "~")
}

impl CompiledMapping {
    /// Whether this mapping accepts the (already verified) claims: the identity it gives, or
    /// the reason it does not, for the audit trail.
    pub fn accept(&self, claims: &Map<String, Value>) -> Result<(String, IdentitySource), String> {
        let m = &self.mapping;
        let pf = &m.purpose_field;
        match claim(claims, pf) {
            None => return Err(format!("no {pf} claim")),
            Some(Value::String(s)) if *s == m.purpose_match => {}
            Some(Value::String(s)) => {
                return Err(format!(
                    "{pf} is {:?}, not {:?}",
                    clip(s),
                    clip(&m.purpose_match)
                ))
            }
            Some(Value::Array(a)) => {
                if !a
                    .iter()
                    .any(|v| v.as_str() == Some(m.purpose_match.as_str()))
                {
                    return Err(format!(
                        "{pf} does not contain {:?}",
                        clip(&m.purpose_match)
                    ));
                }
            }
            Some(_) => return Err(format!("{pf} is not a string or an array of strings")),
        }
        let idf = &m.id_field;
        let id = match claim(claims, idf) {
            None => return Err(format!("no {idf} claim")),
            Some(Value::String(s)) => s,
            Some(_) => return Err(format!("{idf} is not a string")),
        };
        let Some(caps) = self.id_match.captures(id) else {
            return Err(format!("{idf} {:?} does not match IdMatch", clip(id)));
        };
        if let Some(fixed) = m.grantee() {
            return Ok((fixed.to_string(), IdentitySource::Fixed));
        }
        match caps.get(1).map(|g| g.as_str()) {
            Some(g) if !g.is_empty() => Ok((g.to_string(), IdentitySource::Captured)),
            _ => Err(format!(
                "{idf} {:?} matches IdMatch but its first group is empty",
                clip(id)
            )),
        }
    }
}

/// The mappings of one issuer, in `Name` order.
#[derive(Debug, Clone)]
pub struct IssuerMappings {
    pub source: KeySource,
    pub mappings: Vec<CompiledMapping>,
}

/// All mappings, validated, grouped by issuer. Immutable: the verifier swaps in a new one when
/// the mappings change.
#[derive(Debug, Clone, Default)]
pub struct MappingSet {
    by_issuer: BTreeMap<String, IssuerMappings>,
}

impl MappingSet {
    /// Validates every mapping and their agreement per issuer; the first problem refuses the set.
    pub fn new(mappings: &[JwtMapping], cache: &CacheConfiguration) -> Result<Self, MappingError> {
        let (set, mut errors) = Self::load(mappings, cache);
        match errors.is_empty() {
            true => Ok(set),
            false => Err(errors.remove(0)),
        }
    }

    /// As [`MappingSet::new`], but skips the mappings that fail (returning why), so that one
    /// bad stored mapping (say, an `http` URI after `NoHttps` was turned off) does not disable
    /// the others. A group of one issuer that disagrees on `JwksUri` is skipped whole.
    pub fn load(mappings: &[JwtMapping], cache: &CacheConfiguration) -> (Self, Vec<MappingError>) {
        let mut errors = Vec::new();
        let mut sorted: Vec<&JwtMapping> = mappings.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let mut groups: BTreeMap<String, Vec<CompiledMapping>> = BTreeMap::new();
        let mut last_name: Option<&str> = None;
        for m in sorted {
            if last_name == Some(m.name.as_str()) {
                errors.push(MappingError::Duplicate(m.name.clone()));
                continue;
            }
            last_name = Some(m.name.as_str());
            match m.validate(cache) {
                Ok(c) => groups.entry(m.issuer_uri.clone()).or_default().push(c),
                Err(e) => errors.push(e),
            }
        }
        let mut by_issuer = BTreeMap::new();
        for (issuer, group) in groups {
            let first = &group[0];
            if let Some(odd) = group.iter().find(|c| c.source != first.source) {
                errors.push(MappingError::JwksUriDisagrees {
                    name: odd.mapping.name.clone(),
                    issuer,
                    other: first.mapping.name.clone(),
                    other_jwks_uri: first.mapping.jwks_uri().unwrap_or("").to_string(),
                });
                continue;
            }
            by_issuer.insert(
                issuer,
                IssuerMappings {
                    source: first.source.clone(),
                    mappings: group,
                },
            );
        }
        (MappingSet { by_issuer }, errors)
    }

    /// The mappings whose `IssuerUri` equals `iss` exactly.
    pub fn for_issuer(&self, iss: &str) -> Option<&IssuerMappings> {
        self.by_issuer.get(iss)
    }

    /// The trusted issuers and where their keys come from.
    pub fn issuers(&self) -> impl Iterator<Item = (&str, &KeySource)> {
        self.by_issuer.iter().map(|(i, g)| (i.as_str(), &g.source))
    }

    pub fn len(&self) -> usize {
        self.by_issuer.values().map(|g| g.mappings.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_issuer.is_empty()
    }
}

/// `Configuration.JwtConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JwtConfiguration {
    /// Seconds of tolerance on `exp`, `nbf` and `iat`.
    pub clock_skew: i32,
    pub cache_configuration: CacheConfiguration,
}

impl Default for JwtConfiguration {
    fn default() -> Self {
        Self {
            clock_skew: 60,
            cache_configuration: CacheConfiguration::default(),
        }
    }
}

/// `JwtConfiguration.CacheConfiguration`: how issuers' keys are fetched and kept. All times
/// in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CacheConfiguration {
    /// Most key fetches in flight at once, over all issuers.
    pub degree_of_parallelism: i32,
    /// Least time between two fetches for one issuer prompted by tokens (an unknown `kid`, or
    /// a retry after a failed fetch).
    pub refresh_delay: i32,
    /// Keys are kept at least this long, whatever the JWKS response's Cache-Control says.
    pub min_ttl: i32,
    /// Keys are refetched after at most this long.
    pub max_ttl: i32,
    /// Bound on each fetch (discovery and JWK Set together), connection included.
    pub timeout: i32,
    /// Allow `http` issuer and JWKS URIs. For tests only.
    pub no_https: bool,
    /// Skip the check that the discovery document's `issuer` equals `IssuerUri`. For tests only.
    pub no_oidc_issuer_check: bool,
    /// Period of the background pass that reloads the mappings and fetches the keys of every
    /// issuer whose keys are missing or due; 0 = no background pass.
    pub auto_refresh: i32,
}

impl Default for CacheConfiguration {
    fn default() -> Self {
        Self {
            degree_of_parallelism: 4,
            refresh_delay: 60,
            min_ttl: 300,
            max_ttl: 3600,
            timeout: 10,
            no_https: false,
            no_oidc_issuer_check: false,
            auto_refresh: 300,
        }
    }
}

/// A `JwtConfiguration` value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JwtConfiguration.{field}: {reason}")]
pub struct JwtConfigError {
    pub field: &'static str,
    pub reason: String,
}

const DAY: i32 = 86_400;

/// Where `JwtConfiguration` sits in the global configuration document.
pub const SETTINGS_KEY: &str = "JwtConfiguration";

impl JwtConfiguration {
    /// The settings' `JwtConfiguration` (defaults for what is absent). One that does not read
    /// or is out of range (the admin API refuses those, so only a hand-edited store holds one)
    /// gives the defaults, with a warning.
    pub fn from_settings(settings: &crate::domain::Settings) -> Self {
        let Some(v) = settings.other.get(SETTINGS_KEY) else {
            return Self::default();
        };
        match Self::from_value(v) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "stored JwtConfiguration ignored; the defaults apply");
                Self::default()
            }
        }
    }

    /// Reads and checks a `JwtConfiguration` object (null: the defaults).
    pub fn from_value(v: &Value) -> Result<Self, JwtConfigError> {
        let c: Self = if v.is_null() {
            Self::default()
        } else {
            serde_json::from_value(v.clone()).map_err(|e| JwtConfigError {
                field: "JwtConfiguration",
                reason: e.to_string(),
            })?
        };
        c.validate()?;
        Ok(c)
    }
}

impl JwtConfiguration {
    pub fn validate(&self) -> Result<(), JwtConfigError> {
        let c = &self.cache_configuration;
        let range = |field: &'static str, v: i32, lo: i32, hi: i32| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(JwtConfigError {
                    field,
                    reason: format!("{v} is outside {lo}..={hi}"),
                })
            }
        };
        range("ClockSkew", self.clock_skew, 0, 3600)?;
        range(
            "CacheConfiguration.DegreeOfParallelism",
            c.degree_of_parallelism,
            1,
            64,
        )?;
        range("CacheConfiguration.RefreshDelay", c.refresh_delay, 1, DAY)?;
        range("CacheConfiguration.MaxTtl", c.max_ttl, 1, 30 * DAY)?;
        range("CacheConfiguration.MinTtl", c.min_ttl, 0, c.max_ttl)?;
        range("CacheConfiguration.Timeout", c.timeout, 1, 300)?;
        range(
            "CacheConfiguration.AutoRefresh",
            c.auto_refresh,
            0,
            30 * DAY,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping(name: &str) -> JwtMapping {
        JwtMapping {
            name: name.into(),
            issuer_uri: "https://issuer.example".into(),
            jwks_uri: None,
            purpose_field: "aud".into(),
            purpose_match: "tpp".into(),
            id_field: "sub".into(),
            id_match: "system:serviceaccount:(.+)".into(),
            grantee_prefixed_universal: None,
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn cfg() -> CacheConfiguration {
        CacheConfiguration::default()
    }

    #[test]
    fn serde_names_are_the_admin_apis() {
        let mut m = mapping("ci");
        m.jwks_uri = Some("https://keys.example/jwks".into());
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(
            v,
            json!({"Name":"ci","IssuerUri":"https://issuer.example","JwksUri":"https://keys.example/jwks",
                   "PurposeField":"aud","PurposeMatch":"tpp","IdField":"sub",
                   "IdMatch":"system:serviceaccount:(.+)","GranteePrefixedUniversal":null})
        );
        // pyVenafi sends no JwksUri.
        let back: JwtMapping = serde_json::from_value(json!({"Name":"ci","IssuerUri":"https://i",
            "PurposeField":"aud","PurposeMatch":"tpp","IdField":"sub","IdMatch":"x",
            "GranteePrefixedUniversal":"local:bob"}))
        .unwrap();
        assert_eq!(back.jwks_uri, None);
        assert_eq!(back.grantee(), Some("local:bob"));

        let c = serde_json::to_value(JwtConfiguration::default()).unwrap();
        assert_eq!(
            c,
            json!({"ClockSkew":60,"CacheConfiguration":{"DegreeOfParallelism":4,"RefreshDelay":60,
                   "MinTtl":300,"MaxTtl":3600,"Timeout":10,"NoHttps":false,"NoOidcIssuerCheck":false,
                   "AutoRefresh":300}})
        );
        let partial: JwtConfiguration =
            serde_json::from_value(json!({"CacheConfiguration":{"Timeout":3}})).unwrap();
        assert_eq!(partial.clock_skew, 60);
        assert_eq!(partial.cache_configuration.timeout, 3);
        assert_eq!(partial.cache_configuration.max_ttl, 3600);
    }

    #[test]
    fn configuration_ranges() {
        assert!(JwtConfiguration::default().validate().is_ok());
        let mut c = JwtConfiguration::default();
        c.cache_configuration.min_ttl = 4000;
        assert_eq!(c.validate().unwrap_err().field, "CacheConfiguration.MinTtl");
        let c = JwtConfiguration {
            clock_skew: -1,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "ClockSkew");
        let mut c = JwtConfiguration::default();
        c.cache_configuration.refresh_delay = 0;
        assert!(c.validate().is_err());
        let mut c = JwtConfiguration::default();
        c.cache_configuration.timeout = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn mapping_validation() {
        assert!(mapping("ok").validate(&cfg()).is_ok());
        let field_of = |m: JwtMapping, c: &CacheConfiguration| match m.validate(c) {
            Err(MappingError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let mut m = mapping("x");
        m.issuer_uri = "http://issuer.example".into();
        assert_eq!(field_of(m.clone(), &cfg()), "IssuerUri");
        let lax = CacheConfiguration {
            no_https: true,
            ..cfg()
        };
        assert!(m.validate(&lax).is_ok());

        let mut m = mapping("x");
        m.jwks_uri = Some("http://keys.example/jwks".into());
        assert_eq!(field_of(m, &cfg()), "JwksUri");

        // A non-URL issuer is fine when the keys come from a JwksUri.
        let mut m = mapping("x");
        m.issuer_uri = "kubernetes/serviceaccount".into();
        assert_eq!(field_of(m.clone(), &cfg()), "IssuerUri");
        m.jwks_uri = Some("https://keys.example/jwks".into());
        assert!(m.validate(&cfg()).is_ok());

        for bad in [
            "ftp://x/y",
            "https://user:pw@x/",
            "https://x/#frag",
            "not a url",
        ] {
            let mut m = mapping("x");
            m.jwks_uri = Some(bad.into());
            assert_eq!(field_of(m, &cfg()), "JwksUri", "{bad}");
        }

        let mut m = mapping("x");
        m.id_match = "(unclosed".into();
        assert_eq!(field_of(m, &cfg()), "IdMatch");
        let mut m = mapping("x");
        m.id_match = "a)|(b".into();
        assert_eq!(field_of(m, &cfg()), "IdMatch");
        let mut m = mapping("x");
        m.id_match = "(?<=x)y".into(); // look-behind: not in the dialect
        assert_eq!(field_of(m, &cfg()), "IdMatch");

        // No group and no fixed grantee: nothing gives the identity.
        let mut m = mapping("x");
        m.id_match = "fixed-subject".into();
        assert_eq!(field_of(m.clone(), &cfg()), "IdMatch");
        m.grantee_prefixed_universal = Some("bob".into());
        assert!(m.validate(&cfg()).is_ok());

        let mut m = mapping("x");
        m.purpose_field = String::new();
        assert_eq!(field_of(m, &cfg()), "PurposeField");
        let mut m = mapping("x");
        m.id_field = "/a/~2".into();
        assert_eq!(field_of(m, &cfg()), "IdField");
        let mut m = mapping(" x");
        m.name = " x".into();
        assert_eq!(field_of(m, &cfg()), "Name");
    }

    #[test]
    fn one_jwks_uri_per_issuer() {
        let a = mapping("a");
        let mut b = mapping("b");
        b.jwks_uri = Some("https://keys.example/jwks".into());
        assert!(matches!(
            check_issuer_agreement(&b, std::slice::from_ref(&a)),
            Err(MappingError::JwksUriDisagrees { .. })
        ));
        // Replacing "a" itself is not a disagreement; an empty string is the same as absent.
        let mut a2 = a.clone();
        a2.jwks_uri = Some("https://keys.example/jwks".into());
        assert!(check_issuer_agreement(&a2, std::slice::from_ref(&a)).is_ok());
        let mut c = mapping("c");
        c.jwks_uri = Some(String::new());
        assert!(check_issuer_agreement(&c, std::slice::from_ref(&a)).is_ok());

        let err = MappingSet::new(&[a.clone(), b.clone()], &cfg()).unwrap_err();
        assert_eq!(err.name(), "b");
        let (set, errors) = MappingSet::load(&[a.clone(), b], &cfg());
        assert_eq!(errors.len(), 1);
        assert!(set.for_issuer("https://issuer.example").is_none());

        let dup = MappingSet::new(&[a.clone(), a], &cfg()).unwrap_err();
        assert_eq!(dup, MappingError::Duplicate("a".into()));
    }

    #[test]
    fn mappings_of_an_issuer_come_in_name_order() {
        let set = MappingSet::new(&[mapping("b"), mapping("a"), mapping("C")], &cfg()).unwrap();
        let names: Vec<_> = set
            .for_issuer("https://issuer.example")
            .unwrap()
            .mappings
            .iter()
            .map(|c| c.mapping.name.as_str())
            .collect();
        assert_eq!(names, ["C", "a", "b"]);
        assert!(set.for_issuer("https://issuer.example/").is_none());
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn purpose_must_equal_or_be_contained() {
        let m = mapping("m").validate(&cfg()).unwrap();
        let ok = |aud: Value| {
            m.accept(&claims(
                json!({"aud": aud, "sub": "system:serviceaccount:ns:sa"}),
            ))
        };
        assert!(ok(json!("tpp")).is_ok());
        assert!(ok(json!(["other", "tpp"])).is_ok());
        assert!(ok(json!("tpp2")).unwrap_err().contains("not \"tpp\""));
        assert!(ok(json!(["other"]))
            .unwrap_err()
            .contains("does not contain"));
        assert!(ok(json!(7)).is_err());
        assert!(ok(json!(["TPP"])).is_err());
        assert!(m
            .accept(&claims(json!({"sub": "system:serviceaccount:x"})))
            .unwrap_err()
            .contains("no aud claim"));
    }

    #[test]
    fn id_match_is_anchored_and_gives_the_first_group() {
        let m = mapping("m").validate(&cfg()).unwrap();
        let id = |sub: Value| m.accept(&claims(json!({"aud": "tpp", "sub": sub})));
        assert_eq!(
            id(json!("system:serviceaccount:ns:sa")).unwrap(),
            ("ns:sa".to_string(), IdentitySource::Captured)
        );
        // Whole-value matching: a prefix or suffix around the pattern is refused.
        assert!(id(json!("x-system:serviceaccount:ns:sa")).is_err());
        assert!(id(json!("system:serviceaccount:")).is_err());
        assert!(id(json!(42)).unwrap_err().contains("not a string"));

        let mut fixed = mapping("f");
        fixed.id_match = "repo:acme/app:ref:refs/heads/main".into();
        fixed.grantee_prefixed_universal = Some("local:deployer".into());
        let f = fixed.validate(&cfg()).unwrap();
        let got = f.accept(&claims(
            json!({"aud": "tpp", "sub": "repo:acme/app:ref:refs/heads/main"}),
        ));
        assert_eq!(
            got.unwrap(),
            ("local:deployer".to_string(), IdentitySource::Fixed)
        );
        assert!(f
            .accept(&claims(
                json!({"aud": "tpp", "sub": "repo:acme/app:ref:refs/heads/main2"})
            ))
            .is_err());

        // An optional first group that did not take part gives no identity.
        let mut opt = mapping("o");
        opt.id_match = "(a)?b".into();
        let o = opt.validate(&cfg()).unwrap();
        assert!(o
            .accept(&claims(json!({"aud": "tpp", "sub": "b"})))
            .unwrap_err()
            .contains("first group is empty"));
        assert_eq!(
            o.accept(&claims(json!({"aud": "tpp", "sub": "ab"})))
                .unwrap()
                .0,
            "a"
        );
    }

    #[test]
    fn fields_may_be_json_pointers() {
        let mut m = mapping("k8s");
        m.purpose_field = "/kubernetes.io/namespace".into();
        m.purpose_match = "build".into();
        m.id_field = "/kubernetes.io/serviceaccount/name".into();
        m.id_match = "(.+)".into();
        let c = m.validate(&cfg()).unwrap();
        let tok = claims(json!({"kubernetes.io": {"namespace": "build",
            "serviceaccount": {"name": "deployer", "uid": "u"}}, "a/b": {"~": "t"}}));
        assert_eq!(c.accept(&tok).unwrap().0, "deployer");
        assert_eq!(claim(&tok, "/a~1b/~0"), Some(&Value::String("t".into())));
        // A plain name containing dots is a claim name, not a path.
        assert!(claim(&tok, "kubernetes.io").is_some());
        assert!(claim(&tok, "/kubernetes.io/missing").is_none());
    }
}
