//! The JWT flow's admission (decisions.md §12; docs/jwt.md): the switch, the token checked by
//! the [`JwtVerifier`] against the stored mappings, the identity it names resolved through the
//! identity providers, the token used once, then the one `issue`.
//!
//! The mappings and `JwtConfiguration` are read from the store with every request (with the
//! settings, concurrently), so that a change made on another node or by the command line
//! applies at once; the verifier recompiles them only when they changed. Every refusal is
//! audited (`login_failed`, cause and real reason); the client sees only the documented text.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::audit::Event;
use crate::domain::{JwtMapping, JwtUse, Settings};
use crate::identity::lookup::{Kind, Lookup};
use crate::identity::Principal;
use crate::jwt::{
    FetchSetupError, FetchTrust, JwtAccepted, JwtConfiguration, JwtErrorClass, JwtVerifier,
    MappingSet,
};
use crate::scope::Scope;
use crate::token::TokenDigest;

use super::super::error::GrantError;
use super::super::request::{Admission, Admitted, GrantType, JwtRequest};
use super::super::Engine;

/// The JWT grant's verifier (with its per-issuer key cache) and what it was last given.
#[derive(Debug)]
pub struct JwtGrant {
    verifier: JwtVerifier,
    /// The stored mappings and settings the verifier holds, to notice a change.
    seen: Mutex<Option<(Vec<JwtMapping>, JwtConfiguration)>>,
    /// When the background refresh last ran (`AutoRefresh`).
    last_refresh: AtomicI64,
}

impl JwtGrant {
    /// Fetches keys over HTTPS trusting `trust`; mappings come from the store at first use.
    pub fn new(trust: &FetchTrust) -> Result<Self, FetchSetupError> {
        Ok(Self {
            verifier: JwtVerifier::new(JwtConfiguration::default(), MappingSet::default(), trust)?,
            seen: Mutex::new(None),
            last_refresh: AtomicI64::new(i64::MIN),
        })
    }

    pub fn verifier(&self) -> &JwtVerifier {
        &self.verifier
    }

    /// Brings the verifier in line with the stored mappings and settings. A stored mapping
    /// that no longer validates (say an `http` URI after `NoHttps` was turned off) is skipped
    /// with a warning; the others keep working.
    fn sync(&self, mappings: Vec<JwtMapping>, config: JwtConfiguration) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen
            .as_ref()
            .is_some_and(|(m, c)| *m == mappings && *c == config)
        {
            return;
        }
        if let Err(e) = self.verifier.set_configuration(config.clone()) {
            tracing::warn!(error = %e, "JwtConfiguration not applied");
        }
        let (set, errors) = MappingSet::load(&mappings, &config.cache_configuration);
        for e in errors {
            tracing::warn!(mapping = e.name(), error = %e, "JWT mapping skipped");
        }
        self.verifier.set_mappings(set);
        *seen = Some((mappings, config));
    }
}

/// What a dry run of the JWT grant found, step by step (`vedauth jwt explain`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct JwtExplanation {
    /// Each step and its outcome: `(step, Ok(what passed) | Err(why it refused))`.
    pub steps: Vec<(String, Result<String, String>)>,
    /// The identity a grant would go to, when every step passed.
    pub identity: Option<String>,
}

impl JwtExplanation {
    /// The step that refused, if one did.
    pub fn refused_at(&self) -> Option<&str> {
        self.steps
            .iter()
            .find(|(_, r)| r.is_err())
            .map(|(s, _)| s.as_str())
    }
}

/// Why the identity named by an accepted token cannot have a grant.
struct IdentityRefusal {
    cause: &'static str,
    reason: String,
    class: JwtErrorClass,
}

impl Engine {
    fn jwt_grant(&self) -> Result<&JwtGrant, GrantError> {
        self.jwt
            .as_deref()
            .ok_or_else(|| GrantError::Unavailable("the JWT grant is not set up".into()))
    }

    /// Reads the mappings and settings and hands them to the verifier.
    async fn jwt_synced(&self) -> Result<(&JwtGrant, Arc<Settings>), GrantError> {
        let grant = self.jwt_grant()?;
        let (settings, mappings) =
            tokio::try_join!(self.settings(), self.store.list_jwt_mappings())?;
        grant.sync(mappings, JwtConfiguration::from_settings(&settings));
        Ok((grant, settings))
    }

