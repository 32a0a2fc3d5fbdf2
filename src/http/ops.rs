//! Operations endpoints: `/healthz` (alive), `/readyz` (store and directories), `/metrics`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::json;

use super::common::json_response;
use super::vedauth::vedsdk;
use super::ApiState;

use crate::version::PUBLIC_VERSION;

pub async fn healthz() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"status": "ok", "version": PUBLIC_VERSION}),
    )
}

/// Ready when the store answers; directory providers are reported (a directory that is down
/// only affects its own users, so it does not make the node unready).
pub async fn readyz(State(app): State<ApiState>) -> Response {
    let r = app.services.readiness().await;
    let ready = r.ready();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "version": PUBLIC_VERSION,
        "store": match &r.store { Ok(()) => "ok".to_string(), Err(e) => format!("error: {e}") },
        "store_kind": r.store_kind,
        "providers": r.providers.iter().map(|(name, up)| json!({"name": name, "state": match up { Some(true) => "up", Some(false) => "down", None => "unknown" }})).collect::<Vec<_>>(),
    });
    json_response(
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &body,
    )
}

/// `/metrics` on the main listener: for a bearer token with the `admin` scope, unless the
/// operator made it public (`metrics.public`) or moved it to its own address (`metrics.listen`).
pub async fn metrics(State(app): State<ApiState>, headers: HeaderMap) -> Response {
    if !app.metrics.served_here {
        return super::VedauthError::not_found().into_response();
    }
    if !app.metrics.public {
        let need = vedsdk::Requirement::Scope("admin", None);
        if let Err(e) = vedsdk::authorize(&app, &headers, need).await {
            return e.into_response();
        }
    }
    render()
}

/// The Prometheus text exposition.
pub fn render() -> Response {
    let text = crate::telemetry::metrics_handle()
        .map(|h| h.render())
        .unwrap_or_default();
    let mut res = (StatusCode::OK, text).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}
