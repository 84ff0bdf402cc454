//! Renewing an OIDC session's provider tokens before its access token expires (RFC 6749
//! §6, OpenID Connect Core §12).
//!
//! One renewal per session at a time: within a process, the first request that finds the
//! tokens due renews them while the others go on with the still-valid access token (or,
//! when it has already expired, wait for the renewal); across instances, a short claim in
//! the shared store (`Store::claim`) elects one instance, which re-reads the record past
//! its near-cache first, so it always starts from the newest (possibly rotated) refresh
//! token. A renewal the provider refuses (`invalid_grant`) ends the session; a provider
//! that is down or answers badly leaves the session to its own expiry, and renewal is
//! tried again after `RETRY_AFTER`.

use super::id_token::{self, Expect};
use super::{OidcError, Provider, Providers};
use crate::gateway::Shared;
use crate::session::cookie::StoreKey;
use crate::session::provider_tokens::ProviderTokens;
use crate::session::{ActiveSession, SessionConfig};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::sync::Arc;
use std::time::Duration;

/// How long one instance may hold a session's renewal before another may try.
const CLAIM: Duration = Duration::from_secs(30);
/// After a failed renewal (provider down or answering badly), wait this long.
pub(super) const RETRY_AFTER: Duration = Duration::from_secs(30);

/// What became of a session whose tokens were due.
#[derive(Debug)]
pub enum Renewal {
    /// Go on with this session (renewed, or as it was).
    Kept(ActiveSession),
    /// The provider refused the refresh token: the session has ended.
    Ended,
}

/// Is there anything to do for this session? Cheap: the request path asks on every hit.
pub fn due(active: &ActiveSession, now_ms: u64) -> bool {
    active
        .record
        .tokens
        .as_ref()
        .is_some_and(|t| t.refresh_due(now_ms))
}

/// What a request path does with every session it finds: renew it first when its tokens
/// are due (`None`: the provider refused, the session has ended). Every other session
/// passes through after one comparison.
pub async fn renew_if_due(
    shared: &Shared,
    config: &crate::config::Config,
    active: ActiveSession,
) -> Option<ActiveSession> {
    if !due(&active, shared.clock.now_ms()) {
        return Some(active);
    }
    let (Some(providers), Some(scfg)) = (&config.oidc, &config.session) else {
        return Some(active);
    };
    match Box::pin(renew(shared, scfg, providers, active)).await {
        Renewal::Kept(s) => Some(s),
        Renewal::Ended => None,
    }
}

/// The access token to forward for `active` (`access_token_header`), if its provider
/// sets one and the token is still valid.
pub fn forwarded_token<'a>(
    config: &crate::config::Config,
    active: &'a ActiveSession,
    now_ms: u64,
) -> Option<(http::HeaderName, &'a str)> {
    let tokens = active.record.tokens.as_ref()?;
    let header = config
        .oidc
        .as_ref()?
        .get(&active.record.auth.provider)?
        .settings
        .access_token_header
        .clone()?;
    tokens
        .access_usable(now_ms)
        .then_some((header, tokens.access.as_str()))
}

fn claim_name(key: &StoreKey) -> String {
    format!("r:{}", URL_SAFE_NO_PAD.encode(key.0))
}

/// Renew `active`'s tokens if they are due and its provider renews.
pub async fn renew(
    shared: &Shared,
    scfg: &SessionConfig,
    providers: &Providers,
    active: ActiveSession,
) -> Renewal {
    let Some(p) = providers
        .get(&active.record.auth.provider)
        .filter(|p| p.settings.refresh)
        .cloned()
    else {
        return Renewal::Kept(active);
    };
    if providers.backing_off(&active.key) {
        return Renewal::Kept(active);
    }
    let flight = providers.flight(&active.key);
    let _turn = match flight.clone().try_lock_owned() {
        Ok(g) => g,
        Err(_) => {
            let now = shared.clock.now_ms();
            if active
                .record
                .tokens
                .as_ref()
                .is_some_and(|t| t.access_usable(now))
            {
                return Renewal::Kept(active);
            }
            // The token already expired: wait for the renewal in flight, then take what
            // it stored.
            let _g = flight.lock().await;
            return match shared.store.load(scfg, &active.key).await {
                Ok(Some(record)) => Renewal::Kept(ActiveSession { record, ..active }),
                Ok(None) => Renewal::Ended,
                Err(_) => Renewal::Kept(active),
            };
        }
    };
    let name = claim_name(&active.key);
    match shared.store.claim(&name, CLAIM).await {
        Ok(true) => {}
        // Another instance is renewing; this request goes on with what it has.
        Ok(false) => return Renewal::Kept(active),
        Err(e) => {
            tracing::warn!(provider = %p.settings.name, error = %e, "token renewal postponed: the session store did not answer");
            return Renewal::Kept(active);
        }
    }
    let out = renew_claimed(shared, scfg, providers, &p, active).await;
    if let Err(e) = shared.store.release(&name).await {
        tracing::debug!(error = %e, "renewal claim not released; it expires by itself");
    }
    out
}

