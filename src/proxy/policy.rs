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
