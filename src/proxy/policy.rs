//! Steps 7 and 8 of design.md: the route's policy (a login, allowed users and groups) and
//! the cross-site refusal for state-changing requests that carry a session.

use super::Stop;
use crate::identity::Identity;
use crate::request::RequestCtx;
use crate::respond::Reply;
use crate::router::{Access, Route};
use pingora::http::RequestHeader;
use pingora::proxy::Session;

/// Step 7: no identity on an authenticated route → login; one the route does not allow →
/// `403`.
pub(super) fn authorize(session: &Session, ctx: &RequestCtx, route: &Route) -> Result<(), Stop> {
    if route.access != Access::Authenticated {
        return Ok(());
    }
    match &ctx.identity {
        None => Err(Stop::answer(login_required(session, ctx, route.bearer))),
        Some(id) if !allowed(route, id) => {
            tracing::info!(request_id = %ctx.request_id, user = %id.user, route = %route.name, "access denied by route policy");
            Err(Stop::answer(Reply::error(
                403,
                "forbidden",
                "your account may not use this route",
            )))
        }
        Some(_) => Ok(()),
    }
}

/// Step 7, the route's step-up rules: a session whose last authentication is older than
/// `max_auth_age`, or that lacks a second factor on a `require_mfa` route, is kept but
/// asked to re-authenticate — a browser navigation gets `302` to do so (its provider
/// again for an OIDC session, else the login page, then back to `rd`), anything else
/// `401 step_up_required`. An identity proven by a bearer token alone has no
/// authentication time to check: refused the same way (never let through).
pub(super) fn step_up(
    session: &Session,
    ctx: &RequestCtx,
    route: &Route,
    now_ms: u64,
) -> Result<(), Stop> {
    if route.max_auth_age.is_none() && !route.require_mfa {
        return Ok(());
    }
    if ctx.identity.is_none() {
        return Ok(());
    }
    let auth = ctx.session.as_ref().map(|s| &s.record.auth);
    let too_old = match (route.max_auth_age, auth) {
        (Some(max), Some(a)) => now_ms.saturating_sub(a.time_ms) >= max.as_millis() as u64,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let no_mfa =
        route.require_mfa && !auth.is_some_and(|a| crate::auth::mfa::is_second_factor(&a.methods));
    if !too_old && !no_mfa {
        return Ok(());
    }
    let provider = auth.map_or("", |a| a.provider.as_str());
    tracing::info!(request_id = %ctx.request_id, user = %ctx.user(), route = %route.name, too_old, no_mfa, "step-up required");
    // A provider's session without a second factor would come back the same way: the
    // gateway cannot ask the provider for one (no acr_values setting), so say so.
    if no_mfa && !provider.is_empty() && !too_old {
        return Err(Stop::answer(Reply::error(
            403,
            "second_factor_required",
            "this route needs a login with a second factor, which your identity provider did not report",
        )));
    }
    if ctx.session.is_some() && is_navigation(session.req_header()) {
        let mut rd = ctx.path.clone();
        if let Some(q) = &ctx.query {
            rd.push('?');
            rd.push_str(q);
        }
        let rd: String = form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        return Err(Stop::answer(Reply::redirect(
            302,
            &crate::auth::reauth_url(ctx, provider, &rd, no_mfa),
        )));
    }
    let mut body = serde_json::json!({
        "error": "step_up_required",
        "message": "re-authenticate to use this route",
        "require_mfa": no_mfa,
    });
    if let Some(max) = route.max_auth_age {
        body["max_auth_age_seconds"] = max.as_secs().into();
    }
    Err(Stop::answer(Reply::json(401, &body).header(
        "www-authenticate",
        "Cookie realm=\"portcullis\", error=\"step_up_required\"",
    )))
}

/// Step 8: CSRF on state-changing requests that carry a session. A request proven by a
/// bearer token alone carries no ambient credential a browser could attach.
pub(super) fn refuse_cross_site(session: &Session, ctx: &RequestCtx) -> Result<(), Stop> {
    let req = session.req_header();
    if ctx.session.is_none() || crate::csrf::is_safe_method(&req.method) {
        return Ok(());
    }
    match crate::csrf::cross_site(&req.headers, ctx.scheme(), ctx.host_raw.as_deref()) {
        Some(why) => {
            tracing::warn!(request_id = %ctx.request_id, user = %ctx.user(), reason = why, "cross-site request refused");
            Err(Stop::answer(Reply::error(
                403,
                "cross_site",
                "cross-site request refused",
            )))
        }
        None => Ok(()),
    }
}

/// design.md step 7: no session → 302 to login (browser navigation) or 401.
fn login_required(session: &Session, ctx: &RequestCtx, bearer: bool) -> Reply {
    let navigation = ctx.config.session.is_some() && is_navigation(session.req_header());
    if navigation {
        let mut rd = ctx.path.clone();
        if let Some(q) = &ctx.query {
            rd.push('?');
            rd.push_str(q);
        }
        let rd: String = form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        Reply::redirect(302, &format!("{}/login?rd={rd}", ctx.config.auth.prefix))
    } else {
        let challenge = if bearer {
            "Bearer realm=\"portcullis\""
        } else {
            "Cookie realm=\"portcullis\""
        };
        Reply::error(
            401,
            "unauthenticated",
            "a session is required: log in first",
        )
        .header("www-authenticate", challenge)
    }
}

/// A browser navigation: GET or HEAD that accepts HTML. Such requests get pages and
/// redirects; everything else gets JSON.
pub(super) fn is_navigation(req: &RequestHeader) -> bool {
    matches!(req.method, http::Method::GET | http::Method::HEAD)
        && req
            .headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
}

fn allowed(route: &Route, id: &Identity) -> bool {
    if route.allow_users.is_empty() && route.allow_groups.is_empty() {
        return true;
    }
    route.allow_users.contains(&id.user) || route.allow_groups.iter().any(|g| id.groups.contains(g))
}
