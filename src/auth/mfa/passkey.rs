//! Passkeys (WebAuthn, with `webauthn-rs`): the relying party a request addresses (RP ID
//! = its host without the port, origin = its own origin, both checked by the library on
//! every ceremony), the user handle of a local user, and the ceremony states the browser
//! carries from the options to the finish — sealed with the session key ring under a label
//! that binds them to their purpose (the user registering, the pending login, or a
//! passwordless sign-in), short-lived, and claimed once in the store when finished.

use crate::request::RequestCtx;
use crate::session::keys::KeyRing;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, PasskeyAuthentication, PasskeyRegistration, Url, Uuid, Webauthn,
    WebauthnBuilder, WebauthnError,
};

/// How long a ceremony may take from its options to its finish. The browser is told a
/// little less (`AUTHENTICATOR_TIMEOUT`), so its prompt closes before the state expires.
pub const CEREMONY_TTL: Duration = Duration::from_secs(180);
const AUTHENTICATOR_TIMEOUT: Duration = Duration::from_secs(150);
const AAD: &[u8] = b"portcullis passkey ceremony v1\0";
/// A sealed second-step state lists the user's credentials (with one ES256 passkey it
/// sealed to 1171 bytes in tests/passkeys.rs); the number of passkeys per user is capped
/// (`passkey_flow::MAX_PASSKEYS`) so a state stays far below this.
pub const MAX_SEALED: usize = 48 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    /// WebAuthn needs a domain name: an IP address or a missing Host is no RP ID.
    #[error("the request's host cannot be a WebAuthn relying party id")]
    NoRpId,
    #[error("webauthn: {0}")]
    Webauthn(#[from] WebauthnError),
}

/// The relying party of this request: its host and its own origin.
pub fn relying_party(ctx: &RequestCtx) -> Result<Webauthn, PasskeyError> {
    let host = ctx
        .host
        .as_deref()
        .filter(|h| !h.is_empty() && h.parse::<std::net::IpAddr>().is_err() && !h.starts_with('['))
        .ok_or(PasskeyError::NoRpId)?;
    let origin = Url::parse(&ctx.own_origin()).map_err(|_| PasskeyError::NoRpId)?;
    Ok(WebauthnBuilder::new(host, &origin)?
        .rp_name(host)
        .timeout(AUTHENTICATOR_TIMEOUT)
        .build()?)
}

/// The WebAuthn user handle of a local user: stable (a passkey keeps working across
/// restarts and instances, and key rotation) and derived from the name, so a
/// passwordless sign-in finds its user without an index. It is a hash, not the name:
/// authenticators show `user.name`, not the handle, and the spec asks handles to carry no
/// personal data in the clear.
pub fn user_handle(user: &str) -> Uuid {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        [b"portcullis passkey user v1\0".as_slice(), user.as_bytes()]
            .concat()
            .as_slice(),
    );
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    Uuid::from_bytes(b)
}

/// What a ceremony is for, which is also what it is bound to.
#[derive(Debug, Clone, Copy)]
pub enum Binding<'a> {
    /// Adding a passkey from the account page, for this user.
    Register(&'a str),
    /// The second step of this pending login (its id).
    SecondStep(&'a str),
    /// A passwordless sign-in from the login page: nobody yet.
    SignIn,
}

impl Binding<'_> {
    fn aad(&self) -> Vec<u8> {
        let (kind, bound): (&[u8], &str) = match self {
            Self::Register(user) => (b"register\0", user),
            Self::SecondStep(pending) => (b"second-step\0", pending),
            Self::SignIn => (b"sign-in\0", ""),
        };
        [AAD, kind, bound.as_bytes()].concat()
    }
}

/// The library's state between options and finish.
#[derive(Serialize, Deserialize)]
pub enum CeremonyState {
    Register(PasskeyRegistration),
    Authenticate(PasskeyAuthentication),
    Discover(DiscoverableAuthentication),
}

