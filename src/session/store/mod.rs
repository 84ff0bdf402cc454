//! Session stores, one file or folder per backend (`memory`, `redis/`, `memcached/`), and
//! `Store`: one type over
//! all of them, so that callers (the request path, the auth endpoints, the admin API)
//! never name a backend. The backends import `record` (what every store holds); only this
//! module names the backends.

pub mod memcached;
pub mod memory;
pub mod record;
pub mod redis;
pub mod sealed;
pub mod touches;

pub use memory::MemoryStore;
pub use record::{
    is_expired, Clock, Expiry, Group, ManualClock, SessionRecord, SessionStore, StoreError,
    SystemClock,
};

use crate::session::cookie::StoreKey;
use memcached::MemcachedStore;
use redis::RedisStore;
use std::sync::Arc;

/// The configured session store. An enum rather than a trait object: the memory store's
/// calls stay synchronous and inlined on the hot path, only Redis awaits. The Redis arms
/// are boxed so that their (large) futures are not part of every request's future.
#[derive(Debug, Clone)]
pub enum Store {
    Memory(Arc<MemoryStore>),
    Redis(Arc<RedisStore>),
    Memcached(Arc<MemcachedStore>),
}

impl Store {
    pub async fn create(
        &self,
        cfg: &crate::session::SessionConfig,
        key: StoreKey,
        rec: SessionRecord,
    ) -> Result<Arc<SessionRecord>, StoreError> {
        match self {
            Self::Memory(m) => {
                m.create(key, rec)?;
                m.load(&key)?
                    .ok_or_else(|| StoreError::Unavailable("session vanished".into()))
            }
            Self::Redis(r) => Box::pin(r.create(cfg, key, rec)).await,
            Self::Memcached(m) => Box::pin(m.create(cfg, key, rec)).await,
        }
    }

