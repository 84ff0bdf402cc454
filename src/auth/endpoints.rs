//! `/.auth/login`, `/.auth/logout`, `/.auth/me`, `/.auth/verify`; `/.auth/oidc/…` is
//! handed to `oidc::endpoints`.

use crate::auth::page;
use crate::auth::params::{query_param, safe_rd};
use crate::gateway::Shared;
use crate::request::{client_ip, load_session, RequestCtx, StoreDown};
use crate::respond::Reply;
use crate::session::{self, Lookup};
use pingora::proxy::Session;
use std::time::{Duration, UNIX_EPOCH};

const GENERIC_FAILURE: &str = "Invalid user name or password.";

pub async fn handle(
    shared: &Shared,
    s: &mut Session,
    ctx: &mut RequestCtx,
    sub: &str,
) -> pingora::Result<Reply> {
    if ctx.config.session.is_none() {
        return Ok(Reply::error(
            404,
            "not_found",
            "sessions are not configured on this gateway",
        ));
    }
    let method = s.req_header().method.clone();
    Ok(match (sub, method) {
        ("/login", http::Method::GET | http::Method::HEAD) => login_page(ctx, None, "", 200),
        ("/login", http::Method::POST) => login(shared, s, ctx).await?,
        ("/logout", http::Method::POST) => logout(shared, s, ctx).await,
        ("/logout", _) | ("/login", _) => Reply::error(405, "method_not_allowed", "use POST")
            .header(
                "allow",
                if sub == "/login" {
                    "GET, HEAD, POST"
                } else {
                    "POST"
                },
            ),
        ("/me", http::Method::GET | http::Method::HEAD) => me(shared, s, ctx).await,
        ("/mfa", _) if ctx.config.mfa.is_none() => {
            Reply::error(404, "not_found", "second factors are not enabled")
        }
        ("/mfa", http::Method::GET | http::Method::HEAD) => {
            super::mfa::endpoints::page(shared, s, ctx).await
        }
        ("/mfa", http::Method::POST) => match ctx.config.mfa.clone() {
            Some(m) => super::mfa::endpoints::submit(shared, s, ctx, &m).await?,
            None => Reply::error(404, "not_found", "second factors are not enabled"),
        },
        ("/account", http::Method::GET | http::Method::HEAD) => {
            super::mfa::account::page(shared, s, ctx).await
        }
        ("/account", http::Method::POST) => super::mfa::account::submit(shared, s, ctx).await?,
        ("/static/passkey.js", http::Method::GET | http::Method::HEAD) => {
            super::mfa::passkey_flow::script(ctx)
        }
        ("/passkey/register/options", http::Method::POST) => {
            super::mfa::passkey_flow::register_options(shared, s, ctx).await?
        }
        ("/passkey/register", http::Method::POST) => {
            super::mfa::passkey_flow::register(shared, s, ctx).await?
        }
        ("/passkey/login/options", http::Method::POST) => {
            super::mfa::passkey_flow::login_options(shared, s, ctx).await?
        }
        ("/passkey/login", http::Method::POST) => {
            super::mfa::passkey_flow::login(shared, s, ctx).await?
        }
        (p, _) if p.starts_with("/passkey/") => {
            Reply::error(405, "method_not_allowed", "use POST").header("allow", "POST")
        }
        ("/account" | "/mfa", _) => Reply::error(405, "method_not_allowed", "use GET or POST")
            .header("allow", "GET, HEAD, POST"),
        ("/oidc/callback", http::Method::GET) => {
            super::oidc::endpoints::callback(shared, s, ctx).await
        }
        ("/oidc/backchannel-logout", http::Method::POST) => {
            super::oidc::logout::backchannel(shared, s, ctx).await
        }
        ("/oidc/backchannel-logout", _) => {
            Reply::error(405, "method_not_allowed", "use POST").header("allow", "POST")
        }
        (p, http::Method::GET) if p.starts_with("/oidc/") && p.ends_with("/start") => {
            let name = &p["/oidc/".len()..p.len() - "/start".len()];
            super::oidc::endpoints::start(shared, s, ctx, name).await
        }
        ("/verify", _) => verify(shared, s, ctx).await,
        _ => Reply::error(404, "not_found", "no such endpoint"),
    })
}

