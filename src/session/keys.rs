//! Session keys and rotation: the first key in `keys_file` signs, every key verifies (the
//! model is rustls' ticket rotator). Each key gets a short id derived from its material, so
//! reordering or adding lines never invalidates a cookie signed by a key still present.

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::{digest, hmac};
use std::path::Path;

pub const KEY_ID_LEN: usize = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("cannot read session keys file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}:{line}: not base64url (generate keys with `portcullis gen-key`)")]
    NotBase64 { path: String, line: usize },
    #[error("{path}:{line}: key is {len} bytes; session keys must be at least 32 bytes")]
    Short {
        path: String,
        line: usize,
        len: usize,
    },
    #[error("{path}:{line}: key repeats a single byte; use a random key (`portcullis gen-key`)")]
    RepeatedByte { path: String, line: usize },
    #[error("{path}:{line}: duplicate key (same as line {first})")]
    Duplicate {
        path: String,
        line: usize,
        first: usize,
    },
    #[error("{path}: no keys; put at least one key (`portcullis gen-key`) in the file")]
    Empty { path: String },
}

/// One session key and the subkeys derived from it.
pub struct SessionKey {
    pub id: [u8; KEY_ID_LEN],
    /// Signs and verifies cookie values.
    pub mac: hmac::Key,
    /// Seals records at rest (snapshot file).
    pub seal: [u8; 32],
}

/// All configured keys, signing key first.
pub struct KeyRing {
    keys: Vec<SessionKey>,
    /// Unique to this ring (never 0): what a cookie verified under it is remembered with
    /// (`verified.rs`), so a reloaded ring trusts nothing the old one verified.
    generation: u64,
}

fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyRing({} keys, <redacted>)", self.keys.len())
    }
}

fn derive(raw: &[u8], label: &[u8]) -> [u8; 32] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, raw);
    let tag = hmac::sign(&k, label);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

impl SessionKey {
    pub fn from_raw(raw: &[u8]) -> Self {
        let idd = digest::digest(
            &digest::SHA256,
            &[b"portcullis key id v1\0".as_slice(), raw].concat(),
        );
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&idd.as_ref()[..KEY_ID_LEN]);
        Self {
            id,
            mac: hmac::Key::new(hmac::HMAC_SHA256, &derive(raw, b"portcullis cookie mac v1")),
            seal: derive(raw, b"portcullis record seal v1"),
        }
    }
}

impl KeyRing {
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| KeyError::Read {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        Self::parse(&p, &text)
    }

