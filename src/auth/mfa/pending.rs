//! A login between its password and its second factor: not yet a session, but a
//! short-lived sealed cookie (`__Host-portcullis-mfa`) saying who passed the password,
//! where to go after, and — for someone who must enroll first — the secret being enrolled.
//! Each pending login completes once (its id is claimed in the store).

use crate::session::keys::KeyRing;
use crate::session::SessionConfig;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub const TTL: Duration = Duration::from_secs(300);
const AAD: &[u8] = b"portcullis pending login v1\0";
const MAX_COOKIE: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    /// Random, base64url: claimed when the login completes.
    pub id: String,
    pub user: String,
    pub rd: String,
    pub created_ms: u64,
    /// A TOTP secret being enrolled (someone who must use a second factor but has none).
    #[serde(default)]
    pub enroll_secret: Option<String>,
}

pub fn cookie_name(cfg: &SessionConfig) -> &'static str {
    if cfg.secure {
        "__Host-portcullis-mfa"
    } else {
        "portcullis-mfa"
    }
}

pub fn seal(
    keys: &KeyRing,
    p: &PendingLogin,
    rng: &dyn ring::rand::SecureRandom,
) -> Option<String> {
    keys.seal_json(AAD, p, rng)
}

/// `None` if forged, altered, expired or from the future.
pub fn open(keys: &KeyRing, value: &str, now_ms: u64) -> Option<PendingLogin> {
    let p: PendingLogin = keys.open_json(AAD, value, MAX_COOKIE)?;
    let age = now_ms.checked_sub(p.created_ms)?;
    (age <= TTL.as_millis() as u64).then_some(p)
}

/// `Set-Cookie` for the pending login (`max_age` 0 clears it).
pub fn set_cookie(cfg: &SessionConfig, value: &str, max_age: u64) -> String {
    let mut c = ::cookie::Cookie::build((cookie_name(cfg), value.to_string()))
        .path("/")
        .http_only(true)
        .same_site(::cookie::SameSite::Strict)
        .max_age(::cookie::time::Duration::seconds(max_age as i64));
    if cfg.secure {
        c = c.secure(true);
    }
    c.build().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_expiring_and_not_an_oidc_state() {
        let keys = KeyRing::from_raw_keys(&[vec![3u8; 32]]);
        let rng = ring::rand::SystemRandom::new();
        let p = PendingLogin {
            id: "i".into(),
            user: "ana".into(),
            rd: "/".into(),
            created_ms: 1_000,
            enroll_secret: None,
        };
        let v = seal(&keys, &p, &rng).unwrap();
        assert_eq!(open(&keys, &v, 2_000).unwrap().user, "ana");
        assert!(open(&keys, &v, 1_000 + 300_001).is_none());
        assert!(open(&keys, &v, 999).is_none());
        assert!(open(&keys, &v[1..], 2_000).is_none());
        // The same key ring seals OIDC login states under another label.
        assert!(crate::auth::oidc::flow::open(&keys, &v, 2_000).is_none());
    }
}
