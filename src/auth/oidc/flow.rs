//! The browser's half of a login in flight: `state`, `nonce` and the PKCE verifier, sealed
//! into a short-lived cookie, so that the callback can check that it continues a login this
//! browser started (no server-side state to share between instances).
//!
//! Cookie value: base64url(key id ‖ nonce (12) ‖ AES-256-GCM(JSON)), under the session key
//! ring's seal key with its own associated data, so it cannot be confused with a session.

use crate::session::keys::KeyRing;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a login may take at the provider.
pub const STATE_TTL: Duration = Duration::from_secs(600);
const AAD: &[u8] = b"portcullis oidc login state v1\0";
const MAX_COOKIE: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoginState {
    pub provider: String,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    pub redirect_uri: String,
    pub rd: String,
    pub created_ms: u64,
    /// A step-up: the provider was asked to authenticate again (`max_age=0`), so the ID
    /// token's `auth_time` must be from this login.
    #[serde(default)]
    pub step_up: bool,
}

fn random_b64(rng: &dyn SecureRandom, n: usize) -> Option<String> {
    let mut b = vec![0u8; n];
    rng.fill(&mut b).ok()?;
    Some(URL_SAFE_NO_PAD.encode(b))
}

impl LoginState {
    pub fn new(
        rng: &dyn SecureRandom,
        provider: &str,
        redirect_uri: String,
        rd: String,
        now_ms: u64,
    ) -> Option<Self> {
        Some(Self {
            provider: provider.to_string(),
            state: random_b64(rng, 24)?,
            nonce: random_b64(rng, 24)?,
            // RFC 7636 §4.1: 43-128 characters; 32 random bytes give 43.
            verifier: random_b64(rng, 32)?,
            redirect_uri,
            rd,
            created_ms: now_ms,
            step_up: false,
        })
    }

    /// RFC 7636 §4.2: `BASE64URL(SHA256(verifier))`.
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD
            .encode(ring::digest::digest(&ring::digest::SHA256, self.verifier.as_bytes()).as_ref())
    }
}

pub fn seal(keys: &KeyRing, st: &LoginState, rng: &dyn SecureRandom) -> Option<String> {
    keys.seal_json(AAD, st, rng)
}

/// Open a state cookie; `None` if forged, altered, sealed with a key no longer configured,
/// or older than `STATE_TTL` at `now_ms`.
pub fn open(keys: &KeyRing, value: &str, now_ms: u64) -> Option<LoginState> {
    let st: LoginState = keys.open_json(AAD, value, MAX_COOKIE)?;
    let age = now_ms.checked_sub(st.created_ms)?;
    (age <= STATE_TTL.as_millis() as u64).then_some(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_state_round_trips_and_refuses_tampering_and_age() {
        let keys = KeyRing::from_raw_keys(&[vec![7u8; 32]]);
        let rng = ring::rand::SystemRandom::new();
        let st = LoginState::new(&rng, "corp", "https://gw/cb".into(), "/x".into(), 1_000).unwrap();
        let v = seal(&keys, &st, &rng).unwrap();
        assert_eq!(open(&keys, &v, 2_000), Some(st.clone()));
        assert_eq!(open(&keys, &v, 1_000 + 600_001), None, "expired");
        assert_eq!(open(&keys, &v, 999), None, "from the future");
        let mut raw = URL_SAFE_NO_PAD.decode(&v).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert_eq!(open(&keys, &URL_SAFE_NO_PAD.encode(raw), 2_000), None);
        let other = KeyRing::from_raw_keys(&[vec![8u8; 32]]);
        assert_eq!(open(&other, &v, 2_000), None);
        // RFC 7636 appendix B's example verifier and challenge.
        let mut b = st;
        b.verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into();
        assert_eq!(b.challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }
}
