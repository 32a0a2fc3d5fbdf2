//! The client-certificate flow's admission (decisions.md §12, docs/certificate-auth.md): the
//! switch, the presented chain against the trusted issuers, the identity the certificate names
//! through the identity providers. Checks, in order: client_id present; certificate
//! authentication on; a certificate presented; the scope's grammar; the application registered;
//! the chain trusted and valid now; the identity found (not disabled, not locked). Every refusal
//! after the switch is audited with its real cause; the client sees one of the fixed texts.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::json;

use crate::audit::Event;
use crate::certauth::{self, CertAuthError, CertIdentity, ChainSource, TrustedIssuers};
use crate::domain::IssuerRecord;
use crate::identity::certificate::{CertField, CertResolution};
use crate::scope::Scope;

use super::super::error::GrantError;
use super::super::request::{Admission, Admitted, CertificateRequest, GrantType};
use super::super::Engine;

/// The trusted issuers as last parsed, keyed by their fingerprints: the store is read on every
/// grant (removing an issuer takes effect at once, on every node), the PEM is parsed again only
/// when the set changed.
#[derive(Debug, Default, Clone)]
pub(crate) struct IssuerCache(Arc<Mutex<Option<Parsed>>>);

/// The fingerprints of the stored issuers, and the set parsed from them.
type Parsed = (Vec<String>, Arc<TrustedIssuers>);

impl IssuerCache {
    fn get(&self, rows: &[IssuerRecord]) -> Result<Arc<TrustedIssuers>, GrantError> {
        let key: Vec<String> = rows.iter().map(|r| r.fingerprint.clone()).collect();
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((k, set)) = slot.as_ref() {
            if *k == key {
                return Ok(set.clone());
            }
        }
        let set = if rows.is_empty() {
            TrustedIssuers::empty()
        } else {
            let bundle: String = rows.iter().map(|r| r.pem.as_str()).collect();
            TrustedIssuers::from_pem(bundle.as_bytes()).map_err(|e| {
                GrantError::Unavailable(format!("the stored trusted issuers do not read: {e}"))
            })?
        };
        let set = Arc::new(set);
        *slot = Some((key, set.clone()));
        Ok(set)
    }
}

/// The provider attribute a certificate field is compared with.
fn field_of(id: &CertIdentity) -> CertField {
    match id {
        CertIdentity::Cn(_) => CertField::Cn,
        CertIdentity::Upn(_) => CertField::Upn,
        CertIdentity::Email(_) => CertField::Email,
        CertIdentity::Sid(_) => CertField::Sid,
    }
}

fn source_word(s: ChainSource) -> String {
    match s {
        ChainSource::Tls => "tls".to_string(),
        ChainSource::Forwarded(f) => format!("forwarded:{f}"),
    }
}

