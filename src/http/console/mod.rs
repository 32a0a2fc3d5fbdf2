//! The console (decisions.md §14): server-rendered HTML under `/console`, on the same listener
//! and over the same use cases as the VEDauth face — every change goes through the
//! administration core (`admin::Admin`), every sign-in through the password grant with its
//! lockout, rate limit and audit trail. No JavaScript: every page is a form or a link.
//!
//! Security: the session is a grant of `vedauth-admin` in a `__Host-` cookie (HttpOnly,
//! Secure, SameSite=Strict); every form carries a CSRF token derived from the session; every
//! answer forbids framing, inline scripts and caching (`headers`).

mod pages;
pub mod session;
mod trust;
pub mod views;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::{header, HeaderValue, Request, StatusCode};

use super::common::{rate_limit, CommonError};
use super::ApiState;

pub use pages::grants_view;
pub use trust::{issuers_view, jwt_mappings_view};
pub use views::GrantRow;

/// Query or form parameters; the last value of a repeated key wins.
#[derive(Debug, Clone, Default)]
pub struct Query(BTreeMap<String, String>);

impl Query {
    pub fn parse(text: &[u8]) -> Self {
        Self(
            serde_urlencoded::from_bytes::<Vec<(String, String)>>(text)
                .unwrap_or_default()
                .into_iter()
                .collect(),
        )
    }
    pub fn of_uri(uri: &http::Uri) -> Self {
        Self::parse(uri.query().unwrap_or("").as_bytes())
    }
    /// The value, trimmed; "" when absent.
    pub fn get(&self, key: &str) -> String {
        self.0
            .get(key)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    }
    /// The value as typed (passwords keep their spaces).
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    pub fn opt(&self, key: &str) -> Option<String> {
        Some(self.get(key)).filter(|v| !v.is_empty())
    }
}

/// A refusal shown as a page of its own (a forged form, a page a role may not see, a rate
/// limit).
#[derive(Debug, Clone)]
pub struct ConsoleError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ConsoleError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Your role does not allow this page or action.",
        )
    }
    pub fn bad_csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "This form is out of date or did not come from the console; reload the page and try again.",
        )
    }
}

impl From<CommonError> for ConsoleError {
    fn from(e: CommonError) -> Self {
        match e {
            CommonError::RateLimited { retry_after } => Self {
                retry_after: Some(retry_after),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("Too many attempts; wait {retry_after} seconds and try again."),
                )
            },
            CommonError::TooLarge => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.")
            }
            CommonError::NotFound => Self::new(StatusCode::NOT_FOUND, "No such page."),
            CommonError::MethodNotAllowed => {
                Self::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed here.")
            }
            CommonError::Malformed => {
                Self::new(StatusCode::BAD_REQUEST, "The form could not be read.")
            }
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let mut f = views::Frame::anonymous("Not done");
        f.error = self.message;
        let mut res = render(self.status, &views::ErrorPage { f });
        if let Some(s) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res
    }
}

impl From<ConsoleError> for Response {
    fn from(e: ConsoleError) -> Self {
        e.into_response()
    }
}

/// A page, or a plain 500 if the template cannot render (it is checked when compiled; this is
/// a write into a `String`).
pub fn render(status: StatusCode, page: &impl askama::Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console page did not render");
            (StatusCode::INTERNAL_SERVER_ERROR, "page error").into_response()
        }
    }
}

/// The console's own headers on every answer: no framing (clickjacking), no script at all, no
/// form posted elsewhere, nothing cached, no referrer leaving with a user code in it.
async fn headers(req: Request<Body>, next: axum::middleware::Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

const CSS: &str = include_str!("../../../templates/console/console.css");

async fn stylesheet() -> Response {
    let mut res = (StatusCode::OK, CSS).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    res
}

/// The console's routes. The sign-in and the device page's code entry pass the per-address
/// rate limit, as the token endpoints do.
pub fn router(state: ApiState) -> Router<ApiState> {
    let limited = Router::new()
        .route("/console/signin", post(pages::signin))
        .route_layer(axum::middleware::from_fn_with_state(
            state.limiter.clone(),
            rate_limit::<ConsoleError>,
        ));
    Router::new()
        .merge(limited)
        .route("/console", get(pages::home))
        .route("/console/", get(pages::home))
        .route("/console/static/console.css", get(stylesheet))
        .route("/console/signin", get(pages::signin_page))
        .route("/console/signout", post(pages::signout))
        .route(
            "/console/device",
            get(pages::device_page).post(pages::device_post),
        )
        .route("/device", get(pages::device_redirect))
        .route(
            "/console/integrations",
            get(pages::integrations).post(pages::create_integration),
        )
        .route(
            "/console/integrations/{client_id}",
            get(pages::integration).post(pages::update_integration),
        )
        .route(
            "/console/integrations/{client_id}/delete",
            post(pages::delete_integration),
        )
        .route(
            "/console/integrations/{client_id}/rules",
            post(pages::add_rule),
        )
        .route(
            "/console/integrations/{client_id}/rules/delete",
            post(pages::delete_rule),
        )
        .route("/console/grants", get(pages::grants))
        .route("/console/grants/revoke", post(pages::revoke))
        .route("/console/users", get(pages::users).post(pages::add_user))
        .route("/console/users/action", post(pages::user_action))
        .route(
            "/console/settings",
            get(pages::settings).post(pages::save_settings),
        )
        .route(
            "/console/jwt-mappings",
            get(trust::jwt_mappings).post(trust::create_jwt_mapping),
        )
        .route(
            "/console/jwt-mappings/{name}",
            get(trust::jwt_mapping).post(trust::update_jwt_mapping),
        )
        .route(
            "/console/jwt-mappings/{name}/delete",
            post(trust::delete_jwt_mapping),
        )
        .route(
            "/console/issuers",
            get(trust::issuers).post(trust::add_issuers),
        )
        .route("/console/issuers/remove", post(trust::remove_issuer))
        .route("/console/audit", get(pages::audit))
        .layer(axum::middleware::from_fn(headers))
}
