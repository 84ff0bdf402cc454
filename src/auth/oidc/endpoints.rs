//! `GET {prefix}/oidc/{name}/start` and `GET {prefix}/oidc/callback`.
//!
//! Every failure is an HTML page (`400`/`403`/`502`/`503`, never `500`) with a link to
//! start again, and never a session. No code, token, state or cookie value is logged.

use super::flow::{self, LoginState};
use super::id_token::{self, Expect};
use super::{claims, token, OidcError, Provider};
use crate::auth::page;
use crate::auth::params::{query_param, read_cookie, safe_rd};
use crate::gateway::Shared;
use crate::request::{client_ip, device_of, load_session, RequestCtx};
use crate::respond::Reply;
use crate::session::provider_tokens::ProviderTokens;
use crate::session::{self, Lookup, SessionConfig};
use pingora::proxy::Session;
use std::sync::Arc;

/// The login-state cookie's name: `__Host-` whenever the session cookie is `Secure`.
pub fn state_cookie_name(cfg: &SessionConfig) -> &'static str {
    if cfg.secure {
        "__Host-portcullis-oidc"
    } else {
        "portcullis-oidc"
    }
}

fn state_cookie(cfg: &SessionConfig, value: &str, max_age: u64) -> String {
    let mut c = ::cookie::Cookie::build((state_cookie_name(cfg), value.to_string()))
        .path("/")
        .http_only(true)
        // Lax: the provider's redirect back is a top-level GET navigation, which carries it.
        .same_site(::cookie::SameSite::Lax)
        .max_age(::cookie::time::Duration::seconds(max_age as i64));
    if cfg.secure {
        c = c.secure(true);
    }
    c.build().to_string()
}

fn error_page(ctx: &RequestCtx, provider: Option<&str>, e: &OidcError) -> Reply {
    let again = match provider {
        Some(p) => format!("{}/oidc/{p}/start", ctx.config.auth.prefix),
        None => format!("{}/login", ctx.config.auth.prefix),
    };
    let title = match e.status() {
        400 => "Sign-in could not continue",
        403 => "Sign-in refused",
        _ => "The identity provider is not answering properly",
    };
    Reply::html(
        e.status(),
        page::oidc_error(
            title,
            &e.to_string(),
            e.label(),
            &ctx.request_id.to_string(),
            &again,
        ),
    )
}

fn count(shared: &Shared, provider: &str, result: &str) {
    shared
        .metrics
        .oidc_logins
        .with_label_values(&[provider, result])
        .inc();
}

async fn timed<T>(
    shared: &Shared,
    provider: &str,
    op: &str,
    f: impl std::future::Future<Output = Result<T, OidcError>>,
) -> Result<T, OidcError> {
    let t = std::time::Instant::now();
    let r = f.await;
    shared
        .metrics
        .oidc_provider_duration
        .with_label_values(&[provider, op])
        .observe(t.elapsed().as_secs_f64());
    r
}

