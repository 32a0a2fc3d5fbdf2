//! Operations endpoints: `/healthz` (alive), `/readyz` (store and directories), `/metrics`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde_json::json;

use super::{json_response, ApiState};

pub const VERSION: &str = env!("VEDAUTH_VERSION");

pub async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok", "version": VERSION}))
}

/// Ready when the store answers; directory providers are reported (a directory that is down
/// only affects its own users, so it does not make the node unready).
pub async fn readyz(State(app): State<ApiState>) -> Response {
    let store =
        match tokio::time::timeout(std::time::Duration::from_secs(3), app.store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_string()),
        };
    let providers = app.engine.identities().health().await;
    let ready = store.is_ok();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "version": VERSION,
        "store": match &store { Ok(()) => "ok".to_string(), Err(e) => format!("error: {e}") },
        "store_kind": app.store.describe().split(':').next().unwrap_or(""),
        "providers": providers.iter().map(|(name, up)| json!({"name": name, "state": match up { Some(true) => "up", Some(false) => "down", None => "unknown" }})).collect::<Vec<_>>(),
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

pub async fn metrics(State(app): State<ApiState>) -> Response {
    if !app.config.metrics.enabled || !app.config.metrics.listen.is_empty() {
        return super::ApiError::not_found().into_response();
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