fn login_page(ctx: &RequestCtx, error: Option<&str>, username: &str, status: u16) -> Reply {
    let rd = safe_rd(ctx, query_param(ctx, "rd").as_deref());
    login_page_for(ctx, &rd, error, username, status)
}

/// The login page for `rd`: a button per `[[oidc]]`, the password form when there is a
/// users file. With one provider and no users file, straight to that provider.
fn login_page_for(
    ctx: &RequestCtx,
    rd: &str,
    error: Option<&str>,
    username: &str,
    status: u16,
) -> Reply {
    let prefix = &ctx.config.auth.prefix;
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let links: Vec<page::ProviderLink> = ctx
        .config
        .oidc
        .as_ref()
        .map(|o| {
            o.list
                .iter()
                .map(|p| page::ProviderLink {
                    label: p.settings.display_name.clone(),
                    href: format!("{prefix}/oidc/{}/start?rd={}", p.settings.name, enc(rd)),
                })
                .collect()
        })
        .unwrap_or_default();
    let form = ctx.config.auth.users_file.is_some() || links.is_empty();
    if !form && links.len() == 1 && error.is_none() && status == 200 {
        return Reply::redirect(302, &links[0].href);
    }
    let action = format!("{prefix}/login");
    let step_up = query_param(ctx, "step_up");
    // Passwordless sign-in beside the password form (passkeys are for users_file users).
    // It also answers a step-up, `require_mfa` included: a passkey is verified with the
    // device's own PIN or biometric (user verification required), so it counts as `hwk`.
    let passkey = form && ctx.config.mfa.as_ref().is_some_and(|m| m.passkeys);
    let html = page::login_with(
        &action,
        rd,
        error,
        username,
        &links,
        form,
        step_up.as_deref(),
        passkey.then_some(prefix.as_str()),
    );
    if passkey {
        Reply::html_with_script(status, html)
    } else {
        Reply::html(status, html)
    }
}

