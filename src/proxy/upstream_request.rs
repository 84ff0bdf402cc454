//! Steps 5 and 9 of design.md, on the request as it goes upstream: nothing the gateway
//! owns survives from the client; the verified identity, the gateway's own forwarding
//! headers and the authorized path go out. Also the choice of the upstream target.

use super::Gateway;
use crate::identity::{Identity, IdentityHeaders};
use crate::request::{client_ip, RequestCtx};
use crate::router;
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::Session;
use pingora::{Error, ErrorType};
use std::time::Instant;

// The gateway's own headers, as `http` names built at compile time: inserted straight into
// the request's `HeaderMap`, they are neither parsed nor copied per request (pingora's
// `insert_header` parses every name it is given and copies any name it does not know).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(super) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const HTTP: HeaderValue = HeaderValue::from_static("http");
const HTTPS: HeaderValue = HeaderValue::from_static("https");
// The gateway's own answers and HSTS go through pingora's `insert_header`, which takes a
// `&'static str` without copying it. Lower case, as the wire has always shown them.
pub(super) const HSTS: &str = "strict-transport-security";

/// Room the upstream request's header map is rebuilt with, beyond the client's headers:
/// X-Forwarded-For, -Proto, -Host, X-Request-Id and Host (5), the three identity headers
/// and an identity assertion (4), and spare slots for headers added after the identity
/// (an access token) so that none of them grows the map.
const ADDED_HEADERS: usize = 11;

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
    // Step 3: the upstream receives exactly the path that was authorized.
    let uri = authorized_target(req, ctx)?;
    let mut rebuilt = Rebuilt::take(req, uri)?;
    let headers = &mut rebuilt.parts.headers;
    if let Some(scfg) = &cfg.session {
        forward_cookies(headers, &scfg.cookie_name)?;
        if cfg.oidc.is_some() {
            // The sealed login state of an OpenID sign-in in flight is ours too.
            forward_cookies(
                headers,
                crate::auth::oidc::endpoints::state_cookie_name(scfg),
            )?;
        }
        if cfg.mfa.is_some() {
            // So is a login waiting for its second factor.
            forward_cookies(headers, crate::auth::mfa::pending::cookie_name(scfg))?;
        }
    }
    // Step 9: the verified identity, then the gateway's own forwarding headers (last, so
    // that they win over an identity header configured with the same name, as before).
    if let Some(id) = &ctx.identity {
        identity_headers(headers, &cfg.identity, id)?;
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
                headers.insert(a.header.clone(), value(token)?);
            }
        }
    }
    // `access_token_header`: the session's current access token, only on sessions of the
    // provider that sets it and only while the token is valid (an expired one would only
    // fail at the app, which then sees no header, as for a session without one).
    if let Some(s) = ctx.session.as_ref().filter(|s| s.record.tokens.is_some()) {
        let now = gw.shared.clock.now_ms();
        if let Some((name, token)) = crate::auth::oidc::refresh::forwarded_token(&cfg, s, now) {
            headers.insert(name, value(token.to_string())?);
        }
    }
    forwarding_headers(headers, session, ctx)?;
    rebuilt.put_back(req)
}

/// The upstream request is pingora's copy of the client's, its header maps sized exactly
/// to the client's headers: every header the gateway adds would grow them, and pingora's
/// `insert_header` parses (and for names it does not know, copies) every name. Taken apart
/// into its `http` parts once, it gets room for what the gateway adds, and the headers go
/// into one map as ready-made `HeaderName`s; put back, it has no second, case-preserving
/// map: names pingora knows go out title-cased, others in lower case (the case the client
/// chose is not kept; HTTP/2 drops it anyway).
struct Rebuilt {
    parts: http::request::Parts,
    /// A target the URI does not reproduce (absolute form) is set again afterwards.
    raw_target: Option<Vec<u8>>,
}

