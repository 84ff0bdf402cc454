//! Session records at rest in a shared store (Redis, memcached): AES-256-GCM under the
//! current session key's derived seal key, bound (as associated data) to the backend and
//! the key they are stored under, so a record copied to another key or another store does
//! not open. Value: key id ‖ nonce (12) ‖ ciphertext ‖ tag. Both backends use this one
//! format; only the backend's name in the associated data differs.

use super::record::SessionRecord;
use crate::session::codec::{self, Reader};
use crate::session::keys::KeyRing;
use ring::rand::SecureRandom;

const VERSION: u8 = 1;

/// Which store a record is sealed for: the first part of its associated data.
#[derive(Debug, Clone, Copy)]
pub struct Binding(&'static [u8]);

/// Unchanged since Redis records were first written, so existing sessions still open.
pub const REDIS: Binding = Binding(b"portcullis redis record v1\0");
pub const MEMCACHED: Binding = Binding(b"portcullis memcached record v1\0");

fn aad(binding: Binding, store_key: &str) -> Vec<u8> {
    [binding.0, store_key.as_bytes()].concat()
}

/// Seal `rec` (with `last_seen_ms`) for storage under `store_key` in `binding`'s store.
pub fn seal(
    binding: Binding,
    keys: &KeyRing,
    store_key: &str,
    rec: &SessionRecord,
    last_seen_ms: u64,
    rng: &dyn SecureRandom,
) -> Option<Vec<u8>> {
    let mut plain = Vec::with_capacity(96);
    plain.push(VERSION);
    plain.extend_from_slice(&rec.created_ms.to_le_bytes());
    plain.extend_from_slice(&last_seen_ms.to_le_bytes());
    codec::put_identity(&mut plain, &rec.identity);
    codec::put_auth(&mut plain, &rec.auth);
    // Only when there are tokens: a record without them stays readable by instances that
    // predate the field (a rolling upgrade keeps their password sessions).
    if let Some(t) = &rec.tokens {
        codec::put_tokens(&mut plain, Some(t));
    }
    if !rec.device.is_empty() {
        plain.push(codec::DEVICE_BLOCK);
        codec::put_device(&mut plain, &rec.device);
    }
    keys.seal(&aad(binding, store_key), plain, rng)
}

/// Open a stored value; `None` if it was sealed with a key no longer configured, for
/// another key or store, or altered.
pub fn open(
    binding: Binding,
    keys: &KeyRing,
    store_key: &str,
    value: &[u8],
) -> Option<SessionRecord> {
    let mut raw = value.to_vec();
    let plain = keys.open(&aad(binding, store_key), &mut raw)?;
    let mut r = Reader(plain);
    if r.take(1)? != [VERSION] {
        return None;
    }
    let (created, last_seen) = (r.u64()?, r.u64()?);
    let identity = r.identity()?;
    // Records sealed before the authentication block existed end here.
    let auth = r.auth_or_old(created)?;
    // Optional trailing blocks, each at most once and in this order: the provider's
    // tokens (a 0/1 flag starts them), then the device.
    let mut tokens = None;
    if matches!(r.0.first(), Some(0 | 1)) {
        tokens = r.tokens()?;
    }
    let mut device = Default::default();
    if r.0.first() == Some(&codec::DEVICE_BLOCK) {
        r.take(1)?;
        device = r.device()?;
    }
    if !r.0.is_empty() {
        return None;
    }
    Some(
        SessionRecord::restored(identity, created, last_seen)
            .with_auth(auth)
            .with_tokens(tokens)
            .with_device(device),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn round_trip_binding_and_rotation() {
        let old = KeyRing::from_raw_keys(&[vec![7u8; 32]]);
        let rng = ring::rand::SystemRandom::new();
        let auth = crate::identity::Authentication {
            provider: "corp".into(),
            methods: vec!["pwd".into()],
            time_ms: 900,
            ..Default::default()
        };
        let rec = SessionRecord::new(
            Identity {
                user: "ana".into(),
                email: "a@x".into(),
                groups: vec!["g".into()],
            },
            1_000,
        )
        .with_auth(auth.clone());
        let v = seal(REDIS, &old, "p:s:aa", &rec, 5_000, &rng).unwrap();
        let back = open(REDIS, &old, "p:s:aa", &v).unwrap();
        assert_eq!(back.identity.user, "ana");
        assert_eq!((back.created_ms, back.last_seen_ms()), (1_000, 5_000));
        assert_eq!(*back.auth, auth);
        assert!(back.tokens.is_none());
        // With the provider's tokens, which come back whole.
        let t = crate::session::provider_tokens::ProviderTokens {
            access: "at".into(),
            refresh: "rt".into(),
            id_token: "h.p.s".into(),
            issued_ms: 1,
            expires_ms: 2,
        };
        let with = rec
            .renewed(t.clone())
            .with_device(super::super::record::Device::new("10.0.0.1", "Firefox\n/1"));
        let v2 = seal(REDIS, &old, "p:s:aa", &with, 5_000, &rng).unwrap();
        let back = open(REDIS, &old, "p:s:aa", &v2).unwrap();
        assert_eq!(back.tokens.as_deref(), Some(&t));
        assert_eq!(back.device.agent, "Firefox/1", "control characters dropped");
        // A record sealed before the authentication block existed still opens.
        let mut plain = vec![VERSION];
        plain.extend_from_slice(&1_000u64.to_le_bytes());
        plain.extend_from_slice(&5_000u64.to_le_bytes());
        codec::put_identity(&mut plain, &rec.identity);
        let legacy = old.seal(&aad(REDIS, "p:s:aa"), plain, &rng).unwrap();
        let back = open(REDIS, &old, "p:s:aa", &legacy).unwrap();
        assert_eq!((back.auth.time_ms, back.auth.methods.len()), (1_000, 0));
        assert!(
            open(REDIS, &old, "p:s:bb", &v).is_none(),
            "bound to its key"
        );
        assert!(
            open(MEMCACHED, &old, "p:s:aa", &v).is_none(),
            "bound to its store"
        );
        let mut bad = v.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(open(REDIS, &old, "p:s:aa", &bad).is_none());
        assert!(open(REDIS, &old, "p:s:aa", &v[..20]).is_none());
        // Rotation: a new signing key first, the old one still opens old records.
        let rotated = KeyRing::from_raw_keys(&[vec![9u8; 32], vec![7u8; 32]]);
        assert!(open(REDIS, &rotated, "p:s:aa", &v).is_some());
        let only_new = KeyRing::from_raw_keys(&[vec![9u8; 32]]);
        assert!(open(REDIS, &only_new, "p:s:aa", &v).is_none());
    }
}
