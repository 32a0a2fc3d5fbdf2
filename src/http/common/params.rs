//! POST bodies: JSON (UTF-8, whatever the charset parameter says) or form-urlencoded, at most
//! [`MAX_BODY`] bytes.
//! A JSON `null` or `""` counts as missing; a non-string where a string is expected, or a body
//! that does not parse, is malformed.

use axum::body::Body;
use axum::extract::FromRequest;
use bytes::Bytes;
use http::{header, HeaderMap, Request};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{CommonError, MAX_BODY};
use crate::secret::Secret;

/// A body's parameters in the order sent, each key and value a span of the body unless it had
/// to be decoded (a JSON escape, a form's `%XX` or `+`). No map and no copy, of the body or
/// per parameter: a gateway that introspects every call parses one of these per call, and
/// handlers ask for a handful of keys.
/// A lookup scans the entries, so a whole body costs a few linear passes, never a quadratic one
/// (a 64 KiB body holds thousands of keys).
#[derive(Debug, Default)]
pub struct Params {
    /// The body as received, checked as UTF-8 when parsed: every span is whole characters.
    body: Bytes,
    entries: Vec<(Text, Val)>,
    /// A repeated key: in a form the first occurrence counts, in JSON the last (as with any
    /// JSON object reader).
    first_wins: bool,
}

/// A string of the request: a byte range of the body, or decoded text.
#[derive(Debug)]
enum Text {
    At { start: u32, end: u32 },
    Own(Box<str>),
}

/// A parameter's value: a string, JSON `null`, or any other JSON (a number, object, array,
/// bool), which no parameter may be.
#[derive(Debug)]
enum Val {
    Str(Text),
    Null,
    Other,
}

impl Params {
    /// JSON is UTF-8 (RFC 8259 §8.1): a body that is not is malformed.
    fn from_json(body: Bytes) -> Result<Self, CommonError> {
        let text = std::str::from_utf8(&body).map_err(|_| CommonError::Malformed)?;
        let mut de = serde_json::Deserializer::from_str(text);
        let entries = Entries { base: &body }
            .deserialize(&mut de)
            .and_then(|e| de.end().map(|()| e))
            .map_err(|_| CommonError::Malformed)?;
        Ok(Params {
            body,
            entries,
            first_wins: false,
        })
    }

    pub fn parse(content_type: Option<&str>, body: Bytes) -> Result<Self, CommonError> {
        let form = content_type
            .and_then(|c| c.split(';').next())
            .is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form {
            return Self::from_json(body);
        }
        // A form that is not UTF-8 is read with an empty base: its pieces are all copies.
        let base: &[u8] = if std::str::from_utf8(&body).is_ok() {
            &body
        } else {
            &[]
        };
        let entries = form_pairs(base, &body);
        Ok(Params {
            entries,
            body,
            first_wins: true,
        })
    }

    fn bytes<'a>(&'a self, t: &'a Text) -> &'a [u8] {
        match t {
            Text::At { start, end } => self
                .body
                .get(*start as usize..*end as usize)
                .unwrap_or_default(),
            Text::Own(s) => s.as_bytes(),
        }
    }

    /// A span is whole characters of a body checked as UTF-8, so the check here never fails;
    /// it runs only for the values asked for, not for every key compared.
    fn text<'a>(&'a self, t: &'a Text) -> &'a str {
        std::str::from_utf8(self.bytes(t)).unwrap_or_default()
    }

    /// The value that counts for `key`, if it was sent.
    fn value(&self, key: &str) -> Option<&Val> {
        let is_key = |e: &&(Text, Val)| self.bytes(&e.0) == key.as_bytes();
        let found = if self.first_wins {
            self.entries.iter().find(is_key)
        } else {
            self.entries.iter().rev().find(is_key)
        };
        found.map(|(_, v)| v)
    }

    /// Fails (malformed) if any of `keys` was sent with a non-string value.
    pub fn require_strings(&self, keys: &[&str]) -> Result<(), CommonError> {
        // Usually nothing but strings was sent: one pass, no key compared.
        if !self.entries.iter().any(|(_, v)| matches!(v, Val::Other)) {
            return Ok(());
        }
        if keys
            .iter()
            .any(|k| matches!(self.value(k), Some(Val::Other)))
        {
            return Err(CommonError::Malformed);
        }
        Ok(())
    }

