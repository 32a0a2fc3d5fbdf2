//! The hot lane: the three calls a resource server or gateway makes on every request it serves
//! (verify, the gateway check, introspection) reach their handlers without the router. The
//! router's lookup, its boxed route clones, its path-parameter and matched-path extensions and
//! its response mapping cost more per call than the cached answer itself (docs/BENCHMARKS.md,
//! "The hot lane"). Each handler here is the same function the router serves, behind the same
//! middleware ([`FrontLayer::named`]); everything else, and every other method on these paths
//! (HEAD, 405s), goes to the router unchanged.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::handler::Handler;
use axum::response::Response;
use futures_util::future::Either;
use http::{Method, Request};

use super::common::{FrontFuture, FrontLayer};
use super::{gateway, oauth2, vedauth, ApiState};

/// A handler behind the request middleware.
pub trait Route:
    tower::Service<Request<Body>, Response = Response, Error = Infallible, Future = FrontFuture> + Clone
{
}

impl<S> Route for S where
    S: tower::Service<Request<Body>, Response = Response, Error = Infallible, Future = FrontFuture>
        + Clone
{
}

/// The hot routes in front of `router`.
pub fn lane<R>(state: &ApiState, router: R) -> HotLane<impl Route, impl Route, impl Route, R> {
    let front = FrontLayer(state.limiter.clone());
    let check = gateway::check.with_state(state.clone());
    HotLane {
        routes: Arc::new(Routes {
            verify: front.named(vedauth::VERIFY, vedauth::verify.with_state(state.clone())),
            check: front.named(gateway::PREFIX, check.clone()),
            check_rest: front.named(gateway::PREFIX_REST, check),
            introspect: front.named(
                oauth2::INTROSPECT,
                oauth2::introspect.with_state(state.clone()),
            ),
        }),
        router,
    }
}

/// Which hot route a request is for, if any: exactly the requests the router would give to
/// that handler with that method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hot {
    Verify,
    Check,
    CheckRest,
    Introspect,
}

fn hot(method: &Method, path: &str) -> Option<Hot> {
    if *method == Method::GET {
        if path == vedauth::VERIFY {
            return Some(Hot::Verify);
        }
        if path == gateway::PREFIX {
            return Some(Hot::Check);
        }
        // `{*rest}` matches one character or more after the slash.
        if path
            .strip_prefix(gateway::PREFIX)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|rest| !rest.is_empty())
        {
            return Some(Hot::CheckRest);
        }
    } else if *method == Method::POST && path == oauth2::INTROSPECT {
        return Some(Hot::Introspect);
    }
    None
}

/// Cloned for every request (the connection loop hands each its own service): the routes
/// sit behind one `Arc`, and only the one a request takes is cloned.
#[derive(Debug, Clone)]
pub struct HotLane<V, C, I, R> {
    routes: Arc<Routes<V, C, I>>,
    router: R,
}

#[derive(Debug)]
struct Routes<V, C, I> {
    verify: V,
    check: C,
    check_rest: C,
    introspect: I,
}

impl<V, C, I, R> tower::Service<Request<Body>> for HotLane<V, C, I, R>
where
    V: Route,
    C: Route,
    I: Route,
    R: tower::Service<Request<Body>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<FrontFuture, R::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The handlers' services are always ready (axum's HandlerService); the router decides.
        self.router.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let r = &self.routes;
        match hot(req.method(), req.uri().path()) {
            Some(Hot::Verify) => Either::Left(r.verify.clone().call(req)),
            Some(Hot::Check) => Either::Left(r.check.clone().call(req)),
            Some(Hot::CheckRest) => Either::Left(r.check_rest.clone().call(req)),
            Some(Hot::Introspect) => Either::Left(r.introspect.clone().call(req)),
            None => Either::Right(self.router.call(req)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_requests_the_router_gives_these_handlers_take_the_lane() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(hot(&get, "/vedauth/authorize/verify"), Some(Hot::Verify));
        assert_eq!(hot(&get, "/gateway/check"), Some(Hot::Check));
        assert_eq!(hot(&get, "/gateway/check/vedsdk/x"), Some(Hot::CheckRest));
        assert_eq!(hot(&get, "/gateway/check/a"), Some(Hot::CheckRest));
        assert_eq!(hot(&post, "/oauth2/introspect"), Some(Hot::Introspect));
        // The router's: other methods (HEAD, 405s), an empty rest, neighbours of the paths.
        assert_eq!(hot(&Method::HEAD, "/vedauth/authorize/verify"), None);
        assert_eq!(hot(&post, "/vedauth/authorize/verify"), None);
        assert_eq!(hot(&post, "/gateway/check"), None);
        assert_eq!(hot(&get, "/gateway/check/"), None);
        assert_eq!(hot(&get, "/gateway/checks"), None);
        assert_eq!(hot(&get, "/oauth2/introspect"), None);
        assert_eq!(hot(&get, "/vedauth/authorize/verify/"), None);
    }
}
