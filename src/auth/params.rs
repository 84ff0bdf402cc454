//! What the auth endpoints read from a request's query: parameters, and `rd` made safe.

use crate::auth::redirect;
use crate::request::RequestCtx;
use crate::respond::Reply;
use pingora::proxy::Session;

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

/// A form body (`application/x-www-form-urlencoded`, at most 16 KiB).
pub async fn read_form(s: &mut Session) -> pingora::Result<Result<Vec<u8>, Reply>> {
    let ctype = s
        .req_header()
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Ok(Err(Reply::error(
            415,
            "unsupported_media_type",
            "send application/x-www-form-urlencoded",
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = s.read_request_body().await? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_FORM {
            s.set_keepalive(None);
            return Ok(Err(Reply::error(
                413,
                "payload_too_large",
                "form too large",
            )));
        }
    }
    Ok(Ok(body))
}

const MAX_JSON: usize = 64 * 1024;

/// A JSON body (`application/json`, at most 64 KiB). Cross-site pages cannot send this
/// content type without a CORS preflight, which the gateway never grants.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    s: &mut Session,
) -> pingora::Result<Result<T, Reply>> {
    let ctype = s
        .req_header()
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.to_ascii_lowercase().starts_with("application/json") {
        return Ok(Err(Reply::error(
            415,
            "unsupported_media_type",
            "send application/json",
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = s.read_request_body().await? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_JSON {
            s.set_keepalive(None);
            return Ok(Err(Reply::error(
                413,
                "payload_too_large",
                "body too large",
            )));
        }
    }
    Ok(serde_json::from_slice(&body)
        .map_err(|_| Reply::error(400, "bad_request", "the body is not the expected JSON")))
}