    /// The user an accepted token names (a name or a prefixed universal), resolved through
    /// the identity providers, and still allowed to sign in (not disabled, not locked).
    async fn jwt_principal(
        &self,
        text: &str,
    ) -> Result<Result<Principal, IdentityRefusal>, GrantError> {
        let unknown = |reason: String| IdentityRefusal {
            cause: "unknown_identity",
            reason,
            class: JwtErrorClass::NoMapping,
        };
        let named = match self.identities.find(text).await? {
            Lookup::Found(n) if n.kind == Kind::User => n,
            Lookup::Found(n) => {
                return Ok(Err(unknown(format!(
                    "{text:?} is the group {}, not a user",
                    n.identity
                ))))
            }
            Lookup::Ambiguous => {
                return Ok(Err(unknown(format!("{text:?} names several users"))));
            }
            Lookup::NotFound | Lookup::Unsupported => {
                return Ok(Err(unknown(format!("no identity provider knows {text:?}"))));
            }
        };
        let Some(principal) = self.identities.resolve(&named.identity).await? else {
            return Ok(Err(unknown(format!("{} is gone", named.identity))));
        };
        let identity = principal.prefixed_universal();
        let refused = |cause, reason: String| {
            Ok(Err(IdentityRefusal {
                cause,
                reason,
                class: JwtErrorClass::NotValid,
            }))
        };
        if principal.prefix == "local" {
            let id = principal.universal.trim_matches(|c| c == '{' || c == '}');
            if self.store.user_by_id(id).await?.is_none_or(|u| u.disabled) {
                return refused("disabled", format!("{identity} is disabled"));
            }
        }
        if let Some(lockout) = self.identities.lockout() {
            if let Some(until) = lockout.state(&identity).await?.locked_until {
                return refused("locked", format!("{identity} is locked until {until}"));
            }
        }
        Ok(Ok(principal))
    }

    /// The background refresh (`JwtConfiguration.CacheConfiguration.AutoRefresh`): when the
    /// grant is on and `AutoRefresh` seconds passed since the last pass, reloads the mappings
    /// and fetches the keys of every issuer whose keys are missing or due, so that tokens
    /// seldom wait for a fetch. Called often (the server ticks it); returns each issuer's key
    /// count or failure when it ran, None when it was not due.
    pub async fn refresh_jwt_keys(
        &self,
    ) -> Result<Option<Vec<(String, Result<usize, String>)>>, GrantError> {
        let (grant, settings) = self.jwt_synced().await?;
        let every = i64::from(
            grant
                .verifier
                .configuration()
                .cache_configuration
                .auto_refresh,
        );
        let now = self.now();
        let last = grant.last_refresh.load(Ordering::Relaxed);
        if !settings.authorize_by_jwt
            || every <= 0
            || now.saturating_sub(last) < every
            || grant.verifier.mappings().is_empty()
        {
            return Ok(None);
        }
        grant.last_refresh.store(now, Ordering::Relaxed);
        let results = grant.verifier.refresh_all(now).await;
        for (issuer, r) in &results {
            if let Err(e) = r {
                tracing::warn!(%issuer, error = %e, "JWT key refresh failed; keys in hand stay in use");
            }
        }
        Ok(Some(results))
    }

