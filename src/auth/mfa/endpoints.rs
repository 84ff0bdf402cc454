//! `GET/POST {prefix}/mfa`: the second step of a login. After a correct password, a user
//! with a second factor (or one who must have one) gets a pending login, not a session;
//! a valid TOTP or recovery code turns it into a **new** session whose record says
//! `pwd` + `otp` (a passkey, through `passkey_flow`, into one that says `pwd` + `hwk`). Someone who must use a second factor but has none enrolls here first.

use super::factors::{self, Factors, TotpFactor};
use super::pending::{self, PendingLogin};
use super::{pages, totp, MfaSettings};
use crate::auth::params::read_cookie;
use crate::gateway::Shared;
use crate::identity::{Authentication, Identity};
use crate::request::{client_ip, device_of, RequestCtx};
use crate::respond::Reply;
use crate::session::{self, SessionConfig};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pingora::proxy::Session;
use ring::rand::SecureRandom;
use std::sync::Arc;

fn action(ctx: &RequestCtx) -> String {
    format!("{}/mfa", ctx.config.auth.prefix)
}

pub(crate) fn expired(ctx: &RequestCtx) -> Reply {
    Reply::html(
        400,
        pages::message(
            "Sign-in expired",
            "This sign-in took too long or was already completed. Please sign in again.",
            &format!("{}/login", ctx.config.auth.prefix),
            "Sign in",
        ),
    )
}

/// After a correct password: the pending login and the way to its second step.
pub fn begin(
    shared: &Shared,
    ctx: &RequestCtx,
    scfg: &SessionConfig,
    user: &str,
    enroll: bool,
    rd: String,
) -> Reply {
    let mut id = [0u8; 16];
    let secret = if enroll {
        totp::new_secret(&shared.rng)
    } else {
        Some(String::new())
    };
    let (Ok(()), Some(secret)) = (shared.rng.fill(&mut id), secret) else {
        return Reply::error(503, "unavailable", "no randomness; try again");
    };
    let p = PendingLogin {
        id: URL_SAFE_NO_PAD.encode(id),
        user: user.to_string(),
        rd,
        created_ms: shared.clock.now_ms(),
        enroll_secret: enroll.then_some(secret),
    };
    let Some(sealed) = pending::seal(&scfg.keys, &p, &shared.rng) else {
        return Reply::error(503, "unavailable", "could not seal; try again");
    };
    tracing::info!(request_id = %ctx.request_id, user = %user, enroll, "password accepted; second step");
    Reply::redirect(303, &action(ctx)).header(
        "set-cookie",
        pending::set_cookie(scfg, &sealed, pending::TTL.as_secs()),
    )
}

/// The enrollment block of a page (QR code and URI) for `secret`.
pub fn enroll_html(ctx: &RequestCtx, user: &str, secret: &str) -> Option<String> {
    let issuer = ctx
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "portcullis".into());
    let uri = totp::uri(secret, user, &issuer)?;
    Some(pages::enroll_block(&totp::qr_svg(&uri)?, &uri))
}

pub(crate) fn open_pending(
    shared: &Shared,
    s: &Session,
    scfg: &SessionConfig,
) -> Option<PendingLogin> {
    let v = read_cookie(s, pending::cookie_name(scfg))?;
    pending::open(&scfg.keys, v, shared.clock.now_ms())
}

/// The second step's page: the code form (an app enrolled, or being enrolled) and "Use a
/// passkey" (passkeys registered; that page runs the passkey script).
fn step_page(
    ctx: &RequestCtx,
    p: &PendingLogin,
    f: &Factors,
    error: Option<&str>,
    status: u16,
) -> Reply {
    let enroll = p
        .enroll_secret
        .as_deref()
        .and_then(|s| enroll_html(ctx, &p.user, s));
    let passkeys = p.enroll_secret.is_none()
        && !f.passkeys.is_empty()
        && ctx.config.mfa.as_ref().is_some_and(|m| m.passkeys);
    let code = enroll.is_some() || f.totp.is_some() || !passkeys;
    let prefix = &ctx.config.auth.prefix;
    let html = pages::second_step(
        &action(ctx),
        enroll,
        error,
        code,
        passkeys.then_some(prefix.as_str()),
    );
    if passkeys {
        Reply::html_with_script(status, html)
    } else {
        Reply::html(status, html)
    }
}

