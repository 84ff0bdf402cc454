//! The session store interface and the in-memory store (moka).
//!
//! The store only keeps records; expiry policy (idle and absolute) is decided by the caller
//! with an injectable clock, so tests can move time and every backend enforces the same
//! rules.

use super::cookie::StoreKey;
use crate::identity::Identity;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A stored session. Times are milliseconds since the Unix epoch.
#[derive(Debug)]
pub struct SessionRecord {
    pub identity: Arc<Identity>,
    pub created_ms: u64,
    last_seen_ms: AtomicU64,
    /// The `last_seen_ms` the shared store (Redis) last recorded; touches are written back
    /// only when this falls `touch_interval` behind.
    persisted_ms: AtomicU64,
}

impl SessionRecord {
    pub fn new(identity: Identity, created_ms: u64) -> Self {
        Self {
            identity: Arc::new(identity),
            created_ms,
            last_seen_ms: AtomicU64::new(created_ms),
            persisted_ms: AtomicU64::new(created_ms),
        }
    }

    pub fn restored(identity: Identity, created_ms: u64, last_seen_ms: u64) -> Self {
        Self {
            identity: Arc::new(identity),
            created_ms,
            last_seen_ms: AtomicU64::new(last_seen_ms),
            persisted_ms: AtomicU64::new(last_seen_ms),
        }
    }

    pub fn last_seen_ms(&self) -> u64 {
        self.last_seen_ms.load(Ordering::Relaxed)
    }

    pub fn seen(&self, now_ms: u64) {
        self.last_seen_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    pub fn persisted_ms(&self) -> u64 {
        self.persisted_ms.load(Ordering::Relaxed)
    }

    pub fn set_persisted(&self, ms: u64) {
        self.persisted_ms.fetch_max(ms, Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The session cannot be created as asked (e.g. too large for a cookie session).
    #[error("{0}")]
    Refused(String),
}

/// Create / load / touch / delete sessions. Implementations must never return a record
/// under a key it was not created with: an evicted session is simply gone.
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    fn create(&self, key: StoreKey, rec: SessionRecord) -> Result<(), StoreError>;
    fn load(&self, key: &StoreKey) -> Result<Option<Arc<SessionRecord>>, StoreError>;
    /// Slide the idle expiry.
    fn touch(&self, key: &StoreKey, rec: &SessionRecord, now_ms: u64) -> Result<(), StoreError>;
    fn delete(&self, key: &StoreKey) -> Result<bool, StoreError>;
    /// Revoke every session of `user`; returns how many were removed.
    fn delete_user(&self, user: &str) -> Result<usize, StoreError>;
    /// Number of sessions held (approximate for caches).
    fn count(&self) -> u64;
    /// Is the store able to serve (used by `/readyz`)?
    fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Time source; tests inject a manual clock to move through idle and absolute expiry.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> u64;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct ManualClock(pub AtomicU64);

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// In-memory store: a bounded moka cache. When full, moka evicts by its TinyLFU policy;
/// an evicted session is gone (its owner logs in again), never handed to anyone else.
#[derive(Debug)]
pub struct MemoryStore {
    cache: moka::sync::Cache<StoreKey, Arc<SessionRecord>>,
}

impl MemoryStore {
    pub fn new(max_sessions: u64) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(max_sessions)
                .build(),
        }
    }

    /// Every live record, for snapshots.
    pub fn entries(&self) -> Vec<(StoreKey, Arc<SessionRecord>)> {
        self.cache.iter().map(|(k, v)| (*k, v)).collect()
    }

    /// Drop records that can no longer be used, so memory and `sessions_active` follow the
    /// real number of live sessions.
    pub fn sweep(&self, now_ms: u64, idle_ms: u64, absolute_ms: u64) -> usize {
        let mut n = 0;
        for (k, v) in self.cache.iter() {
            if is_expired(&v, now_ms, idle_ms, absolute_ms).is_some() {
                self.cache.invalidate(&*k);
                n += 1;
            }
        }
        self.cache.run_pending_tasks();
        n
    }
}

impl SessionStore for MemoryStore {
    fn create(&self, key: StoreKey, rec: SessionRecord) -> Result<(), StoreError> {
        self.cache.insert(key, Arc::new(rec));
        Ok(())
    }

