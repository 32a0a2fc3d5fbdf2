//! The VEDauth face: `/vedauth` (authorize, refresh, verify, revoke), `/vedsdk` (the calls token
//! clients make around authentication, the shared bearer check) and `/vedsdk/oauth` (the
//! administration API). It parses the VEDauth wire, calls the grant core or the administration
//! core, and renders their answers and errors in VEDauth's shape ([`VedauthError`]: reason
//! phrases, .NET dates). Its paths match case-insensitively, with a trailing slash tolerated.

pub mod admin;
mod authorize;
pub mod error;
pub mod vedsdk;

use axum::routing::{get, post};
use axum::Router;
use http::Request;

pub use error::VedauthError;

use super::common::rate_limit;
use super::ApiState;
pub(super) use authorize::verify;

/// The bearer check resource servers make on every call (served by the hot lane too).
pub const VERIFY: &str = "/vedauth/authorize/verify";

/// Whether a path belongs to this face (`/vedauth...`, `/vedsdk...`, in any case).
fn is_vedauth_path(path: &str) -> bool {
    let lower = |prefix: &str| {
        path.len() >= prefix.len()
            && path.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
            && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
    };
    lower("/vedauth") || lower("/vedsdk")
}

/// This face's paths match case-insensitively and tolerate a trailing slash (as TPP's do):
/// its routes are declared in lower case without one, and its request paths are folded to that
/// form before routing. Other faces' paths are left as they came.
pub fn fold_path<B>(mut req: Request<B>) -> Request<B> {
    let path = req.uri().path();
    // The common case, a path already in that form, costs no allocation.
    if !path.bytes().any(|b| b.is_ascii_uppercase()) && (path.len() <= 1 || !path.ends_with('/')) {
        return req;
    }
    if !is_vedauth_path(path) {
        return req;
    }
    let mut folded = path.to_ascii_lowercase();
    while folded.len() > 1 && folded.ends_with('/') {
        folded.pop();
    }
    if folded != path {
        let mut parts = req.uri().clone().into_parts();
        let pq = match req.uri().query() {
            Some(q) => format!("{folded}?{q}"),
            None => folded,
        };
        if let Ok(p) = pq.parse() {
            parts.path_and_query = Some(p);
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

/// The face's routes. The token endpoints pass the per-address rate limit first.
pub fn router(state: ApiState) -> Router<ApiState> {
    let limited = Router::new()
        .route("/vedauth/authorize/oauth", post(authorize::authorize_oauth))
        .route("/vedauth/authorize/token", post(authorize::authorize_token))
        .route("/vedauth/authorize/jwt", post(authorize::authorize_jwt))
        .route(
            "/vedauth/authorize/device",
            post(authorize::authorize_device),
        )
        .route(
            "/vedauth/authorize/certificate",
            post(authorize::authorize_certificate),
        )
        .route(
            "/vedauth/authorize/integrated",
            post(authorize::authorize_integrated),
        )
        .route(
            "/vedauth/revoke/token",
            // HEAD must have no side effect: it is refused, not routed to GET's revocation.
            get(authorize::revoke)
                .delete(authorize::revoke)
                .head(|| async { VedauthError::method_not_allowed() }),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.limiter.clone(),
            rate_limit::<VedauthError>,
        ));
    Router::new()
        .merge(limited)
        .route(VERIFY, get(authorize::verify))
        .route(
            "/vedauth/authorize/isauthserver",
            get(authorize::is_auth_server),
        )
        .route("/vedsdk", get(vedsdk::ping))
        .route("/vedsdk/systemstatus/version", get(vedsdk::version))
        .route("/vedsdk/identity/self", get(vedsdk::identity_self))
        .route("/vedsdk/authorize", post(vedsdk::legacy_authorize))
        .route("/vedsdk/oauth/{op}", post(admin::dispatch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_faces_paths_fold_to_lower_case_without_trailing_slash() {
        let r = fold_path(
            Request::builder()
                .uri("/VEDAUTH/Authorize/OAuth/?x=A")
                .body(())
                .unwrap_or_default(),
        );
        assert_eq!(r.uri().path(), "/vedauth/authorize/oauth");
        assert_eq!(r.uri().query(), Some("x=A"));
        let r = fold_path(
            Request::builder()
                .uri("/vedsdk/")
                .body(())
                .unwrap_or_default(),
        );
        assert_eq!(r.uri().path(), "/vedsdk");
        let r = fold_path(Request::builder().uri("/").body(()).unwrap_or_default());
        assert_eq!(r.uri().path(), "/");
        // Other faces' paths are theirs to match.
        let r = fold_path(
            Request::builder()
                .uri("/OAuth2/Token/")
                .body(())
                .unwrap_or_default(),
        );
        assert_eq!(r.uri().path(), "/OAuth2/Token/");
        let r = fold_path(
            Request::builder()
                .uri("/VedsdkX")
                .body(())
                .unwrap_or_default(),
        );
        assert_eq!(r.uri().path(), "/VedsdkX");
    }
}
