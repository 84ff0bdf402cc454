//! Steps 5 and 9 of design.md, on the request as it goes upstream: nothing the gateway
//! owns survives from the client; the verified identity, the gateway's own forwarding
//! headers and the authorized path go out. Also the choice of the upstream target.

use super::Gateway;
use crate::request::{client_ip, RequestCtx};
use crate::router;
use crate::session;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::Session;
use pingora::{Error, ErrorType};
use std::time::Instant;

// Names handed to pingora's `insert_header` as `&'static str`: a `HeaderName` that is not
// one of the few pingora knows would be copied into a fresh case-preserving buffer on every
// insert; a static string is used in place. Lower case, as the wire has always shown them.
const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_FORWARDED_HOST: &str = "x-forwarded-host";
pub(super) const X_REQUEST_ID: &str = "x-request-id";
pub(super) const HSTS: &str = "strict-transport-security";

/// A healthy target of the route's upstream, with its timeouts.
pub(super) fn peer(gw: &Gateway, ctx: &mut RequestCtx) -> pingora::Result<Box<HttpPeer>> {
    let route = ctx
        .route
        .as_ref()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route in context"))?;
    let up = &route.upstream;
    let target = up.select().ok_or_else(|| {
        gw.shared
            .metrics
            .upstream_errors
            .with_label_values(&[&up.name, "no_healthy_target"])
            .inc();
        Error::explain(ErrorType::HTTPStatus(502), "no healthy target")
    })?;
    ctx.target = Some(target.label.clone());
    ctx.upstream_start = Some(Instant::now());
    let mut peer = HttpPeer::new(target.addr, false, String::new());
    peer.options.connection_timeout = Some(up.connect_timeout);
    peer.options.total_connection_timeout = Some(up.connect_timeout);
    peer.options.read_timeout = Some(up.read_timeout);
    peer.options.write_timeout = Some(up.read_timeout);
    peer.options.idle_timeout = Some(std::time::Duration::from_secs(60));
    Ok(Box::new(peer))
}

/// The request as the upstream gets it.
pub(super) fn prepare(
    gw: &Gateway,
    session: &Session,
    req: &mut RequestHeader,
    ctx: &RequestCtx,
) -> pingora::Result<()> {
    let cfg = ctx.config.clone();
    // Step 5: nothing the gateway owns survives from the client.
    let stripped = cfg.identity.strip(req);
    if stripped > 0 {
        tracing::debug!(request_id = %ctx.request_id, stripped, "removed client-sent gateway headers");
    }
    if let Some(scfg) = &cfg.session {
        forward_cookies(req, &scfg.cookie_name)?;
        if cfg.oidc.is_some() {
            // The sealed login state of an OpenID sign-in in flight is ours too.
            forward_cookies(req, crate::auth::oidc::endpoints::state_cookie_name(scfg))?;
        }
        if cfg.mfa.is_some() {
            // So is a login waiting for its second factor.
            forward_cookies(req, crate::auth::mfa::pending::cookie_name(scfg))?;
        }
    }
    // Step 9: verified identity and the gateway's own forwarding headers.
    if let Some(id) = &ctx.identity {
        cfg.identity.inject(req, id)?;
        if let Some(a) = &cfg.assertion {
            // A session's identity is fixed; a token's may differ from the last token
            // for the same user, so the whole identity keys the cache then.
            let by_identity;
            let cache_key: &[u8] = match &ctx.session {
                Some(s) if !ctx.bearer => &s.key.0[..],
                _ => {
                    by_identity =
                        format!("jwt\0{}\0{}\0{}", id.user, id.email, id.groups.join("\0"));
                    by_identity.as_bytes()
                }
            };
            let now = gw.shared.clock.now_ms() / 1000;
            let aud = ctx.host.as_deref().unwrap_or("");
            let auth = ctx
                .session
                .as_ref()
                .filter(|_| !ctx.bearer)
                .map(|s| &*s.record.auth);
            if let Some(token) = a.token(cache_key, id, auth, aud, &ctx.own_origin(), now) {
                req.insert_header(a.header.clone(), token)?;
            }
        }
    }
    if let Some(s) = ctx.session.as_ref().filter(|s| s.record.tokens.is_some()) {
        access_token(gw, req, ctx, s)?;
    }
    req.insert_header(X_FORWARDED_FOR, client_ip(session))?;
    req.insert_header(X_FORWARDED_PROTO, ctx.scheme())?;
    if let Some(h) = &ctx.host_raw {
        req.insert_header(X_FORWARDED_HOST, h.as_str())?;
        if !req.headers.contains_key(http::header::HOST) {
            req.insert_header(http::header::HOST, h.as_str())?;
        }
    }
    req.insert_header(X_REQUEST_ID, ctx.request_id.as_str())?;
    // Step 3: the upstream receives exactly the path that was authorized. Most requests
    // arrive already normalized in origin form; when the bytes pingora would send are
    // exactly those, the target is left as it is (no format, parse and allocation).
    if let Some(route) = ctx
        .route
        .as_ref()
        .filter(|r| r.strip_prefix || !is_target(req.raw_path(), &ctx.path, ctx.query.as_deref()))
    {
        let path = if route.strip_prefix {
            router::strip_prefix(&route.prefix, &ctx.path)
        } else {
            ctx.path.as_str().into()
        };
        let target = match &ctx.query {
            Some(q) => format!("{path}?{q}"),
            None => path.into_owned(),
        };
        let uri: http::Uri = target.parse().map_err(|_| {
            Error::explain(
                ErrorType::HTTPStatus(400),
                "request target not representable",
            )
        })?;
        req.set_uri(uri);
    }
    Ok(())
}