pub async fn start(shared: &Shared, s: &Session, ctx: &mut RequestCtx, name: &str) -> Reply {
    let (Some(providers), Some(scfg)) = (ctx.config.oidc.clone(), ctx.config.session.as_ref())
    else {
        return Reply::error(404, "not_found", "no such provider");
    };
    let Some(p) = providers.get(name).cloned() else {
        return Reply::error(404, "not_found", "no such provider");
    };
    let d = match timed(shared, name, "discovery", p.discovered()).await {
        Ok(d) => d,
        Err(e) => {
            count(shared, name, e.label());
            return error_page(ctx, Some(name), &e);
        }
    };
    let rd = safe_rd(ctx, query_param(ctx, "rd").as_deref());
    let host = ctx.host_raw.clone().unwrap_or_default();
    let redirect_uri = format!(
        "{}://{host}{}/oidc/callback",
        ctx.scheme(),
        ctx.config.auth.prefix
    );
    let now = shared.clock.now_ms();
    let Some(mut st) = LoginState::new(&shared.rng, name, redirect_uri, rd, now) else {
        return error_page(ctx, Some(name), &OidcError::Down("no randomness".into()));
    };
    st.step_up = query_param(ctx, "step_up").is_some();
    let Some(sealed) = flow::seal(&scfg.keys, &st, &shared.rng) else {
        return error_page(ctx, Some(name), &OidcError::Down("could not seal".into()));
    };
    let ps = &p.settings;
    // OpenID Connect Core §11: a refresh token for `offline_access` is only granted when
    // the person is asked to consent; a step-up asks for a new login.
    let mut prompts = Vec::new();
    if st.step_up {
        prompts.push("login");
    }
    if ps.scopes.iter().any(|s| s == "offline_access") {
        prompts.push("consent");
    }
    let prompt = (!prompts.is_empty()).then(|| prompts.join(" "));
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &ps.client_id)
        .append_pair("redirect_uri", &st.redirect_uri)
        .append_pair("scope", &ps.scopes.join(" "))
        .append_pair("state", &st.state)
        .append_pair("nonce", &st.nonce)
        .append_pair("code_challenge", &st.challenge())
        .append_pair("code_challenge_method", "S256")
        .extend_pairs(prompt.as_deref().map(|p| ("prompt", p)))
        // Step-up: the person must authenticate again now (OpenID Connect Core §3.1.2.1).
        .extend_pairs(st.step_up.then_some(("max_age", "0")))
        .finish();
    let sep = if d.meta.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    tracing::info!(request_id = %ctx.request_id, client = client_ip(s), provider = name, "sign-in sent to the provider");
    Reply::redirect(
        302,
        &format!("{}{sep}{query}", d.meta.authorization_endpoint),
    )
    .header(
        "set-cookie",
        state_cookie(scfg, &sealed, flow::STATE_TTL.as_secs()),
    )
}

/// The tokens a new session keeps: none unless a setting needs them (fewer secrets at
/// rest), the refresh token only with `refresh`.
fn kept_tokens(
    ps: &super::ProviderSettings,
    t: &token::TokenResponse,
    id_token: &str,
    now: u64,
) -> Option<ProviderTokens> {
    if !(ps.refresh || ps.access_token_header.is_some() || ps.provider_logout) {
        return None;
    }
    Some(ProviderTokens {
        access: t.access_token.clone().unwrap_or_default(),
        refresh: if ps.refresh {
            t.refresh_token.clone().unwrap_or_default()
        } else {
            String::new()
        },
        id_token: id_token.to_string(),
        issued_ms: now,
        expires_ms: t.lifetime_ms().map_or(0, |l| now + l),
    })
}

/// Why a callback is refused, with the provider it concerned (for the page's link).
struct Failed(Option<String>, OidcError);

pub async fn callback(shared: &Shared, s: &Session, ctx: &mut RequestCtx) -> Reply {
    let Some(scfg) = ctx.config.session.as_ref() else {
        return Reply::error(404, "not_found", "sessions are not configured");
    };
    let clear = state_cookie(scfg, "", 0);
    match finish(shared, s, ctx).await {
        Ok(reply) => reply.header("set-cookie", clear),
        Err(Failed(provider, e)) => {
            let label = provider.as_deref().unwrap_or("unknown");
            count(shared, label, e.label());
            tracing::warn!(request_id = %ctx.request_id, client = client_ip(s), provider = label, status = e.status(), reason = %e, "OpenID sign-in refused");
            error_page(ctx, provider.as_deref(), &e).header("set-cookie", clear)
        }
    }
}

