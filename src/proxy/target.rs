//! Steps 1 and 3 of design.md: where the request was addressed (host, scheme) and which
//! path it names. Plain HTTP only redirects when TLS is on; the path is normalized once,
//! and routing and the upstream both use the result.

use super::Stop;
use crate::pathnorm::{self, PathError, PathTraits};
use crate::request::{RequestCtx, LABEL_REDIRECT};
use crate::respond::Reply;
use crate::router::canonical_host;
use pingora::proxy::Session;

/// The step: fills in the host, path and query of `ctx`, and returns what routing needs
/// to know about the path besides its text.
pub(super) fn read(session: &Session, ctx: &mut RequestCtx) -> Result<PathTraits, Stop> {
    let req = session.req_header();
    ctx.host_raw = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .map(str::to_string);
    ctx.host = ctx.host_raw.as_deref().and_then(canonical_host);
    let Ok(raw) = std::str::from_utf8(req.raw_path()) else {
        return Err(Stop::closing(Reply::error(
            400,
            "bad_path",
            "path is not UTF-8",
        )));
    };
    if ctx.config.tls.is_some() && !ctx.tls {
        ctx.route_label = LABEL_REDIRECT.clone();
        return Err(match https_location(ctx, raw) {
            Some(loc) if raw.starts_with('/') => Stop::answer(Reply::redirect(308, &loc)),
            _ => Stop::closing(Reply::error(
                400,
                "bad_request",
                "cannot redirect this request",
            )),
        });
    }
    let (raw_path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (raw, None),
    };
    let path = pathnorm::normalize(raw_path).map_err(|e| {
        let code = match e {
            PathError::EncodedNul => "encoded_character",
            _ => "bad_path",
        };
        Stop::answer(Reply::error(400, code, &e.to_string()))
    })?;
    let traits = path.traits;
    ctx.path = path.path;
    ctx.query = query;
    Ok(traits)
}

/// Where a plain-HTTP request is sent when the gateway has TLS.
fn https_location(ctx: &RequestCtx, raw_target: &str) -> Option<String> {
    let tls = ctx.config.tls.as_ref()?;
    let host = ctx.host.as_deref()?;
    let port = tls.https.first().map_or(443, |a| a.port());
    let authority = if port == 443 {
        host.to_string()
    } else {
        format!("{host}:{port}")
    };
    Some(format!("https://{authority}{raw_target}"))
}
