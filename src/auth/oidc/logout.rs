//! Ending sessions with the provider: RP-Initiated Logout 1.0 (`provider_logout = true`:
//! the browser goes on to the provider's `end_session_endpoint`) and Back-Channel Logout
//! 1.0 (`POST {prefix}/oidc/backchannel-logout`: the provider tells the gateway that a
//! provider session ended, and every gateway session that came from it ends, on every
//! instance that shares the store).

use super::id_token::{self, Claims, LEEWAY_S};
use super::{OidcError, Providers};
use crate::gateway::Shared;
use crate::request::{client_ip, RequestCtx};
use crate::respond::Reply;
use crate::session::store::{Group, SessionRecord};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pingora::proxy::Session;
use ring::rand::SecureRandom;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Logout tokens older than this are refused; their `jti` is remembered a little longer,
/// so a token is accepted at most once.
const MAX_AGE_S: f64 = 600.0;
const JTI_TTL: std::time::Duration = std::time::Duration::from_secs(660);
const MAX_BODY: usize = 64 * 1024;

/// Where the browser goes after a local logout of `rec`'s session, when its provider has
/// `provider_logout = true` and publishes an `end_session_endpoint`: that endpoint with
/// `id_token_hint` (when the session kept the ID token), `client_id`,
/// `post_logout_redirect_uri` (the gateway's `after_logout`, made absolute: it must be
/// registered at the provider) and a random `state`. `None`: the local redirect.
pub async fn provider_logout_url(
    shared: &Shared,
    ctx: &RequestCtx,
    rec: &SessionRecord,
) -> Option<String> {
    let providers = ctx.config.oidc.as_ref()?;
    let p = providers
        .get(&rec.auth.provider)
        .filter(|p| p.settings.provider_logout)?;
    let d = match p.discovered().await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(request_id = %ctx.request_id, provider = %p.settings.name, error = %e, "provider logout skipped: the provider is not reachable; the gateway session ended");
            return None;
        }
    };
    let Some(end) = d.meta.end_session_endpoint.as_deref() else {
        tracing::warn!(request_id = %ctx.request_id, provider = %p.settings.name, "provider logout skipped: the provider publishes no end_session_endpoint");
        return None;
    };
    let after = &ctx.config.auth.after_logout;
    let back = if after.starts_with('/') {
        format!("{}{after}", ctx.own_origin())
    } else {
        after.clone()
    };
    let mut state = [0u8; 16];
    shared.rng.fill(&mut state).ok()?;
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(t) = rec.tokens.as_ref().filter(|t| !t.id_token.is_empty()) {
        q.append_pair("id_token_hint", &t.id_token);
    }
    q.append_pair("client_id", &p.settings.client_id)
        .append_pair("post_logout_redirect_uri", &back)
        .append_pair("state", &URL_SAFE_NO_PAD.encode(state));
    let sep = if end.contains('?') { '&' } else { '?' };
    Some(format!("{end}{sep}{}", q.finish()))
}

fn refused(why: &str) -> OidcError {
    OidcError::BadRequest(format!("logout token refused: {why}"))
}

/// The claim checks of Back-Channel Logout 1.0 §2.6, apart from the signature and `jti`
/// reuse: returns the `sid` and `sub` (either may be empty, not both).
pub fn check(
    claims: &Claims,
    issuer: &str,
    client_id: &str,
    now_s: u64,
) -> Result<(String, String), OidcError> {
    let now = now_s as f64;
    if claims.get("iss").and_then(|v| v.as_str()) != Some(issuer) {
        return Err(refused("iss is not the provider"));
    }
    let aud_ok = match claims.get("aud") {
        Some(serde_json::Value::String(a)) => a == client_id,
        Some(serde_json::Value::Array(l)) => l.iter().any(|v| v.as_str() == Some(client_id)),
        _ => false,
    };
    if !aud_ok {
        return Err(refused("aud does not name this client"));
    }
    let iat = id_token::number(claims, "iat")?.ok_or_else(|| refused("no iat"))?;
    if iat > now + LEEWAY_S || iat < now - MAX_AGE_S {
        return Err(refused("iat is too far from now"));
    }
    if id_token::number(claims, "exp")?.is_some_and(|exp| now > exp + LEEWAY_S) {
        return Err(refused("expired"));
    }
    if claims
        .get("jti")
        .and_then(|v| v.as_str())
        .is_none_or(str::is_empty)
    {
        return Err(refused("no jti"));
    }
    let event = claims
        .get("events")
        .and_then(|e| e.as_object())
        .and_then(|e| e.get(EVENT));
    if !event.is_some_and(|v| v.is_object()) {
        return Err(refused("not a back-channel logout event"));
    }
    // An ID token has a nonce; a logout token must not, so one cannot pass for the other.
    if claims.contains_key("nonce") {
        return Err(refused("has a nonce"));
    }
    let text = |k: &str| {
        claims
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let (sid, sub) = (text("sid"), text("sub"));
    if sid.is_empty() && sub.is_empty() {
        return Err(refused("neither sid nor sub"));
    }
    Ok((sid, sub))
}

/// JSON error of §2.8 (every gateway answer is `no-store` already).
fn answer(status: u16, error: &str, why: &str) -> Reply {
    Reply::error(status, error, why)
}

pub async fn backchannel(shared: &Shared, s: &mut Session, ctx: &mut RequestCtx) -> Reply {
    let Some(providers) = ctx.config.oidc.clone() else {
        return answer(404, "not_found", "no provider is configured");
    };
    let body = match crate::auth::params::read_body(
        s,
        "application/x-www-form-urlencoded",
        MAX_BODY,
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(r)) => return r,
        Err(_) => return answer(400, "invalid_request", "could not read the body"),
    };
    let token = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    match end_sessions(shared, &providers, &token).await {
        Ok((provider, n)) => {
            count(shared, &provider, "success");
            tracing::info!(request_id = %ctx.request_id, client = client_ip(s), provider = %provider, sessions = n, "back-channel logout");
            Reply::new(200, "text/plain; charset=utf-8", "")
        }
        Err((provider, e)) => {
            count(shared, &provider, e.label());
            tracing::warn!(request_id = %ctx.request_id, client = client_ip(s), provider = %provider, reason = %e, "back-channel logout refused");
            match e {
                OidcError::Down(_) => answer(503, "temporarily_unavailable", &e.to_string()),
                _ => answer(400, "invalid_request", &e.to_string()),
            }
        }
    }
}