async fn finish(shared: &Shared, s: &Session, ctx: &mut RequestCtx) -> Result<Reply, Failed> {
    let bad = |p: Option<&str>, why: &str| {
        Failed(p.map(str::to_string), OidcError::BadRequest(why.into()))
    };
    let Some(scfg) = ctx.config.session.as_ref() else {
        return Err(bad(None, "sessions are not configured"));
    };
    let providers = ctx
        .config
        .oidc
        .clone()
        .ok_or_else(|| bad(None, "no provider is configured"))?;
    let now = shared.clock.now_ms();
    let st = read_cookie(s, state_cookie_name(scfg))
        .and_then(|v| flow::open(&scfg.keys, v, now))
        .ok_or_else(|| {
            bad(
                None,
                "this sign-in was not started in this browser, or took longer than 10 minutes",
            )
        })?;
    let pname = Some(st.provider.as_str());
    let p: Arc<Provider> = providers
        .get(&st.provider)
        .cloned()
        .ok_or_else(|| bad(None, "the provider of this sign-in is no longer configured"))?;
    let got_state = query_param(ctx, "state").unwrap_or_default();
    if !crate::secret::same_bytes(got_state.as_bytes(), st.state.as_bytes()) {
        return Err(bad(
            pname,
            "the sign-in answer does not belong to this browser's sign-in",
        ));
    }
    // Single use, on every instance that shares the store (the state cookie is sealed
    // but copyable: a replayed callback must not redeem a second code).
    match shared
        .store
        .claim(&format!("st:{}", st.state), flow::STATE_TTL)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return Err(bad(
                pname,
                "this sign-in was already completed; start again",
            ))
        }
        Err(e) => {
            return Err(Failed(
                pname.map(str::to_string),
                OidcError::Down(format!("the session store: {e}")),
            ))
        }
    }
    let d = timed(shared, &st.provider, "discovery", p.discovered())
        .await
        .map_err(|e| Failed(Some(st.provider.clone()), e))?;
    // RFC 9207: an `iss` in the answer must be this provider's, checked before any code is
    // redeemed (the mix-up attack sends one provider's answer to another's callback).
    match query_param(ctx, "iss") {
        Some(iss) if iss != p.settings.issuer => {
            return Err(bad(pname, "the answer comes from another provider"))
        }
        None if d.meta.authorization_response_iss_parameter_supported => {
            return Err(bad(pname, "the answer lacks the provider's iss"))
        }
        _ => {}
    }
    if let Some(err) = query_param(ctx, "error") {
        // The provider's error word only (access_denied, login_required, …).
        let word: String = err
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Err(Failed(
            Some(st.provider.clone()),
            OidcError::Refused(format!("the provider did not sign you in ({word})")),
        ));
    }
    let code = query_param(ctx, "code").filter(|c| !c.is_empty() && c.len() <= 2048);
    let code = code.ok_or_else(|| bad(pname, "the answer has no code"))?;
    let fail = |e: OidcError| Failed(Some(st.provider.clone()), e);
    let tokens = timed(
        shared,
        &st.provider,
        "token",
        token::redeem(&p, &d, &code, &st.redirect_uri, &st.verifier),
    )
    .await
    .map_err(fail)?;
    let want = Expect {
        issuer: &p.settings.issuer,
        client_id: &p.settings.client_id,
        nonce: Some(&st.nonce),
        advertised: &d.meta.id_token_signing_alg_values_supported,
    };
    let raw = tokens.id_token.as_deref().unwrap_or("");
    let mut claims = id_token::verify(raw, &d.jwks, &want, now / 1000)
        .await
        .map_err(fail)?;
    let ps = &p.settings;
    let missing = [&ps.user_claim, &ps.email_claim, &ps.groups_claim]
        .iter()
        .any(|c| claims::lookup(&claims, c).is_none());
    if missing {
        if let Some(at) = tokens.access_token.as_deref() {
            timed(
                shared,
                &st.provider,
                "userinfo",
                token::userinfo(&p, &d, at, &mut claims),
            )
            .await
            .map_err(fail)?;
        }
    }
    let identity = claims::identity(ps, &claims).map_err(fail)?;
    if st.step_up {
        // Core §3.1.2.1: with max_age, auth_time is required; it must be this login's.
        let at = claims
            .get("auth_time")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0);
        if at + 60.0 < (st.created_ms / 1000) as f64 {
            return Err(fail(OidcError::Refused(
                "the provider did not ask you to sign in again".into(),
            )));
        }
    }
    // Never promote a session the browser brought: end it, issue a new id.
    if let Ok(Lookup::Hit(old)) = load_session(shared, s, ctx).await {
        let _ = session::end(scfg, &shared.backends(), &old).await;
    }
    let auth = claims::authentication(&st.provider, &claims, now);
    let tokens = kept_tokens(ps, &tokens, raw, now);
    let (value, record) = session::create_with_tokens(
        scfg,
        &shared.backends(),
        identity,
        auth,
        tokens,
        device_of(s),
    )
    .await
    .map_err(|e| fail(OidcError::Down(format!("the session store: {e}"))))?;
    ctx.identity = Some(record.identity.clone());
    count(shared, &st.provider, "success");
    shared.metrics.logins.with_label_values(&["success"]).inc();
    tracing::info!(request_id = %ctx.request_id, client = client_ip(s), provider = %st.provider, user = %record.identity.user, "login");
    Ok(Reply::redirect(303, &st.rd).header("set-cookie", session::set_cookie(scfg, &value)))
}
