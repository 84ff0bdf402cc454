//! The OpenID Provider's tokens a session keeps (server-side stores only): the access
//! token an upstream may be given, the refresh token that renews it, and the ID token sent
//! back as `id_token_hint` at provider logout. They are bearer credentials: never printed,
//! sealed at rest with the session records.

/// A token longer than this is not kept (the session works, without refresh or
/// forwarding): records stay small, and the codec's u16 lengths hold it.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Renew an access token this long before it expires at most …
const MAX_MARGIN_MS: u64 = 60_000;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProviderTokens {
    pub access: String,
    /// Empty: the provider issued none (no renewal; the session ends by its own timeouts).
    pub refresh: String,
    pub id_token: String,
    /// When the tokens were issued and when the access token expires (ms since the Unix
    /// epoch); `expires_ms == 0`: the provider did not say.
    pub issued_ms: u64,
    pub expires_ms: u64,
}

impl std::fmt::Debug for ProviderTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProviderTokens(<redacted>)")
    }
}

impl ProviderTokens {
    /// Tokens too long to keep are dropped (`None`).
    pub fn bounded(self) -> Option<Self> {
        [&self.access, &self.refresh, &self.id_token]
            .iter()
            .all(|t| t.len() <= MAX_TOKEN_LEN)
            .then_some(self)
    }

    /// Is it time to renew? With a refresh token and a known expiry, once less than a
    /// quarter of the access token's life (at most a minute) is left: early enough that
    /// requests in flight never carry an expired token, late enough that a short-lived
    /// token is not renewed on every request.
    pub fn refresh_due(&self, now_ms: u64) -> bool {
        if self.refresh.is_empty() || self.expires_ms == 0 {
            return false;
        }
        let life = self.expires_ms.saturating_sub(self.issued_ms);
        let margin = (life / 4).min(MAX_MARGIN_MS);
        now_ms.saturating_add(margin) >= self.expires_ms
    }

    /// May the access token still be used (forwarded) at `now_ms`?
    pub fn access_usable(&self, now_ms: u64) -> bool {
        !self.access.is_empty() && (self.expires_ms == 0 || now_ms < self.expires_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_in_the_last_quarter_at_most_a_minute_early() {
        let t = ProviderTokens {
            access: "a".into(),
            refresh: "r".into(),
            issued_ms: 0,
            expires_ms: 3_600_000,
            ..Default::default()
        };
        assert!(!t.refresh_due(3_539_999));
        assert!(t.refresh_due(3_540_000));
        let short = ProviderTokens {
            expires_ms: 8_000,
            ..t.clone()
        };
        assert!(!short.refresh_due(5_999));
        assert!(short.refresh_due(6_000));
        assert!(short.access_usable(7_999) && !short.access_usable(8_000));
        let none = ProviderTokens {
            refresh: String::new(),
            ..t
        };
        assert!(!none.refresh_due(u64::MAX / 2), "nothing to renew with");
        assert_eq!(format!("{none:?}"), "ProviderTokens(<redacted>)");
    }
}
