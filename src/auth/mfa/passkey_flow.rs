//! The passkey endpoints, JSON over `fetch` from the gateway's one static script
//! (`GET {prefix}/static/passkey.js`):
//! - `POST {prefix}/passkey/register/options` and `…/register`: add a passkey from the
//!   account page (a session with an authentication younger than 10 minutes);
//! - `POST {prefix}/passkey/login/options` and `…/login` with `mode` `second-step` (after
//!   the password: a new session with `pwd` + `hwk`) or `sign-in` (passwordless from the
//!   login page, a discoverable credential: a new session with `hwk`).
//!
//! Each options answer carries the ceremony state sealed (`passkey::seal`); the finish
//! claims it once in the store before checking anything else, so a replayed assertion is
//! refused even when it is a perfectly signed one. Every refusal is logged (never with a
//! credential id) and counted in `portcullis_mfa_total{method="passkey"}`.

use super::endpoints::{count, new_session, open_pending};
use super::factors::{Factors, PasskeyFactor};
use super::passkey::{self, Binding, Ceremony, CeremonyState};
use super::{account, MfaSettings, RECENT_AUTH_MS};
use crate::auth::params::{read_json, safe_rd};
use crate::config::Config;
use crate::gateway::Shared;
use crate::request::{client_ip, RequestCtx};
use crate::respond::Reply;
use crate::session::SessionConfig;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pingora::proxy::Session;
use ring::rand::SecureRandom;
use serde::Deserialize;
use std::sync::Arc;
use webauthn_rs::prelude::{DiscoverableKey, PublicKeyCredential, RegisterPublicKeyCredential};
use webauthn_rs_proto::ResidentKeyRequirement;

/// The browser half of the ceremonies. Served as a file so that the pages' CSP can allow
/// `script-src 'self'` and nothing inline.
pub const SCRIPT: &str = include_str!("passkey.js");

/// The metric label of every passkey check; registrations count as `passkey_enroll`.
const METHOD: &str = "passkey";
const ENROLL: &str = "passkey_enroll";
const MAX_NAME: usize = 64;
/// Passkeys per user: the sealed second-step state lists them all and must stay well
/// inside `passkey::MAX_SEALED`.
const MAX_PASSKEYS: usize = 20;

#[derive(Deserialize)]
struct RegisterOptions {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct LoginOptions {
    mode: String,
    #[serde(default)]
    rd: String,
}

#[derive(Deserialize)]
struct Finish<C> {
    state: String,
    credential: C,
}

#[derive(Deserialize)]
struct LoginFinish {
    mode: String,
    state: String,
    credential: serde_json::Value,
}

fn refused(status: u16, code: &str, message: &str) -> Reply {
    Reply::error(status, code, message)
}

fn down(ctx: &RequestCtx, e: &dyn std::fmt::Display) -> Reply {
    tracing::error!(request_id = %ctx.request_id, error = %e, "passkey: a store did not answer");
    Reply::error(503, "unavailable", "try again shortly")
}

/// What every passkey endpoint needs first: a same-site request on a gateway with
/// sessions and passkeys.
fn preflight<'a>(
    s: &Session,
    ctx: &RequestCtx,
    config: &'a Config,
) -> Result<(&'a SessionConfig, Arc<MfaSettings>), Reply> {
    if let Some(why) = crate::csrf::cross_site(
        &s.req_header().headers,
        ctx.scheme(),
        ctx.host_raw.as_deref(),
    ) {
        tracing::warn!(request_id = %ctx.request_id, client = client_ip(s), reason = why, "cross-site passkey request refused");
        return Err(refused(403, "cross_site", "cross-site request refused"));
    }
    let scfg = config
        .session
        .as_ref()
        .ok_or_else(|| refused(404, "not_found", "sessions are not configured"))?;
    match config.mfa.clone() {
        Some(m) if m.passkeys => Ok((scfg, m)),
        _ => Err(refused(404, "not_found", "passkeys are not enabled")),
    }
}

fn new_id(shared: &Shared) -> Option<String> {
    let mut id = [0u8; 16];
    shared.rng.fill(&mut id).ok()?;
    Some(URL_SAFE_NO_PAD.encode(id))
}

fn options_reply(options: serde_json::Value, sealed: String) -> Reply {
    Reply::json(
        200,
        &serde_json::json!({ "options": options, "state": sealed }),
    )
}

