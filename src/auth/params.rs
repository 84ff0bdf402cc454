//! What the auth endpoints read from a request's query: parameters, and `rd` made safe.

use crate::auth::redirect;
use crate::request::RequestCtx;
use crate::respond::Reply;
use pingora::proxy::Session;

/// The refusal of a cross-site state-changing auth request (login, logout, a second
/// step, an account change, a passkey ceremony), logged as "cross-site {what} refused";
/// `None` for a same-site one.
pub fn cross_site_refusal(s: &Session, ctx: &RequestCtx, what: &str) -> Option<Reply> {
    let why = crate::csrf::cross_site(
        &s.req_header().headers,
        ctx.scheme(),
        ctx.host_raw.as_deref(),
    )?;
    tracing::warn!(request_id = %ctx.request_id, client = crate::request::client_ip(s), reason = why, "cross-site {what} refused");
    Some(Reply::error(
        403,
        "cross_site",
        &format!("cross-site {what} refused"),
    ))
}

pub fn query_param(ctx: &RequestCtx, name: &str) -> Option<String> {
    let q = ctx.query.as_deref()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub fn safe_rd(ctx: &RequestCtx, rd: Option<&str>) -> String {
    rd.and_then(|r| redirect::safe_target(r, &ctx.config.auth.allowed_redirect_hosts))
        .unwrap_or_else(|| "/".into())
}

/// The value of the cookie named exactly `name` (the last one if sent twice: a stale
/// duplicate can only fail the state check).
pub fn read_cookie<'a>(s: &'a Session, name: &str) -> Option<&'a str> {
    let mut found = None;
    for h in s.req_header().headers.get_all(http::header::COOKIE) {
        let Ok(h) = h.to_str() else { continue };
        for part in h.split(';') {
            if let Some((k, v)) = part.trim().split_once('=') {
                if k == name {
                    found = Some(v);
                }
            }
        }
    }
    found
}

const MAX_FORM: usize = 16 * 1024;

/// A request body of content type `ctype`, at most `max` bytes; otherwise the `415` or
/// `413` to answer (the connection is not kept after an oversized body).
pub async fn read_body(
    s: &mut Session,
    ctype: &str,
    max: usize,
) -> pingora::Result<Result<Vec<u8>, Reply>> {
    let sent = s
        .req_header()
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !sent.starts_with(ctype) {
        return Ok(Err(Reply::error(
            415,
            "unsupported_media_type",
            &format!("send {ctype}"),
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = s.read_request_body().await? {
        body.extend_from_slice(&chunk);
        if body.len() > max {
            s.set_keepalive(None);
            return Ok(Err(Reply::error(
                413,
                "payload_too_large",
                "body too large",
            )));
        }
    }
    Ok(Ok(body))
}

/// A form body (`application/x-www-form-urlencoded`, at most 16 KiB).
pub async fn read_form(s: &mut Session) -> pingora::Result<Result<Vec<u8>, Reply>> {
    read_body(s, "application/x-www-form-urlencoded", MAX_FORM).await
}

const MAX_JSON: usize = 64 * 1024;

/// A JSON body (`application/json`, at most 64 KiB). Cross-site pages cannot send this
/// content type without a CORS preflight, which the gateway never grants.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    s: &mut Session,
) -> pingora::Result<Result<T, Reply>> {
    let body = match read_body(s, "application/json", MAX_JSON).await? {
        Ok(b) => b,
        Err(r) => return Ok(Err(r)),
    };
    Ok(serde_json::from_slice(&body)
        .map_err(|_| Reply::error(400, "bad_request", "the body is not the expected JSON")))
}
