//! `GET/POST {prefix}/account`: the signed-in person's own page — who they are, how and
//! when they last authenticated, their sessions (with "sign out" for each and "sign out
//! everywhere else") and their second factors (add a TOTP app or a passkey, remove
//! either; adding a passkey runs through `passkey_flow`). Changing a
//! factor needs an authentication younger than 10 minutes; otherwise the person signs in
//! again first (a new session) and comes back here.

use super::factors::{self, TotpFactor};
use super::{pages, totp, RECENT_AUTH_MS};
use crate::auth::page::{escape, layout};
use crate::gateway::Shared;
use crate::request::{load_session, RequestCtx};
use crate::respond::Reply;
use crate::session::{self, ActiveSession, Lookup, SessionConfig};
use pingora::proxy::Session;
use serde::{Deserialize, Serialize};
use std::time::{Duration, UNIX_EPOCH};

const ENROLL_AAD: &[u8] = b"portcullis account enrollment v1\0";
const ENROLL_TTL_MS: u64 = 10 * 60 * 1000;

/// A TOTP secret being added from the account page, sealed into the confirm form.
#[derive(Serialize, Deserialize)]
struct Enrollment {
    user: String,
    secret: String,
    created_ms: u64,
}

fn when(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

pub(crate) fn page_url(ctx: &RequestCtx) -> String {
    format!("{}/account", ctx.config.auth.prefix)
}

/// Sign in again (a new session with a fresh authentication), then come back here.
pub(crate) fn reauthenticate(ctx: &RequestCtx, active: &ActiveSession) -> Reply {
    let rd: String = form_urlencoded::byte_serialize(page_url(ctx).as_bytes()).collect();
    Reply::redirect(
        303,
        &crate::auth::reauth_url(ctx, &active.record.auth.provider, &rd, false),
    )
}

pub(crate) async fn signed_in(
    shared: &Shared,
    s: &Session,
    ctx: &mut RequestCtx,
) -> Result<ActiveSession, Reply> {
    match load_session(shared, s, ctx).await {
        Ok(Lookup::Hit(a)) => {
            ctx.identity = Some(a.record.identity.clone());
            Ok(a)
        }
        Ok(_) => {
            let rd: String = form_urlencoded::byte_serialize(page_url(ctx).as_bytes()).collect();
            Err(Reply::redirect(
                302,
                &format!("{}/login?rd={rd}", ctx.config.auth.prefix),
            ))
        }
        Err(_) => Err(Reply::error(
            503,
            "session_store_unavailable",
            "try again shortly",
        )),
    }
}

pub async fn page(shared: &Shared, s: &Session, ctx: &mut RequestCtx) -> Reply {
    let config = ctx.config.clone();
    let Some(scfg) = config.session.as_ref() else {
        return Reply::error(404, "not_found", "sessions are not configured");
    };
    let active = match signed_in(shared, s, ctx).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    render(shared, ctx, scfg, &active, None).await
}

async fn render(
    shared: &Shared,
    ctx: &RequestCtx,
    scfg: &SessionConfig,
    active: &ActiveSession,
    notice: Option<&str>,
) -> Reply {
    let r = &active.record;
    let id = &r.identity;
    let url = page_url(ctx);
    let methods = if r.auth.methods.is_empty() {
        "unknown".to_string()
    } else {
        r.auth.methods.join(", ")
    };
    let how = if r.auth.provider.is_empty() {
        format!("with {}", escape(&methods))
    } else {
        format!(
            "through {} ({})",
            escape(&r.auth.provider),
            escape(&methods)
        )
    };
    let mut body = String::new();
    // Whether the page offers a passkey, and so loads the script.
    let mut script = false;
    if let Some(n) = notice {
        body.push_str(&format!(
            "<p class=\"note\" role=\"status\">{}</p>\n",
            escape(n)
        ));
    }
    body.push_str(&format!(
        "<p>Signed in as <strong>{}</strong>{}{}.</p>\n<p>Last authenticated {} {how}.</p>\n",
        escape(&id.user),
        if id.email.is_empty() {
            String::new()
        } else {
            format!(" ({})", escape(&id.email))
        },
        if id.groups.is_empty() {
            String::new()
        } else {
            format!(", groups {}", escape(&id.groups.join(", ")))
        },
        when(r.auth.time_ms),
    ));
    // Sessions (server-side stores only: cookie sessions cannot be listed).
    body.push_str("<h2>Your sessions</h2>\n");
    if scfg.stateless {
        body.push_str(
            "<p class=\"note\">Sessions live in browser cookies here and cannot be listed.</p>\n",
        );
    } else {
        match session::list_user(scfg, &shared.backends(), &id.user).await {
            Ok(list) => {
                body.push_str("<table>\n<tr><th>Device</th><th>Address</th><th>Started</th><th>Last seen</th><th></th></tr>\n");
                for (key, rec) in &list {
                    let action = if *key == active.key {
                        "<strong>this session</strong>".to_string()
                    } else {
                        match session::handle(&scfg.keys, key, &shared.rng) {
                            Some(h) => format!(
                                "<form class=\"inline\" method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"action\" value=\"end\"><input type=\"hidden\" name=\"handle\" value=\"{}\"><button class=\"quiet\" type=\"submit\">Sign out</button></form>",
                                escape(&url),
                                escape(&h)
                            ),
                            None => String::new(),
                        }
                    };
                    body.push_str(&format!(
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>\n",
                        escape(if rec.device.agent.is_empty() {
                            "unknown"
                        } else {
                            &rec.device.agent
                        }),
                        escape(if rec.device.client.is_empty() {
                            "unknown"
                        } else {
                            &rec.device.client
                        }),
                        when(rec.created_ms),
                        when(rec.last_seen_ms()),
                    ));
                }
                body.push_str("</table>\n");
                if list.len() > 1 {
                    body.push_str(&format!(
                        "<form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"action\" value=\"end-others\"><button type=\"submit\">Sign out everywhere else</button></form>\n",
                        escape(&url)
                    ));
                }
            }
            Err(e) => {
                tracing::warn!(request_id = %ctx.request_id, error = %e, "account page: sessions not listed");
                body.push_str("<p class=\"error\">Your sessions cannot be listed right now.</p>\n");
            }
        }
    }
    // Second factors: local users only (a provider's users have the provider's).
    body.push_str("<h2>Second factors</h2>\n");
    match (&ctx.config.mfa, r.auth.provider.is_empty()) {
        (None, _) => {
            body.push_str("<p class=\"note\">Second factors are not enabled on this gateway.</p>\n")
        }
        (Some(_), false) => body.push_str(
            "<p class=\"note\">Your identity provider manages your second factors.</p>\n",
        ),
        (Some(mfa), true) => match mfa.load(&shared.store, &scfg.keys, &id.user).await {
            Ok(f) => {
                if mfa.totp || f.totp.is_some() {
                    let (label, act, button) = match &f.totp {
                        Some(t) => (
                            format!(
                                "Authenticator app (TOTP), added {}; {} recovery codes left.",
                                when(t.added_ms),
                                f.recovery.len()
                            ),
                            "totp-remove",
                            "Remove",
                        ),
                        None => (
                            "No authenticator app.".to_string(),
                            "totp-begin",
                            "Add an authenticator app",
                        ),
                    };
                    body.push_str(&format!(
                            "<h3>Authenticator app</h3>\n<p>{}</p>\n<form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"action\" value=\"{act}\"><button type=\"submit\">{button}</button></form>\n",
                            escape(&label),
                            escape(&url)
                        ));
                }
                if mfa.passkeys || !f.passkeys.is_empty() {
                    body.push_str("<h3>Passkeys</h3>\n");
                    body.push_str(&passkey_list(&f, &url));
                }
                if mfa.passkeys {
                    script = true;
                    body.push_str(&pages::passkey_button(
                        &ctx.config.auth.prefix,
                        "register",
                        "Add a passkey",
                        "",
                    ));
                }
                if shared.clock.now_ms().saturating_sub(r.auth.time_ms) > RECENT_AUTH_MS {
                    body.push_str("<p class=\"note\">Changing a factor asks you to sign in again first.</p>\n");
                }
            }
            Err(e) => {
                tracing::warn!(request_id = %ctx.request_id, error = %e, "account page: factors not read");
                body.push_str(
                    "<p class=\"error\">Your second factors cannot be read right now.</p>\n",
                );
            }
        },
    }
    body.push_str(&format!(
        "<h2>Sign out</h2>\n<form method=\"post\" action=\"{}/logout\"><button type=\"submit\">Sign out</button></form>\n",
        escape(&ctx.config.auth.prefix)
    ));
    if script {
        body.push_str(&pages::passkey_script(&ctx.config.auth.prefix));
        Reply::html_with_script(200, layout("Your account", "46rem", pages::CSS, &body))
    } else {
        Reply::html(200, layout("Your account", "46rem", pages::CSS, &body))
    }
}

/// The passkeys of the account page, each with its "Remove" form.
fn passkey_list(f: &factors::Factors, url: &str) -> String {
    if f.passkeys.is_empty() {
        return "<p>No passkeys.</p>\n".to_string();
    }
    let mut out = String::from(
        "<table>\n<tr><th>Passkey</th><th>Added</th><th>Last used</th><th></th></tr>\n",
    );
    for k in &f.passkeys {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><form class=\"inline\" method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"action\" value=\"passkey-remove\"><input type=\"hidden\" name=\"credential\" value=\"{}\"><button class=\"quiet\" type=\"submit\">Remove</button></form></td></tr>\n",
            escape(&k.name),
            when(k.added_ms),
            if k.used_ms == 0 { "never".to_string() } else { when(k.used_ms) },
            escape(url),
            escape(&k.id()),
        ));
    }
    out.push_str("</table>\n");
    out
}

