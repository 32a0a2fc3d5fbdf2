//! What a connection may hold and for how long: the per-address cap, and the deadlines that
//! close a connection which sends no request, sits idle, or has requests that make no progress.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::net::Cidr;

/// Connections per client address. IPv6 clients count per /64, the block one host is usually
/// given; IPv4-mapped IPv6 peers count as their IPv4 address.
#[derive(Debug)]
pub(super) struct PerAddress {
    cap: usize,
    uncapped: Vec<Cidr>,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in the per-address count, given back when dropped.
#[derive(Debug)]
pub(super) struct AddrSlot {
    owner: Arc<PerAddress>,
    key: IpAddr,
}

/// The connection would exceed its address's cap.
#[derive(Debug)]
pub(super) struct OverCap;

impl PerAddress {
    /// `cap` 0 = no cap; `uncapped` peers (trusted proxies) are not counted.
    pub(super) fn new(cap: usize, uncapped: Vec<Cidr>) -> Arc<Self> {
        Arc::new(Self {
            cap,
            uncapped,
            counts: Mutex::new(HashMap::new()),
        })
    }

    fn key(ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
            v4 => v4,
        }
    }

    /// Counts a new connection from `ip`: `Ok(None)` when the address is not capped.
    pub(super) fn enter(self: &Arc<Self>, ip: IpAddr) -> Result<Option<AddrSlot>, OverCap> {
        if self.cap == 0 || self.uncapped.iter().any(|c| c.contains(ip)) {
            return Ok(None);
        }
        let key = Self::key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(key).or_insert(0);
        if *n >= self.cap {
            return Err(OverCap);
        }
        *n += 1;
        Ok(Some(AddrSlot {
            owner: self.clone(),
            key,
        }))
    }
}

impl Drop for AddrSlot {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// Why the server closes a connection by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Close {
    /// No complete request within the header read timeout of the connection's start.
    FirstRequest,
    /// No request in progress for the idle timeout; on HTTP/1.1, for the header read timeout
    /// when that is shorter (the next request's head must arrive within it, as the first's).
    Idle,
    /// Requests open, but none started or finished for the request timeout plus the idle
    /// timeout (an HTTP/2 client that never opens its flow-control window, one that does not
    /// read its answers).
    Stalled,
    /// The server is stopping.
    Shutdown,
}

impl Close {
    pub(super) fn label(self) -> &'static str {
        match self {
            Close::FirstRequest => "first_request_timeout",
            Close::Idle => "idle_timeout",
            Close::Stalled => "stalled",
            Close::Shutdown => "shutdown",
        }
    }
}

/// The deadlines [`Track::due`] applies.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadlines {
    pub header_read: Duration,
    pub idle: Duration,
    pub stalled: Duration,
}

/// The requests of one connection: how many are open, and when one last started or ended.
/// Costs a request a few atomic updates and two clock reads; no allocation and no timer (it
/// also keeps HTTP/1.1's header read timeout, which hyper would arm and drop per request).
#[derive(Debug)]
pub(super) struct Track {
    born: Instant,
    open: AtomicUsize,
    started: AtomicBool,
    /// The connection speaks HTTP/2 (known from its first request).
    http2: AtomicBool,
    /// Milliseconds after `born` at which a request last started or ended.
    last_ms: AtomicU64,
    /// Woken at the first request: the deadlines that follow it may be nearer than its own.
    wake: Notify,
}

impl Track {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            born: Instant::now(),
            open: AtomicUsize::new(0),
            started: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            last_ms: AtomicU64::new(0),
            wake: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A request begins; it stays open until the guard (which rides along with the response
    /// body) is dropped.
    pub(super) fn enter(self: &Arc<Self>, http2: bool) -> StreamGuard {
        self.last_ms.store(self.now_ms(), SeqCst);
        self.open.fetch_add(1, SeqCst);
        // The first request replaces the first-request deadline, which may be the later one;
        // the protocol is known before `started` says so.
        if !self.started.load(SeqCst) {
            self.http2.store(http2, SeqCst);
            if !self.started.swap(true, SeqCst) {
                self.wake.notify_one();
            }
        }
        StreamGuard(self.clone())
    }

    /// Requests open now.
    pub(super) fn open(&self) -> usize {
        self.open.load(SeqCst)
    }

    /// How long the connection may sit with no request open: its idle timeout, and on HTTP/1.1
    /// no longer than the header read timeout (the next request's head is due within it).
    fn idle(&self, d: &Deadlines) -> Duration {
        if self.http2.load(SeqCst) {
            d.idle
        } else {
            d.idle.min(d.header_read)
        }
    }

    /// Resolves when the connection is past one of its deadlines, with the reason.
    pub(super) async fn due(&self, d: Deadlines) -> Close {
        loop {
            let woken = self.wake.notified();
            let now = Instant::now();
            let open = self.open.load(SeqCst);
            let (at, why) = if !self.started.load(SeqCst) {
                (self.born + d.header_read, Close::FirstRequest)
            } else {
                let last = self.born + Duration::from_millis(self.last_ms.load(SeqCst));
                if open == 0 {
                    (last + self.idle(&d), Close::Idle)
                } else {
                    (last + d.stalled, Close::Stalled)
                }
            };
            if now >= at {
                return why;
            }
            // Requests starting and ending move the deadline later, so they wake nothing and
            // looking again at `at` will do; a wake-up per request would cost a timer's
            // re-registration and a poll of the connection each time. The exception is a
            // request open now: its end brings in the idle deadline, so look again within it,
            // which still closes an idle connection on time.
            let next = if open > 0 {
                at.min(now + self.idle(&d))
            } else {
                at
            };
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = woken => {}
            }
        }
    }
}

