//! POST bodies: JSON (any charset) or form-urlencoded, at most [`MAX_BODY`] bytes.
//! A JSON `null` or `""` counts as missing; a non-string where a string is expected, or a body
//! that does not parse, is malformed.

use std::collections::{HashMap, HashSet};

use axum::body::Body;
use axum::extract::FromRequest;
use http::{header, HeaderMap, Request};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{CommonError, MAX_BODY};
use crate::secret::Secret;

/// foldhash, seeded per map: several times cheaper than the standard library's SipHash on
/// keys this short, and, by its authors' word minimally DoS-resistant: keys that collide are
/// not chosen without the seed, which no answer reveals.
type Hasher = foldhash::fast::RandomState;

#[derive(Debug, Default)]
pub struct Params {
    values: HashMap<String, Option<String>, Hasher>,
    /// Keys whose value was present but not a string (a number, object, array, bool).
    /// A set: a repeated key must cost a lookup, not a scan (a 64 KiB body holds thousands).
    non_strings: HashSet<String, Hasher>,
}

impl Params {
    /// Read straight into the map: no `serde_json::Value` tree in between (a gateway
    /// introspecting every call parses one of these per call). As with a `Value`, a repeated
    /// key counts once, with its last value.
    fn from_json(bytes: &[u8]) -> Result<Self, CommonError> {
        serde_json::from_slice(bytes).map_err(|_| CommonError::Malformed)
    }

    fn from_form(bytes: &[u8]) -> Result<Self, CommonError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(bytes).map_err(|_| CommonError::Malformed)?;
        let mut p = Params::default();
        for (k, v) in pairs {
            // The first occurrence of a repeated key wins.
            p.values.entry(k).or_insert(Some(v));
        }
        Ok(p)
    }

    pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<Self, CommonError> {
        let mime = content_type
            .and_then(|c| c.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase());
        match mime.as_deref() {
            Some("application/x-www-form-urlencoded") => Self::from_form(bytes),
            _ => Self::from_json(bytes),
        }
    }

    /// Fails (malformed) if any of `keys` was sent with a non-string value.
    pub fn require_strings(&self, keys: &[&str]) -> Result<(), CommonError> {
        if keys.iter().any(|k| self.non_strings.contains(*k)) {
            return Err(CommonError::Malformed);
        }
        Ok(())
    }

    /// A string parameter; absent, null and "" are all None.
    pub fn get(&self, key: &str) -> Option<String> {
        self.values
            .get(key)
            .and_then(|v| v.clone())
            .filter(|s| !s.is_empty())
    }

    pub fn secret(&self, key: &str) -> Option<Secret> {
        self.get(key).map(Secret::new)
    }
}

/// A JSON body's value: a string, null, or anything else (skipped, its key remembered).
enum Value {
    Str(String),
    Null,
    Other,
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Value, E> {
                Ok(Value::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Value, E> {
                Ok(Value::Str(v))
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
                Ok(Value::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
                Ok(Value::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
                Ok(Value::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
                Ok(Value::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Value::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Value::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON object's members; any other JSON is not a parameter set.
impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Params;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Params, A::Error> {
                let mut p = Params::default();
                while let Some((k, v)) = a.next_entry::<String, Value>()? {
                    // Usually empty: no key to hash then.
                    if !p.non_strings.is_empty() {
                        p.non_strings.remove(&k);
                    }
                    match v {
                        Value::Str(s) => {
                            p.values.insert(k, Some(s));
                        }
                        Value::Null => {
                            p.values.insert(k, None);
                        }
                        Value::Other => {
                            p.values.remove(&k);
                            p.non_strings.insert(k);
                        }
                    }
                }
                Ok(p)
            }
        }
        d.deserialize_map(V)
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
        Params::parse(content_type, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_form_bodies() {
        let p = Params::parse(
            Some("application/json; charset=utf-8"),
            br#"{"client_id":"a","state":"","x":null,"n":5}"#,
        )
        .unwrap_or_default();
        assert_eq!(p.get("client_id").as_deref(), Some("a"));
        assert_eq!(p.get("state"), None);
        assert_eq!(p.get("x"), None);
        assert!(p.require_strings(&["client_id"]).is_ok());
        assert!(p.require_strings(&["n"]).is_err());
        let f = Params::parse(
            Some("application/x-www-form-urlencoded"),
            b"client_id=a+b&scope=certificate%3Amanage&client_id=z",
        )
        .unwrap_or_default();
        assert_eq!(f.get("client_id").as_deref(), Some("a b"));
        assert_eq!(f.get("scope").as_deref(), Some("certificate:manage"));
    }

    #[test]
    fn malformed_bodies() {
        assert!(Params::parse(Some("application/json"), b"{").is_err());
        assert!(Params::parse(Some("application/json"), b"[1]").is_err());
        assert!(Params::parse(None, b"").is_err());
        assert!(Params::parse(Some("text/plain"), b"\"x\"").is_err());
    }

    #[test]
    fn json_values_of_every_kind_and_repeated_keys() {
        let p = Params::parse(
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
        assert!(Params::parse(Some("application/json"), br#"{"a":[1,}"#).is_err());
        assert!(Params::parse(Some("application/json"), br#"{"a":"x"} 1"#).is_err());
    }
}