    pub fn parse(path: &str, text: &str) -> Result<Self, KeyError> {
        let mut raws: Vec<(usize, Vec<u8>)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let raw = URL_SAFE_NO_PAD
                .decode(t.trim_end_matches('='))
                .or_else(|_| URL_SAFE.decode(t))
                .map_err(|_| KeyError::NotBase64 {
                    path: path.into(),
                    line: line_no,
                })?;
            if raw.len() < 32 {
                return Err(KeyError::Short {
                    path: path.into(),
                    line: line_no,
                    len: raw.len(),
                });
            }
            if raw.iter().all(|&b| b == raw[0]) {
                return Err(KeyError::RepeatedByte {
                    path: path.into(),
                    line: line_no,
                });
            }
            if let Some((first, _)) = raws.iter().find(|(_, r)| *r == raw) {
                return Err(KeyError::Duplicate {
                    path: path.into(),
                    line: line_no,
                    first: *first,
                });
            }
            raws.push((line_no, raw));
        }
        if raws.is_empty() {
            return Err(KeyError::Empty { path: path.into() });
        }
        Ok(Self {
            keys: raws.iter().map(|(_, r)| SessionKey::from_raw(r)).collect(),
            generation: next_generation(),
        })
    }

    pub fn from_raw_keys(raws: &[Vec<u8>]) -> Self {
        Self {
            keys: raws.iter().map(|r| SessionKey::from_raw(r)).collect(),
            generation: next_generation(),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The key that signs and seals new material.
    pub fn current(&self) -> &SessionKey {
        // `parse` and `from_raw_keys` callers guarantee at least one key.
        &self.keys[0]
    }

    pub fn by_id(&self, id: &[u8]) -> Option<&SessionKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    pub fn all(&self) -> &[SessionKey] {
        &self.keys
    }
}

/// A fresh random 32-byte key, base64url (what `gen-key` prints).
impl KeyRing {
    /// Seal `plain` under the current key's seal key with AES-256-GCM: key id ‖ nonce (12)
    /// ‖ ciphertext ‖ tag. `aad` binds the value to its purpose (and where it is stored),
    /// so one kind of sealed value never opens as another. `None` only without randomness.
    pub fn seal(
        &self,
        aad: &[u8],
        mut plain: Vec<u8>,
        rng: &dyn ring::rand::SecureRandom,
    ) -> Option<Vec<u8>> {
        let k = self.current();
        let mut nonce = [0u8; 12];
        rng.fill(&mut nonce).ok()?;
        aead_key(&k.seal)?
            .seal_in_place_append_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(aad),
                &mut plain,
            )
            .ok()?;
        let mut out = Vec::with_capacity(KEY_ID_LEN + 12 + plain.len());
        out.extend_from_slice(&k.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&plain);
        Some(out)
    }

    /// Open what `seal` made, in place; `None` if it was sealed with a key no longer in the
    /// ring, for another `aad`, or altered.
    pub fn open<'a>(&self, aad: &[u8], raw: &'a mut [u8]) -> Option<&'a [u8]> {
        if raw.len() < KEY_ID_LEN + 12 + 16 {
            return None;
        }
        let (kid, rest) = raw.split_at_mut(KEY_ID_LEN);
        let k = self.by_id(kid)?;
        let (nonce, body) = rest.split_at_mut(12);
        let mut n = [0u8; 12];
        n.copy_from_slice(nonce);
        let plain = aead_key(&k.seal)?
            .open_in_place(
                ring::aead::Nonce::assume_unique_for_key(n),
                ring::aead::Aad::from(aad),
                body,
            )
            .ok()?;
        Some(plain)
    }

    /// Seal a small value for the browser (a cookie or a form field): base64url of
    /// `seal(aad, JSON)`. `aad` names what it is, so one kind never opens as another.
    pub fn seal_json<T: serde::Serialize>(
        &self,
        aad: &[u8],
        value: &T,
        rng: &dyn ring::rand::SecureRandom,
    ) -> Option<String> {
        let plain = serde_json::to_vec(value).ok()?;
        Some(URL_SAFE_NO_PAD.encode(self.seal(aad, plain, rng)?))
    }

    /// Open what `seal_json` made; `None` if forged, altered, of another kind, sealed
    /// with a key no longer configured, or longer than `max_len`.
    pub fn open_json<T: serde::de::DeserializeOwned>(
        &self,
        aad: &[u8],
        value: &str,
        max_len: usize,
    ) -> Option<T> {
        if value.len() > max_len {
            return None;
        }
        let mut raw = URL_SAFE_NO_PAD.decode(value).ok()?;
        serde_json::from_slice(self.open(aad, &mut raw)?).ok()
    }
}

fn aead_key(seal: &[u8; 32]) -> Option<ring::aead::LessSafeKey> {
    ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, seal)
        .ok()
        .map(ring::aead::LessSafeKey::new)
}

pub fn generate_key() -> Result<String, ring::error::Unspecified> {
    use ring::rand::SecureRandom;
    let mut k = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut k)?;
    Ok(URL_SAFE_NO_PAD.encode(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_key_files() {
        assert!(matches!(
            KeyRing::parse("k", ""),
            Err(KeyError::Empty { .. })
        ));
        assert!(matches!(
            KeyRing::parse("k", "# only a comment\n"),
            Err(KeyError::Empty { .. })
        ));
        assert!(matches!(
            KeyRing::parse("k", "not base64!!"),
            Err(KeyError::NotBase64 { line: 1, .. })
        ));
        let short = URL_SAFE_NO_PAD.encode([7u8, 1, 2, 3]);
        assert!(matches!(
            KeyRing::parse("k", &short),
            Err(KeyError::Short { len: 4, .. })
        ));
        let rep = URL_SAFE_NO_PAD.encode([0u8; 32]);
        assert!(matches!(
            KeyRing::parse("k", &rep),
            Err(KeyError::RepeatedByte { .. })
        ));
        let a = generate_key().unwrap();
        let dup = format!("{a}\n\n{a}\n");
        assert_eq!(
            KeyRing::parse("k", &dup).err(),
            Some(KeyError::Duplicate {
                path: "k".into(),
                line: 3,
                first: 1
            })
        );
    }

    #[test]
    fn ids_follow_the_key_not_the_line() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        let r1 = KeyRing::parse("k", &format!("{a}\n{b}")).unwrap();
        let r2 = KeyRing::parse("k", &format!("{b}\n{a}")).unwrap();
        assert_eq!(r1.all()[0].id, r2.all()[1].id);
        assert_ne!(r1.current().id, r2.current().id);
    }
}