impl Rebuilt {
    fn take(req: &mut RequestHeader, uri: Option<http::Uri>) -> pingora::Result<Self> {
        let raw_target =
            (uri.is_none() && !target_round_trips(req)).then(|| req.raw_path().to_vec());
        let empty = RequestHeader::from(http::Request::new(()).into_parts().0);
        let mut parts: http::request::Parts = std::mem::replace(req, empty).into();
        parts
            .headers
            .try_reserve(ADDED_HEADERS)
            .map_err(|_| Error::explain(ErrorType::InternalError, "too many request headers"))?;
        if let Some(uri) = uri {
            parts.uri = uri;
        }
        Ok(Self { parts, raw_target })
    }

    fn put_back(self, req: &mut RequestHeader) -> pingora::Result<()> {
        *req = RequestHeader::from(self.parts);
        match self.raw_target {
            Some(raw) => req.set_raw_path(&raw),
            None => Ok(()),
        }
    }
}

/// X-Forwarded-For, -Proto and -Host, X-Request-Id, and Host when the client sent none.
fn forwarding_headers(
    headers: &mut HeaderMap,
    session: &Session,
    ctx: &RequestCtx,
) -> pingora::Result<()> {
    headers.insert(X_FORWARDED_FOR, value(client_ip(session))?);
    headers.insert(X_FORWARDED_PROTO, if ctx.tls { HTTPS } else { HTTP });
    if ctx.host_raw.is_some() {
        // Host as the client sent it: a clone of the value shares its bytes rather than
        // copying the text.
        match headers.get(http::header::HOST).cloned() {
            Some(host) => {
                headers.insert(X_FORWARDED_HOST, host);
            }
            // HTTP/2 and HTTP/1.0 may come without one: the authority read in step 1.
            None => {
                let host = HeaderValue::from_str(ctx.host_raw.as_deref().unwrap_or_default())
                    .map_err(|_| Error::explain(ErrorType::HTTPStatus(400), "invalid host"))?;
                headers.insert(X_FORWARDED_HOST, host.clone());
                headers.insert(http::header::HOST, host);
            }
        }
    }
    let id = HeaderValue::from_bytes(ctx.request_id.as_str().as_bytes())
        .map_err(|_| Error::explain(ErrorType::InternalError, "request id"))?;
    headers.insert(REQUEST_ID, id);
    Ok(())
}

/// The identity headers by `IdentityHeaders::inject`'s rule (user always, email and groups
/// when there are any), with the configured names cloned rather than parsed and copied.
fn identity_headers(
    headers: &mut HeaderMap,
    names: &IdentityHeaders,
    id: &Identity,
) -> pingora::Result<()> {
    let text = |v: &str| {
        HeaderValue::from_str(v)
            .map_err(|_| Error::explain(ErrorType::InternalError, "identity not representable"))
    };
    headers.insert(names.user.clone(), text(&id.user)?);
    if !id.email.is_empty() {
        headers.insert(names.email.clone(), text(&id.email)?);
    }
    if !id.groups.is_empty() {
        headers.insert(names.groups.clone(), value(id.groups.join(","))?);
    }
    Ok(())
}

/// The request target to send instead of the client's, when they differ: the normalized
/// path (less the route's prefix when it strips it) and the query. Most requests arrive
/// already normalized in origin form; then the client's target goes on as it is (no
/// format, parse and allocation).
fn authorized_target(req: &RequestHeader, ctx: &RequestCtx) -> pingora::Result<Option<http::Uri>> {
    let Some(route) = ctx
        .route
        .as_ref()
        .filter(|r| r.strip_prefix || !is_target(req.raw_path(), &ctx.path, ctx.query.as_deref()))
    else {
        return Ok(None);
    };
    let path = if route.strip_prefix {
        router::strip_prefix(&route.prefix, &ctx.path)
    } else {
        ctx.path.as_str().into()
    };
    let target = match &ctx.query {
        Some(q) => format!("{path}?{q}"),
        None => path.into_owned(),
    };
    target.parse().map(Some).map_err(|_| {
        Error::explain(
            ErrorType::HTTPStatus(400),
            "request target not representable",
        )
    })
}