    /// A string parameter, borrowed; absent, null and "" are all None.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.value(key)? {
            Val::Str(t) => Some(self.text(t)).filter(|s| !s.is_empty()),
            Val::Null | Val::Other => None,
        }
    }

    /// A string parameter, copied; absent, null and "" are all None.
    pub fn get(&self, key: &str) -> Option<String> {
        self.str(key).map(str::to_owned)
    }

    pub fn secret(&self, key: &str) -> Option<Secret> {
        self.str(key).map(Secret::new)
    }
}

/// A form's pairs, as spans of `base` where the parser lent them from there. A form that is not
/// UTF-8 is read with an empty base: its pieces, decoded with replacement characters, are all
/// copies.
fn form_pairs(base: &[u8], form: &[u8]) -> Vec<(Text, Val)> {
    url::form_urlencoded::parse(form)
        .map(|(k, v)| (text(base, k), Val::Str(text(base, v))))
        .collect()
}

/// `s` as a span of `body` when the parser lent it from there, else as decoded text.
fn text(body: &[u8], s: std::borrow::Cow<'_, str>) -> Text {
    match s {
        std::borrow::Cow::Borrowed(b) => span(body, b),
        std::borrow::Cow::Owned(o) => Text::Own(o.into_boxed_str()),
    }
}

fn span(body: &[u8], s: &str) -> Text {
    let start = (s.as_ptr().addr()).wrapping_sub(body.as_ptr().addr());
    let end = start.wrapping_add(s.len());
    match (u32::try_from(start), u32::try_from(end)) {
        (Ok(start), Ok(end)) if start <= end && end as usize <= body.len() => {
            Text::At { start, end }
        }
        // Not from the body after all: keep a copy.
        _ => Text::Own(s.into()),
    }
}

/// A JSON object's members, read straight into entries (no `serde_json::Value` tree); any
/// other JSON is not a parameter set.
struct Entries<'b> {
    base: &'b [u8],
}

impl<'de> DeserializeSeed<'de> for Entries<'_> {
    type Value = Vec<(Text, Val)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_> {
    type Value = Vec<(Text, Val)>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(a.size_hint().unwrap_or(8).min(64));
        // A member's name reads as a value does; JSON's names are always strings.
        while let Some(k) = a.next_key_seed(Value { base: self.base })? {
            let Val::Str(k) = k else {
                return Err(serde::de::Error::custom(
                    "a member name that is not a string",
                ));
            };
            let v = a.next_value_seed(Value { base: self.base })?;
            entries.push((k, v));
        }
        Ok(entries)
    }
}

/// A member's value: a string, null, or anything else (skipped, remembered as not a string).
struct Value<'b> {
    base: &'b [u8],
}