fn count(shared: &Shared, provider: &str, result: &str) {
    shared
        .metrics
        .oidc_backchannel_logouts
        .with_label_values(&[provider, result])
        .inc();
}

/// Verify the logout token and end its sessions; the provider's name (or "unknown") for
/// the metric either way.
async fn end_sessions(
    shared: &Shared,
    providers: &Providers,
    token: &str,
) -> Result<(String, usize), (String, OidcError)> {
    let unknown = |e| ("unknown".to_string(), e);
    if token.is_empty() {
        return Err(unknown(refused("no logout_token")));
    }
    // The issuer picks the provider whose keys must have signed it; nothing else in the
    // token is believed before the signature is checked.
    let claimed = crate::tokens::jwt::jws::parse(token)
        .ok()
        .and_then(|c| serde_json::from_slice::<Claims>(&c.payload).ok())
        .and_then(|c| c.get("iss").and_then(|v| v.as_str()).map(str::to_string))
        .ok_or_else(|| unknown(refused("not a signed JWT with an iss")))?;
    let p = providers
        .by_issuer(&claimed)
        .cloned()
        .ok_or_else(|| unknown(refused("iss is not a configured provider")))?;
    let name = p.settings.name.clone();
    let fail = |e| (name.clone(), e);
    let d = p.discovered().await.map_err(fail)?;
    let claims = id_token::verify_signature(
        token,
        &d.jwks,
        &d.meta.id_token_signing_alg_values_supported,
        refused,
    )
    .await
    .map_err(fail)?;
    let now = shared.clock.now_ms() / 1000;
    let (sid, sub) =
        check(&claims, &p.settings.issuer, &p.settings.client_id, now).map_err(fail)?;
    let jti = claims.get("jti").and_then(|v| v.as_str()).unwrap_or("");
    let jti_name = format!(
        "jti:{}",
        URL_SAFE_NO_PAD.encode(
            ring::digest::digest(&ring::digest::SHA256, format!("{name}\0{jti}").as_bytes())
                .as_ref()
        )
    );
    match shared.store.claim(&jti_name, JTI_TTL).await {
        Ok(true) => {}
        Ok(false) => return Err(fail(refused("jti already used"))),
        Err(e) => return Err(fail(OidcError::Down(format!("the session store: {e}")))),
    }
    let stateless = ctx_stateless(shared);
    if stateless {
        return Err(fail(OidcError::BadRequest(
            "store = \"cookie\" sessions cannot be found by provider session; they end by their own expiry".into(),
        )));
    }
    let group = if sid.is_empty() {
        Group::ProviderSubject {
            provider: &name,
            subject: &sub,
        }
    } else {
        Group::ProviderSession {
            provider: &name,
            sid: &sid,
        }
    };
    let n = shared
        .store
        .delete_group(group)
        .await
        .map_err(|e| fail(OidcError::Down(format!("the session store: {e}"))))?;
    Ok((name, n))
}

fn ctx_stateless(shared: &Shared) -> bool {
    shared
        .config
        .load()
        .session
        .as_ref()
        .is_some_and(|s| s.stateless)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn good() -> serde_json::Value {
        serde_json::json!({"iss": "https://idp", "aud": "gw", "iat": NOW, "jti": "j1",
            "sid": "s1", "events": {EVENT: {}}})
    }

    fn run(v: serde_json::Value) -> Result<(String, String), OidcError> {
        check(v.as_object().unwrap(), "https://idp", "gw", NOW)
    }

    #[test]
    fn the_claim_rules_of_back_channel_logout_2_6() {
        assert_eq!(run(good()).unwrap(), ("s1".into(), String::new()));
        let mut by_sub = good();
        by_sub.as_object_mut().unwrap().remove("sid");
        by_sub["sub"] = "u1".into();
        assert_eq!(run(by_sub).unwrap(), (String::new(), "u1".into()));
        let with = |k: &str, v: serde_json::Value| {
            let mut c = good();
            c[k] = v;
            c
        };
        let without = |k: &str| {
            let mut c = good();
            c.as_object_mut().unwrap().remove(k);
            c
        };
        for bad in [
            with("iss", "https://evil".into()),
            with("aud", "other".into()),
            with("iat", (NOW + 3600).into()),
            with("iat", (NOW - 3600).into()),
            with("exp", (NOW - 120).into()),
            with("events", serde_json::json!({"other": {}})),
            with("events", serde_json::json!({EVENT: "yes"})),
            with("nonce", "n".into()),
            with("jti", "".into()),
            without("jti"),
            without("iat"),
            without("events"),
            without("sid"),
        ] {
            assert!(run(bad.clone()).is_err(), "{bad}");
        }
        assert!(run(with("aud", serde_json::json!(["x", "gw"]))).is_ok());
    }
}
