//! POST bodies: JSON (any charset) or form-urlencoded, at most [`MAX_BODY`] bytes.
//! A JSON `null` or `""` counts as missing; a non-string where a string is expected, or a body
//! that does not parse, is malformed.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::FromRequest;
use http::{header, Request};

use super::{CommonError, MAX_BODY};
use crate::secret::Secret;

#[derive(Debug, Default)]
pub struct Params {
    values: HashMap<String, Option<String>>,
    /// Keys whose value was present but not a string (a number, object, array, bool).
    non_strings: Vec<String>,
}

impl Params {
    fn from_json(bytes: &[u8]) -> Result<Self, CommonError> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|_| CommonError::Malformed)?;
        let serde_json::Value::Object(map) = v else {
            return Err(CommonError::Malformed);
        };
        let mut p = Params::default();
        for (k, v) in map {
            match v {
                serde_json::Value::String(s) => {
                    p.values.insert(k, Some(s));
                }
                serde_json::Value::Null => {
                    p.values.insert(k, None);
                }
                _ => p.non_strings.push(k),
            }
        }
        Ok(p)
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
        if self.non_strings.iter().any(|k| keys.contains(&k.as_str())) {
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

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = CommonError;

    async fn from_request(req: Request<Body>, _state: &S) -> Result<Self, Self::Rejection> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .map_err(|e| {
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
        Params::parse(ct.as_deref(), &bytes)
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
}
