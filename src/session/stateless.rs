//! Stateless cookie sessions (`store = "cookie"`): the session record itself, sealed with
//! AES-256-GCM under the current session key, rides in the cookie. Nothing is stored
//! server-side except a deny-list of logged-out sessions and revoked users, kept until the
//! sessions involved could no longer be valid anyway.
//!
//! Cookie value: `c1.` ‖ base64url(key id (4) ‖ nonce (12) ‖ sealed record). The record
//! holds a random 128-bit id (for the deny-list), issued-at and last-refresh times and the
//! identity. Idle expiry slides by re-issuing the cookie, but only once a quarter of the
//! idle timeout has passed since the last re-issue (see [`refresh_due`]).

use super::codec::{self, Reader};
use super::cookie::CookieRejection;
use super::keys::{KeyRing, KEY_ID_LEN};
use crate::identity::{Authentication, Identity};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead;
use ring::rand::SecureRandom;
use std::time::Duration;

const PREFIX: &str = "c1.";
/// Browsers cap a cookie at about 4 KB (name, value and attributes together).
pub const MAX_VALUE_LEN: usize = 3800;

/// The decoded contents of a stateless session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub id: [u8; 16],
    pub created_ms: u64,
    pub refreshed_ms: u64,
    pub identity: Identity,
    pub auth: Authentication,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the identity is too large for a cookie session ({0} bytes sealed; the limit is {MAX_VALUE_LEN}): trim groups or use store = \"memory\"")]
    TooLarge(usize),
    #[error("no randomness available")]
    Random,
}

fn aad(cookie_name: &str) -> Vec<u8> {
    // Binding the cookie name means a value cannot be replayed under another cookie name.
    [
        b"portcullis cookie session v1\0".as_slice(),
        cookie_name.as_bytes(),
    ]
    .concat()
}

fn key(seal: &[u8; 32]) -> Option<aead::LessSafeKey> {
    aead::UnboundKey::new(&aead::AES_256_GCM, seal)
        .ok()
        .map(aead::LessSafeKey::new)
}

pub fn new_id(rng: &dyn SecureRandom) -> Result<[u8; 16], SealError> {
    let mut id = [0u8; 16];
    rng.fill(&mut id).map_err(|_| SealError::Random)?;
    Ok(id)
}

pub fn seal(
    keys: &KeyRing,
    cookie_name: &str,
    s: &Sealed,
    rng: &dyn SecureRandom,
) -> Result<String, SealError> {
    let mut plain = Vec::with_capacity(128);
    plain.extend_from_slice(&s.id);
    plain.extend_from_slice(&s.created_ms.to_le_bytes());
    plain.extend_from_slice(&s.refreshed_ms.to_le_bytes());
    codec::put_identity(&mut plain, &s.identity);
    codec::put_auth(&mut plain, &s.auth);
    let k = keys.current();
    let mut nonce = [0u8; 12];
    rng.fill(&mut nonce).map_err(|_| SealError::Random)?;
    key(&k.seal)
        .ok_or(SealError::Random)?
        .seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad(cookie_name)),
            &mut plain,
        )
        .map_err(|_| SealError::Random)?;
    let mut raw = Vec::with_capacity(KEY_ID_LEN + 12 + plain.len());
    raw.extend_from_slice(&k.id);
    raw.extend_from_slice(&nonce);
    raw.extend_from_slice(&plain);
    let value = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
    if value.len() > MAX_VALUE_LEN {
        return Err(SealError::TooLarge(value.len()));
    }
    Ok(value)
}

pub fn open(keys: &KeyRing, cookie_name: &str, value: &str) -> Result<Sealed, CookieRejection> {
    let b64 = value
        .strip_prefix(PREFIX)
        .ok_or(CookieRejection::Malformed)?;
    if b64.len() > MAX_VALUE_LEN {
        return Err(CookieRejection::Malformed);
    }
    let mut raw = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| CookieRejection::Malformed)?;
    if raw.len() < KEY_ID_LEN + 12 + 16 {
        return Err(CookieRejection::Malformed);
    }
    let k = keys
        .by_id(&raw[..KEY_ID_LEN])
        .ok_or(CookieRejection::UnknownKey)?;
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&raw[KEY_ID_LEN..KEY_ID_LEN + 12]);
    let plain = key(&k.seal)
        .ok_or(CookieRejection::BadSignature)?
        .open_in_place(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad(cookie_name)),
            &mut raw[KEY_ID_LEN + 12..],
        )
        .map_err(|_| CookieRejection::BadSignature)?;
    decode(plain).ok_or(CookieRejection::Malformed)
}

