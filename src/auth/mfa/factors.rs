//! A user's enrolled second factors, durable and sealed: a TOTP secret, the hashes of
//! unused recovery codes, and passkeys (WebAuthn credentials with their sign counters). Sealed with the session key ring (AES-256-GCM, bound to the user
//! name), in `credentials_file` or in Redis (`f:<hex SHA-256(user)>`).

use super::FactorStore;
use crate::session::keys::KeyRing;
use crate::session::store::Store;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

const AAD: &[u8] = b"portcullis factors v1\0";
const MAX_SEALED: usize = 64 * 1024;

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Factors {
    #[serde(default)]
    pub totp: Option<TotpFactor>,
    /// Hex SHA-256 of each unused recovery code (codes are random, 60 bits: a plain hash
    /// is enough, no password hashing needed).
    #[serde(default)]
    pub recovery: Vec<String>,
    /// Registered passkeys (records from before passkeys read as none).
    #[serde(default)]
    pub passkeys: Vec<PasskeyFactor>,
}

impl std::fmt::Debug for Factors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Factors(totp: {}, recovery codes: {}, passkeys: {})",
            self.totp.is_some(),
            self.recovery.len(),
            self.passkeys.len()
        )
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct TotpFactor {
    /// The shared secret, base64url.
    pub secret: String,
    pub added_ms: u64,
}

/// One registered passkey: the library's credential (id, public key, sign counter,
/// backup flags) and what the account page shows about it.
#[derive(Clone, Serialize, Deserialize)]
pub struct PasskeyFactor {
    /// Chosen by the person when adding it ("Passkey" when left empty).
    pub name: String,
    pub added_ms: u64,
    /// Last successful use (0 = never).
    #[serde(default)]
    pub used_ms: u64,
    pub key: webauthn_rs::prelude::Passkey,
}

impl PasskeyFactor {
    /// The credential id, base64url: how the account page names the one to remove.
    pub fn id(&self) -> String {
        b64(self.key.cred_id().as_ref())
    }
}

impl Factors {
    /// No factor at all: neither an authenticator app nor a passkey.
    pub fn is_empty(&self) -> bool {
        self.totp.is_none() && self.passkeys.is_empty()
    }

    /// How many factors a login can use (the app counts once, each passkey once).
    pub fn count(&self) -> usize {
        usize::from(self.totp.is_some()) + self.passkeys.len()
    }

    /// Spend a recovery code: `true` (and it is gone) if it was one of the unused ones.
    pub fn spend_recovery(&mut self, code: &str) -> bool {
        let h = code_hash(code);
        let before = self.recovery.len();
        self.recovery
            .retain(|c| !crate::secret::same_bytes(c.as_bytes(), h.as_bytes()));
        self.recovery.len() < before
    }
}