pub async fn page(shared: &Shared, s: &Session, ctx: &RequestCtx) -> Reply {
    let Some(scfg) = ctx.config.session.as_ref() else {
        return Reply::error(404, "not_found", "sessions are not configured");
    };
    let Some(p) = open_pending(shared, s, scfg) else {
        return expired(ctx);
    };
    let Some(mfa) = ctx.config.mfa.as_ref() else {
        return expired(ctx);
    };
    match mfa.load(&shared.store, &scfg.keys, &p.user).await {
        Ok(f) => step_page(ctx, &p, &f, None, 200),
        Err(e) => {
            tracing::error!(request_id = %ctx.request_id, error = %e, "second step: factors could not be read");
            Reply::error(503, "unavailable", "try again shortly")
        }
    }
}

pub(crate) fn count(shared: &Shared, method: &str, result: &str) {
    shared
        .metrics
        .mfa
        .with_label_values(&[method, result])
        .inc();
}

/// A code that looks like a recovery code (12 letters and digits, a dash optional).
fn looks_like_recovery(code: &str) -> bool {
    let n: Vec<char> = code.chars().filter(|c| !matches!(c, '-' | ' ')).collect();
    n.len() == 12 && n.iter().all(|c| c.is_ascii_alphanumeric())
}

pub async fn submit(
    shared: &Shared,
    s: &mut Session,
    ctx: &mut RequestCtx,
    mfa: &Arc<MfaSettings>,
) -> pingora::Result<Reply> {
    let client = client_ip(s);
    if let Some(r) = crate::auth::params::cross_site_refusal(s, ctx, "second step") {
        return Ok(r);
    }
    let config = ctx.config.clone();
    let Some(scfg) = config.session.as_ref() else {
        return Ok(Reply::error(
            404,
            "not_found",
            "sessions are not configured",
        ));
    };
    let body = match crate::auth::params::read_form(s).await? {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    let Some(p) = open_pending(shared, s, scfg) else {
        return Ok(expired(ctx));
    };
    let code = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let down = |e: &dyn std::fmt::Display| {
        tracing::error!(request_id = %ctx.request_id, error = %e, "second step: a store did not answer");
        Reply::error(503, "unavailable", "try again shortly")
    };
    let mut factors = match mfa.load(&shared.store, &scfg.keys, &p.user).await {
        Ok(f) => f,
        Err(e) => return Ok(down(&e)),
    };
    let limiter = shared.limiter.load_full();
    let keys = [format!("ip:{client}"), format!("user:{}", p.user)];
    if let Some(wait) = keys.iter().filter_map(|k| limiter.blocked(k)).max() {
        count(shared, "totp", "rate_limited");
        tracing::warn!(request_id = %ctx.request_id, client, user = %p.user, "second step rate limited");
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Ok(step_page(
            ctx,
            &p,
            &factors,
            Some("Too many attempts. Try again later."),
            429,
        )
        .header("retry-after", secs.max(1).to_string()));
    }
    let Some(identity) = ctx.config.auth.users.identity(&p.user) else {
        // Removed from the users file since the password step.
        return Ok(expired(ctx));
    };
    let now = shared.clock.now_ms();
    // Enrollment within the pending login; otherwise the enrolled factor.
    let (method, ok, shown) = match (&p.enroll_secret, &factors.totp) {
        (Some(secret), None) => {
            match totp::verify_once(&shared.store, &p.user, secret, &code, now / 1000).await {
                Ok(true) => {
                    let Some((shown, hashes)) = factors::new_recovery_codes(&shared.rng) else {
                        return Ok(down(&"no randomness"));
                    };
                    factors = Factors {
                        totp: Some(TotpFactor {
                            secret: secret.clone(),
                            added_ms: now,
                        }),
                        recovery: hashes,
                        ..factors
                    };
                    if let Err(e) = mfa
                        .save(&shared.store, &scfg.keys, &p.user, &factors, &shared.rng)
                        .await
                    {
                        return Ok(down(&e));
                    }
                    ("enroll", true, Some(shown))
                }
                Ok(false) => ("enroll", false, None),
                Err(e) => return Ok(down(&e)),
            }
        }
        (_, Some(t)) if !looks_like_recovery(&code) => {
            match totp::verify_once(&shared.store, &p.user, &t.secret, &code, now / 1000).await {
                Ok(ok) => ("totp", ok, None),
                Err(e) => return Ok(down(&e)),
            }
        }
        // A recovery code is checked here and spent only once the pending login is
        // claimed below, so a replayed pending login cannot burn one.
        (_, Some(_)) => ("recovery", factors.clone().spend_recovery(&code), None),
        // Passkeys only: a code cannot be right.
        (None, None) if !factors.passkeys.is_empty() => ("totp", false, None),
        // Pending without enrollment but nothing enrolled (removed meanwhile).
        (None, None) => return Ok(expired(ctx)),
    };
    if !ok {
        for k in &keys {
            limiter.record_failure(k);
        }
        count(shared, method, "failure");
        shared.metrics.logins.with_label_values(&["failure"]).inc();
        tracing::warn!(request_id = %ctx.request_id, client, user = %p.user, method, "second factor refused");
        return Ok(step_page(
            ctx,
            &p,
            &factors,
            Some("That code is not valid."),
            401,
        ));
    }
    // Each pending login completes once, even if its cookie was copied.
    match shared
        .store
        .claim(&format!("pl:{}", p.id), pending::TTL)
        .await
    {
        Ok(true) => {}
        Ok(false) => return Ok(expired(ctx)),
        Err(e) => return Ok(down(&e)),
    }
    if method == "recovery" {
        factors.spend_recovery(&code);
        if let Err(e) = mfa
            .save(&shared.store, &scfg.keys, &p.user, &factors, &shared.rng)
            .await
        {
            return Ok(down(&e));
        }
    }
    let reply = finish(shared, s, ctx, scfg, identity, &p, method).await;
    let reply = match (reply, shown) {
        (Ok((cookie, rd)), Some(codes)) => {
            Reply::html(200, pages::recovery_codes(&codes, &rd)).header("set-cookie", cookie)
        }
        (Ok((cookie, rd)), None) => Reply::redirect(303, &rd).header("set-cookie", cookie),
        (Err(r), _) => r,
    };
    Ok(reply.header("set-cookie", pending::set_cookie(scfg, "", 0)))
}

/// The new session of a completed second step: `Set-Cookie` and where to go.
async fn finish(
    shared: &Shared,
    s: &Session,
    ctx: &mut RequestCtx,
    scfg: &SessionConfig,
    identity: Identity,
    p: &PendingLogin,
    method: &str,
) -> Result<(String, String), Reply> {
    let cookie = new_session(shared, s, ctx, scfg, identity, &["pwd", "otp"], method).await?;
    Ok((cookie, p.rd.clone()))
}

/// A **new** session for a completed login whose methods were `methods` (RFC 8176):
/// its `Set-Cookie`. A session the browser brought is ended, never promoted.
pub(crate) async fn new_session(
    shared: &Shared,
    s: &Session,
    ctx: &mut RequestCtx,
    scfg: &SessionConfig,
    identity: Identity,
    methods: &[&str],
    method: &str,
) -> Result<String, Reply> {
    let now = shared.clock.now_ms();
    let auth = Authentication {
        methods: methods.iter().map(|m| m.to_string()).collect(),
        time_ms: now,
        ..Authentication::default()
    };
    if let Ok(session::Lookup::Hit(old)) = crate::request::load_session(shared, s, ctx).await {
        let _ = session::end(scfg, &shared.backends(), &old).await;
    }
    let created =
        session::create_with_tokens(scfg, &shared.backends(), identity, auth, None, device_of(s))
            .await;
    match created {
        Ok((value, record)) => {
            ctx.identity = Some(record.identity.clone());
            count(shared, method, "success");
            shared.metrics.logins.with_label_values(&["success"]).inc();
            tracing::info!(request_id = %ctx.request_id, client = client_ip(s), user = %record.identity.user, method, "login");
            Ok(session::set_cookie(scfg, &value))
        }
        Err(e) => {
            tracing::error!(request_id = %ctx.request_id, error = %e, "could not store new session");
            Err(Reply::error(
                503,
                "session_store_unavailable",
                "try again shortly",
            ))
        }
    }
}