pub async fn submit(
    shared: &Shared,
    s: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<Reply> {
    if let Some(r) = crate::auth::params::cross_site_refusal(s, ctx, "account change") {
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
    let active = match signed_in(shared, s, ctx).await {
        Ok(a) => a,
        Err(r) => return Ok(r),
    };
    let field = |name: &str| {
        form_urlencoded::parse(&body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let user = active.record.identity.user.clone();
    let back = Reply::redirect(303, &page_url(ctx));
    let down = |e: &dyn std::fmt::Display| {
        tracing::error!(request_id = %ctx.request_id, error = %e, "account change: a store did not answer");
        Reply::error(503, "unavailable", "try again shortly")
    };
    let now = shared.clock.now_ms();
    let recent = now.saturating_sub(active.record.auth.time_ms) <= RECENT_AUTH_MS;
    let action = field("action");
    // The factor actions below run only with `[mfa]` on (the `None` arm answers 404), so
    // each takes the settings from the pattern.
    match (action.as_str(), config.mfa.as_deref()) {
        ("end", _) => {
            let Some(key) = session::open_handle(&scfg.keys, &field("handle")) else {
                return Ok(Reply::error(400, "bad_handle", "no such session"));
            };
            match session::list_user(scfg, &shared.backends(), &user).await {
                Ok(list) if list.iter().any(|(k, _)| *k == key) => {
                    if let Err(e) = shared.store.delete(&key).await {
                        return Ok(down(&e));
                    }
                    tracing::info!(request_id = %ctx.request_id, user = %user, "session ended from the account page");
                    Ok(back)
                }
                // Not one of this person's sessions (or already gone): nothing to end.
                Ok(_) => Ok(Reply::error(404, "not_found", "no such session")),
                Err(e) => Ok(down(&e)),
            }
        }
        ("end-others", _) => match session::list_user(scfg, &shared.backends(), &user).await {
            Ok(list) => {
                let mut n = 0;
                for (k, _) in list.iter().filter(|(k, _)| *k != active.key) {
                    if let Err(e) = shared.store.delete(k).await {
                        return Ok(down(&e));
                    }
                    n += 1;
                }
                tracing::info!(request_id = %ctx.request_id, user = %user, ended = n, "signed out everywhere else");
                Ok(back)
            }
            Err(e) => Ok(down(&e)),
        },
        ("totp-begin" | "totp-confirm" | "totp-remove" | "passkey-remove", _)
            if !active.record.auth.provider.is_empty() =>
        {
            Ok(Reply::error(
                400,
                "provider_user",
                "your identity provider manages your factors",
            ))
        }
        ("totp-begin" | "totp-confirm" | "totp-remove" | "passkey-remove", None) => Ok(
            Reply::error(404, "not_found", "second factors are not enabled"),
        ),
        ("totp-begin" | "totp-confirm" | "totp-remove" | "passkey-remove", Some(_)) if !recent => {
            Ok(reauthenticate(ctx, &active))
        }
        ("totp-begin", Some(m)) if !m.totp => Ok(Reply::error(
            404,
            "not_found",
            "authenticator apps are not enabled",
        )),
        ("totp-begin", Some(_)) => {
            let Some(secret) = totp::new_secret(&shared.rng) else {
                return Ok(down(&"no randomness"));
            };
            let e = Enrollment {
                user: user.clone(),
                secret: secret.clone(),
                created_ms: now,
            };
            let (Some(sealed), Some(block)): (Option<String>, Option<String>) = (
                scfg.keys.seal_json(ENROLL_AAD, &e, &shared.rng),
                super::endpoints::enroll_html(ctx, &user, &secret),
            ) else {
                return Ok(down(&"could not seal"));
            };
            Ok(Reply::html(200, confirm_page(ctx, &block, &sealed, None)))
        }
        ("totp-confirm", Some(mfa)) => {
            let sealed = field("enrollment");
            let Some(e) = scfg
                .keys
                .open_json::<Enrollment>(ENROLL_AAD, &sealed, 4096)
                .filter(|e| e.user == user && now.saturating_sub(e.created_ms) <= ENROLL_TTL_MS)
            else {
                return Ok(Reply::error(
                    400,
                    "bad_enrollment",
                    "start adding the app again",
                ));
            };
            match totp::verify_once(&shared.store, &user, &e.secret, &field("code"), now / 1000)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    shared
                        .metrics
                        .mfa
                        .with_label_values(&["enroll", "failure"])
                        .inc();
                    let block =
                        super::endpoints::enroll_html(ctx, &user, &e.secret).unwrap_or_default();
                    return Ok(Reply::html(
                        401,
                        confirm_page(ctx, &block, &sealed, Some("That code is not valid.")),
                    ));
                }
                Err(err) => return Ok(down(&err)),
            }
            let Some((shown, hashes)) = factors::new_recovery_codes(&shared.rng) else {
                return Ok(down(&"no randomness"));
            };
            // Keep the passkeys already registered: adding the app replaces only the app.
            let mut f = match mfa.load(&shared.store, &scfg.keys, &user).await {
                Ok(f) => f,
                Err(err) => return Ok(down(&err)),
            };
            f.totp = Some(TotpFactor {
                secret: e.secret,
                added_ms: now,
            });
            f.recovery = hashes;
            if let Err(err) = mfa
                .save(&shared.store, &scfg.keys, &user, &f, &shared.rng)
                .await
            {
                return Ok(down(&err));
            }
            shared
                .metrics
                .mfa
                .with_label_values(&["enroll", "success"])
                .inc();
            tracing::info!(request_id = %ctx.request_id, user = %user, "TOTP factor added");
            Ok(Reply::html(
                200,
                pages::recovery_codes(&shown, &page_url(ctx)),
            ))
        }
        ("totp-remove", Some(mfa)) => {
            let mut f = match mfa.load(&shared.store, &scfg.keys, &user).await {
                Ok(f) => f,
                Err(err) => return Ok(down(&err)),
            };
            if f.passkeys.is_empty() && mfa.required_for(&active.record.identity) {
                return Ok(factor_kept(ctx));
            }
            // The recovery codes belong to the app: they go with it.
            f.totp = None;
            f.recovery.clear();
            if let Err(err) = mfa
                .save(&shared.store, &scfg.keys, &user, &f, &shared.rng)
                .await
            {
                return Ok(down(&err));
            }
            tracing::info!(request_id = %ctx.request_id, user = %user, "TOTP factor removed");
            Ok(back)
        }
        ("passkey-remove", Some(mfa)) => {
            let mut f = match mfa.load(&shared.store, &scfg.keys, &user).await {
                Ok(f) => f,
                Err(err) => return Ok(down(&err)),
            };
            let wanted = field("credential");
            let Some(at) = f.passkeys.iter().position(|k| k.id() == wanted) else {
                return Ok(Reply::error(404, "not_found", "no such passkey"));
            };
            if f.count() <= 1 && mfa.required_for(&active.record.identity) {
                return Ok(factor_kept(ctx));
            }
            let gone = f.passkeys.remove(at);
            if let Err(err) = mfa
                .save(&shared.store, &scfg.keys, &user, &f, &shared.rng)
                .await
            {
                return Ok(down(&err));
            }
            // The name the person gave it, never the credential id.
            tracing::info!(request_id = %ctx.request_id, user = %user, passkey = %gone.name, "passkey removed");
            Ok(back)
        }
        _ => Ok(Reply::error(400, "bad_request", "unknown action")),
    }
}

fn confirm_page(ctx: &RequestCtx, block: &str, sealed: &str, error: Option<&str>) -> String {
    let err = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>\n", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "{err}{block}<form method=\"post\" action=\"{}\">\n<input type=\"hidden\" name=\"action\" value=\"totp-confirm\">\n\
         <input type=\"hidden\" name=\"enrollment\" value=\"{}\">\n<label for=\"code\">Code</label>\n\
         <input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required autofocus>\n\
         <button type=\"submit\">Add the app</button>\n</form>\n",
        escape(&page_url(ctx)),
        escape(sealed)
    );
    layout("Add an authenticator app", "26rem", pages::CSS, &body)
}

/// Refusal to remove the last factor of someone who must use one.
pub(crate) fn factor_kept(ctx: &RequestCtx) -> Reply {
    Reply::html(
        403,
        pages::message(
            "Factor kept",
            "Your account must keep a second factor: add another one before removing this one.",
            &page_url(ctx),
            "Back to your account",
        ),
    )
}