/// `access_token_header`: the session's current access token, only on sessions of the
/// provider that sets it, and only while the token is valid (an expired one would only
/// fail at the app; the app sees no header, as for a session without one).
fn access_token(
    gw: &Gateway,
    req: &mut RequestHeader,
    ctx: &RequestCtx,
    s: &session::ActiveSession,
) -> pingora::Result<()> {
    let now = gw.shared.clock.now_ms();
    if let Some((header, token)) = crate::auth::oidc::refresh::forwarded_token(&ctx.config, s, now)
    {
        req.insert_header(header, token)?;
    }
    Ok(())
}

/// Is `raw` exactly `path`, followed by `?query` when there is one?
fn is_target(raw: &[u8], path: &str, query: Option<&str>) -> bool {
    let Some(rest) = raw.strip_prefix(path.as_bytes()) else {
        return false;
    };
    match query {
        None => rest.is_empty(),
        Some(q) => rest.strip_prefix(b"?") == Some(q.as_bytes()),
    }
}

/// design.md step 5: the cookie `name` is the gateway's own; the app gets the client's
/// other cookies, merged into one header.
fn forward_cookies(req: &mut RequestHeader, name: &str) -> pingora::Result<()> {
    let mut all = req.headers.get_all(http::header::COOKIE).iter();
    match (all.next(), all.next()) {
        (None, _) => return Ok(()),
        // The common case needs no rewrite: one header that cannot hold our cookie.
        (Some(one), None) if one.to_str().is_ok_and(|v| !v.contains(name)) => return Ok(()),
        _ => {}
    }
    let cookies: Vec<String> = req
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect();
    req.remove_header(&http::header::COOKIE);
    if let Some(rest) = session::cookie::without(&cookies.join("; "), name) {
        req.insert_header(http::header::COOKIE, rest)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_compare_byte_for_byte() {
        assert!(is_target(b"/a/b", "/a/b", None));
        assert!(is_target(b"/a/b?x=1", "/a/b", Some("x=1")));
        assert!(is_target(b"/a/b?", "/a/b", Some("")));
        assert!(!is_target(b"/a/b?", "/a/b", None));
        assert!(!is_target(b"/a/b", "/a/b", Some("")));
        assert!(!is_target(b"/a/./b", "/a/b", None));
        assert!(!is_target(b"/a/b/", "/a/b", None));
        assert!(!is_target(b"http://h/a/b", "/a/b", None));
        assert!(!is_target(b"/a/b?x=2", "/a/b", Some("x=1")));
    }
}