/// Recovery codes are compared without case, dashes or spaces.
pub fn code_hash(code: &str) -> String {
    let norm: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let d = ring::digest::digest(&ring::digest::SHA256, norm.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum FactorError {
    #[error("credentials store: {0}")]
    Unavailable(String),
    #[error("credentials file {0} is not valid JSON; refusing to overwrite it")]
    Corrupt(String),
}

fn user_name(user: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, user.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn aad(user: &str) -> Vec<u8> {
    [AAD, user.as_bytes()].concat()
}

fn open(keys: &KeyRing, user: &str, sealed: &[u8]) -> Option<Factors> {
    let text = std::str::from_utf8(sealed).ok()?;
    keys.open_json(&aad(user), text.trim(), MAX_SEALED)
}

/// The whole file: hex SHA-256(user) → sealed factors. Missing file = nobody enrolled.
fn read_file(path: &Path) -> Result<BTreeMap<String, String>, FactorError> {
    match std::fs::read(path) {
        Ok(b) => {
            serde_json::from_slice(&b).map_err(|_| FactorError::Corrupt(path.display().to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(FactorError::Unavailable(format!("{}: {e}", path.display()))),
    }
}

/// Atomic replace (temp file, fsync, rename), mode 0600.
fn write_file(path: &Path, map: &BTreeMap<String, String>) -> Result<(), FactorError> {
    let io = |e: std::io::Error| FactorError::Unavailable(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io)?;
    let body =
        serde_json::to_vec_pretty(map).map_err(|e| FactorError::Unavailable(e.to_string()))?;
    f.write_all(&body).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The user's factors (empty when none are enrolled). A record that does not open (its
/// key removed from `keys_file`, or altered) is an error, never "none enrolled": a lost
/// key must not silently turn someone's second factor off.
pub async fn load(
    at: &FactorStore,
    store: &Store,
    keys: &KeyRing,
    user: &str,
) -> Result<Factors, FactorError> {
    let sealed: Option<Vec<u8>> = match at {
        FactorStore::File(path, _) => read_file(path)?
            .remove(&user_name(user))
            .map(String::into_bytes),
        FactorStore::Redis => store
            .redis()
            .ok_or_else(|| FactorError::Unavailable("not the Redis store".into()))?
            .get_value(&user_name(user))
            .await
            .map_err(|e| FactorError::Unavailable(e.to_string()))?,
    };
    match sealed {
        None => Ok(Factors::default()),
        Some(s) => open(keys, user, &s).ok_or_else(|| {
            FactorError::Unavailable(
                "a user's factors did not open (session key removed from keys_file, or altered)"
                    .into(),
            )
        }),
    }
}

pub async fn save(
    at: &FactorStore,
    store: &Store,
    keys: &KeyRing,
    user: &str,
    factors: &Factors,
    rng: &(dyn ring::rand::SecureRandom + Sync),
) -> Result<(), FactorError> {
    let sealed = keys
        .seal_json(&aad(user), factors, rng)
        .ok_or_else(|| FactorError::Unavailable("could not seal".into()))?;
    match at {
        FactorStore::File(path, lock) => {
            let _one = lock.lock().await;
            let mut map = read_file(path)?;
            if factors.is_empty() && factors.recovery.is_empty() {
                map.remove(&user_name(user));
            } else {
                map.insert(user_name(user), sealed);
            }
            write_file(path, &map)
        }
        FactorStore::Redis => store
            .redis()
            .ok_or_else(|| FactorError::Unavailable("not the Redis store".into()))?
            .set_value(&user_name(user), sealed.into_bytes())
            .await
            .map_err(|e| FactorError::Unavailable(e.to_string())),
    }
}

/// Ten new recovery codes (shown once) and their hashes (stored).
pub fn new_recovery_codes(
    rng: &dyn ring::rand::SecureRandom,
) -> Option<(Vec<String>, Vec<String>)> {
    let mut shown = Vec::with_capacity(10);
    for _ in 0..10 {
        let mut b = [0u8; 8];
        rng.fill(&mut b).ok()?;
        // 12 characters of an unambiguous lower-case alphabet: 60 bits.
        const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789ab";
        let n = u64::from_le_bytes(b);
        let s: String = (0..12)
            .map(|i| ALPHABET[((n >> (i * 5)) & 31) as usize] as char)
            .collect();
        shown.push(format!("{}-{}", &s[..6], &s[6..]));
    }
    let hashes = shown.iter().map(|c| code_hash(c)).collect();
    Some((shown, hashes))
}

/// For a sealed value in a form field: base64url is already safe there.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_spent_once_whatever_their_spelling() {
        let rng = ring::rand::SystemRandom::new();
        let (shown, hashes) = new_recovery_codes(&rng).unwrap();
        assert_eq!(shown.len(), 10);
        assert_eq!(
            shown.iter().collect::<std::collections::HashSet<_>>().len(),
            10
        );
        let mut f = Factors {
            recovery: hashes,
            ..Factors::default()
        };
        let loud = shown[3].to_uppercase().replace('-', " ");
        assert!(f.spend_recovery(&loud));
        assert!(!f.spend_recovery(&shown[3]), "once");
        assert!(!f.spend_recovery("aaaaaa-aaaaaa"));
        assert_eq!(f.recovery.len(), 9);
    }

    #[test]
    fn records_from_before_passkeys_still_read() {
        let old = r#"{"totp":{"secret":"c2VjcmV0","added_ms":1},"recovery":["ab"]}"#;
        let f: Factors = serde_json::from_str(old).unwrap();
        assert!(f.passkeys.is_empty());
        assert_eq!(f.count(), 1);
        assert!(!f.is_empty());
        assert!(Factors::default().is_empty());
    }

    #[test]
    fn sealed_per_user_in_the_file() {
        let dir = std::env::temp_dir().join(format!("pc-factors-{}", std::process::id()));
        let path = dir.join("creds");
        let keys = KeyRing::from_raw_keys(&[vec![5u8; 32]]);
        let rng = ring::rand::SystemRandom::new();
        let at = FactorStore::File(path.clone(), Default::default());
        let store = Store::Memory(std::sync::Arc::new(
            crate::session::store::MemoryStore::new(10),
        ));
        let f = Factors {
            totp: Some(TotpFactor {
                secret: "c2VjcmV0".into(),
                added_ms: 1,
            }),
            recovery: vec!["ab".into()],
            passkeys: Vec::new(),
        };
        futures_util::FutureExt::now_or_never(save(&at, &store, &keys, "ana", &f, &rng))
            .unwrap()
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("ana") && !text.contains("c2VjcmV0"),
            "{text}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let back = futures_util::FutureExt::now_or_never(load(&at, &store, &keys, "ana"))
            .unwrap()
            .unwrap();
        assert_eq!(back.totp.unwrap().secret, "c2VjcmV0");
        let none = futures_util::FutureExt::now_or_never(load(&at, &store, &keys, "bob"))
            .unwrap()
            .unwrap();
        assert!(none.is_empty());
        // Another user's record does not open as this one's.
        let mut map = read_file(&path).unwrap();
        let ana = map.remove(&user_name("ana")).unwrap();
        map.insert(user_name("bob"), ana);
        write_file(&path, &map).unwrap();
        assert!(
            futures_util::FutureExt::now_or_never(load(&at, &store, &keys, "bob"))
                .unwrap()
                .is_err()
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