fn decode(b: &[u8]) -> Option<Sealed> {
    let mut r = Reader(b);
    let mut id = [0u8; 16];
    id.copy_from_slice(r.take(16)?);
    let (created_ms, refreshed_ms) = (r.u64()?, r.u64()?);
    let identity = r.identity()?;
    // Cookies sealed before the authentication block existed end here.
    let auth = r.auth_or_old(created_ms)?;
    r.0.is_empty().then_some(Sealed {
        id,
        created_ms,
        refreshed_ms,
        identity,
        auth,
    })
}

/// Re-issue the cookie (sliding the idle expiry) once a quarter of the idle timeout has
/// passed since the last re-issue. A session can therefore end up to a quarter of
/// `idle_timeout` earlier than `idle_timeout` after the last request, never later.
pub fn refresh_due(s: &Sealed, now_ms: u64, idle: Duration) -> bool {
    now_ms.saturating_sub(s.refreshed_ms) >= idle.as_millis() as u64 / 4
}

/// Logged-out sessions and revoked users. Entries live for the absolute timeout: after
/// that the cookies they stand for have expired anyway.
#[derive(Debug)]
pub struct DenyList {
    ids: moka::sync::Cache<[u8; 16], ()>,
    users: moka::sync::Cache<String, u64>,
}

impl DenyList {
    pub fn new(absolute: Duration) -> Self {
        Self {
            // A bound keeps memory finite; 1M denials is far beyond normal logout rates
            // within one absolute timeout. Past it, the oldest denials are forgotten.
            ids: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(absolute)
                .build(),
            users: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(absolute)
                .build(),
        }
    }

    pub fn deny(&self, id: [u8; 16]) {
        self.ids.insert(id, ());
    }

    /// Revoke every session of `user` issued up to `now_ms`.
    pub fn deny_user(&self, user: &str, now_ms: u64) {
        self.users.insert(user.to_string(), now_ms);
    }

    pub fn is_denied(&self, s: &Sealed) -> bool {
        self.ids.contains_key(&s.id)
            || self
                .users
                .get(&s.identity.user)
                .is_some_and(|t| s.created_ms <= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_of(raws: &[Vec<u8>]) -> KeyRing {
        KeyRing::from_raw_keys(raws)
    }

    #[test]
    fn seal_open_rotate_and_tamper() {
        let rng = ring::rand::SystemRandom::new();
        let k1: Vec<u8> = (1u8..=32).collect();
        let k2: Vec<u8> = (33u8..=64).collect();
        let s = Sealed {
            id: [7; 16],
            created_ms: 5,
            refreshed_ms: 6,
            identity: Identity {
                user: "alice".into(),
                email: "a@x".into(),
                groups: vec!["g1".into(), "g2".into()],
            },
            auth: Authentication::password(5),
        };
        let v = seal(&ring_of(std::slice::from_ref(&k1)), "s", &s, &rng).unwrap();
        assert_eq!(
            open(&ring_of(std::slice::from_ref(&k1)), "s", &v),
            Ok(s.clone())
        );
        assert_eq!(
            open(&ring_of(&[k2.clone(), k1.clone()]), "s", &v),
            Ok(s.clone()),
            "old key still opens"
        );
        assert_eq!(
            open(&ring_of(std::slice::from_ref(&k2)), "s", &v),
            Err(CookieRejection::UnknownKey)
        );
        assert!(
            open(&ring_of(std::slice::from_ref(&k1)), "other", &v).is_err(),
            "bound to the cookie name"
        );
        let mut raw = v.clone().into_bytes();
        let i = raw.len() - 5;
        raw[i] = if raw[i] == b'A' { b'B' } else { b'A' };
        assert!(open(
            &ring_of(std::slice::from_ref(&k1)),
            "s",
            &String::from_utf8(raw).unwrap()
        )
        .is_err());
        assert!(open(&ring_of(std::slice::from_ref(&k1)), "s", "c1.").is_err());
        assert!(open(&ring_of(std::slice::from_ref(&k1)), "s", "garbage").is_err());
        let big = Sealed {
            identity: Identity {
                groups: vec!["x".repeat(100); 40],
                ..s.identity.clone()
            },
            ..s
        };
        assert!(matches!(
            seal(&ring_of(&[k1]), "s", &big, &rng),
            Err(SealError::TooLarge(_))
        ));
    }

    #[test]
    fn deny_list() {
        let d = DenyList::new(Duration::from_secs(60));
        let s = Sealed {
            id: [1; 16],
            created_ms: 100,
            refreshed_ms: 100,
            identity: Identity {
                user: "bob".into(),
                email: String::new(),
                groups: vec![],
            },
            auth: Authentication::default(),
        };
        assert!(!d.is_denied(&s));
        d.deny_user("bob", 150);
        assert!(d.is_denied(&s));
        let later = Sealed {
            created_ms: 200,
            id: [2; 16],
            ..s.clone()
        };
        assert!(
            !d.is_denied(&later),
            "sessions after the revocation are fine"
        );
        d.deny([2; 16]);
        assert!(d.is_denied(&later));
    }
}