pub(crate) async fn admit(e: &Engine, req: CertificateRequest) -> Result<Admission, GrantError> {
    let client_id = req.client_id.ok_or(GrantError::MissingClientId)?;
    let (settings, rows) = tokio::try_join!(e.settings(), e.store.list_issuers())?;
    let refuse = |error: CertAuthError,
                  username: Option<&str>,
                  identity: Option<&str>,
                  mut detail: serde_json::Value|
     -> Result<Admission, GrantError> {
        let cause = error.cause();
        if let Some(d) = detail.as_object_mut() {
            d.insert("grant_type".into(), json!("client_certificate"));
            d.insert("reason".into(), json!(error.to_string()));
        }
        metrics::counter!("vedauth_failed_logins_total", "client_id" => client_id.clone())
            .increment(1);
        e.audit.record(&Event {
            event: "login_failed",
            cause: Some(cause),
            identity,
            username,
            client_id: Some(&client_id),
            source: req.source,
            detail: Some(detail),
            ..Event::default()
        })?;
        Err(GrantError::Certificate {
            refusal: error.refusal(),
            cause,
        })
    };
    if !settings.authorize_by_certificate {
        e.audit.record(&Event {
            event: "login_failed",
            cause: Some("flow_disabled"),
            client_id: Some(&client_id),
            source: req.source,
            detail: Some(json!({"grant_type": "client_certificate"})),
            ..Event::default()
        })?;
        return Err(GrantError::CertificateAuthDisabled);
    }
    let chain = match req.chain {
        None => return refuse(CertAuthError::NoCertificate, None, None, json!({})),
        Some(Err(bad)) => return refuse(CertAuthError::Forwarded(bad), None, None, json!({})),
        Some(Ok(chain)) => chain,
    };
    let presented = json!({
        "fingerprint": chain.leaf_fingerprint(),
        "source": source_word(chain.source()),
    });
    let scope = Scope::parse(req.scope.as_deref().unwrap_or(""))?;
    let app = e
        .application(&client_id)
        .await?
        .ok_or_else(|| GrantError::UnknownClient(client_id.clone()))?;
    let issuers = e.issuers.get(&rows)?;
    let cert = match certauth::validate(
        Some(&chain),
        &issuers,
        &settings.certificate_configuration,
        e.now(),
    ) {
        Ok(c) => c,
        Err(err) => return refuse(err, None, None, json!({ "certificate": presented })),
    };
    let named = cert.identity.to_string();
    let described = json!({
        "certificate": {
            "fingerprint": cert.fingerprint,
            "subject": cert.subject,
            "issuer": cert.issuer,
            "serial": cert.serial,
            "trusted_issuer": cert.trusted_issuer,
            "source": source_word(cert.source),
        }
    });
    let principal = match e
        .identities
        .by_certificate(field_of(&cert.identity), cert.identity.value())
        .await?
    {
        CertResolution::Found(p) => p,
        other => {
            let identity = match &other {
                CertResolution::Disabled(i) | CertResolution::Locked(i) => Some(i.to_string()),
                _ => None,
            };
            let why = match &other {
                CertResolution::Ambiguous(p) => format!("{named} matches several entries in {p}"),
                CertResolution::Disabled(i) => format!("{named} is {i}, which is disabled"),
                CertResolution::Locked(i) => format!("{named} is {i}, which is locked out"),
                _ => format!("no identity provider knows {named}"),
            };
            let mut detail = described;
            if let Some(d) = detail.as_object_mut() {
                d.insert("identity_cause".into(), json!(other.cause()));
            }
            return refuse(
                CertAuthError::NoIdentity(why),
                Some(&named),
                identity.as_deref(),
                detail,
            );
        }
    };
    let identity = principal.prefixed_universal();
    e.audit.record(&Event {
        event: "certificate_accepted",
        identity: Some(&identity),
        username: Some(&named),
        client_id: Some(&client_id),
        source: req.source,
        detail: Some(described),
        ..Event::default()
    })?;
    Ok(Admission {
        grant_type: GrantType::Certificate,
        source: req.source,
        state: req.state,
        admitted: Admitted::New {
            app,
            settings,
            principal,
            scope,
            username: Some(named),
        },
    })
}

/// One step of [`Engine::explain_certificate`]: what was checked, whether it passed, and what
/// was found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub step: &'static str,
    pub ok: bool,
    pub detail: String,
}

