//! The session cookie's value: `base64url(key id ‖ 256-bit random id ‖ HMAC-SHA256 tag)`.
//!
//! Verification happens before any store lookup, so forged or truncated cookies never cost
//! a store round trip, and the store is keyed by a hash of the id (`StoreKey`), never the id.

use super::keys::{KeyRing, KEY_ID_LEN};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SecureRandom;
use ring::{digest, hmac};

pub const ID_LEN: usize = 32;
const TAG_LEN: usize = 32;
const RAW_LEN: usize = KEY_ID_LEN + ID_LEN + TAG_LEN;
/// Length of an encoded cookie value; anything else is rejected without decoding.
pub const ENCODED_LEN: usize = (RAW_LEN * 4).div_ceil(3);

/// A verified session id. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId([u8; ID_LEN]);

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

/// What the store keys a session by: SHA-256 of the id, so a dump of the store cannot be
/// replayed as cookies.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoreKey(pub [u8; 32]);

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey(<redacted>)")
    }
}

impl SessionId {
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, ring::error::Unspecified> {
        let mut id = [0u8; ID_LEN];
        rng.fill(&mut id)?;
        Ok(Self(id))
    }

    pub fn store_key(&self) -> StoreKey {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"portcullis store key v1\0");
        ctx.update(&self.0);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        StoreKey(out)
    }

    /// Encode and sign with the ring's current key.
    pub fn encode(&self, keys: &KeyRing) -> String {
        let k = keys.current();
        let mut raw = [0u8; RAW_LEN];
        raw[..KEY_ID_LEN].copy_from_slice(&k.id);
        raw[KEY_ID_LEN..KEY_ID_LEN + ID_LEN].copy_from_slice(&self.0);
        let tag = hmac::sign(&k.mac, &raw[..KEY_ID_LEN + ID_LEN]);
        raw[KEY_ID_LEN + ID_LEN..].copy_from_slice(tag.as_ref());
        URL_SAFE_NO_PAD.encode(raw)
    }
}

/// Why a presented cookie value was not accepted (logged as a reason, never the value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieRejection {
    Malformed,
    UnknownKey,
    BadSignature,
    Duplicated,
}

impl CookieRejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Duplicated => "duplicated",
        }
    }
}

/// Verify a cookie value; the HMAC comparison is constant-time (ring).
pub fn verify(value: &str, keys: &KeyRing) -> Result<SessionId, CookieRejection> {
    if value.len() != ENCODED_LEN {
        return Err(CookieRejection::Malformed);
    }
    let mut raw = [0u8; RAW_LEN];
    match URL_SAFE_NO_PAD.decode_slice(value.as_bytes(), &mut raw) {
        Ok(RAW_LEN) => {}
        _ => return Err(CookieRejection::Malformed),
    }
    let key = keys
        .by_id(&raw[..KEY_ID_LEN])
        .ok_or(CookieRejection::UnknownKey)?;
    hmac::verify(
        &key.mac,
        &raw[..KEY_ID_LEN + ID_LEN],
        &raw[KEY_ID_LEN + ID_LEN..],
    )
    .map_err(|_| CookieRejection::BadSignature)?;
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&raw[KEY_ID_LEN..KEY_ID_LEN + ID_LEN]);
    Ok(SessionId(id))
}

/// Find the gateway's cookie in the request's `Cookie` headers. The name is matched
/// exactly (case-sensitive, as browsers do: `__host-session` is somebody else's cookie).
/// More than one cookie of our name is refused: which one a backend would pick is
/// ambiguous, and that ambiguity is how cookie-tossing attacks work.
pub fn find<'a>(
    cookie_headers: impl Iterator<Item = &'a [u8]>,
    name: &str,
) -> Option<Result<&'a str, CookieRejection>> {
    let mut found: Option<&'a str> = None;
    for header in cookie_headers {
        let Ok(header) = std::str::from_utf8(header) else {
            continue;
        };
        for pair in header.split(';') {
            let pair = pair.trim_start_matches([' ', '\t']);
            if let Some((n, v)) = pair.split_once('=') {
                if n.trim_end() == name {
                    if found.is_some() {
                        return Some(Err(CookieRejection::Duplicated));
                    }
                    found = Some(v.trim().trim_matches('"'));
                }
            }
        }
    }
    found.map(Ok)
}