    pub async fn load(
        &self,
        cfg: &crate::session::SessionConfig,
        key: &StoreKey,
    ) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        match self {
            Self::Memory(m) => m.load(key),
            Self::Redis(r) => Box::pin(r.load(cfg, key)).await,
            Self::Memcached(m) => Box::pin(m.load(cfg, key)).await,
        }
    }

    pub fn touch(
        &self,
        cfg: &crate::session::SessionConfig,
        key: &StoreKey,
        rec: &Arc<SessionRecord>,
        now_ms: u64,
    ) {
        match self {
            Self::Memory(_) => rec.seen(now_ms),
            Self::Redis(r) => r.touch(cfg, key, rec, now_ms),
            Self::Memcached(m) => m.touch(cfg, key, rec, now_ms),
        }
    }

    pub async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        match self {
            Self::Memory(m) => m.delete(key),
            Self::Redis(r) => Box::pin(r.delete(key)).await,
            Self::Memcached(m) => Box::pin(m.delete(key)).await,
        }
    }

    /// End every session of `group` (a user's, or one provider session's or subject's).
    pub async fn delete_group(&self, group: Group<'_>) -> Result<usize, StoreError> {
        match self {
            Self::Memory(m) => Ok(m.delete_group(group)),
            Self::Redis(r) => Box::pin(r.delete_group(group)).await,
            Self::Memcached(m) => Box::pin(m.delete_group(group)).await,
        }
    }

    /// The live sessions of `group` (expired ones may still be listed until swept; the
    /// caller applies the expiry rule).
    pub async fn list_group(
        &self,
        cfg: &crate::session::SessionConfig,
        group: Group<'_>,
    ) -> Result<Vec<(StoreKey, Arc<SessionRecord>)>, StoreError> {
        match self {
            Self::Memory(m) => Ok(m.list_group(group)),
            Self::Redis(r) => Box::pin(r.list_group(cfg, group)).await,
            Self::Memcached(m) => Box::pin(m.list_group(cfg, group)).await,
        }
    }

    pub async fn delete_user(&self, user: &str) -> Result<usize, StoreError> {
        self.delete_group(Group::User(user)).await
    }

    /// The record as the store holds it now, past any near-cache.
    pub async fn load_fresh(
        &self,
        cfg: &crate::session::SessionConfig,
        key: &StoreKey,
    ) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        match self {
            Self::Memory(m) => m.load(key),
            Self::Redis(r) => Box::pin(r.load_fresh(cfg, key)).await,
            Self::Memcached(m) => Box::pin(m.load_fresh(cfg, key)).await,
        }
    }

    /// Put a renewed record in place of the session's; `None` when the session ended
    /// meanwhile (it is not revived).
    pub async fn replace(
        &self,
        cfg: &crate::session::SessionConfig,
        key: &StoreKey,
        rec: SessionRecord,
        now_ms: u64,
    ) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        match self {
            Self::Memory(m) => {
                let rec = Arc::new(rec);
                Ok(m.replace(*key, rec.clone()).then_some(rec))
            }
            Self::Redis(r) => Box::pin(r.replace(cfg, key, rec, now_ms)).await,
            Self::Memcached(m) => Box::pin(m.replace(cfg, key, rec, now_ms)).await,
        }
    }

    /// Claim `name` for `ttl`: `true` for the first claim only — in this process for the
    /// memory store, across every instance for the shared stores. For things that must
    /// happen once (a login `state`, a logout token's `jti`) and short locks (one refresh
    /// of a session at a time).
    pub async fn claim(&self, name: &str, ttl: std::time::Duration) -> Result<bool, StoreError> {
        match self {
            Self::Memory(m) => Ok(m.claim(name, ttl)),
            Self::Redis(r) => Box::pin(r.claim(name, ttl)).await,
            Self::Memcached(m) => Box::pin(m.claim(name, ttl)).await,
        }
    }

    /// The Redis store, for what lives there with `store = "redis"` besides sessions
    /// (enrolled second factors).
    pub fn redis(&self) -> Option<&Arc<RedisStore>> {
        match self {
            Self::Redis(r) => Some(r),
            Self::Memory(_) | Self::Memcached(_) => None,
        }
    }

    /// Give up a claim before its time (a lock).
    pub async fn release(&self, name: &str) -> Result<(), StoreError> {
        match self {
            Self::Memory(m) => {
                m.release(name);
                Ok(())
            }
            Self::Redis(r) => Box::pin(r.release(name)).await,
            Self::Memcached(m) => Box::pin(m.release(name)).await,
        }
    }

    pub fn count(&self) -> u64 {
        match self {
            Self::Memory(m) => m.count(),
            Self::Redis(r) => r.count(),
            Self::Memcached(m) => m.count(),
        }
    }

    /// `/readyz`: can the store serve?
    pub fn health(&self) -> Result<(), String> {
        match self {
            Self::Memory(m) => m.ping().map_err(|e| e.to_string()),
            Self::Redis(r) => r.health(),
            Self::Memcached(m) => m.health(),
        }
    }

    /// Idle time added to `idle_timeout` because touches are written back in batches.
    pub fn idle_slack_ms(&self) -> u64 {
        match self {
            Self::Memory(_) => 0,
            Self::Redis(r) => r.idle_slack_ms(),
            Self::Memcached(m) => m.idle_slack_ms(),
        }
    }

    /// `store = "cookie"`: the shared deny-list, when Redis holds it. The in-process
    /// deny-list (`stateless::DenyList`) is checked by the caller either way.
    pub async fn is_denied(
        &self,
        s: &crate::session::stateless::Sealed,
    ) -> Result<bool, StoreError> {
        match self {
            // Cookie sessions share their deny-list only through Redis.
            Self::Memory(_) | Self::Memcached(_) => Ok(false),
            Self::Redis(r) => Box::pin(r.is_denied(&s.id, &s.identity.user, s.created_ms)).await,
        }
    }

    pub async fn deny(&self, id: &[u8; 16], ttl: std::time::Duration) -> Result<(), StoreError> {
        match self {
            Self::Memory(_) | Self::Memcached(_) => Ok(()),
            Self::Redis(r) => Box::pin(r.deny(id, ttl)).await,
        }
    }

    pub async fn deny_user(
        &self,
        user: &str,
        now_ms: u64,
        ttl: std::time::Duration,
    ) -> Result<(), StoreError> {
        match self {
            Self::Memory(_) | Self::Memcached(_) => Ok(()),
            Self::Redis(r) => Box::pin(r.deny_user(user, now_ms, ttl)).await,
        }
    }

    /// The memory store, for snapshots and sweeping.
    pub fn memory(&self) -> Option<&Arc<MemoryStore>> {
        match self {
            Self::Memory(m) => Some(m),
            Self::Redis(_) | Self::Memcached(_) => None,
        }
    }
}
