//! State shared by every request, and config reload.
//!
//! The configuration is swapped whole (`ArcSwap`); a request takes one snapshot at its
//! start and uses it throughout. The session store, metrics and rate-limit windows live
//! outside the configuration so that a reload never logs anyone out.

use crate::auth::ratelimit::FailureLimiter;
use crate::config::{self, Config};
use crate::metrics::Metrics;
use crate::session::store::Store;
use crate::session::store::{Clock, MemoryStore, SystemClock};
use crate::tls::CertResolver;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub struct Shared {
    pub config: ArcSwap<Config>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    pub limiter: ArcSwap<FailureLimiter>,
    pub rng: ring::rand::SystemRandom,
    /// Logged-out cookie sessions and revoked users (`store = "cookie"`).
    pub deny: crate::session::stateless::DenyList,
    /// Cookie values already verified (under the current key ring), by their store key.
    pub verified: crate::session::verified::VerifiedCookies,
    pub cert: Option<Arc<CertResolver>>,
    request_ids: RequestIds,
}

impl Shared {
    /// Fails only when a shared store cannot be set up (its runtime); Redis and memcached
    /// themselves are connected lazily.
    pub fn new(config: Config, metrics: Metrics) -> Result<Self, String> {
        let max = config.session.as_ref().map_or(1, |s| s.max_sessions);
        let session = config.session.as_ref();
        let store =
            match (
                session.and_then(|s| s.redis.clone()),
                session.and_then(|s| s.memcached.clone()),
            ) {
                (Some(r), _) => Store::Redis(Arc::new(
                    crate::session::store::redis::RedisStore::new(r, max, metrics.clone())?,
                )),
                (None, Some(m)) => Store::Memcached(Arc::new(
                    crate::session::store::memcached::MemcachedStore::new(m, max, metrics.clone())?,
                )),
                (None, None) => Store::Memory(Arc::new(MemoryStore::new(max))),
            };
        let (limit, window) = config.auth.login_attempts;
        let cert = config
            .tls
            .as_ref()
            .map(|t| Arc::new(CertResolver::new(&t.chain)));
        let shared = Self {
            store,
            clock: Arc::new(SystemClock),
            metrics,
            limiter: ArcSwap::from_pointee(FailureLimiter::new(limit, window)),
            rng: ring::rand::SystemRandom::new(),
            deny: crate::session::stateless::DenyList::new(
                config
                    .session
                    .as_ref()
                    .map_or(std::time::Duration::from_secs(86400), |s| {
                        s.absolute_timeout
                    }),
            ),
            cert,
            verified: crate::session::verified::VerifiedCookies::new(max),
            request_ids: RequestIds::new(),
            config: ArcSwap::from_pointee(config),
        };
        shared.publish_health();
        Ok(shared)
    }

    pub fn backends(&self) -> crate::session::Backends<'_> {
        crate::session::Backends {
            store: &self.store,
            deny: &self.deny,
            clock: self.clock.as_ref(),
            rng: &self.rng,
            verified: &self.verified,
        }
    }

    pub fn next_request_id(&self) -> RequestId {
        self.request_ids.next()
    }

    /// Load the config file again and swap it in. On any error the old configuration
    /// keeps serving and the error is returned for the log.
    pub fn reload(&self) -> Result<(), config::ConfigError> {
        let old = self.config.load_full();
        let new = config::load(&old.path)?;
        let redis_of = |c: &Config| {
            c.session.as_ref().and_then(|s| {
                s.redis
                    .as_ref()
                    .map(|r| (r.display.clone(), r.key_prefix.clone()))
            })
        };
        if redis_of(&new) != redis_of(&old) {
            tracing::warn!("the Redis session store (url, key prefix) changes only on restart; keeping the old one");
        }
        let memcached_of = |c: &Config| c.session.as_ref().and_then(|s| s.memcached.clone());
        if memcached_of(&new) != memcached_of(&old) {
            tracing::warn!("[memcached] changes only on restart; keeping the old settings");
        }
        if new.http != old.http
            || new.tls.as_ref().map(|t| &t.https) != old.tls.as_ref().map(|t| &t.https)
            || new.admin.listen != old.admin.listen
            || new.threads != old.threads
        {
            tracing::warn!(
                "listener addresses and threads change only on restart; keeping the old ones"
            );
        }
        for u in &new.upstreams {
            if let Some(o) = old.upstreams.iter().find(|o| o.name == u.name) {
                u.inherit_health(o);
            }
        }
        if let (Some(resolver), Some(tls)) = (&self.cert, &new.tls) {
            resolver.replace(&tls.chain);
        }
        let (limit, window) = new.auth.login_attempts;
        if !self.limiter.load().same_settings(limit, window) {
            self.limiter
                .store(Arc::new(FailureLimiter::new(limit, window)));
        }
        self.metrics.upstream_healthy.reset();
        self.config.store(Arc::new(new));
        self.publish_health();
        Ok(())
    }

    /// Mirror every target's health into `portcullis_upstream_healthy`.
    pub fn publish_health(&self) {
        let cfg = self.config.load();
        for u in &cfg.upstreams {
            for t in &u.targets {
                self.metrics
                    .upstream_healthy
                    .with_label_values(&[u.name.as_str(), &t.label])
                    .set(i64::from(t.is_healthy()));
            }
        }
    }
}

/// Request ids: a random per-process prefix and a counter. Unique without a syscall per
/// request; ids identify requests in logs and are not secrets.
#[derive(Debug)]
struct RequestIds {
    prefix: [u8; 12],
    counter: AtomicU64,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl RequestIds {
    fn new() -> Self {
        use ring::rand::SecureRandom;
        let mut p = [0u8; 6];
        // Without randomness the prefix falls back to the pid: still unique per host.
        if ring::rand::SystemRandom::new().fill(&mut p).is_err() {
            p[2..].copy_from_slice(&std::process::id().to_be_bytes());
        }
        let mut prefix = [0u8; 12];
        for (i, b) in p.iter().enumerate() {
            prefix[2 * i] = HEX[usize::from(b >> 4)];
            prefix[2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        Self {
            prefix,
            counter: AtomicU64::new(0),
        }
    }

    fn next(&self) -> RequestId {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        RequestId::new(&self.prefix, n)
    }
}

/// `<12 hex digits>-<counter, at least 8 hex digits>`, kept inline: the id is made for every
/// request and copied into two headers, so it should not cost a heap allocation.
#[derive(Clone, Copy)]
pub struct RequestId {
    buf: [u8; 29],
    len: u8,
}

impl RequestId {
    fn new(prefix: &[u8; 12], n: u64) -> Self {
        let mut buf = [0u8; 29];
        buf[..12].copy_from_slice(prefix);
        buf[12] = b'-';
        let digits = (16 - (n.leading_zeros() as usize) / 4).max(8);
        for i in 0..digits {
            let nibble = (n >> (4 * (digits - 1 - i))) & 0xf;
            buf[13 + i] = HEX[nibble as usize];
        }
        Self {
            buf,
            len: (13 + digits) as u8,
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits and '-' are ever written.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("-")
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_match_the_old_format() {
        let prefix = *b"0123456789ab";
        for n in [0u64, 1, 0xabc, 0xffff_ffff, 0x1_0000_0000, u64::MAX] {
            assert_eq!(
                RequestId::new(&prefix, n).as_str(),
                format!("0123456789ab-{n:08x}")
            );
        }
        let ids = RequestIds::new();
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a.as_str(), b.as_str());
        assert_eq!(a.as_str().len(), 21);
        assert!(a
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_hexdigit() || c == b'-'));
    }
}