impl Engine {
    /// A dry run of the certificate grant's checks on `chain` (the leaf first), with the
    /// server's settings, trusted issuers and identity providers, without issuing anything:
    /// each step's verdict, up to the first that refuses. The proof that the client holds the
    /// key is the TLS handshake's, and is not part of it. With `client_id`, also the
    /// application and the rule that would admit the identity.
    pub async fn explain_certificate(
        &self,
        chain: &certauth::PresentedChain,
        client_id: Option<&str>,
    ) -> Result<Vec<Step>, GrantError> {
        let mut steps = Vec::new();
        let mut step = |step: &'static str, ok: bool, detail: String| {
            steps.push(Step { step, ok, detail });
            ok
        };
        let (settings, rows) = tokio::try_join!(self.settings(), self.store.list_issuers())?;
        step(
            "switch",
            settings.authorize_by_certificate,
            if settings.authorize_by_certificate {
                "AuthorizeByCertificate is on".into()
            } else {
                "AuthorizeByCertificate is off: every certificate grant is refused with 400 \"Certificate authentication not enabled\" (vedauth config set AuthorizeByCertificate true)".into()
            },
        );
        let issuers = self.issuers.get(&rows)?;
        let names: Vec<String> = issuers
            .issuers()
            .iter()
            .map(|i| format!("{} ({})", i.subject(), i.fingerprint()))
            .collect();
        if !step(
            "trusted issuers",
            !issuers.is_empty(),
            if issuers.is_empty() {
                "none configured: no client certificate is asked for, and none can be trusted (vedauth cert issuer add FILE)".into()
            } else {
                names.join("; ")
            },
        ) {
            return Ok(steps);
        }
        let trusted =
            match certauth::verify_chain(chain.leaf(), chain.intermediates(), &issuers, self.now())
            {
                Ok(t) => t,
                Err(e) => {
                    step(
                        "chain",
                        false,
                        format!(
                            "{e} ({}): answered 401 \"Client certificate is not trusted\"",
                            e.cause()
                        ),
                    );
                    return Ok(steps);
                }
            };
        step(
            "chain",
            true,
            format!(
                "{} (serial {}), issued by {}, valid until {}, chains to the trusted issuer {}",
                trusted.subject,
                trusted.serial,
                trusted.issuer,
                crate::wire_time::Iso8601(trusted.not_after),
                trusted.trusted_issuer
            ),
        );
        let cfg = &settings.certificate_configuration;
        let named = match certauth::validate(Some(chain), &issuers, cfg, self.now()) {
            Ok(v) => v.identity,
            Err(e) => {
                step(
                    "identity field",
                    false,
                    format!(
                        "{e} (SourceField {}{}): answered 401 \"Certificate does not map to a known identity\"",
                        cfg.source_field,
                        if cfg.attempt_sid_extension_before_source_field { ", SID extension first" } else { "" }
                    ),
                );
                return Ok(steps);
            }
        };
        step("identity field", true, named.to_string());
        let principal = match self
            .identities
            .by_certificate(field_of(&named), named.value())
            .await?
        {
            CertResolution::Found(p) => p,
            other => {
                let why = match &other {
                    CertResolution::Ambiguous(p) => format!("several entries of {p} carry {named}"),
                    CertResolution::Disabled(i) => format!("{named} is {i}, which is disabled"),
                    CertResolution::Locked(i) => format!("{named} is {i}, which is locked out"),
                    _ => format!("no identity provider knows {named}"),
                };
                step(
                    "identity",
                    false,
                    format!("{why}: answered 401 \"Certificate does not map to a known identity\""),
                );
                return Ok(steps);
            }
        };
        step(
            "identity",
            true,
            format!(
                "{} ({})",
                principal.prefixed_universal(),
                principal.prefixed_name()
            ),
        );
        if let Some(client_id) = client_id {
            let Some(_app) = self.application(client_id).await? else {
                step(
                    "application",
                    false,
                    format!("'{client_id}' is not registered"),
                );
                return Ok(steps);
            };
            step("application", true, client_id.to_string());
            let rules = self.rules(client_id).await?;
            match super::super::policy::matching_rule(&rules, &principal) {
                Some(r) => step(
                    "rule",
                    true,
                    format!(
                        "admitted by the rule for {} (maximum scope {})",
                        r.trustee,
                        r.max_scope.as_ref().map_or("of the application", |s| s.as_str())
                    ),
                ),
                None => step(
                    "rule",
                    false,
                    "no rule of the application admits the identity: answered 401 \"Failed to issue grant: user is not allowed to use this application\"".into(),
                ),
            };
        }
        Ok(steps)
    }
}
