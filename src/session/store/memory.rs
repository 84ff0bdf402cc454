//! `store = "memory"` (the default): sessions in this process, in a bounded moka cache.

use super::record::{Group, SessionRecord, SessionStore, StoreError};
use crate::session::cookie::StoreKey;
use std::sync::Arc;

/// In-memory store: a bounded moka cache. When full, moka evicts by its TinyLFU policy;
/// an evicted session is gone (its owner logs in again), never handed to anyone else.
#[derive(Debug)]
pub struct MemoryStore {
    cache: moka::sync::Cache<StoreKey, Arc<SessionRecord>>,
    /// Claims (`Store::claim`) made in this process, with their deadlines.
    claims: moka::sync::Cache<String, std::time::Instant>,
}

/// No claim outlives this (the longest asked for is an OIDC login state's 10 minutes).
const MAX_CLAIM: std::time::Duration = std::time::Duration::from_secs(900);

impl MemoryStore {
    pub fn new(max_sessions: u64) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(max_sessions)
                .build(),
            claims: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(MAX_CLAIM)
                .build(),
        }
    }

    /// `true` for the first claim of `name` until `ttl` has passed.
    pub fn claim(&self, name: &str, ttl: std::time::Duration) -> bool {
        use moka::ops::compute::{CompResult, Op};
        let now = std::time::Instant::now();
        let until = now + ttl.min(MAX_CLAIM);
        let r = self
            .claims
            .entry(name.to_string())
            .and_compute_with(|old| match old {
                Some(e) if *e.value() > now => Op::Nop,
                _ => Op::Put(until),
            });
        matches!(r, CompResult::Inserted(_) | CompResult::ReplacedWith(_))
    }

    pub fn release(&self, name: &str) {
        self.claims.invalidate(name);
    }

    /// Every live record, for snapshots.
    pub fn entries(&self) -> Vec<(StoreKey, Arc<SessionRecord>)> {
        self.cache.iter().map(|(k, v)| (*k, v)).collect()
    }

    /// Put a renewed record in place of the one under `key`, unless that session ended
    /// meanwhile (a logout during a refresh must not be undone by it).
    pub fn replace(&self, key: StoreKey, rec: Arc<SessionRecord>) -> bool {
        use moka::ops::compute::Op;
        let r = self.cache.entry(key).and_compute_with(|old| match old {
            Some(_) => Op::Put(rec),
            None => Op::Nop,
        });
        !matches!(r, moka::ops::compute::CompResult::StillNone(_))
    }

    /// Every live session of `group`.
    pub fn list_group(&self, group: Group<'_>) -> Vec<(StoreKey, Arc<SessionRecord>)> {
        self.cache
            .iter()
            .filter(|(_, v)| group.matches(v))
            .map(|(k, v)| (*k, v))
            .collect()
    }

    /// End every session of `group`; returns how many.
    pub fn delete_group(&self, group: Group<'_>) -> usize {
        let doomed: Vec<StoreKey> = self
            .cache
            .iter()
            .filter(|(_, v)| group.matches(v))
            .map(|(k, _)| *k)
            .collect();
        for k in &doomed {
            self.cache.invalidate(k);
        }
        doomed.len()
    }

    /// Drop records that can no longer be used, so memory and `sessions_active` follow the
    /// real number of live sessions.
    pub fn sweep(&self, now_ms: u64, idle_ms: u64, absolute_ms: u64) -> usize {
        let mut n = 0;
        for (k, v) in self.cache.iter() {
            if super::record::is_expired(&v, now_ms, idle_ms, absolute_ms).is_some() {
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
        rec.seen(now_ms);
        Ok(())
    }

    fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        Ok(self.cache.remove(key).is_some())
    }

    fn delete_user(&self, user: &str) -> Result<usize, StoreError> {
        Ok(self.delete_group(Group::User(user)))
    }

    fn count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::session::store::record::{is_expired, Expiry};

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
