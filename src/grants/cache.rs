//! The verify cache: access-token digest to grant, kept coherent with revocations and
//! rotations made here (at once) and on other nodes (through the store's invalidation feed).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::ttl::TtlCache;

use crate::domain::Grant;
use crate::scope::Scope;
use crate::token::TokenDigest;

/// A grant as verify hands it out, with room for the renderings of it that the faces keep for
/// their hot paths. Each is a function of the grant alone (and of things that do not change
/// while the grant is cached), so it is made once per cached grant and goes with it.
#[derive(Debug)]
pub struct LiveGrant {
    grant: Grant,
    rendered: [OnceLock<Kept>; RENDERINGS],
    /// Whether each rendering was made before: one asked for once (a token introspected or
    /// checked at the gateway once) is not worth the memory it costs kept (about 600 bytes).
    asked: [AtomicBool; RENDERINGS],
    /// The grant's scope parsed, made on first use (the gateway check compares it with each
    /// request's need).
    held: OnceLock<Scope>,
}

/// A kept rendering, of the type its face makes: a body's bytes, a map of answer headers. The
/// core does not know the faces' types; each rendering has one.
struct Kept(Box<dyn std::any::Any + Send + Sync>);

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kept(..)")
    }
}

/// Which rendering (see [`LiveGrant::rendered`]).
#[derive(Debug, Clone, Copy)]
pub enum Rendering {
    /// The VEDauth face's verify body.
    VerifyBody = 0,
    /// The OAuth 2.0 face's introspection body for an access token.
    IntrospectionBody = 1,
    /// The gateway check's answer headers.
    GatewayHeaders = 2,
}

const RENDERINGS: usize = 3;

impl LiveGrant {
    pub fn new(grant: Grant) -> Self {
        Self {
            grant,
            rendered: Default::default(),
            asked: Default::default(),
            held: OnceLock::new(),
        }
    }

    /// The rendering, made by `render`; kept from the second time it is made on, so that only
    /// grants used repeatedly hold one. A rendering `render` declines (None) is not kept and
    /// does not count (a caller may peek with a `render` that declines).
    ///
    /// Each rendering has the one type its face makes; asked with another type, a kept slot is
    /// not used and the rendering is made each time (answered right, never kept twice).
    pub fn rendered<T: Clone + Send + Sync + 'static>(
        &self,
        which: Rendering,
        render: impl FnOnce(&Grant) -> Option<T>,
    ) -> Option<T> {
        let slot = &self.rendered[which as usize];
        if let Some(t) = slot.get().and_then(|k| k.0.downcast_ref::<T>()) {
            return Some(t.clone());
        }
        let t = render(&self.grant)?;
        if !self.asked[which as usize].swap(true, Ordering::Relaxed) {
            return Some(t);
        }
        let kept = slot.get_or_init(|| Kept(Box::new(t.clone())));
        Some(kept.0.downcast_ref::<T>().cloned().unwrap_or(t))
    }

    /// The grant's scope, parsed once. A stored scope is canonical; one that no longer
    /// parses (a scope name this version does not know) holds nothing.
    pub fn held_scope(&self) -> &Scope {
        self.held
            .get_or_init(|| Scope::parse(&self.grant.scope).unwrap_or_default())
    }
}

impl std::ops::Deref for LiveGrant {
    type Target = Grant;
    fn deref(&self) -> &Grant {
        &self.grant
    }
}

/// Saves a store read per verify. Revocation and refresh in this process remove entries at
/// once; the time-to-live bounds what another process's revocation can leave behind.
///
/// A grant is kept from its second verify within the time-to-live on: a token verified once
/// (a script's single call, a sweep over many tokens) costs a digest in `seen` (about 80
/// bytes) instead of a kept grant (about 1 KB with its slots), and does not push out the
/// tokens in use. A token in use pays one more store read.
#[derive(Debug, Clone)]
pub struct VerifyCache {
    cache: TtlCache<TokenDigest, Arc<LiveGrant>>,
    /// Digests verified once and not kept yet.
    seen: TtlCache<TokenDigest, ()>,
    /// Bumped before entries are dropped. A verify that read the store while it moved may hold
    /// a grant from before the drop, and takes back what it cached.
    dropped: Arc<AtomicU64>,
}

/// A reading of the drop counter, taken before a store read that may fill the cache.
#[derive(Debug, Clone, Copy)]
pub struct Epoch(u64);

impl VerifyCache {
    /// A zero time-to-live turns the cache off: nothing is kept.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            cache: TtlCache::new(capacity, ttl),
            seen: TtlCache::new(capacity, ttl),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn get(&self, digest: &TokenDigest) -> Option<Arc<LiveGrant>> {
        self.cache.get(digest)
    }

