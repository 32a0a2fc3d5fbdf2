//! `POST /oauth2/introspect` (RFC 7662) and `POST /oauth2/revoke` (RFC 7009).

use std::borrow::Cow;

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

use super::super::common::{
    bearer, json_bytes, json_rendered, json_response, no_store, Client, Params, Posted,
};
use super::super::ApiState;
use super::client::presented;
use super::{tpp_scope, OAuthError};
use crate::domain::Grant;
use crate::grants::{GrantError, Rendering, TokenUse};
use crate::scope::Scope;

/// The token parameter. Tokens hold `+`, `/` and `=`: a caller that did not percent-encode
/// them (`curl -d token=ab+c==`) sent spaces where the `+` were, which no token has.
fn token_param(p: &Params) -> Result<Cow<'_, str>, OAuthError> {
    let t = p
        .str("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    Ok(if t.contains(' ') {
        Cow::Owned(t.replace(' ', "+"))
    } else {
        Cow::Borrowed(t)
    })
}

fn refresh_first(p: &Params) -> bool {
    p.str("token_type_hint") == Some("refresh_token")
}

/// Who may introspect: a confidential client (an application with a secret), or a bearer
/// token holding the `admin` scope. Returns the client's id, None for an admin token.
async fn introspection_caller<'a>(
    app: &ApiState,
    headers: &HeaderMap,
    p: &'a Params,
    source: std::net::IpAddr,
) -> Result<Option<Cow<'a, str>>, OAuthError> {
    if let Some(t) = bearer(headers) {
        let grant = match app.services.verify(t).await {
            Ok(g) => g,
            Err(GrantError::InvalidToken) => return Err(OAuthError::invalid_client()),
            Err(e) => return Err(e.into()),
        };
        let admin = grant.held_scope().allows("admin", None);
        return if admin {
            Ok(None)
        } else {
            Err(OAuthError::invalid_client())
        };
    }
    let client = presented(headers, p)?;
    let auth = app
        .services
        .authenticate_client(&client.client_id, client.secret.as_ref(), Some(source))
        .await?;
    if !auth.confidential {
        return Err(OAuthError::invalid_client());
    }
    Ok(Some(client.client_id))
}

/// The space-separated scope tokens of a canonical scope, each privilege also as its own
/// `name:priv` token and each name as its bare read, so that a gateway can test for one
/// token by exact match (`certificate:manage,revoke` gives `certificate certificate:manage
/// certificate:revoke`).
pub fn expanded_scope(canonical: &str) -> String {
    let mut out = Vec::new();
    for item in canonical.split(';').filter(|s| !s.is_empty()) {
        match item.split_once(':') {
            Some((name, privs)) => {
                out.push(name.to_string());
                out.extend(privs.split(',').map(|p| format!("{name}:{p}")));
            }
            None => out.push(item.to_string()),
        }
    }
    out.join(" ")
}

fn inactive() -> Response {
    no_store(json_response(StatusCode::OK, &json!({"active": false})))
}

pub async fn introspect(
    State(app): State<ApiState>,
    Client(source): Client,
    Posted { headers, params }: Posted,
) -> Result<Response, OAuthError> {
    let p = params?;
    p.require_strings(&[
        "token",
        "token_type_hint",
        "scope",
        "client_id",
        "client_secret",
    ])?;
    let caller = introspection_caller(&app, &headers, &p, source).await?;
    let token = token_param(&p)?;
    let Some((grant, kind)) = app.services.find_token(&token, refresh_first(&p)).await? else {
        return Ok(inactive());
    };
    // A refresh token is only its own client's business.
    if kind == TokenUse::Refresh
        && caller
            .as_deref()
            .is_some_and(|c| c != grant.client_id.as_str())
    {
        return Ok(inactive());
    }
    // Hydra's `scope` parameter: active only if the token holds all of it.
    if let Some(want) = p.str("scope") {
        if !Scope::parse(&tpp_scope(want)).is_ok_and(|w| w.is_subset_of(grant.held_scope())) {
            return Ok(inactive());
        }
    }
    // An access token's answer is kept with its cached grant: a gateway introspects the same
    // token on every call. A refresh token's grant is not cached, so nothing is kept for it.
    let keep = kind == TokenUse::Access;
    if let Some(body) = keep
        .then(|| grant.rendered::<Bytes>(Rendering::IntrospectionBody, |_| None))
        .flatten()
    {
        return Ok(no_store(json_rendered(StatusCode::OK, body)));
    }
    let name = app.services.display_name(&grant.identity).await;
    let render = |g: &Grant| active_body(g, kind, name.as_deref(), &app.issuer);
    // Not kept without the name (its directory did not answer this time).
    let body = if keep && name.is_some() {
        grant
            .rendered(Rendering::IntrospectionBody, |g| Some(render(g)))
            .unwrap_or_else(|| render(&grant))
    } else {
        render(&grant)
    };
    Ok(no_store(json_rendered(StatusCode::OK, body)))
}

/// The answer for a live token. `name`: the identity's name, left out when its directory does
/// not answer rather than failing the introspection.
fn active_body(grant: &Grant, kind: TokenUse, name: Option<&str>, issuer: &str) -> Bytes {
    let (iat, exp) = match kind {
        TokenUse::Access => (grant.access_issued_at, Some(grant.access_expires_at)),
        TokenUse::Refresh => (grant.access_issued_at, grant.expires_at),
    };
    let mut m = Map::new();
    m.insert("active".into(), json!(true));
    m.insert("scope".into(), json!(expanded_scope(&grant.scope)));
    m.insert("client_id".into(), json!(grant.client_id));
    if let Some(name) = name {
        m.insert("username".into(), json!(name));
    }
    m.insert("sub".into(), json!(grant.identity));
    m.insert("token_type".into(), json!("Bearer"));
    m.insert("token_use".into(), json!(kind.as_str()));
    if let Some(exp) = exp {
        m.insert("exp".into(), json!(exp));
    }
    m.insert("iat".into(), json!(iat));
    m.insert("nbf".into(), json!(iat));
    m.insert("iss".into(), json!(issuer.trim_end_matches('/')));
    m.insert("vedauth_scope".into(), json!(grant.scope));
    m.insert("grant_issued".into(), json!(grant.issued_at));
    m.insert(
        "grant_expires".into(),
        grant.expires_at.map_or(Value::Null, |e| json!(e)),
    );
    json_bytes(&m)
}

pub async fn revoke(
    State(app): State<ApiState>,
    Client(source): Client,
    Posted { headers, params }: Posted,
) -> Result<Response, OAuthError> {
    let p = params?;
    p.require_strings(&["token", "token_type_hint", "client_id", "client_secret"])?;
    let client = presented(&headers, &p)?;
    app.services
        .authenticate_client(&client.client_id, client.secret.as_ref(), Some(source))
        .await?;
    let token = token_param(&p)?;
    // RFC 7009 §2.2: 200 whether or not there was anything to revoke; a token of another
    // client is left alone.
    app.services
        .revoke_token(&token, refresh_first(&p), &client.client_id, Some(source))
        .await?;
    Ok(no_store(json_response(StatusCode::OK, &json!({}))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expanded_scopes_list_every_token() {
        assert_eq!(
            expanded_scope("certificate:manage,revoke;configuration"),
            "certificate certificate:manage certificate:revoke configuration"
        );
    }
}
