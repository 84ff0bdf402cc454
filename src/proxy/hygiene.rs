//! Step 2 of design.md: malformed requests are refused before any routing or session
//! work — framing, Host, sizes, and `Connection` options naming protected headers.

use super::Stop;
use crate::identity::IdentityHeaders;
use crate::request::{client_ip, RequestCtx};
use crate::respond::Reply;
use pingora::http::RequestHeader;
use pingora::proxy::Session;

pub const MAX_URI_LEN: usize = 8 * 1024;
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
pub const MAX_HEADER_COUNT: usize = 100;

/// A refusal: status, a short machine code, and whether the connection must close
/// (framing errors leave the rest of the byte stream untrustworthy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: &'static str,
    pub close: bool,
}

const fn refuse(status: u16, code: &'static str, message: &'static str, close: bool) -> Refusal {
    Refusal {
        status,
        code,
        message,
        close,
    }
}

/// The step: the first refusal that applies, if any.
pub(super) fn refuse_malformed(session: &Session, ctx: &RequestCtx) -> Result<(), Stop> {
    if let Some(raw) = session.as_http1().map(|h1| h1.get_headers_raw_bytes()) {
        let framing = if raw_head_has_bare_lf(&raw) {
            Some("bare LF line ending")
        } else if session
            .req_header()
            .headers
            .contains_key(http::header::TRANSFER_ENCODING)
            && raw_head_has_both_lengths(&raw)
        {
            Some("both Content-Length and Transfer-Encoding")
        } else {
            None
        };
        if let Some(why) = framing {
            return Err(Stop::closing(Reply::error(400, "bad_framing", why)));
        }
    }
    if let Err(r) = check(session.req_header(), session.is_http2()) {
        let reply = Reply::error(r.status, r.code, r.message);
        return Err(if r.close {
            Stop::closing(reply)
        } else {
            Stop::answer(reply)
        });
    }
    if let Some(name) = connection_names_protected(session.req_header(), &ctx.config.identity) {
        tracing::info!(request_id = %ctx.request_id, client = %client_ip(session), header = %name, "Connection option naming a protected header refused");
        let reply = Reply::error(
            400,
            "bad_connection_header",
            &format!("Connection may not name {name}: the gateway owns or relies on that header"),
        );
        // Closed: what the client meant by its connection options is not to be guessed.
        return Err(Stop::closing(reply));
    }
    Ok(())
}

/// Check framing, Host and size limits. `h2` requests carry their authority in the URI
/// and have no message framing headers of their own to get wrong.
pub fn check(req: &RequestHeader, h2: bool) -> Result<(), Refusal> {
    if req.raw_path().len() > MAX_URI_LEN {
        return Err(refuse(
            414,
            "uri_too_long",
            "request target too long",
            false,
        ));
    }
    let mut total = 0;
    for (n, v) in req.headers.iter() {
        total += n.as_str().len() + v.len() + 4;
    }
    if total > MAX_HEADER_BYTES || req.headers.len() > MAX_HEADER_COUNT {
        return Err(refuse(
            431,
            "headers_too_large",
            "request headers too large",
            true,
        ));
    }
    let hosts = req.headers.get_all(http::header::HOST).iter().count();
    if hosts > 1 {
        return Err(refuse(400, "bad_host", "more than one Host header", true));
    }
    if hosts == 0 && !h2 && req.version == http::Version::HTTP_11 {
        return Err(refuse(400, "bad_host", "missing Host header", true));
    }
    if let Some(h) = req.headers.get(http::header::HOST) {
        if !h.to_str().is_ok_and(crate::router::is_valid_authority) {
            return Err(refuse(400, "bad_host", "invalid Host header", true));
        }
    }
    if h2 {
        return Ok(());
    }
    let cls: Vec<_> = req
        .headers
        .get_all(http::header::CONTENT_LENGTH)
        .iter()
        .collect();
    let tes: Vec<_> = req
        .headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .collect();
    if !cls.is_empty() && !tes.is_empty() {
        return Err(refuse(
            400,
            "bad_framing",
            "both Content-Length and Transfer-Encoding",
            true,
        ));
    }
    if cls.len() > 1 {
        return Err(refuse(
            400,
            "bad_framing",
            "more than one Content-Length",
            true,
        ));
    }
    if let Some(cl) = cls.first() {
        if cl.is_empty() || !cl.as_bytes().iter().all(u8::is_ascii_digit) || cl.len() > 18 {
            return Err(refuse(400, "bad_framing", "invalid Content-Length", true));
        }
    }
    if tes.len() > 1
        || tes
            .first()
            .is_some_and(|te| !te.as_bytes().eq_ignore_ascii_case(b"chunked"))
    {
        return Err(refuse(
            400,
            "bad_framing",
            "unsupported Transfer-Encoding",
            true,
        ));
    }
    if !tes.is_empty() && req.version != http::Version::HTTP_11 {
        return Err(refuse(
            400,
            "bad_framing",
            "Transfer-Encoding needs HTTP/1.1",
            true,
        ));
    }
    Ok(())
}