/// `GET {prefix}/static/passkey.js`
pub fn script(ctx: &RequestCtx) -> Reply {
    match &ctx.config.mfa {
        Some(m) if m.passkeys => Reply::asset("text/javascript; charset=utf-8", SCRIPT),
        _ => refused(404, "not_found", "passkeys are not enabled"),
    }
}

/// A signed-in local user with a recent authentication (adding a factor needs one).
async fn registrant(
    shared: &Shared,
    s: &Session,
    ctx: &mut RequestCtx,
) -> Result<crate::session::ActiveSession, Reply> {
    let active = match account::signed_in(shared, s, ctx).await {
        Ok(a) => a,
        // The store did not answer: say so, never "signed out".
        Err(r) if r.status == 503 => return Err(r),
        Err(_) => {
            let rd: String =
                form_urlencoded::byte_serialize(account::page_url(ctx).as_bytes()).collect();
            return Err(Reply::json(
                401,
                &serde_json::json!({
                    "error": "unauthenticated",
                    "message": "sign in first",
                    "next": format!("{}/login?rd={rd}", ctx.config.auth.prefix),
                }),
            ));
        }
    };
    if !active.record.auth.provider.is_empty() {
        return Err(refused(
            400,
            "provider_user",
            "your identity provider manages your factors",
        ));
    }
    let now = shared.clock.now_ms();
    if now.saturating_sub(active.record.auth.time_ms) > RECENT_AUTH_MS {
        // The script follows `next`: sign in again, then back to the account page.
        let rd: String =
            form_urlencoded::byte_serialize(account::page_url(ctx).as_bytes()).collect();
        let next = crate::auth::reauth_url(ctx, "", &rd, false);
        return Err(Reply::json(
            401,
            &serde_json::json!({
                "error": "reauthenticate",
                "message": "adding a passkey needs a recent sign-in",
                "next": next,
            }),
        ));
    }
    Ok(active)
}