    pub fn epoch(&self) -> Epoch {
        Epoch(self.dropped.load(Ordering::SeqCst))
    }

    /// Caches a grant read from the store since `epoch`, if its token was verified before
    /// (see above). A revocation that landed after the read began could be undone by the
    /// insert; one that lands after the check below removes the entry itself.
    pub fn fill(&self, digest: TokenDigest, grant: Arc<LiveGrant>, epoch: Epoch) {
        if !self.seen.take(&digest) {
            self.seen.insert(digest, ());
            return;
        }
        self.cache.insert(digest, grant);
        if self.dropped.load(Ordering::SeqCst) != epoch.0 {
            self.cache.remove(&digest);
        }
    }

    /// Drops these digests.
    pub fn forget(&self, digests: &[TokenDigest]) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
        for d in digests {
            self.cache.remove(d);
        }
    }

    /// Drops everything (announcements were missed).
    pub fn forget_all(&self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
        self.cache.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn grant() -> Grant {
        Grant {
            id: "g".into(),
            client_id: "app".into(),
            identity: "local:{1}".into(),
            granted_to: "local:{1}".into(),
            scope: Default::default(),
            issued_at: 0,
            expires_at: None,
            renewable: true,
            access_validity: 60,
            access_digest: TokenDigest::of("a"),
            access_issued_at: 0,
            access_expires_at: 60,
            refresh_digest: None,
        }
    }

    #[test]
    fn a_rendering_is_kept_from_its_second_making_and_a_peek_does_not_count() {
        let g = LiveGrant::new(grant());
        let make = |text: &'static str| move |_: &Grant| Some(Bytes::from_static(text.as_bytes()));
        let slot = Rendering::IntrospectionBody;
        assert_eq!(g.rendered::<Bytes>(slot, |_| None), None);
        // Made once: answered, not kept (a cold verify).
        assert_eq!(g.rendered(slot, make("one")).as_deref(), Some(&b"one"[..]));
        assert!(g.rendered[slot as usize].get().is_none());
        assert_eq!(g.rendered::<Bytes>(slot, |_| None), None);
        // Made again: kept, and answered from then on.
        assert_eq!(g.rendered(slot, make("two")).as_deref(), Some(&b"two"[..]));
        assert_eq!(
            g.rendered(slot, make("three")).as_deref(),
            Some(&b"two"[..])
        );
        assert_eq!(
            g.rendered::<Bytes>(slot, |_| None).as_deref(),
            Some(&b"two"[..])
        );
        // Asked with another type: made each time, never the bytes kept.
        assert_eq!(g.rendered(slot, |_| Some(7u8)), Some(7));
        assert_eq!(g.rendered::<u8>(slot, |_| None), None);
        // The other slot is its own.
        assert_eq!(g.rendered::<Bytes>(Rendering::VerifyBody, |_| None), None);
        assert_eq!(
            g.rendered(Rendering::VerifyBody, make("v")).as_deref(),
            Some(&b"v"[..])
        );
        assert!(g.rendered[Rendering::VerifyBody as usize].get().is_none());
        // A rendering of a face's own type is kept as the bytes are.
        let slot = Rendering::GatewayHeaders;
        assert_eq!(g.rendered(slot, |_| Some(vec!["a"])), Some(vec!["a"]));
        assert_eq!(g.rendered(slot, |_| Some(vec!["b"])), Some(vec!["b"]));
        assert_eq!(g.rendered::<Vec<&str>>(slot, |_| None), Some(vec!["b"]));
    }

    #[test]
    fn a_grant_is_kept_from_its_second_verify_and_a_drop_meanwhile_wins() {
        let c = VerifyCache::new(100, Duration::from_secs(30));
        let d = TokenDigest::of("a");
        let live = || Arc::new(LiveGrant::new(grant()));
        c.fill(d, live(), c.epoch());
        assert!(c.get(&d).is_none(), "a token verified once is not kept");
        c.fill(d, live(), c.epoch());
        assert!(c.get(&d).is_some(), "verified again, it is");
        // A drop between a read and its fill takes back what the fill kept. (After the first
        // drop the token is seen once more, so that the next fill would keep it.)
        c.forget(&[d]);
        c.fill(d, live(), c.epoch());
        let before = c.epoch();
        c.forget(&[]);
        c.fill(d, live(), before);
        assert!(c.get(&d).is_none());
        // Off: nothing is kept however often a token is verified.
        let off = VerifyCache::new(100, Duration::ZERO);
        for _ in 0..3 {
            off.fill(d, live(), off.epoch());
        }
        assert!(off.get(&d).is_none());
    }
}
