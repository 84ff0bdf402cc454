//! What every session store holds and promises: the record, the errors, the store
//! interface, the clock and the expiry rule.
//!
//! The store only keeps records; expiry policy (idle and absolute) is decided by the caller
//! with an injectable clock, so tests can move time and every backend enforces the same
//! rules.

use crate::identity::{Authentication, Identity};
use crate::session::cookie::StoreKey;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A stored session. Times are milliseconds since the Unix epoch.
#[derive(Debug)]
pub struct SessionRecord {
    pub identity: Arc<Identity>,
    /// How and when the owner authenticated.
    pub auth: Arc<Authentication>,
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
            auth: Arc::new(Authentication {
                time_ms: created_ms,
                ..Authentication::default()
            }),
            created_ms,
            last_seen_ms: AtomicU64::new(created_ms),
            persisted_ms: AtomicU64::new(created_ms),
        }
    }

    pub fn restored(identity: Identity, created_ms: u64, last_seen_ms: u64) -> Self {
        Self {
            identity: Arc::new(identity),
            auth: Arc::new(Authentication {
                time_ms: created_ms,
                ..Authentication::default()
            }),
            created_ms,
            last_seen_ms: AtomicU64::new(last_seen_ms),
            persisted_ms: AtomicU64::new(last_seen_ms),
        }
    }

    /// The same record, with how its owner authenticated.
    pub fn with_auth(mut self, auth: Authentication) -> Self {
        self.auth = Arc::new(auth);
        self
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