/// Headers a `Connection` option may never name, besides the ones the gateway owns: a hop
/// that honours the option would drop them after the gateway decided on them (framing,
/// the routed host, the credentials).
const PROTECTED: [&str; 5] = [
    "host",
    "content-length",
    "transfer-encoding",
    "cookie",
    "authorization",
];

/// A `Connection` option that names an owned or protected header (design.md step 2), if
/// any. Such a request asks the next hop to delete a header the gateway sets or relies on:
/// the injected identity, `X-Forwarded-For`, the framing. The name is safe to log.
pub fn connection_names_protected(req: &RequestHeader, owned: &IdentityHeaders) -> Option<String> {
    req.headers
        .get_all(http::header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|t| String::from_utf8_lossy(t.trim_ascii()).to_ascii_lowercase())
        .find(|t| owned.is_owned(t) || PROTECTED.contains(&t.as_str()))
}

/// pingora resolves `Content-Length` + `Transfer-Encoding` as RFC 9112 allows (drops the
/// length, closes after the response). We refuse such a request outright: it is how request
/// smuggling starts, and no honest client sends both. Only the raw head still shows it.
pub fn raw_head_has_both_lengths(raw_head: &[u8]) -> bool {
    let mut cl = false;
    let mut te = false;
    for line in raw_head.split(|&b| b == b'\n') {
        let name = line.split(|&b| b == b':').next().unwrap_or(b"");
        let name = name.trim_ascii();
        cl |= name.eq_ignore_ascii_case(b"content-length");
        te |= name.eq_ignore_ascii_case(b"transfer-encoding");
    }
    cl && te
}

/// A line ending that is a bare LF. RFC 9112 lets a recipient accept them, and pingora does;
/// we refuse them, because a different parser on another hop may not agree on where the
/// header ends.
pub fn raw_head_has_bare_lf(raw_head: &[u8]) -> bool {
    raw_head
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || raw_head[i - 1] != b'\r'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn connection_options() {
        let owned = IdentityHeaders::new(
            "X-Forwarded-User",
            "X-Forwarded-Email",
            "X-Forwarded-Groups",
            ["Remote-User"].into_iter(),
        )
        .unwrap();
        let named = |v: &str| connection_names_protected(&req(&[("connection", v)]), &owned);
        assert_eq!(named("keep-alive"), None);
        assert_eq!(named("close"), None);
        assert_eq!(named("Upgrade, TE"), None);
        assert_eq!(
            named("keep-alive, X-Forwarded-For").as_deref(),
            Some("x-forwarded-for")
        );
        assert_eq!(
            named("x_forwarded_user").as_deref(),
            Some("x_forwarded_user")
        );
        assert_eq!(named("remote-user").as_deref(), Some("remote-user"));
        assert_eq!(named(" Cookie ").as_deref(), Some("cookie"));
        assert_eq!(named("content-length").as_deref(), Some("content-length"));
        assert_eq!(named("X-Request-Id").as_deref(), Some("x-request-id"));
    }

    #[test]
    fn bare_line_feeds() {
        assert!(raw_head_has_bare_lf(b"GET / HTTP/1.1\nHost: a\n\n"));
        assert!(raw_head_has_bare_lf(b"GET / HTTP/1.1\r\nHost: a\n\r\n"));
        assert!(!raw_head_has_bare_lf(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    }

    #[test]
    fn raw_heads() {
        assert!(raw_head_has_both_lengths(b"POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"));
        assert!(!raw_head_has_both_lengths(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(!raw_head_has_both_lengths(
            b"POST / HTTP/1.1\r\nX-Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
    }

    #[test]
    fn framing_and_host() {
        assert!(check(&req(&[("host", "a")]), false).is_ok());
        assert_eq!(check(&req(&[]), false).unwrap_err().code, "bad_host");
        assert_eq!(
            check(&req(&[("host", "a"), ("host", "b")]), false)
                .unwrap_err()
                .code,
            "bad_host"
        );
        assert_eq!(
            check(&req(&[("host", "a b")]), false).unwrap_err().code,
            "bad_host"
        );
        let smuggle = req(&[
            ("host", "a"),
            ("content-length", "5"),
            ("transfer-encoding", "chunked"),
        ]);
        assert_eq!(check(&smuggle, false).unwrap_err().code, "bad_framing");
        let dup = req(&[
            ("host", "a"),
            ("content-length", "5"),
            ("content-length", "5"),
        ]);
        assert_eq!(check(&dup, false).unwrap_err().code, "bad_framing");
        let te = req(&[("host", "a"), ("transfer-encoding", "gzip, chunked")]);
        assert_eq!(check(&te, false).unwrap_err().code, "bad_framing");
        let neg = req(&[("host", "a"), ("content-length", "-1")]);
        assert_eq!(check(&neg, false).unwrap_err().code, "bad_framing");
        let big = "x".repeat(MAX_HEADER_BYTES);
        assert_eq!(
            check(&req(&[("host", "a"), ("x-big", &big)]), false)
                .unwrap_err()
                .status,
            431
        );
    }
}
