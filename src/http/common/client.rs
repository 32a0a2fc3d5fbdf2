//! Who the client is (its address, through trusted proxies) and how fast it may go.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::HeaderMap;

use crate::config::RateLimitConfig;
use crate::net::{parse_cidr, Cidr};

/// The client's address: the peer, or — when the peer is a trusted proxy — the nearest
/// untrusted address in `X-Forwarded-For` (read from the right, skipping trusted hops).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse::<IpAddr>().ok())
        .collect();
    hops.into_iter()
        .rev()
        .find(|ip| !is_trusted(*ip))
        .unwrap_or(peer)
}

/// Per-address rate limiting of the token endpoints. One `Arc`: every request's middleware
/// holds a clone, and each reference count is a cache line all cores write.
#[derive(Debug, Clone)]
pub struct Limiter(Arc<Limits>);

#[derive(Debug)]
struct Limits {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    trusted: Vec<Cidr>,
}

impl Limiter {
    pub fn new(cfg: &RateLimitConfig) -> Self {
        let trusted = cfg
            .trusted_proxies
            .iter()
            .filter_map(|p| parse_cidr(p))
            .collect();
        let quota = NonZeroU32::new(cfg.per_second)
            .zip(NonZeroU32::new(cfg.burst))
            .map(|(rate, burst)| Quota::per_second(rate).allow_burst(burst));
        let limiter = match (cfg.enabled, quota) {
            (true, Some(q)) => Some(RateLimiter::keyed(q)),
            _ => None,
        };
        Self(Arc::new(Limits { limiter, trusted }))
    }

    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_address(peer, headers, &self.0.trusted)
    }

    /// Ok, or how long the address must wait.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let Some(l) = &self.0.limiter else {
            return Ok(());
        };
        l.check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets addresses that have been quiet, so the table does not grow without bound.
    pub fn prune(&self) {
        if let Some(l) = &self.0.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<Cidr> = parse_cidr("127.0.0.1").into_iter().collect();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.9, 127.0.0.1"),
        );
        // From the proxy: the nearest untrusted hop, not the spoofable leftmost one.
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, &trusted),
            ip("203.0.113.9")
        );
        // From anyone else the header means nothing.
        assert_eq!(
            client_address(ip("192.0.2.1"), &h, &trusted),
            ip("192.0.2.1")
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), &HeaderMap::new(), &trusted),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn limiter_counts_per_address() {
        let l = Limiter::new(&RateLimitConfig {
            enabled: true,
            per_second: 1,
            burst: 3,
            trusted_proxies: vec![],
        });
        let a = ip("192.0.2.1");
        assert!((0..3).all(|_| l.check(a).is_ok()));
        assert!(l.check(a).is_err());
        assert!(l.check(ip("192.0.2.2")).is_ok());
        let off = Limiter::new(&RateLimitConfig {
            enabled: false,
            ..RateLimitConfig::default()
        });
        assert!((0..1000).all(|_| off.check(a).is_ok()));
    }
}
