//! Second factors for users of `users_file` (`[mfa]`): TOTP authenticator apps with
//! recovery codes, the second step of a login (`/.auth/mfa`), and the person's own page
//! (`/.auth/account`: sessions and factors), and passkeys (WebAuthn) as a second step or
//! a passwordless sign-in.

pub mod account;
pub mod endpoints;
pub mod factors;
pub mod pages;
pub mod passkey;
pub mod passkey_flow;
pub mod pending;
pub mod totp;

use crate::identity::Identity;
use std::path::PathBuf;
use std::sync::Arc;

/// Validated `[mfa]`.
#[derive(Debug)]
pub struct MfaSettings {
    /// Authenticator apps can be added (an app already enrolled keeps working either way).
    pub totp: bool,
    /// Passkeys can be added and used (second step, passwordless sign-in).
    pub passkeys: bool,
    /// Members must use a second factor at every login; `"*"` = everyone.
    pub required_groups: Vec<String>,
    pub store: FactorStore,
}

/// Where enrolled factors live.
#[derive(Debug, Clone)]
pub enum FactorStore {
    /// `credentials_file`, with the memory and memcached session stores. Writes within
    /// this process are serialized by the lock.
    File(PathBuf, Arc<tokio::sync::Mutex<()>>),
    /// In Redis, beside the sessions (`store = "redis"`).
    Redis,
}

impl MfaSettings {
    /// `user`'s factors, from wherever this gateway keeps them.
    pub async fn load(
        &self,
        sessions: &crate::session::store::Store,
        keys: &crate::session::keys::KeyRing,
        user: &str,
    ) -> Result<factors::Factors, factors::FactorError> {
        factors::load(&self.store, sessions, keys, user).await
    }

    pub async fn save(
        &self,
        sessions: &crate::session::store::Store,
        keys: &crate::session::keys::KeyRing,
        user: &str,
        f: &factors::Factors,
        rng: &(dyn ring::rand::SecureRandom + Sync),
    ) -> Result<(), factors::FactorError> {
        factors::save(&self.store, sessions, keys, user, f, rng).await
    }

    /// Must `id` use a second factor at every login?
    pub fn required_for(&self, id: &Identity) -> bool {
        self.required_groups
            .iter()
            .any(|g| g == "*" || id.groups.contains(g))
    }
}

/// Adding or removing a factor needs an authentication younger than this.
pub const RECENT_AUTH_MS: u64 = 10 * 60 * 1000;

/// Does this list of RFC 8176 authentication methods include a second factor? For local
/// logins `otp` (TOTP or a recovery code) or `hwk` (a passkey); for OIDC sessions what the provider reported.
pub fn is_second_factor(methods: &[String]) -> bool {
    methods.iter().any(|m| {
        matches!(
            m.as_str(),
            "mfa" | "otp" | "hwk" | "swk" | "sms" | "tel" | "sc" | "pop" | "fpt" | "face" | "iris"
        )
    })
}