    fn load(&self, key: &StoreKey) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        Ok(self.cache.get(key))
    }

    fn touch(&self, _key: &StoreKey, rec: &SessionRecord, now_ms: u64) -> Result<(), StoreError> {
        rec.last_seen_ms.fetch_max(now_ms, Ordering::Relaxed);
        Ok(())
    }

    fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        Ok(self.cache.remove(key).is_some())
    }

    fn delete_user(&self, user: &str) -> Result<usize, StoreError> {
        let doomed: Vec<StoreKey> = self
            .cache
            .iter()
            .filter(|(_, v)| v.identity.user == user)
            .map(|(k, _)| *k)
            .collect();
        for k in &doomed {
            self.cache.invalidate(k);
        }
        Ok(doomed.len())
    }

    fn count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

/// Why a record is no longer valid, if it is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Idle,
    Absolute,
}

pub fn is_expired(
    rec: &SessionRecord,
    now_ms: u64,
    idle_ms: u64,
    absolute_ms: u64,
) -> Option<Expiry> {
    if now_ms >= rec.created_ms.saturating_add(absolute_ms) {
        Some(Expiry::Absolute)
    } else if now_ms >= rec.last_seen_ms().saturating_add(idle_ms) {
        Some(Expiry::Idle)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(user: &str) -> Identity {
        Identity {
            user: user.into(),
            email: String::new(),
            groups: vec![],
        }
    }

    #[test]
    fn idle_slides_absolute_does_not() {
        let rec = SessionRecord::new(id("a"), 1_000);
        let (idle, abs) = (10_000, 25_000);
        assert_eq!(is_expired(&rec, 10_999, idle, abs), None);
        assert_eq!(is_expired(&rec, 11_000, idle, abs), Some(Expiry::Idle));
        let store = MemoryStore::new(10);
        store.touch(&StoreKey([0; 32]), &rec, 9_000).unwrap();
        store.touch(&StoreKey([0; 32]), &rec, 18_000).unwrap();
        assert_eq!(is_expired(&rec, 25_000, idle, abs), None);
        assert_eq!(is_expired(&rec, 26_000, idle, abs), Some(Expiry::Absolute));
    }

    #[test]
    fn max_sessions_evicts_and_never_mixes_identities() {
        let s = MemoryStore::new(50);
        for i in 0..1000u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            s.create(StoreKey(k), SessionRecord::new(id(&format!("user{i}")), 0))
                .unwrap();
        }
        assert!(s.count() <= 50, "bounded: {}", s.count());
        let mut found = 0;
        for i in 0..1000u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            if let Some(r) = s.load(&StoreKey(k)).unwrap() {
                assert_eq!(
                    r.identity.user,
                    format!("user{i}"),
                    "a key only ever maps to its own session"
                );
                found += 1;
            }
        }
        assert!(found > 0 && found <= 50);
    }

    #[test]
    fn delete_user_removes_only_that_user() {
        let s = MemoryStore::new(100);
        for i in 0..10u8 {
            let user = if i % 2 == 0 { "alice" } else { "bob" };
            s.create(StoreKey([i; 32]), SessionRecord::new(id(user), 0))
                .unwrap();
        }
        assert_eq!(s.delete_user("alice").unwrap(), 5);
        assert!(s.load(&StoreKey([0; 32])).unwrap().is_none());
        assert_eq!(
            s.load(&StoreKey([1; 32])).unwrap().unwrap().identity.user,
            "bob"
        );
        assert_eq!(s.count(), 5);
    }
}
