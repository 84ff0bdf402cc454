//! Idle-expiry write-back for the shared stores (Redis, memcached): a request slides the
//! idle expiry in memory at once, and a session is queued for a write to the store only
//! when what the store holds is `touch_interval` old; the store's housekeeper writes the
//! queue out once a second. So a busy session costs one store write per interval, not one
//! per request.

use super::record::SessionRecord;
use crate::session::cookie::StoreKey;
use crate::session::keys::KeyRing;
use crate::session::SessionConfig;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A queued write-back: the record and the settings it was touched under.
pub struct Pending {
    pub rec: Arc<SessionRecord>,
    pub keys: Arc<KeyRing>,
    pub idle_ms: u64,
    pub absolute_ms: u64,
}

pub struct TouchQueue {
    interval: Duration,
    queue: Mutex<HashMap<StoreKey, Pending>>,
}

impl TouchQueue {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            queue: Mutex::new(HashMap::new()),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Slide the idle expiry: in memory now, in the store by the next batch if it is due.
    pub fn touch(&self, cfg: &SessionConfig, key: &StoreKey, rec: &Arc<SessionRecord>, now: u64) {
        rec.seen(now);
        if now.saturating_sub(rec.persisted_ms()) < self.interval.as_millis() as u64 {
            return;
        }
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.entry(*key).or_insert_with(|| Pending {
            rec: rec.clone(),
            keys: cfg.keys.clone(),
            idle_ms: cfg.idle_timeout.as_millis() as u64,
            absolute_ms: cfg.absolute_timeout.as_millis() as u64,
        });
    }

    /// Everything queued so far, for one batch.
    pub fn take(&self) -> HashMap<StoreKey, Pending> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A session that ended must not be written back (that would revive it).
    pub fn forget(&self, key: &StoreKey) {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// When a record stops being valid, given the `last_seen` the store will hold: the
    /// idle deadline plus one write-back interval (so an active session is never cut short
    /// by a batch not yet written), or the absolute deadline, whichever comes first.
    pub fn deadline(
        &self,
        rec: &SessionRecord,
        last_seen: u64,
        idle_ms: u64,
        absolute_ms: u64,
    ) -> u64 {
        (last_seen + idle_ms + self.interval.as_millis() as u64).min(rec.created_ms + absolute_ms)
    }
}