/// A ceremony in flight, sealed into the options answer and posted back with the result.
#[derive(Serialize, Deserialize)]
pub struct Ceremony {
    /// Random, base64url: claimed in the store when the ceremony is finished, so a state
    /// (and the assertion made over its challenge) counts once.
    pub id: String,
    pub created_ms: u64,
    /// The origin it was started for; the finish must come to the same one.
    pub origin: String,
    /// Where a sign-in goes afterwards; a registration's passkey name.
    #[serde(default)]
    pub note: String,
    pub state: CeremonyState,
}

pub fn seal(
    keys: &KeyRing,
    binding: Binding<'_>,
    c: &Ceremony,
    rng: &dyn ring::rand::SecureRandom,
) -> Option<String> {
    keys.seal_json(&binding.aad(), c, rng)
}

/// `None` if forged, altered, bound to something else, expired, from the future, or
/// started for another origin than the one it is finished at.
pub fn open(
    keys: &KeyRing,
    binding: Binding<'_>,
    value: &str,
    now_ms: u64,
    origin: &str,
) -> Option<Ceremony> {
    let c: Ceremony = keys.open_json(&binding.aad(), value, MAX_SEALED)?;
    let age = now_ms.checked_sub(c.created_ms)?;
    (age <= CEREMONY_TTL.as_millis() as u64 && c.origin == origin).then_some(c)
}

/// Why a passkey was refused, for the log and the metric's `result` label.
pub fn refusal(e: &WebauthnError) -> &'static str {
    match e {
        WebauthnError::CredentialPossibleCompromise => "cloned",
        WebauthnError::InvalidRPOrigin | WebauthnError::InvalidRPIDHash => "wrong_origin",
        WebauthnError::MismatchedChallenge => "wrong_challenge",
        WebauthnError::UserNotVerified => "not_verified",
        _ => "failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ceremony(keys: &KeyRing, rng: &ring::rand::SystemRandom) -> (Ceremony, String) {
        let rp = WebauthnBuilder::new("localhost", &Url::parse("https://localhost:8443").unwrap())
            .unwrap()
            .build()
            .unwrap();
        let (_, state) = rp.start_discoverable_authentication().unwrap();
        let c = Ceremony {
            id: "i".into(),
            created_ms: 1_000,
            origin: "https://localhost:8443".into(),
            note: "/".into(),
            state: CeremonyState::Discover(state),
        };
        let v = seal(keys, Binding::SecondStep("p1"), &c, rng).unwrap();
        (c, v)
    }

    #[test]
    fn bound_to_purpose_origin_and_time() {
        let keys = KeyRing::from_raw_keys(&[vec![7u8; 32]]);
        let rng = ring::rand::SystemRandom::new();
        let (_, v) = ceremony(&keys, &rng);
        let o = "https://localhost:8443";
        assert!(open(&keys, Binding::SecondStep("p1"), &v, 2_000, o).is_some());
        assert!(open(&keys, Binding::SecondStep("p2"), &v, 2_000, o).is_none());
        assert!(open(&keys, Binding::SignIn, &v, 2_000, o).is_none());
        assert!(open(&keys, Binding::Register("p1"), &v, 2_000, o).is_none());
        assert!(open(
            &keys,
            Binding::SecondStep("p1"),
            &v,
            2_000,
            "https://evil:8443"
        )
        .is_none());
        assert!(open(&keys, Binding::SecondStep("p1"), &v, 1_000 + 180_001, o).is_none());
        assert!(open(&keys, Binding::SecondStep("p1"), &v, 999, o).is_none());
    }

    #[test]
    fn user_handles_are_stable_and_distinct() {
        assert_eq!(user_handle("ana"), user_handle("ana"));
        assert_ne!(user_handle("ana"), user_handle("bob"));
        assert!(!user_handle("ana")
            .as_bytes()
            .windows(3)
            .any(|w| w == b"ana"));
    }
}
