//! Client authentication (RFC 6749 §2.3.1): `client_secret_basic` (the `Authorization: Basic`
//! header, both parts form-urlencoded) or `client_secret_post` (`client_id`/`client_secret` in
//! the body); a public client sends its `client_id` alone (Basic with an empty password too).

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::{header, HeaderMap};

use super::super::common::Params;
use super::OAuthError;
use crate::secret::Secret;

/// What the request says about its client, before the secret is checked. The id is borrowed
/// from the body when it came there (introspection authenticates a client on every call).
#[derive(Debug)]
pub struct Presented<'a> {
    pub client_id: Cow<'a, str>,
    pub secret: Option<Secret>,
}

fn form_decode(s: &str) -> Option<String> {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// The Basic credentials of the header, if it holds Basic ones. A header with another scheme
/// (a stale bearer token) is not client authentication and is ignored.
fn basic(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let Some((scheme, rest)) = v.to_str().ok().and_then(|v| v.trim().split_once(' ')) else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(OAuthError::invalid_client)?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(OAuthError::invalid_client)?;
    let id = form_decode(id).ok_or_else(OAuthError::invalid_client)?;
    let secret = form_decode(secret).ok_or_else(OAuthError::invalid_client)?;
    Ok(Some((id, secret)))
}

/// The client a request names, by either method. Two methods at once (a secret in both the
/// header and the body) is refused, as RFC 6749 §2.3 requires; a request naming no client is
/// `invalid_client`.
pub fn presented<'a>(headers: &HeaderMap, p: &'a Params) -> Result<Presented<'a>, OAuthError> {
    let body_id = p.str("client_id");
    let body_secret = p.secret("client_secret");
    match basic(headers)? {
        Some((id, secret)) => {
            if body_secret.is_some() {
                return Err(OAuthError::invalid_request(
                    "Use one client authentication method, not both",
                ));
            }
            if body_id.is_some_and(|b| b != id) {
                return Err(OAuthError::invalid_request(
                    "client_id in the body differs from the Authorization header's",
                ));
            }
            if id.is_empty() {
                return Err(OAuthError::invalid_client());
            }
            Ok(Presented {
                client_id: Cow::Owned(id),
                secret: (!secret.is_empty()).then(|| Secret::new(secret)),
            })
        }
        None => Ok(Presented {
            client_id: Cow::Borrowed(body_id.ok_or_else(OAuthError::invalid_client)?),
            secret: body_secret,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_basic(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(v))).unwrap(),
        );
        h
    }

    fn params(body: &str) -> Params {
        Params::parse(
            Some("application/x-www-form-urlencoded"),
            bytes::Bytes::copy_from_slice(body.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn basic_and_post_and_public_clients() {
        let empty = params("");
        let p = presented(&with_basic("my%20app:s%3Acret"), &empty).unwrap();
        assert_eq!(p.client_id, "my app");
        assert_eq!(p.secret.as_ref().map(|s| s.expose()), Some("s:cret"));
        // golang.org/x/oauth2 sends a public client as Basic with an empty password.
        let p = presented(&with_basic("app:"), &empty).unwrap();
        assert!(p.secret.is_none());
        let both = params("client_id=a&client_secret=b");
        let p = presented(&HeaderMap::new(), &both).unwrap();
        assert_eq!((&*p.client_id, p.secret.is_some()), ("a", true));
        let id_only = params("client_id=a");
        let p = presented(&HeaderMap::new(), &id_only).unwrap();
        assert!(p.secret.is_none());
    }

    #[test]
    fn refusals() {
        let e = |h: &HeaderMap, b: &str| presented(h, &params(b)).err().map(|e| e.error);
        assert_eq!(e(&HeaderMap::new(), ""), Some("invalid_client"));
        assert_eq!(
            e(&with_basic("a:b"), "client_secret=c"),
            Some("invalid_request")
        );
        assert_eq!(
            e(&with_basic("a:b"), "client_id=z"),
            Some("invalid_request")
        );
        assert_eq!(e(&with_basic("nocolon"), ""), Some("invalid_client"));
        // A stale bearer token is not client authentication.
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer x=="),
        );
        assert!(e(&h, "client_id=a").is_none());
    }
}