/// `POST {prefix}/passkey/register/options` (`{"name": …}`)
pub async fn register_options(
    shared: &Shared,
    s: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<Reply> {
    let config = ctx.config.clone();
    let (scfg, mfa) = match preflight(s, ctx, &config) {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    let req: RegisterOptions = match read_json(s).await? {
        Ok(r) => r,
        Err(r) => return Ok(r),
    };
    let active = match registrant(shared, s, ctx).await {
        Ok(a) => a,
        Err(r) => return Ok(r),
    };
    let user = active.record.identity.user.clone();
    let f = match mfa.load(&shared.store, &scfg.keys, &user).await {
        Ok(f) => f,
        Err(e) => return Ok(down(ctx, &e)),
    };
    let rp = match passkey::relying_party(ctx) {
        Ok(rp) => rp,
        Err(e) => return Ok(refused(400, "no_rp_id", &e.to_string())),
    };
    // The authenticators already registered are excluded: the browser says so at once
    // instead of making a second credential on the same device.
    let exclude = f.passkeys.iter().map(|k| k.key.cred_id().clone()).collect();
    let (mut ccr, state) = match rp.start_passkey_registration(
        passkey::user_handle(&user),
        &user,
        &user,
        Some(exclude),
    ) {
        Ok(v) => v,
        Err(e) => return Ok(down(ctx, &e)),
    };
    // A discoverable credential where the authenticator can keep one, so the same passkey
    // also signs in without a user name. "preferred", not "required": a security key
    // whose resident slots are full still registers (as a second step only).
    if let Some(sel) = ccr.public_key.authenticator_selection.as_mut() {
        sel.resident_key = Some(ResidentKeyRequirement::Preferred);
        sel.require_resident_key = false;
    }
    let name: String = req
        .name
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect();
    let Some(id) = new_id(shared) else {
        return Ok(down(ctx, &"no randomness"));
    };
    let c = Ceremony {
        id,
        created_ms: shared.clock.now_ms(),
        origin: ctx.own_origin(),
        note: if name.is_empty() {
            "Passkey".into()
        } else {
            name
        },
        state: CeremonyState::Register(state),
    };
    let (Some(sealed), Ok(options)) = (
        passkey::seal(&scfg.keys, Binding::Register(&user), &c, &shared.rng),
        serde_json::to_value(&ccr),
    ) else {
        return Ok(down(ctx, &"could not seal"));
    };
    Ok(options_reply(options, sealed))
}

/// `POST {prefix}/passkey/register` (`{"state": …, "credential": …}`)
pub async fn register(
    shared: &Shared,
    s: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<Reply> {
    let config = ctx.config.clone();
    let (scfg, mfa) = match preflight(s, ctx, &config) {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    let req: Finish<RegisterPublicKeyCredential> = match read_json(s).await? {
        Ok(r) => r,
        Err(r) => return Ok(r),
    };
    let active = match registrant(shared, s, ctx).await {
        Ok(a) => a,
        Err(r) => return Ok(r),
    };
    let user = active.record.identity.user.clone();
    let now = shared.clock.now_ms();
    let Some(c) = passkey::open(
        &scfg.keys,
        Binding::Register(&user),
        &req.state,
        now,
        &ctx.own_origin(),
    ) else {
        count(shared, ENROLL, "expired");
        return Ok(refused(400, "expired", "start adding the passkey again"));
    };
    let CeremonyState::Register(state) = &c.state else {
        return Ok(refused(400, "expired", "start adding the passkey again"));
    };
    match claim(shared, &c).await {
        Ok(true) => {}
        Ok(false) => {
            count(shared, ENROLL, "replayed");
            tracing::warn!(request_id = %ctx.request_id, user = %user, "passkey registration replayed");
            return Ok(refused(401, "replayed", "this challenge was already used"));
        }
        Err(e) => return Ok(down(ctx, &e)),
    }
    let rp = match passkey::relying_party(ctx) {
        Ok(rp) => rp,
        Err(e) => return Ok(refused(400, "no_rp_id", &e.to_string())),
    };
    let key = match rp.finish_passkey_registration(&req.credential, state) {
        Ok(k) => k,
        Err(e) => {
            let why = passkey::refusal(&e);
            count(shared, ENROLL, why);
            tracing::warn!(request_id = %ctx.request_id, user = %user, reason = why, error = %e, "passkey registration refused");
            return Ok(refused(400, why, "the passkey was not accepted"));
        }
    };
    let mut f = match mfa.load(&shared.store, &scfg.keys, &user).await {
        Ok(f) => f,
        Err(e) => return Ok(down(ctx, &e)),
    };
    if f.passkeys.iter().any(|k| k.key.cred_id() == key.cred_id()) {
        return Ok(refused(409, "exists", "this passkey is already registered"));
    }
    if f.passkeys.len() >= MAX_PASSKEYS {
        return Ok(refused(
            409,
            "too_many",
            "remove a passkey before adding another",
        ));
    }
    f.passkeys.push(PasskeyFactor {
        name: c.note.clone(),
        added_ms: now,
        used_ms: 0,
        key,
    });
    if let Err(e) = mfa
        .save(&shared.store, &scfg.keys, &user, &f, &shared.rng)
        .await
    {
        return Ok(down(ctx, &e));
    }
    count(shared, ENROLL, "success");
    tracing::info!(request_id = %ctx.request_id, user = %user, passkey = %c.note, "passkey added");
    Ok(Reply::json(
        200,
        &serde_json::json!({ "next": account::page_url(ctx) }),
    ))
}

/// The ceremony counts once, whatever its outcome: claimed before the assertion is
/// checked, so neither a replay nor a second try over the same challenge gets through.
async fn claim(shared: &Shared, c: &Ceremony) -> Result<bool, crate::session::store::StoreError> {
    shared
        .store
        .claim(&format!("pk:{}", c.id), passkey::CEREMONY_TTL)
        .await
}

/// `POST {prefix}/passkey/login/options` (`{"mode": "second-step"}` or
/// `{"mode": "sign-in", "rd": …}`)
pub async fn login_options(
    shared: &Shared,
    s: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<Reply> {
    let config = ctx.config.clone();
    let (scfg, mfa) = match preflight(s, ctx, &config) {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    let req: LoginOptions = match read_json(s).await? {
        Ok(r) => r,
        Err(r) => return Ok(r),
    };
    let rp = match passkey::relying_party(ctx) {
        Ok(rp) => rp,
        Err(e) => return Ok(refused(400, "no_rp_id", &e.to_string())),
    };
    let Some(id) = new_id(shared) else {
        return Ok(down(ctx, &"no randomness"));
    };
    let now = shared.clock.now_ms();
    let (options, sealed) = match req.mode.as_str() {
        "second-step" => {
            let Some(p) = open_pending(shared, s, scfg) else {
                return Ok(refused(400, "expired", "sign in again"));
            };
            let f = match mfa.load(&shared.store, &scfg.keys, &p.user).await {
                Ok(f) => f,
                Err(e) => return Ok(down(ctx, &e)),
            };
            if f.passkeys.is_empty() {
                return Ok(refused(400, "no_passkey", "no passkey is registered"));
            }
            let keys: Vec<_> = f.passkeys.iter().map(|k| k.key.clone()).collect();
            let (rcr, state) = match rp.start_passkey_authentication(&keys) {
                Ok(v) => v,
                Err(e) => return Ok(down(ctx, &e)),
            };
            let c = Ceremony {
                id,
                created_ms: now,
                origin: ctx.own_origin(),
                note: String::new(),
                state: CeremonyState::Authenticate(state),
            };
            (
                serde_json::to_value(&rcr),
                passkey::seal(&scfg.keys, Binding::SecondStep(&p.id), &c, &shared.rng),
            )
        }
        "sign-in" => {
            let (mut rcr, state) = match rp.start_discoverable_authentication() {
                Ok(v) => v,
                Err(e) => return Ok(down(ctx, &e)),
            };
            // A button press, not autofill: the browser shows its passkey prompt at once.
            rcr.mediation = None;
            let c = Ceremony {
                id,
                created_ms: now,
                origin: ctx.own_origin(),
                note: safe_rd(ctx, Some(&req.rd)),
                state: CeremonyState::Discover(state),
            };
            (
                serde_json::to_value(&rcr),
                passkey::seal(&scfg.keys, Binding::SignIn, &c, &shared.rng),
            )
        }
        _ => return Ok(refused(400, "bad_request", "unknown mode")),
    };
    match (options, sealed) {
        (Ok(o), Some(sealed)) => Ok(options_reply(o, sealed)),
        _ => Ok(down(ctx, &"could not seal")),
    }
}

/// `POST {prefix}/passkey/login` (`{"mode": …, "state": …, "credential": …}`)
pub async fn login(
    shared: &Shared,
    s: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<Reply> {
    let config = ctx.config.clone();
    let (scfg, mfa) = match preflight(s, ctx, &config) {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    let req: LoginFinish = match read_json(s).await? {
        Ok(r) => r,
        Err(r) => return Ok(r),
    };
    let Ok(cred) = serde_json::from_value::<PublicKeyCredential>(req.credential) else {
        return Ok(refused(
            400,
            "bad_request",
            "the credential is not an assertion",
        ));
    };
    let client = client_ip(s);
    let now = shared.clock.now_ms();
    let origin = ctx.own_origin();
    // The second step is bound to the pending login in the cookie; a sign-in to nobody.
    let pending = match req.mode.as_str() {
        "second-step" => match open_pending(shared, s, scfg) {
            Some(p) => Some(p),
            None => return Ok(expired_json(ctx)),
        },
        "sign-in" => None,
        _ => return Ok(refused(400, "bad_request", "unknown mode")),
    };
    let binding = match &pending {
        Some(p) => Binding::SecondStep(&p.id),
        None => Binding::SignIn,
    };
    let limiter = shared.limiter.load_full();
    let mut limit_keys = vec![format!("ip:{client}")];
    if let Some(p) = &pending {
        limit_keys.push(format!("user:{}", p.user));
    }
    if let Some(wait) = limit_keys.iter().filter_map(|k| limiter.blocked(k)).max() {
        count(shared, METHOD, "rate_limited");
        tracing::warn!(request_id = %ctx.request_id, client, "passkey sign-in rate limited");
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Ok(refused(429, "rate_limited", "too many attempts")
            .header("retry-after", secs.max(1).to_string()));
    }
    // From here on every refusal counts as a failed attempt.
    let fail = |why: &'static str, user: &str, detail: &dyn std::fmt::Display| {
        for k in &limit_keys {
            limiter.record_failure(k);
        }
        count(shared, METHOD, why);
        shared.metrics.logins.with_label_values(&["failure"]).inc();
        if why == "cloned" {
            tracing::warn!(request_id = %ctx.request_id, client, user = %user, reason = why, error = %detail, "passkey refused: its sign counter went back — possibly a cloned authenticator");
        } else {
            tracing::warn!(request_id = %ctx.request_id, client, user = %user, reason = why, error = %detail, "passkey refused");
        }
    };
    let Some(c) = passkey::open(&scfg.keys, binding, &req.state, now, &origin) else {
        fail(
            "expired",
            "",
            &"state forged, expired, or for another login or origin",
        );
        return Ok(refused(400, "expired", "start again"));
    };
    match claim(shared, &c).await {
        Ok(true) => {}
        Ok(false) => {
            fail("replayed", "", &"challenge already used");
            return Ok(refused(401, "replayed", "this challenge was already used"));
        }
        Err(e) => return Ok(down(ctx, &e)),
    }
    let rp = match passkey::relying_party(ctx) {
        Ok(rp) => rp,
        Err(e) => return Ok(refused(400, "no_rp_id", &e.to_string())),
    };
    // Whose passkey: the pending login's user, or the one the credential's user handle
    // names (the handle is not signed, but the signature must then verify with a key
    // that user registered, so naming someone else gets nowhere).
    let user = match (&pending, &c.state) {
        (Some(p), CeremonyState::Authenticate(_)) => p.user.clone(),
        (None, CeremonyState::Discover(_)) => {
            let found = rp
                .identify_discoverable_authentication(&cred)
                .ok()
                .and_then(|(handle, _)| {
                    ctx.config
                        .auth
                        .users
                        .names()
                        .find(|n| passkey::user_handle(n) == handle)
                        .map(str::to_string)
                });
            match found {
                Some(u) => u,
                None => {
                    fail("unknown_credential", "", &"no user has this passkey");
                    return Ok(refused(
                        401,
                        "unknown_credential",
                        "this passkey is not registered here",
                    ));
                }
            }
        }
        _ => return Ok(refused(400, "expired", "start again")),
    };
    let Some(identity) = ctx.config.auth.users.identity(&user) else {
        fail(
            "unknown_credential",
            &user,
            &"user no longer in the users file",
        );
        return Ok(refused(
            401,
            "unknown_credential",
            "this passkey is not registered here",
        ));
    };
    let mut f: Factors = match mfa.load(&shared.store, &scfg.keys, &user).await {
        Ok(f) => f,
        Err(e) => return Ok(down(ctx, &e)),
    };
    let result = match c.state {
        CeremonyState::Authenticate(state) => rp.finish_passkey_authentication(&cred, &state),
        CeremonyState::Discover(state) => {
            let Some(k) = f
                .passkeys
                .iter()
                .find(|k| k.key.cred_id().as_ref() == cred.get_credential_id())
            else {
                fail(
                    "unknown_credential",
                    &user,
                    &"not one of this user's passkeys",
                );
                return Ok(refused(
                    401,
                    "unknown_credential",
                    "this passkey is not registered here",
                ));
            };
            rp.finish_discoverable_authentication(&cred, state, &[DiscoverableKey::from(&k.key)])
        }
        CeremonyState::Register(_) => return Ok(refused(400, "expired", "start again")),
    };
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            let why = passkey::refusal(&e);
            fail(why, &user, &e);
            return Ok(refused(401, why, "the passkey was not accepted"));
        }
    };
    // The new sign counter (and backup state) is stored before the session exists, so a
    // clone presenting the old counter afterwards is caught.
    for k in &mut f.passkeys {
        if k.key.update_credential(&result).is_some() {
            k.used_ms = now;
        }
    }
    if let Err(e) = mfa
        .save(&shared.store, &scfg.keys, &user, &f, &shared.rng)
        .await
    {
        return Ok(down(ctx, &e));
    }
    let (methods, rd): (&[&str], String) = match &pending {
        Some(p) => {
            // Each pending login completes once (as with a code).
            match shared
                .store
                .claim(&format!("pl:{}", p.id), super::pending::TTL)
                .await
            {
                Ok(true) => {}
                Ok(false) => return Ok(expired_json(ctx)),
                Err(e) => return Ok(down(ctx, &e)),
            }
            (&["pwd", "hwk"], p.rd.clone())
        }
        None => (&["hwk"], c.note.clone()),
    };
    let cookie = match new_session(shared, s, ctx, scfg, identity, methods, METHOD).await {
        Ok(c) => c,
        Err(r) => return Ok(r),
    };
    let mut reply =
        Reply::json(200, &serde_json::json!({ "next": rd })).header("set-cookie", cookie);
    if pending.is_some() {
        reply = reply.header("set-cookie", super::pending::set_cookie(scfg, "", 0));
    }
    Ok(reply)
}

/// An expired or completed pending login, as JSON for the script (which shows the
/// message) with where to start again.
fn expired_json(ctx: &RequestCtx) -> Reply {
    Reply::json(
        400,
        &serde_json::json!({
            "error": "expired",
            "message": "This sign-in took too long or was already completed. Please sign in again.",
            "next": format!("{}/login", ctx.config.auth.prefix),
        }),
    )
}