async fn login(shared: &Shared, s: &mut Session, ctx: &mut RequestCtx) -> pingora::Result<Reply> {
    let m = &shared.metrics;
    let client = client_ip(s);
    // Login CSRF: a cross-site form must not log a victim into the attacker's account.
    if let Some(r) = crate::auth::params::cross_site_refusal(s, ctx, "login") {
        return Ok(r);
    }
    let body = match crate::auth::params::read_form(s).await? {
        Ok(b) => b,
        Err(reply) => return Ok(reply),
    };
    let (mut username, mut password, mut rd) = (String::new(), String::new(), None);
    // A step-up for a route with require_mfa: the second step even for users whose group
    // does not require one (those without a factor enroll one).
    let mut want_mfa = false;
    for (k, v) in form_urlencoded::parse(&body) {
        match &*k {
            "username" => username = v.into_owned(),
            "password" => password = v.into_owned(),
            "rd" => rd = Some(v.into_owned()),
            "mfa" => want_mfa = v == "1",
            _ => {}
        }
    }
    if username.len() > 256 || password.len() > 1024 {
        return Ok(Reply::error(
            400,
            "bad_request",
            "user name or password too long",
        ));
    }
    let limiter = shared.limiter.load_full();
    let keys = [format!("ip:{client}"), format!("user:{username}")];
    if let Some(wait) = keys.iter().filter_map(|k| limiter.blocked(k)).max() {
        m.logins.with_label_values(&["rate_limited"]).inc();
        tracing::warn!(request_id = %ctx.request_id, client, user = %username, "login rate limited");
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Ok(login_page(
            ctx,
            Some("Too many attempts. Try again later."),
            &username,
            429,
        )
        .header("retry-after", secs.max(1).to_string()));
    }
    // Password hashing is deliberately slow: keep it off the proxy's worker threads.
    let users = ctx.config.auth.users.clone();
    let (u, p) = (username.clone(), password);
    let verified = tokio::task::spawn_blocking(move || users.verify(&u, &p))
        .await
        .map_err(|_| {
            pingora::Error::explain(pingora::ErrorType::InternalError, "password check failed")
        })?;
    let Some(identity) = verified else {
        for k in &keys {
            limiter.record_failure(k);
        }
        m.logins.with_label_values(&["failure"]).inc();
        tracing::warn!(request_id = %ctx.request_id, client, user = %username, reason = "bad credentials", "login failed");
        let mut page = login_page(ctx, Some(GENERIC_FAILURE), &username, 401);
        // Keep the rd the form carried, not the page's own query.
        if let Some(r) = rd.as_deref() {
            page = login_page_for(
                ctx,
                &safe_rd(ctx, Some(r)),
                Some(GENERIC_FAILURE),
                &username,
                401,
            );
        }
        return Ok(page);
    };
    let Some(scfg) = ctx.config.session.as_ref() else {
        return Ok(Reply::error(
            404,
            "not_found",
            "sessions are not configured",
        ));
    };
    // A second factor, when the user has one or must have one: no session yet.
    if let Some(mfa) = ctx.config.mfa.clone() {
        let factors = mfa.load(&shared.store, &scfg.keys, &identity.user).await;
        match factors {
            Ok(f) if !f.is_empty() || want_mfa || mfa.required_for(&identity) => {
                let target = safe_rd(ctx, rd.as_deref());
                return Ok(super::mfa::endpoints::begin(
                    shared,
                    ctx,
                    scfg,
                    &identity.user,
                    f.is_empty(),
                    target,
                ));
            }
            Ok(_) => {}
            Err(e) => {
                // Never a session without the factor the user may have: fail closed.
                tracing::error!(request_id = %ctx.request_id, error = %e, "login: second factors could not be read");
                return Ok(Reply::error(503, "unavailable", "try again shortly"));
            }
        }
    }
    // Never promote a session the client brought: end it and issue a fresh id.
    if let Ok(Lookup::Hit(old)) = load_session(shared, s, ctx).await {
        let _ = session::end(scfg, &shared.backends(), &old).await;
    }
    let auth = crate::identity::Authentication::password(shared.clock.now_ms());
    let created = session::create_with_tokens(
        scfg,
        &shared.backends(),
        identity,
        auth,
        None,
        crate::request::device_of(s),
    )
    .await;
    let (value, record) = match created {
        Ok(v) => v,
        Err(e @ crate::session::store::StoreError::Refused(_)) => {
            tracing::error!(request_id = %ctx.request_id, user = %username, error = %e, "login refused");
            return Ok(Reply::error(500, "session_refused", &e.to_string()));
        }
        Err(e) => {
            tracing::error!(request_id = %ctx.request_id, error = %e, "could not store new session");
            return Ok(Reply::error(
                503,
                "session_store_unavailable",
                "try again shortly",
            ));
        }
    };
    ctx.identity = Some(record.identity.clone());
    m.logins.with_label_values(&["success"]).inc();
    tracing::info!(request_id = %ctx.request_id, client, user = %record.identity.user, "login");
    let target = safe_rd(ctx, rd.as_deref());
    Ok(Reply::redirect(303, &target).header("set-cookie", session::set_cookie(scfg, &value)))
}