/// Does this `Set-Cookie` value set (or clear) the cookie `name`? Browsers trim blanks
/// around the name, so `name =v` counts too.
pub fn sets(set_cookie: &[u8], name: &str) -> bool {
    set_cookie
        .trim_ascii_start()
        .strip_prefix(name.as_bytes())
        .is_some_and(|rest| rest.trim_ascii_start().starts_with(b"="))
}

/// The `Cookie` header without the gateway's cookie, or `None` when nothing else remains.
pub fn without(header: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = header
        .split(';')
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .filter(|p| p.split_once('=').map_or(p.trim(), |(n, _)| n.trim_end()) != name)
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::keys::generate_key;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn ring_of(n: usize) -> (KeyRing, Vec<Vec<u8>>) {
        let raws: Vec<Vec<u8>> = (0..n)
            .map(|_| URL_SAFE_NO_PAD.decode(generate_key().unwrap()).unwrap())
            .collect();
        (KeyRing::from_raw_keys(&raws), raws)
    }

    #[test]
    fn set_cookie_names_in_any_spacing() {
        assert!(sets(b"session=x; Path=/", "session"));
        assert!(sets(b"  session =x", "session"));
        assert!(sets(b"session\t= ; Max-Age=0", "session"));
        assert!(!sets(b"sessions=x", "session"));
        assert!(!sets(b"other=session=x", "session"));
        assert!(!sets(b"Session=x", "session"));
    }

    #[test]
    fn round_trip_and_rotation() {
        let rng = ring::rand::SystemRandom::new();
        let (ring1, raws) = ring_of(1);
        let id = SessionId::generate(&rng).unwrap();
        let v = id.encode(&ring1);
        assert_eq!(v.len(), ENCODED_LEN);
        assert_eq!(verify(&v, &ring1), Ok(id.clone()));
        // A new signing key in front: the old cookie still verifies.
        let (_, new) = ring_of(1);
        let rotated = KeyRing::from_raw_keys(&[new[0].clone(), raws[0].clone()]);
        assert_eq!(verify(&v, &rotated), Ok(id.clone()));
        // The old key removed: it no longer does.
        let only_new = KeyRing::from_raw_keys(&[new[0].clone()]);
        assert_eq!(verify(&v, &only_new), Err(CookieRejection::UnknownKey));
    }

    #[test]
    fn tampering_is_rejected() {
        let rng = ring::rand::SystemRandom::new();
        let (keys, _) = ring_of(1);
        let v = SessionId::generate(&rng).unwrap().encode(&keys);
        assert_eq!(
            verify(&v[..v.len() - 1], &keys),
            Err(CookieRejection::Malformed)
        );
        assert_eq!(
            verify(&format!("{v}A"), &keys),
            Err(CookieRejection::Malformed)
        );
        assert_eq!(verify("", &keys), Err(CookieRejection::Malformed));
        let mut raw = URL_SAFE_NO_PAD.decode(&v).unwrap();
        for pos in [0, 5, 40, raw.len() - 1] {
            raw[pos] ^= 1;
            let bad = URL_SAFE_NO_PAD.encode(&raw);
            assert!(verify(&bad, &keys).is_err(), "flip at {pos}");
            raw[pos] ^= 1;
        }
        let non_b64: String = "!".repeat(ENCODED_LEN);
        assert_eq!(verify(&non_b64, &keys), Err(CookieRejection::Malformed));
    }

    #[test]
    fn cookie_header_parsing() {
        let h = [b"a=1; __Host-session=abc; b=2".as_slice()];
        assert_eq!(find(h.into_iter(), "__Host-session"), Some(Ok("abc")));
        let h = [b"__host-session=abc".as_slice()];
        assert_eq!(find(h.into_iter(), "__Host-session"), None);
        let h = [
            b"__Host-session=a".as_slice(),
            b"__Host-session=b".as_slice(),
        ];
        assert_eq!(
            find(h.into_iter(), "__Host-session"),
            Some(Err(CookieRejection::Duplicated))
        );
        assert_eq!(
            without("a=1; __Host-session=x; b=2", "__Host-session").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(without("__Host-session=x", "__Host-session"), None);
    }
}