/// Does the URI alone reproduce the request target? It does for origin form; a target it
/// does not (absolute form) has to be set again after the request is rebuilt from parts.
fn target_round_trips(req: &RequestHeader) -> bool {
    req.uri
        .path_and_query()
        .is_some_and(|pq| pq.as_str().as_bytes() == req.raw_path())
}

/// A header value from text the gateway produced, without copying it.
fn value(text: String) -> pingora::Result<HeaderValue> {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
        .map_err(|_| Error::explain(ErrorType::InternalError, "header value not representable"))
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
/// other cookies, merged into one header (a header that is not visible ASCII is dropped).
/// The result is `session::cookie::without` over the headers joined; one header that
/// does not contain `name` at all goes on untouched.
fn forward_cookies(headers: &mut HeaderMap, name: &str) -> pingora::Result<()> {
    // One lookup of the Cookie entry for reading, deciding and replacing.
    let http::header::Entry::Occupied(mut entry) = headers.entry(http::header::COOKIE) else {
        return Ok(());
    };
    let mut values = entry.iter();
    if let (Some(one), None) = (values.next(), values.next()) {
        if one.to_str().is_ok_and(|v| !v.contains(name)) {
            return Ok(());
        }
    }
    // The pairs that are not ours, in order, built in one buffer rather than through a
    // copy of every header and a join.
    let mut kept = String::new();
    for pair in entry
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|p| !p.is_empty() && cookie_name(p) != name)
    {
        if !kept.is_empty() {
            kept.push_str("; ");
        }
        kept.push_str(pair);
    }
    if kept.is_empty() {
        entry.remove_entry_mult();
    } else {
        // Replaces every value the client sent with the one merged header.
        entry.insert(value(kept)?);
    }
    Ok(())
}

/// The name of a trimmed `name=value` cookie pair (the whole pair when it has no `=`).
fn cookie_name(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(n, _)| n.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session;

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

    /// The client's Cookie headers as the app gets them, by the shared rule
    /// (`session::cookie::without` over the headers joined) and by `forward_cookies`.
    fn both_ways(values: &[&[u8]], name: &str) -> (Option<String>, Option<String>) {
        let texts: Vec<&str> = values
            .iter()
            .filter_map(|v| std::str::from_utf8(v).ok())
            .filter(|v| HeaderValue::from_str(v).is_ok_and(|h| h.to_str().is_ok()))
            .collect();
        let single_untouched = values.len() == 1 && texts.len() == 1 && !texts[0].contains(name);
        let expected = if single_untouched {
            Some(texts[0].to_string())
        } else {
            session::cookie::without(&texts.join("; "), name)
        };
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(http::header::COOKIE, HeaderValue::from_bytes(v).unwrap());
        }
        forward_cookies(&mut headers, name).unwrap();
        assert!(headers.get_all(http::header::COOKIE).iter().count() <= 1);
        let got = headers
            .get(http::header::COOKIE)
            .map(|v| String::from_utf8(v.as_bytes().to_vec()).unwrap());
        (expected, got)
    }

    #[test]
    fn cookies_forwarded_as_the_shared_rule_says() {
        let cases: &[&[&[u8]]] = &[
            &[],
            &[b"session=abc"],
            &[b"session = abc"],
            &[b"a=1; session=abc; b=2"],
            &[b"a=1;session=abc;;  b=2 ; "],
            &[b"sessions=1; xsession=2"],
            &[b"a=1", b"session=abc", b"b=2"],
            &[b"a=1", b"b=2"],
            &[b"session"],
            &[b"a=1; session"],
            &[b"caf\xc3\xa9=1; session=abc", b"b=2"],
            &[b"caf\xc3\xa9=1"],
            &[b"  a=1 ;  b=2"],
            &[b"session=abc", b"session=def"],
        ];
        for values in cases {
            let (expected, got) = both_ways(values, "session");
            assert_eq!(got, expected, "{values:?}");
        }
    }
}