async fn renew_claimed(
    shared: &Shared,
    scfg: &SessionConfig,
    providers: &Providers,
    p: &Arc<Provider>,
    active: ActiveSession,
) -> Renewal {
    let name = &p.settings.name;
    // Start from the record as the store holds it: another instance may have renewed it
    // (and rotated the refresh token) since this one cached it.
    let current = match shared.store.load_fresh(scfg, &active.key).await {
        Ok(Some(r)) => r,
        Ok(None) => return Renewal::Ended,
        Err(_) => return Renewal::Kept(active),
    };
    let now = shared.clock.now_ms();
    let Some(old) = current.tokens.clone().filter(|t| t.refresh_due(now)) else {
        return Renewal::Kept(ActiveSession {
            record: current,
            ..active
        });
    };
    let outcome = async {
        let d = p.discovered().await?;
        let t = super::token::refresh(p, &d, &old.refresh).await?;
        // Core §12.2: a new ID token must name the same provider, client and subject.
        if let Some(raw) = t.id_token.as_deref() {
            let want = Expect {
                issuer: &p.settings.issuer,
                client_id: &p.settings.client_id,
                nonce: None,
                advertised: &d.meta.id_token_signing_alg_values_supported,
            };
            let claims = id_token::verify(raw, &d.jwks, &want, now / 1000).await?;
            if claims.get("sub").and_then(|s| s.as_str()) != Some(current.auth.subject.as_str()) {
                return Err(OidcError::BadAnswer(
                    "the renewed ID token names another subject".into(),
                ));
            }
        }
        Ok::<_, OidcError>(t)
    };
    let started = std::time::Instant::now();
    let result = outcome.await;
    shared
        .metrics
        .oidc_provider_duration
        .with_label_values(&[name, "refresh"])
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(t) => {
            let fresh = ProviderTokens {
                access: t.access_token.clone().unwrap_or_default(),
                // RFC 6749 §6: without a new refresh token, the old one stays valid.
                refresh: t
                    .refresh_token
                    .clone()
                    .unwrap_or_else(|| old.refresh.clone()),
                id_token: t.id_token.clone().unwrap_or_else(|| old.id_token.clone()),
                issued_ms: now,
                expires_ms: t.lifetime_ms().map_or(0, |l| now + l),
            };
            let Some(fresh) = fresh.bounded() else {
                tracing::warn!(provider = %name, "renewed tokens too large to keep; the session keeps its old ones");
                providers.back_off(&active.key);
                return Renewal::Kept(active);
            };
            match shared
                .store
                .replace(scfg, &active.key, current.renewed(fresh), now)
                .await
            {
                Ok(Some(record)) => {
                    count(shared, name, "renewed");
                    tracing::info!(provider = %name, user = %record.identity.user, "provider tokens renewed");
                    Renewal::Kept(ActiveSession { record, ..active })
                }
                Ok(None) => Renewal::Ended,
                Err(e) => {
                    tracing::warn!(provider = %name, error = %e, "renewed tokens could not be stored");
                    providers.back_off(&active.key);
                    Renewal::Kept(active)
                }
            }
        }
        Err(OidcError::BadRequest(why)) => {
            count(shared, name, "refused");
            tracing::info!(provider = %name, user = %current.identity.user, reason = %why, "the provider refused to renew; session ended");
            if let Err(e) = shared.store.delete(&active.key).await {
                tracing::warn!(error = %e, "could not delete the ended session; it expires by itself");
            }
            Renewal::Ended
        }
        Err(e) => {
            count(shared, name, e.label());
            tracing::warn!(provider = %name, error = %e, "token renewal failed; the session stays until its own expiry, retried in 30s");
            providers.back_off(&active.key);
            Renewal::Kept(active)
        }
    }
}

fn count(shared: &Shared, provider: &str, result: &str) {
    shared
        .metrics
        .oidc_refreshes
        .with_label_values(&[provider, result])
        .inc();
}