    /// A dry run of the JWT grant for one token: every step up to the grant, without
    /// recording the token as used and without issuing anything. For the operator
    /// (`vedauth jwt explain`); may fetch the issuer's keys.
    ///
    /// With `client_id`, it goes on as the grant would: the application, the rule that admits
    /// the identity, and (with `scope`) whether the scope is within what they allow.
    pub async fn explain_jwt(
        &self,
        jwt: &str,
        client_id: Option<&str>,
        scope: Option<&str>,
    ) -> Result<JwtExplanation, GrantError> {
        let mut steps = Vec::new();
        let (grant, settings) = self.jwt_synced().await?;
        steps.push((
            "switch".to_string(),
            if settings.authorize_by_jwt {
                Ok("AuthorizeByJwt is on".to_string())
            } else {
                Err("AuthorizeByJwt is off: authorize/jwt answers 400 unauthorized_client".into())
            },
        ));
        let mappings = grant.verifier.mappings();
        steps.push((
            "mappings".to_string(),
            if mappings.is_empty() {
                Err("no usable JWT mapping is stored".into())
            } else {
                Ok(format!("{} usable mapping(s)", mappings.len()))
            },
        ));
        let accepted = match grant.verifier.verify(jwt, self.now()).await {
            Ok(a) => a,
            Err(e) => {
                steps.push((format!("token ({})", e.audit_word()), Err(e.to_string())));
                return Ok(JwtExplanation {
                    steps,
                    identity: None,
                });
            }
        };
        steps.push((
            "token".to_string(),
            Ok(format!(
                "signed by {} with {}{}, in its validity period, accepted by mapping {:?}, which names {:?}",
                accepted.issuer,
                accepted.alg.name(),
                accepted
                    .kid
                    .as_deref()
                    .map(|k| format!(" (kid {k:?})"))
                    .unwrap_or_default(),
                accepted.mapping,
                accepted.identity
            )),
        ));
        let principal = match self.jwt_principal(&accepted.identity).await? {
            Ok(p) => {
                steps.push((
                    "identity".to_string(),
                    Ok(format!(
                        "{} ({})",
                        p.prefixed_universal(),
                        p.prefixed_name()
                    )),
                ));
                Some(p)
            }
            Err(r) => {
                steps.push((format!("identity ({})", r.cause), Err(r.reason)));
                None
            }
        };
        if let (Some(p), Some(client_id)) = (&principal, client_id) {
            self.explain_rules(&mut steps, p, client_id, scope).await?;
        }
        let identity = principal.map(|p| p.prefixed_universal().to_string());
        if identity.is_some() {
            steps.push((
                "once only".to_string(),
                Ok(format!(
                    "not checked by a dry run; a grant records the token until {}",
                    accepted.replay_until
                )),
            ));
        }
        Ok(JwtExplanation { steps, identity })
    }
}

impl Engine {
    /// The steps after the identity: the application, its rule for the identity, the scope.
    async fn explain_rules(
        &self,
        steps: &mut Vec<(String, Result<String, String>)>,
        p: &Principal,
        client_id: &str,
        scope: Option<&str>,
    ) -> Result<(), GrantError> {
        let Some(app) = self.application(client_id).await? else {
            steps.push((
                "application".into(),
                Err(format!("{client_id:?} is not registered")),
            ));
            return Ok(());
        };
        steps.push(("application".into(), Ok(format!("{client_id:?} exists"))));
        let rules = self.rules(client_id).await?;
        let Some(rule) = crate::grants::policy::matching_rule(&rules, p) else {
            steps.push((
                "rule".into(),
                Err(format!(
                    "no rule of {client_id:?} admits {} or a group of it",
                    p.prefixed_universal()
                )),
            ));
            return Ok(());
        };
        steps.push((
            "rule".into(),
            Ok(format!("admitted by the rule for {}", rule.trustee)),
        ));
        if let Some(text) = scope {
            let step = match Scope::parse(text) {
                Err(e) => Err(format!("scope item {:?} is not valid", e.item())),
                Ok(asked) => match crate::grants::policy::scope_limit(&asked, &app, rule) {
                    None => Ok(format!("{asked} is allowed")),
                    Some((limit, allowed)) => Err(format!(
                        "{asked} exceeds the {} maximum {allowed:?}",
                        match limit {
                            crate::grants::ScopeLimit::Application => "application's",
                            crate::grants::ScopeLimit::Rule => "rule's",
                        }
                    )),
                },
            };
            steps.push(("scope".into(), step));
        }
        Ok(())
    }
}

/// Audits a refusal and returns the error to answer with.
fn refused(
    e: &Engine,
    req: &JwtRequest,
    client_id: &str,
    identity: Option<&str>,
    cause: &'static str,
    detail: Value,
    error: GrantError,
) -> GrantError {
    metrics::counter!("vedauth_failed_logins_total", "client_id" => client_id.to_string())
        .increment(1);
    let recorded = e.audit.record(&Event {
        event: "login_failed",
        cause: Some(cause),
        identity,
        client_id: Some(client_id),
        source: req.source,
        detail: Some(detail),
        ..Event::default()
    });
    match recorded {
        Ok(()) => error,
        Err(a) => a.into(),
    }
}

