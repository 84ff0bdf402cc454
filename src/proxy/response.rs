//! Step 10 of design.md, on the upstream's response: the gateway's cookie is the
//! gateway's alone; `Portcullis-Login`/`-Logout` from issuing upstreams are acted on;
//! cookie sessions slide; HSTS and the request id go on every response.

use super::upstream_request::{HSTS, REQUEST_ID};
use super::Gateway;
use crate::request::RequestCtx;
use crate::session;
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::{Error, ErrorType};

/// Room a response's header map is rebuilt with, beyond the upstream's headers: what this
/// filter may add (X-Request-Id, HSTS, a Set-Cookie and Cache-Control) and what pingora adds
/// when it writes the response (Date, Connection).
const ADDED_HEADERS: usize = 6;

/// The response as the client gets it.
pub(super) async fn filter(
    gw: &Gateway,
    resp: &mut ResponseHeader,
    ctx: &mut RequestCtx,
) -> pingora::Result<()> {
    with_room(resp, ctx)?;
    // Step 10: an upstream must not set or clear the gateway's cookie.
    if let Some(scfg) = &ctx.config.session {
        let name = scfg.cookie_name.as_str();
        if resp
            .headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .any(|c| session::cookie::sets(c.as_bytes(), name))
        {
            let cookies: Vec<http::HeaderValue> = resp
                .headers
                .get_all(http::header::SET_COOKIE)
                .iter()
                .cloned()
                .collect();
            resp.remove_header(&http::header::SET_COOKIE);
            for c in cookies {
                if session::cookie::sets(c.as_bytes(), name) {
                    tracing::warn!(request_id = %ctx.request_id, route = %ctx.route_label, "dropped upstream Set-Cookie for the gateway's cookie");
                } else {
                    resp.append_header(http::header::SET_COOKIE, c)?;
                }
            }
        }
    }
    if let Some(instruction) = crate::tokens::session_headers::take(resp) {
        Box::pin(upstream_session_instruction(gw, resp, ctx, instruction)).await?;
    }
    // Cookie sessions slide their idle expiry by re-issuing the cookie now and then.
    let reissue = ctx
        .session
        .as_ref()
        .and_then(|s| s.stateless.as_ref())
        .and_then(|s| s.reissue.as_deref());
    if let (Some(value), Some(scfg)) = (reissue, &ctx.config.session) {
        resp.append_header(http::header::SET_COOKIE, session::set_cookie(scfg, value))?;
        // A response carrying someone's session cookie must never be stored by a
        // shared cache, whatever the app said about caching it.
        let private = resp
            .headers
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("no-store") || v.contains("private"));
        if !private {
            resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
        }
    }
    if let Some(h) = gw.hsts(ctx) {
        resp.insert_header(HSTS, h)?;
    }
    Ok(())
}

/// The upstream's response head comes with header maps sized exactly to its headers, so
/// the request id, and then pingora's Date and Connection, would each grow both of them.
/// Rebuilt once from its `http` parts with room for those, it takes them without growing
/// and without the second, case-preserving map: names pingora knows (Content-Type,
/// Content-Length, Date, Server, Set-Cookie, Cache-Control, ...) go out title-cased as
/// before, others in lower case. The reason phrase is kept.
fn with_room(resp: &mut ResponseHeader, ctx: &RequestCtx) -> pingora::Result<()> {
    let reason = resp
        .get_reason_phrase()
        .filter(|r| Some(*r) != resp.status.canonical_reason())
        .map(str::to_owned);
    let mut parts: http::response::Parts = std::mem::replace(
        resp,
        ResponseHeader::from(http::Response::new(()).into_parts().0),
    )
    .into();
    parts
        .headers
        .try_reserve(ADDED_HEADERS)
        .map_err(|_| Error::explain(ErrorType::InternalError, "too many response headers"))?;
    let id = HeaderValue::from_bytes(ctx.request_id.as_str().as_bytes())
        .map_err(|_| Error::explain(ErrorType::InternalError, "request id"))?;
    parts.headers.insert(REQUEST_ID, id);
    *resp = ResponseHeader::from(parts);
    if reason.is_some() {
        resp.set_reason_phrase(reason.as_deref())?;
    }
    Ok(())
}

/// Act on `Portcullis-Login`/`-Logout` from an upstream, on routes that allow it.
async fn upstream_session_instruction(
    gw: &Gateway,
    resp: &mut ResponseHeader,
    ctx: &mut RequestCtx,
    instruction: crate::tokens::session_headers::Instruction,
) -> pingora::Result<()> {
    use crate::tokens::session_headers::Instruction;
    let route = ctx.route.clone();
    let issuing = route.as_ref().is_some_and(|r| r.issues_sessions);
    let Some(scfg) = ctx.config.session.as_ref().filter(|_| issuing) else {
        tracing::error!(
            request_id = %ctx.request_id,
            route = %ctx.route_label,
            "upstream sent Portcullis-Login/-Logout on a route without issues_sessions; removed and ignored"
        );
        return Ok(());
    };
    match instruction {
        Instruction::Invalid(why) => {
            tracing::error!(request_id = %ctx.request_id, route = %ctx.route_label, reason = %why, "upstream login refused");
        }
        Instruction::Logout => {
            if let Some(active) = ctx.session.take() {
                if let Err(e) = session::end(scfg, &gw.shared.backends(), &active).await {
                    tracing::error!(request_id = %ctx.request_id, error = %e, "upstream logout could not reach the session store");
                    return Err(pingora::Error::explain(
                        ErrorType::HTTPStatus(503),
                        "session store unavailable",
                    ));
                }
            }
            tracing::info!(request_id = %ctx.request_id, user = %ctx.user(), route = %ctx.route_label, "logout by upstream");
            resp.append_header(http::header::SET_COOKIE, session::clear_cookie(scfg))?;
            resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
        }
        Instruction::Login(identity) => {
            // A fresh id every time: the session the request carried (if any) ends.
            if let Some(active) = ctx.session.take() {
                let _ = session::end(scfg, &gw.shared.backends(), &active).await;
            }
            // The upstream vouches for the login; how it authenticated is its business.
            let auth = crate::identity::Authentication {
                time_ms: gw.shared.clock.now_ms(),
                ..Default::default()
            };
            match session::create(scfg, &gw.shared.backends(), identity, auth).await {
                Ok((value, record)) => {
                    tracing::info!(request_id = %ctx.request_id, user = %record.identity.user, route = %ctx.route_label, "login by upstream");
                    gw.shared
                        .metrics
                        .logins
                        .with_label_values(&["success"])
                        .inc();
                    ctx.identity = Some(record.identity.clone());
                    resp.append_header(
                        http::header::SET_COOKIE,
                        session::set_cookie(scfg, &value),
                    )?;
                    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
                }
                Err(e) => {
                    tracing::error!(request_id = %ctx.request_id, error = %e, "could not store upstream-issued session");
                    return Err(pingora::Error::explain(
                        ErrorType::HTTPStatus(503),
                        "session store unavailable",
                    ));
                }
            }
        }
    }
    Ok(())
}
