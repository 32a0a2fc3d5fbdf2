//! The console's session: a grant of `vedauth-admin` whose access token is the cookie's value
//! (HttpOnly, Secure, SameSite=Strict, host-only), the CSRF token derived from it, and the
//! double-submit token of the sign-in form (there is no session to derive one from yet).

use axum::response::{IntoResponse, Redirect, Response};
use http::{header, HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::super::ApiState;
use crate::admin::{Caller, Role};
use crate::domain::Identity;

/// The session cookie. `__Host-`: the browser keeps it only if Secure, Path=/ and no Domain.
pub const COOKIE: &str = "__Host-vedauth";
/// The sign-in form's double-submit token.
pub const SIGNIN_COOKIE: &str = "__Host-vedauth-signin";
/// The application whose grants the sessions are (decisions.md §14).
pub const CONSOLE_CLIENT: &str = "vedauth-admin";
/// The scope a session asks for: the administration API's.
pub const CONSOLE_SCOPE: &str = "admin";
/// A session ends this long after sign-in, whatever the grant's own lifetime.
pub const SESSION_SECS: i64 = 8 * 3600;

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for a host-only, script-invisible, same-site-only cookie; `None` clears it.
pub fn set_cookie(name: &str, value: Option<&str>) -> HeaderValue {
    let text = match value {
        Some(v) => format!("{name}={v}; Path=/; Secure; HttpOnly; SameSite=Strict"),
        None => format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
}

/// The CSRF token of a session: a digest of its secret, so it needs no storage, and a page
/// that leaks it does not leak the cookie.
pub fn csrf_of(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"vedauth console csrf\0");
    h.update(token.as_bytes());
    hex::encode(h.finalize())
}

/// Constant-time comparison of a presented CSRF token with the expected one.
pub fn same_token(presented: Option<&str>, expected: &str) -> bool {
    presented.is_some_and(|p| {
        p.len() == expected.len() && bool::from(p.as_bytes().ct_eq(expected.as_bytes()))
    })
}

/// A signed-in person.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub identity: Identity,
    /// How to show them (`local:alice`), or the identity when no provider names it.
    pub name: String,
    pub caller: Caller,
    pub csrf: String,
}

impl Session {
    fn system_roles(&self) -> impl Iterator<Item = Role> + '_ {
        let roles = match &self.caller {
            Caller::Operator => &[][..],
            Caller::Identity { roles, .. } => &roles[..],
        };
        roles
            .iter()
            .filter(|r| r.client_id.is_none())
            .map(|r| r.role)
    }
    pub fn is_admin(&self) -> bool {
        self.system_roles().any(|r| r == Role::Admin)
    }
    /// Reads everything (Admin, GrantAdmin, Auditor).
    pub fn reads_all(&self) -> bool {
        self.system_roles()
            .any(|r| matches!(r, Role::Admin | Role::GrantAdmin | Role::Auditor))
    }
    /// Reads the JWT mappings (Admin, Auditor: the administration core's rule for them).
    pub fn reads_jwt_mappings(&self) -> bool {
        self.system_roles()
            .any(|r| matches!(r, Role::Admin | Role::Auditor))
    }
    /// Sees some administration: reads everything, or holds a role on an application.
    pub fn administers(&self) -> bool {
        self.reads_all()
            || matches!(&self.caller, Caller::Identity { roles, .. } if roles.iter().any(|r| r.client_id.is_some()))
    }
}

/// To the sign-in page, coming back to `next` afterwards; the stale cookie is cleared.
pub fn to_signin(next: &str) -> Response {
    let target = format!(
        "/console/signin?next={}",
        percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC)
    );
    let mut res = Redirect::to(&target).into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, set_cookie(COOKIE, None));
    res
}

/// The session of a request, or the way to the sign-in page.
pub async fn session(
    state: &ApiState,
    headers: &HeaderMap,
    here: &str,
) -> Result<Session, Response> {
    let Some(token) = cookie(headers, COOKIE) else {
        return Err(to_signin(here));
    };
    let services = &state.services;
    let grant = match services.verify(token).await {
        Ok(g) => g,
        Err(_) => return Err(to_signin(here)),
    };
    if grant.client_id.as_str() != CONSOLE_CLIENT {
        return Err(to_signin(here));
    }
    if services.now() >= grant.issued_at + SESSION_SECS {
        // Ended by time: the grant goes too.
        let _ = services.revoke(token, None).await;
        return Err(to_signin(here));
    }
    let caller = match services.admin().caller(&grant.identity).await {
        Ok(c) => c,
        Err(_) => return Err(to_signin(here)),
    };
    let name = match services.principal(&grant.identity).await {
        Ok(Some(p)) => p.prefixed_name(),
        _ => grant.identity.to_string(),
    };
    Ok(Session {
        token: token.to_string(),
        identity: grant.identity.clone(),
        name,
        caller,
        csrf: csrf_of(token),
    })
}

/// Only local paths of the console are places to come back to (no open redirect).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/console")
                && !n.contains("//")
                && !n.contains('\\')
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_string()
        }
        _ => "/console".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_csrf_and_next() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-vedauth=tok; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "c"), None);
        let c = csrf_of("tok");
        assert_eq!(c.len(), 64);
        assert_ne!(c, csrf_of("tok2"));
        assert!(same_token(Some(&c), &c));
        assert!(!same_token(Some("x"), &c));
        assert!(!same_token(None, &c));
        assert_eq!(
            safe_next(Some("/console/device?user_code=BCDF-GHJK")),
            "/console/device?user_code=BCDF-GHJK"
        );
        assert_eq!(safe_next(Some("https://evil.example/")), "/console");
        assert_eq!(safe_next(Some("/console//evil.example")), "/console");
        assert_eq!(safe_next(None), "/console");
    }
}