async fn logout(shared: &Shared, s: &Session, ctx: &mut RequestCtx) -> Reply {
    // A cross-site request never ends a session (logout CSRF).
    if let Some(r) = crate::auth::params::cross_site_refusal(s, ctx, "logout") {
        return r;
    }
    let Some(scfg) = ctx.config.session.as_ref() else {
        return Reply::error(404, "not_found", "sessions are not configured");
    };
    let lookup = match load_session(shared, s, ctx).await {
        Ok(l) => l,
        // Clearing only the cookie would leave the session alive in the store for anyone
        // holding a copy: say that logout did not happen.
        Err(StoreDown) => {
            return Reply::error(503, "session_store_unavailable", "try again shortly")
        }
    };
    let mut next = None;
    if let Lookup::Hit(active) = lookup {
        ctx.identity = Some(active.record.identity.clone());
        match session::end(scfg, &shared.backends(), &active).await {
            Ok(_) => {
                tracing::info!(request_id = %ctx.request_id, user = %active.record.identity.user, "logout")
            }
            Err(e) => {
                tracing::error!(request_id = %ctx.request_id, error = %e, "logout could not reach the session store");
                return Reply::error(503, "session_store_unavailable", "try again shortly");
            }
        }
        // The gateway's session is gone either way; the provider's may end too.
        next = super::oidc::logout::provider_logout_url(shared, ctx, &active.record).await;
    }
    let to = next.as_deref().unwrap_or(&ctx.config.auth.after_logout);
    Reply::redirect(303, to).header("set-cookie", session::clear_cookie(scfg))
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

async fn me(shared: &Shared, s: &Session, ctx: &mut RequestCtx) -> Reply {
    let Some(scfg) = ctx.config.session.as_ref() else {
        return Reply::error(404, "not_found", "sessions are not configured");
    };
    match load_session(shared, s, ctx).await {
        Ok(Lookup::Hit(active)) => {
            let r = &active.record;
            ctx.identity = Some(r.identity.clone());
            let expires = (r.created_ms + scfg.absolute_timeout.as_millis() as u64).min(
                r.last_seen_ms()
                    + scfg.idle_timeout.as_millis() as u64
                    + shared.store.idle_slack_ms(),
            );
            Reply::json(
                200,
                &serde_json::json!({
                    "user": r.identity.user,
                    "email": r.identity.email,
                    "groups": r.identity.groups,
                    "created_at": rfc3339(r.created_ms),
                    "expires_at": rfc3339(expires),
                    // How and when they signed in (null provider: the users file).
                    "provider": (!r.auth.provider.is_empty()).then_some(&r.auth.provider),
                    "auth_time": rfc3339(r.auth.time_ms),
                    "amr": r.auth.methods,
                }),
            )
        }
        Ok(_) => Reply::error(401, "unauthenticated", "no session"),
        Err(StoreDown) => Reply::error(503, "session_store_unavailable", "try again shortly"),
    }
}

/// Forward-auth for nginx `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth`.
async fn verify(shared: &Shared, s: &Session, ctx: &mut RequestCtx) -> Reply {
    let config = ctx.config.clone();
    let found = match load_session(shared, s, ctx).await {
        // Forward auth is the only request an OIDC session makes here: renew it too.
        Ok(Lookup::Hit(active)) => {
            Ok(super::oidc::refresh::renew_if_due(shared, &config, active).await)
        }
        Ok(_) => Ok(None),
        Err(e) => Err(e),
    };
    match found {
        Ok(Some(active)) => {
            let id = active.record.identity.clone();
            ctx.identity = Some(id.clone());
            let h = &ctx.config.identity;
            let mut r = Reply::new(200, "text/plain; charset=utf-8", "")
                .header(h.user.as_str(), id.user.clone());
            if !id.email.is_empty() {
                r = r.header(h.email.as_str(), id.email.clone());
            }
            if !id.groups.is_empty() {
                r = r.header(h.groups.as_str(), id.groups.join(","));
            }
            let now = shared.clock.now_ms();
            if let Some((name, token)) =
                super::oidc::refresh::forwarded_token(&config, &active, now)
            {
                r = r.header(name.as_str(), token);
            }
            r
        }
        Ok(None) => Reply::error(401, "unauthenticated", "no session"),
        Err(StoreDown) => Reply::error(503, "session_store_unavailable", "try again shortly"),
    }
}
