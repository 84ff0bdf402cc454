//! Cookie values this process has already verified, so that the requests after the first
//! one of a session skip the HMAC check and the store-key hash — two SHA-256 computations
//! that were most of a session lookup's cost (docs/performance.md).
//!
//! A fixed, direct-mapped table: a value's slot comes from a hash seeded at random per
//! process (a client cannot aim at another person's slot), a colliding value simply takes
//! the slot over, and the memory is bounded up front. Only values that passed the HMAC check
//! under a key ring are written, each tagged with that ring's generation, so a reload that
//! removes a key ends the cached values of that key too. A hit compares the whole presented
//! value with the stored one in constant time: only the byte-identical cookie finds its
//! store key. Ending a session does not need to touch this table: the store no longer has
//! the record, so the lookup still misses.
//!
//! What it costs in exposure: the table holds recently used cookie values in process
//! memory (as the request buffers of recent requests do anyway); whoever can read the
//! gateway's memory can also read its session and TLS keys.

use super::cookie::{StoreKey, ENCODED_LEN};
use std::hash::BuildHasher;
use std::sync::Mutex;

/// Slots for the biggest table (about 2.3 MB); smaller `max_sessions` get fewer.
const MAX_SLOTS: usize = 16_384;
const MIN_SLOTS: usize = 1_024;

pub struct VerifiedCookies {
    slots: Box<[Mutex<Slot>]>,
    hasher: foldhash::fast::RandomState,
}

#[derive(Clone, Copy)]
struct Slot {
    /// 0: empty (key ring generations start at 1).
    generation: u64,
    value: [u8; ENCODED_LEN],
    key: StoreKey,
}

const EMPTY: Slot = Slot {
    generation: 0,
    value: [0; ENCODED_LEN],
    key: StoreKey([0; 32]),
};

impl std::fmt::Debug for VerifiedCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifiedCookies({} slots)", self.slots.len())
    }
}

impl VerifiedCookies {
    /// A table sized to the expected number of sessions, within fixed bounds.
    pub fn new(max_sessions: u64) -> Self {
        let n = usize::try_from(max_sessions)
            .unwrap_or(MAX_SLOTS)
            .clamp(MIN_SLOTS, MAX_SLOTS)
            .next_power_of_two();
        Self {
            slots: (0..n).map(|_| Mutex::new(EMPTY)).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn slot(&self, value: &[u8]) -> &Mutex<Slot> {
        // The length is a power of two: the low bits of the hash pick the slot.
        let i = (self.hasher.hash_one(value) as usize) & (self.slots.len() - 1);
        &self.slots[i]
    }

    /// The store key of `value` if this exact value was verified under the key ring of
    /// this `generation`.
    pub fn get(&self, value: &str, generation: u64) -> Option<StoreKey> {
        let value = value.as_bytes();
        if value.len() != ENCODED_LEN {
            return None;
        }
        // A poisoned slot (a panic while copying 150 bytes cannot happen in practice) is
        // treated as empty: the caller verifies the long way.
        let slot = *self.slot(value).lock().ok()?;
        let same = slot.generation == generation && same_bytes(&slot.value, value);
        same.then_some(slot.key)
    }

    /// Remember that `value` verified under the key ring of `generation` and names `key`.
    pub fn remember(&self, value: &str, generation: u64, key: StoreKey) {
        let Ok(value) = <[u8; ENCODED_LEN]>::try_from(value.as_bytes()) else {
            return;
        };
        if let Ok(mut slot) = self.slot(&value).lock() {
            *slot = Slot {
                generation,
                value,
                key,
            };
        }
    }
}

/// Equal, compared in time that does not depend on where the values differ: eight bytes
/// at a time, every byte looked at, one test at the end. (`subtle`'s byte-by-byte
/// comparison cost ten times this here; ring's is deprecated.)
fn same_bytes(a: &[u8; ENCODED_LEN], b: &[u8]) -> bool {
    if b.len() != ENCODED_LEN {
        return false;
    }
    let (a8, a_rest) = a.as_chunks::<8>();
    let (b8, b_rest) = b.as_chunks::<8>();
    let mut diff = a8.iter().zip(b8).fold(0u64, |d, (x, y)| {
        d | (u64::from_ne_bytes(*x) ^ u64::from_ne_bytes(*y))
    });
    for (x, y) in a_rest.iter().zip(b_rest) {
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(fill: u8) -> String {
        String::from_utf8(vec![b'A' + fill; ENCODED_LEN]).unwrap()
    }

    #[test]
    fn only_the_identical_value_of_the_same_generation_hits() {
        let t = VerifiedCookies::new(10);
        let (a, key) = (value(0), StoreKey([7; 32]));
        assert_eq!(t.get(&a, 1), None);
        t.remember(&a, 1, key);
        assert_eq!(t.get(&a, 1), Some(key));
        // Another key ring (a reload): not trusted.
        assert_eq!(t.get(&a, 2), None);
        // One character different, or a prefix: not found.
        let mut b = a.clone().into_bytes();
        b[ENCODED_LEN - 1] = b'B';
        assert_eq!(t.get(&String::from_utf8(b).unwrap(), 1), None);
        assert_eq!(t.get(&a[..ENCODED_LEN - 1], 1), None);
    }

    #[test]
    fn a_colliding_value_takes_the_slot_over_and_the_old_one_verifies_again() {
        let t = VerifiedCookies::new(0);
        assert_eq!(t.slots.len(), MIN_SLOTS);
        let values: Vec<String> = (0..26).map(value).collect();
        for (i, v) in values.iter().enumerate() {
            t.remember(v, 1, StoreKey([i as u8; 32]));
        }
        // Whatever is still cached maps to its own key, never another value's.
        for (i, v) in values.iter().enumerate() {
            if let Some(k) = t.get(v, 1) {
                assert_eq!(k, StoreKey([i as u8; 32]));
            }
        }
    }

    #[test]
    fn same_bytes_sees_every_position() {
        let a = [b'x'; ENCODED_LEN];
        assert!(same_bytes(&a, &a));
        for i in 0..ENCODED_LEN {
            let mut b = a;
            b[i] = b'y';
            assert!(!same_bytes(&a, &b), "difference at {i}");
        }
        assert!(!same_bytes(&a, &a[1..]));
    }

    #[test]
    fn sized_within_bounds() {
        assert_eq!(VerifiedCookies::new(100_000_000).slots.len(), MAX_SLOTS);
        assert_eq!(VerifiedCookies::new(5_000).slots.len(), 8_192);
    }
}