impl<'de> DeserializeSeed<'de> for Value<'_> {
    type Value = Val;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Val, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Value<'_> {
    type Value = Val;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Val, E> {
        Ok(Val::Str(span(self.base, v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Val, E> {
        Ok(Val::Str(Text::Own(v.into())))
    }
    fn visit_unit<E>(self) -> Result<Val, E> {
        Ok(Val::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Val, E> {
        Ok(Val::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Val, E> {
        Ok(Val::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Val, E> {
        Ok(Val::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Val, E> {
        Ok(Val::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Val, A::Error> {
        while a.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Val::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Val, A::Error> {
        while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Val::Other)
    }
}

/// The body's media type, as `Params::parse` takes it.
fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = CommonError;

    async fn from_request(req: Request<Body>, _state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        Params::read(content_type(&parts.headers), body).await
    }
}

/// A POST's headers and parameters. The headers are moved, not copied as a `HeaderMap`
/// argument beside the body would be: introspection is on a gateway's hot path.
pub struct Posted {
    pub headers: HeaderMap,
    pub params: Result<Params, CommonError>,
}

impl<S: Send + Sync> FromRequest<S> for Posted {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request<Body>, _state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let params = Params::read(content_type(&parts.headers), body).await;
        Ok(Posted {
            headers: parts.headers,
            params,
        })
    }
}

impl Params {
    async fn read(content_type: Option<&str>, body: Body) -> Result<Self, CommonError> {
        let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
            // to_bytes reports an over-limit body as a length-limit error.
            let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = src {
                if s.is::<http_body_util::LengthLimitError>() {
                    return CommonError::TooLarge;
                }
                src = s.source();
            }
            CommonError::Malformed
        })?;
        Params::parse(content_type, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Params, CommonError> {
        Params::parse(content_type, Bytes::copy_from_slice(body))
    }

    /// How many parameter names are spans of the body rather than copies.
    fn name_spans(p: &Params) -> usize {
        p.entries
            .iter()
            .filter(|(k, _)| matches!(k, Text::At { .. }))
            .count()
    }

    #[test]
    fn json_and_form_bodies() {
        let p = parse(
            Some("application/json; charset=utf-8"),
            br#"{"client_id":"a","state":"","x":null,"n":5}"#,
        )
        .unwrap_or_default();
        assert_eq!(p.get("client_id").as_deref(), Some("a"));
        assert_eq!(p.get("state"), None);
        assert_eq!(p.get("x"), None);
        assert!(p.require_strings(&["client_id"]).is_ok());
        assert!(p.require_strings(&["n"]).is_err());
        let f = parse(
            Some("application/x-www-form-urlencoded"),
            b"client_id=a+b&scope=certificate%3Amanage&client_id=z",
        )
        .unwrap_or_default();
        assert_eq!(f.get("client_id").as_deref(), Some("a b"));
        assert_eq!(f.get("scope").as_deref(), Some("certificate:manage"));
    }

    #[test]
    fn escaped_and_encoded_text_reads_as_the_plain_text() {
        // Decoded keys and values (kept as copies) and plain ones (spans of the body) answer
        // the same lookups.
        let p = parse(
            Some("application/json"),
            br#"{"tok\u0065n":"a\/b","client_id":"plain","token_type_hint":"x"}"#,
        )
        .unwrap_or_default();
        assert_eq!(p.str("token"), Some("a/b"));
        assert_eq!(p.str("client_id"), Some("plain"));
        assert_eq!(p.str("tok"), None);
        // Of the three names, the escaped one is the copy.
        assert_eq!(name_spans(&p), 2);
        let f = parse(
            Some("Application/X-WWW-Form-Urlencoded; charset=utf-8"),
            b"tok%65n=a%2Fb&client_id=plain&token=second",
        )
        .unwrap_or_default();
        assert_eq!(f.str("token"), Some("a/b"));
        assert_eq!(f.str("client_id"), Some("plain"));
        assert_eq!(f.secret("client_id").map(|s| s.expose().len()), Some(5));
        assert_eq!(name_spans(&f), 2);
    }

    #[test]
    fn bodies_that_are_not_utf8() {
        // A form's bytes are decoded with replacement characters, as a form reader does.
        let f = parse(
            Some("application/x-www-form-urlencoded"),
            b"client_id=a\xffb&scope=s%C3%A9&n=1",
        )
        .unwrap_or_default();
        assert_eq!(f.str("client_id"), Some("a\u{fffd}b"));
        assert_eq!(f.str("scope"), Some("s\u{e9}"));
        assert_eq!(name_spans(&f), 0);
        // JSON must be UTF-8, inside strings or out.
        assert!(parse(Some("application/json"), b"{\"a\":\"\xff\"}").is_err());
        assert!(parse(Some("application/json"), b"{\"a\":\"x\",\"b\":[\"\xff\"]}").is_err());
    }

    #[test]
    fn malformed_bodies() {
        assert!(parse(Some("application/json"), b"{").is_err());
        assert!(parse(Some("application/json"), b"[1]").is_err());
        assert!(parse(None, b"").is_err());
        assert!(parse(Some("text/plain"), b"\"x\"").is_err());
    }

    #[test]
    fn json_values_of_every_kind_and_repeated_keys() {
        let p = parse(
            Some("application/json"),
            br#"{"a":"x","a":{"deep":[1,{"b":null}]},"b":[1,2],"b":"y","c":1.5,"d":true,"e":"\u00e9"}"#,
        )
        .unwrap_or_default();
        // The last value of a key counts, as with any JSON object reader.
        assert_eq!(p.get("a"), None);
        assert!(p.require_strings(&["a"]).is_err());
        assert_eq!(p.get("b").as_deref(), Some("y"));
        assert!(p.require_strings(&["b", "e"]).is_ok());
        assert!(p.require_strings(&["c"]).is_err());
        assert!(p.require_strings(&["d"]).is_err());
        assert_eq!(p.get("e").as_deref(), Some("\u{e9}"));
        assert!(parse(Some("application/json"), br#"{"a":[1,}"#).is_err());
        assert!(parse(Some("application/json"), br#"{"a":"x"} 1"#).is_err());
    }
}