fn accepted_detail(a: &JwtAccepted) -> Value {
    json!({
        "grant_type": "jwt",
        "issuer": a.issuer,
        "mapping": a.mapping,
        "subject": a.subject,
        "jti": a.jti,
        "alg": a.alg.name(),
        "kid": a.kid,
        "named": a.identity,
        "identity_source": a.identity_source,
    })
}

pub(crate) async fn admit(e: &Engine, req: JwtRequest) -> Result<Admission, GrantError> {
    let client_id = req.client_id.clone().ok_or(GrantError::MissingClientId)?;
    let refuse = |cause, reason: String, error| {
        refused(
            e,
            &req,
            &client_id,
            None,
            cause,
            json!({"grant_type": "jwt", "reason": reason}),
            error,
        )
    };
    let (grant, settings) = e.jwt_synced().await?;
    if !settings.authorize_by_jwt {
        return Err(refuse(
            "flow_disabled",
            "AuthorizeByJwt is off".into(),
            GrantError::JwtAuthDisabled,
        ));
    }
    let Some(jwt) = req.jwt.as_ref() else {
        return Err(refuse(
            "malformed",
            "no jwt in the request".into(),
            GrantError::MissingJwt,
        ));
    };
    let scope = match Scope::parse(req.scope.as_deref().unwrap_or("")) {
        Ok(s) => s,
        Err(err) => {
            let item = err.item().to_string();
            return Err(refuse(
                "invalid_scope",
                format!("scope item {item:?} is not valid"),
                GrantError::InvalidScope(item),
            ));
        }
    };
    let Some(app) = e.application(&client_id).await? else {
        return Err(refuse(
            "unknown_client",
            "no such application".into(),
            GrantError::UnknownClient(client_id.clone()),
        ));
    };
    let now = e.now();
    let accepted = match grant.verifier.verify(jwt.expose(), now).await {
        Ok(a) => a,
        Err(err) => {
            let cause = err.audit_word();
            if err.class() == JwtErrorClass::Unavailable {
                tracing::warn!(error = %err, "JWT grant: issuer keys unavailable");
            }
            return Err(refuse(
                cause,
                err.to_string(),
                GrantError::JwtRefused {
                    class: err.class(),
                    cause,
                },
            ));
        }
    };
    let refuse_accepted = |identity: Option<&str>, cause, reason: String, class| {
        let mut detail = accepted_detail(&accepted);
        detail["reason"] = json!(reason);
        refused(
            e,
            &req,
            &client_id,
            identity,
            cause,
            detail,
            GrantError::JwtRefused { class, cause },
        )
    };
    let principal = match e.jwt_principal(&accepted.identity).await? {
        Ok(p) => p,
        Err(r) => return Err(refuse_accepted(None, r.cause, r.reason, r.class)),
    };
    let identity = principal.prefixed_universal();
    // Recorded before the grant is issued: a token refused later (no rule admits the
    // identity) is used up too, as it would be by a grant. Clients get a fresh JWT per call.
    let first_use = e
        .store
        .record_jwt_use(
            &JwtUse {
                digest: TokenDigest(accepted.replay_key.0),
                used_until: accepted.replay_until,
            },
            now,
        )
        .await?;
    if !first_use {
        return Err(refuse_accepted(
            Some(&identity),
            "replayed",
            format!(
                "the token was used before (recorded until {})",
                accepted.replay_until
            ),
            JwtErrorClass::NotValid,
        ));
    }
    e.audit.record(&Event {
        event: "jwt_accepted",
        identity: Some(&identity),
        client_id: Some(&client_id),
        source: req.source,
        detail: Some(accepted_detail(&accepted)),
        ..Event::default()
    })?;
    Ok(Admission {
        grant_type: GrantType::Jwt,
        source: req.source,
        state: None,
        admitted: Admitted::New {
            app,
            settings,
            principal,
            scope,
            username: Some(accepted.identity),
        },
    })
}