/// An open request of a [`Track`].
#[derive(Debug)]
pub(super) struct StreamGuard(Arc<Track>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let t = &self.0;
        t.last_ms.store(t.now_ms(), SeqCst);
        t.open.fetch_sub(1, SeqCst);
    }
}

/// A response body that keeps its request open until it has been sent or dropped (an HTTP/2
/// answer waits here while the client's flow-control window is closed).
#[derive(Debug)]
pub(super) struct Tracked {
    pub(super) body: axum::body::Body,
    pub(super) _guard: StreamGuard,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_count_apart_and_ipv6_per_64() {
        let p = PerAddress::new(2, vec![]);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = p.enter(a).unwrap();
        let _s2 = p.enter(a).unwrap();
        assert!(p.enter(a).is_err());
        let held_b = p.enter(b).unwrap();
        assert!(held_b.is_some());
        drop(s1);
        assert!(p.enter(a).is_ok());
        // The same /64, another host part: one budget.
        let x: IpAddr = "2001:db8::1".parse().unwrap();
        let y: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let z: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let _x = p.enter(x).unwrap();
        let _y = p.enter(y).unwrap();
        assert!(p.enter(x).is_err());
        assert!(p.enter(z).unwrap().is_some());
        // IPv4-mapped is the IPv4 address.
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        let _m = p.enter(mapped).unwrap();
        assert!(p.enter(b).is_err());
    }

    #[test]
    fn trusted_proxies_and_zero_are_not_capped() {
        let proxy = crate::net::parse_cidr("10.0.0.0/8").unwrap();
        let p = PerAddress::new(1, vec![proxy]);
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        for _ in 0..5 {
            assert!(p.enter(ip).unwrap().is_none());
        }
        let off = PerAddress::new(0, vec![]);
        assert!(off.enter(ip).unwrap().is_none());
    }

    const DEADLINES: Deadlines = Deadlines {
        header_read: Duration::from_secs(3),
        idle: Duration::from_secs(5),
        stalled: Duration::from_secs(15),
    };

    /// Runs `due` beside `requests` (on tokio's paused clock) and says when it closed, counted
    /// from the connection's start.
    async fn closes(
        requests: impl std::future::Future<Output = ()>,
        t: &Arc<Track>,
    ) -> (Close, Duration) {
        let start = Instant::now();
        let due = tokio::spawn({
            let t = t.clone();
            async move { (t.due(DEADLINES).await, start.elapsed()) }
        });
        requests.await;
        due.await.unwrap_or((Close::Shutdown, Duration::ZERO))
    }

    /// One request from 1 s to 4 s on a connection of the given protocol.
    fn one_request(t: &Arc<Track>, http2: bool) -> impl std::future::Future<Output = ()> {
        let t = t.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let guard = t.enter(http2);
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(guard);
        }
    }

    /// After its last request ends, an HTTP/2 connection closes its idle timeout later (4 + 5
    /// s, nearer than the stalled deadline, 1 + 15 s, that held while the request was open);
    /// an HTTP/1.1 one closes its header read timeout later (4 + 3 s), its next head being due.
    #[tokio::test(start_paused = true)]
    async fn a_connection_closes_after_its_last_request_by_its_protocols_deadline() {
        for (http2, after) in [(true, 9), (false, 7)] {
            let t = Track::new();
            assert_eq!(
                closes(one_request(&t, http2), &t).await,
                (Close::Idle, Duration::from_secs(after)),
                "http2: {http2}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn requests_keep_a_connection_open_and_one_that_never_ends_stalls_it() {
        let t = Track::new();
        let requests = {
            let t = t.clone();
            async move {
                // A request at 1 s, then one every 2 s (under the header read timeout of 3 s)
                // until 11 s, then one that never ends: stalled 15 s after it began.
                tokio::time::sleep(Duration::from_secs(1)).await;
                drop(t.enter(false));
                for _ in 0..5 {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    drop(t.enter(false));
                }
                std::mem::forget(t.enter(false));
            }
        };
        assert_eq!(
            closes(requests, &t).await,
            (Close::Stalled, Duration::from_secs(26))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_with_no_request_closes_at_the_first_request_deadline() {
        let t = Track::new();
        assert_eq!(
            closes(async {}, &t).await,
            (Close::FirstRequest, Duration::from_secs(3))
        );
    }

    #[test]
    fn slots_are_given_back_and_forgotten() {
        let p = PerAddress::new(3, vec![]);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let slots: Vec<_> = (0..3).map(|_| p.enter(ip).unwrap()).collect();
        drop(slots);
        assert!(p.counts.lock().unwrap().is_empty());
    }
}
