//! The `ProxyHttp` implementation. Each phase reads like the request path in design.md;
//! the work of each step lives in its own module.

use crate::config::{Access, Config, RouteConfig};
use crate::gateway::Shared;
use crate::hygiene;
use crate::identity::Identity;
use crate::metrics::method_label;
use crate::respond::Reply;
use crate::router::{self, canonical_host, NoRoute};
use crate::session::{self, Lookup};
use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

static LABEL_NONE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("none"));
static LABEL_AUTH: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("auth"));
static LABEL_REDIRECT: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("https_redirect"));

/// Where verifiers fetch the assertion keys.
pub const JWKS_PATH: &str = "/.well-known/portcullis/jwks.json";

// Names handed to pingora's `insert_header` as `&'static str`: a `HeaderName` that is not
// one of the few pingora knows would be copied into a fresh case-preserving buffer on every
// insert; a static string is used in place. Lower case, as the wire has always shown them.
const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_FORWARDED_HOST: &str = "x-forwarded-host";
const X_REQUEST_ID: &str = "x-request-id";
const HSTS: &str = "strict-transport-security";

/// Status code label without a per-request allocation for the common codes.
fn status_label(code: u16) -> &'static str {
    match code {
        200 => "200",
        101 => "101",
        204 => "204",
        301 => "301",
        302 => "302",
        303 => "303",
        304 => "304",
        308 => "308",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        0 => "0",
        c if (100..200).contains(&c) => "1xx",
        c if (200..300).contains(&c) => "2xx",
        c if (300..400).contains(&c) => "3xx",
        c if (400..500).contains(&c) => "4xx",
        _ => "5xx",
    }
}

/// The session store did not answer; the details are already logged.
#[derive(Debug, Clone, Copy)]
pub struct StoreDown;

pub struct Gateway {
    pub shared: Arc<Shared>,
}

/// Per-request state.
pub struct RequestCtx {
    start: Instant,
    pub request_id: crate::gateway::RequestId,
    pub config: Arc<Config>,
    pub tls: bool,
    /// Host as sent (for X-Forwarded-Host and origins), and canonical (for routing).
    pub host_raw: Option<String>,
    pub host: Option<String>,
    /// Normalized path, without query.
    pub path: String,
    pub query: Option<String>,
    pub route: Option<Arc<RouteConfig>>,
    /// The `route` metric label: a route name or one of the fixed labels below.
    pub route_label: Arc<str>,
    pub identity: Option<Arc<Identity>>,
    /// The session the request carried, if it was valid.
    pub session: Option<crate::session::ActiveSession>,
    /// The identity was proven by a bearer token (possibly alongside a matching session).
    pub bearer: bool,
    pub target: Option<Arc<str>>,
    upstream_start: Option<Instant>,
}

impl RequestCtx {
    pub fn user(&self) -> &str {
        self.identity.as_ref().map_or("", |i| i.user.as_str())
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// The origin this request was addressed to (`https://host[:port]`).
    pub fn own_origin(&self) -> String {
        format!(
            "{}://{}",
            self.scheme(),
            self.host_raw.as_deref().unwrap_or("").to_ascii_lowercase()
        )
    }
}

pub fn client_ip(session: &Session) -> String {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map_or_else(|| "-".to_string(), |a| ip_text(a.ip()))
}

/// `ip.to_string()`, faster for IPv4: every proxied request formats its client for
/// X-Forwarded-For, and `Display` goes through the formatting machinery.
fn ip_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

impl Gateway {
    /// Write a gateway-generated reply with the headers every response gets.
    pub async fn reply(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        reply: Reply,
        close: bool,
    ) -> pingora::Result<bool> {
        let mut reply = reply.header("x-request-id", ctx.request_id.as_str());
        if let Some(h) = self.hsts(ctx) {
            reply = reply.header("strict-transport-security", h);
        }
        reply.send(session, close).await?;
        Ok(true)
    }

    fn hsts(&self, ctx: &RequestCtx) -> Option<String> {
        let tls = ctx.config.tls.as_ref()?;
        let age = tls.hsts?;
        ctx.tls.then(|| format!("max-age={}", age.as_secs()))
    }

    /// Where a plain-HTTP request is sent when the gateway has TLS.
    fn https_location(&self, ctx: &RequestCtx, raw_path: &str) -> Option<String> {
        let tls = ctx.config.tls.as_ref()?;
        let host = ctx.host.as_deref()?;
        let port = tls.https.first().map_or(443, |a| a.port());
        let authority = if port == 443 {
            host.to_string()
        } else {
            format!("{host}:{port}")
        };
        Some(format!("https://{authority}{raw_path}"))
    }

    fn count_lookup(&self, lookup: &Lookup, ctx: &RequestCtx, session: &Session) {
        if let Some(l) = lookup.metric_label() {
            self.shared
                .metrics
                .session_lookups
                .with_label_values(&[l])
                .inc();
        }
        match lookup {
            Lookup::Invalid(r) => {
                tracing::info!(request_id = %ctx.request_id, client = %client_ip(session), reason = r.as_str(), "session cookie rejected")
            }
            Lookup::Expired(e) => {
                tracing::info!(request_id = %ctx.request_id, client = %client_ip(session), reason = ?e, "session expired")
            }
            Lookup::Miss => {
                tracing::info!(request_id = %ctx.request_id, client = %client_ip(session), reason = "unknown or revoked", "session cookie rejected")
            }
            _ => {}
        }
    }

    /// Look up the request's session. Store failures surface as `Err` (answered 503:
    /// a protected route is never let through on a broken store).
    pub async fn load_session(
        &self,
        session: &Session,
        ctx: &RequestCtx,
    ) -> Result<Lookup, StoreDown> {
        let Some(scfg) = ctx.config.session.as_ref() else {
            return Ok(Lookup::None);
        };
        let cookies = session
            .req_header()
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .map(|v| v.as_bytes());
        match session::lookup(scfg, &self.shared.backends(), cookies).await {
            Ok(l) => {
                self.count_lookup(&l, ctx, session);
                Ok(l)
            }
            Err(e) => {
                tracing::error!(request_id = %ctx.request_id, error = %e, "session store failed");
                Err(StoreDown)
            }
        }
    }

    /// A bearer token on a `bearer = true` route: `Ok(None)` when the request carries none
    /// (or another scheme, such as Basic, which is the app's business), the token's
    /// identity when it verifies, else the 401 to send.
    async fn bearer_identity(
        &self,
        session: &Session,
        ctx: &RequestCtx,
    ) -> Result<Option<Identity>, Reply> {
        let Some(issuers) = ctx.config.jwt.clone() else {
            return Ok(None);
        };
        let mut values = session
            .req_header()
            .headers
            .get_all(http::header::AUTHORIZATION)
            .iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(Reply::error(
                400,
                "bad_request",
                "more than one Authorization header",
            ));
        }
        let value = value.to_str().unwrap_or("");
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Ok(None);
        }
        let now = self.shared.clock.now_ms() / 1000;
        let result = issuers.verify(token.trim_matches(' '), now).await;
        let label = result.as_ref().map_or_else(|r| r.label(), |_| "valid");
        self.shared
            .metrics
            .bearer_tokens
            .with_label_values(&[label])
            .inc();
        match result {
            Ok(id) => Ok(Some(id)),
            Err(r) => {
                tracing::info!(request_id = %ctx.request_id, client = %client_ip(session), reason = %r, "bearer token refused");
                Err(
                    Reply::error(401, "invalid_token", "bearer token refused").header(
                        "www-authenticate",
                        "Bearer realm=\"portcullis\", error=\"invalid_token\"",
                    ),
                )
            }
        }
    }

    /// The answer when no route was chosen (design.md steps 2 and 4). Ambiguous paths are
    /// logged: they are how authorization bypasses are probed.
    fn refusal(&self, session: &Session, ctx: &RequestCtx, why: &NoRoute) -> Reply {
        let (code, message) = match why {
            NoRoute::Unknown => {
                return Reply::error(404, "no_route", "no route for this host and path")
            }
            NoRoute::Ambiguous(a) => {
                let crate::router::Ambiguity {
                    reading,
                    exact,
                    other,
                } = &**a;
                tracing::info!(
                    request_id = %ctx.request_id,
                    client = %client_ip(session),
                    path = %ctx.path,
                    route = %exact,
                    other_route = %other,
                    reading = %reading.describe(),
                    "ambiguous path refused: upstreams would read it as another route's"
                );
                (
                    "ambiguous_path",
                    "this path could be read as belonging to another route, so it is refused"
                        .to_string(),
                )
            }
            NoRoute::Encoded(set) => {
                tracing::info!(request_id = %ctx.request_id, client = %client_ip(session), path = %ctx.path, escapes = %set.escapes(), "encoded delimiter refused");
                (
                    "encoded_character",
                    format!(
                        "the path contains encoded delimiters this route does not accept: {}",
                        set.escapes()
                    ),
                )
            }
        };
        if is_navigation(session.req_header()) {
            Reply::html(
                400,
                crate::auth::page::refusal("Bad request", &message, code, ctx.request_id.as_str()),
            )
        } else {
            Reply::error(400, code, &message)
        }
    }

    /// design.md step 7: no session → 302 to login (browser navigation) or 401.
    fn login_required(&self, session: &Session, ctx: &RequestCtx, bearer: bool) -> Reply {
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
}

impl Gateway {
    /// Act on `Portcullis-Login`/`-Logout` from an upstream, on routes that allow it.
    async fn upstream_session_instruction(
        &self,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
        instruction: crate::session_headers::Instruction,
    ) -> pingora::Result<()> {
        use crate::session_headers::Instruction;
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
                    if let Err(e) = session::end(scfg, &self.shared.backends(), &active).await {
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
                    let _ = session::end(scfg, &self.shared.backends(), &active).await;
                }
                match session::create(scfg, &self.shared.backends(), identity).await {
                    Ok((value, record)) => {
                        tracing::info!(request_id = %ctx.request_id, user = %record.identity.user, route = %ctx.route_label, "login by upstream");
                        self.shared
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
}

/// A browser navigation: GET or HEAD that accepts HTML. Such requests get pages and
/// redirects; everything else gets JSON.
fn is_navigation(req: &RequestHeader) -> bool {
    matches!(req.method, http::Method::GET | http::Method::HEAD)
        && req
            .headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
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

/// design.md step 5: the session cookie is the gateway's own; the app gets the client's
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

fn allowed(route: &RouteConfig, id: &Identity) -> bool {
    if route.allow_users.is_empty() && route.allow_groups.is_empty() {
        return true;
    }
    route.allow_users.contains(&id.user) || route.allow_groups.iter().any(|g| id.groups.contains(g))
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            request_id: self.shared.next_request_id(),
            config: self.shared.config.load_full(),
            tls: false,
            host_raw: None,
            host: None,
            path: String::new(),
            query: None,
            route: None,
            route_label: LABEL_NONE.clone(),
            identity: None,
            session: None,
            bearer: false,
            target: None,
            upstream_start: None,
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        ctx.tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        // Step 2: refuse malformed requests.
        if let Some(raw) = session.as_http1().map(|h1| h1.get_headers_raw_bytes()) {
            let framing = if hygiene::raw_head_has_bare_lf(&raw) {
                Some("bare LF line ending")
            } else if session
                .req_header()
                .headers
                .contains_key(http::header::TRANSFER_ENCODING)
                && hygiene::raw_head_has_both_lengths(&raw)
            {
                Some("both Content-Length and Transfer-Encoding")
            } else {
                None
            };
            if let Some(why) = framing {
                return self
                    .reply(session, ctx, Reply::error(400, "bad_framing", why), true)
                    .await;
            }
        }
        if let Err(r) = hygiene::check(session.req_header(), session.is_http2()) {
            return self
                .reply(
                    session,
                    ctx,
                    Reply::error(r.status, r.code, r.message),
                    r.close,
                )
                .await;
        }
        if let Some(name) =
            hygiene::connection_names_protected(session.req_header(), &ctx.config.identity)
        {
            tracing::info!(request_id = %ctx.request_id, client = %client_ip(session), header = %name, "Connection option naming a protected header refused");
            let reply = Reply::error(
                400,
                "bad_connection_header",
                &format!(
                    "Connection may not name {name}: the gateway owns or relies on that header"
                ),
            );
            // Closed: what the client meant by its connection options is not to be guessed.
            return self.reply(session, ctx, reply, true).await;
        }
        let req = session.req_header();
        ctx.host_raw = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()))
            .map(str::to_string);
        ctx.host = ctx.host_raw.as_deref().and_then(canonical_host);
        let Ok(raw) = std::str::from_utf8(req.raw_path()) else {
            return self
                .reply(
                    session,
                    ctx,
                    Reply::error(400, "bad_path", "path is not UTF-8"),
                    true,
                )
                .await;
        };
        let raw = raw.to_string();
        let (raw_path, query) = match raw.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (raw.as_str(), None),
        };

        // Step 1 (redirect half): plain HTTP only redirects when TLS is on.
        if ctx.config.tls.is_some() && !ctx.tls {
            ctx.route_label = LABEL_REDIRECT.clone();
            return match self.https_location(ctx, &raw) {
                Some(loc) if raw.starts_with('/') => {
                    self.reply(session, ctx, Reply::redirect(308, &loc), false)
                        .await
                }
                _ => {
                    self.reply(
                        session,
                        ctx,
                        Reply::error(400, "bad_request", "cannot redirect this request"),
                        true,
                    )
                    .await
                }
            };
        }

        // Step 3: normalize once; routing and the upstream both use the result.
        let path = match crate::pathnorm::normalize(raw_path) {
            Ok(p) => p,
            Err(e) => {
                let code = match e {
                    crate::pathnorm::PathError::EncodedNul => "encoded_character",
                    _ => "bad_path",
                };
                return self
                    .reply(session, ctx, Reply::error(400, code, &e.to_string()), false)
                    .await;
            }
        };
        ctx.path = path.path.clone();
        ctx.query = query;

        // The gateway's own endpoints take no encoded delimiters (they have no allow_encoded).
        let own_endpoint = ctx.path == JWKS_PATH
            || ctx
                .path
                .strip_prefix(ctx.config.auth.prefix.as_str())
                .is_some_and(|s| s.is_empty() || s.starts_with('/'));
        if own_endpoint && !path.encoded.is_empty() {
            let reply = self.refusal(session, ctx, &NoRoute::Encoded(path.encoded));
            return self.reply(session, ctx, reply, false).await;
        }

        // Public keys of the identity assertion (before routing: no route may shadow it).
        if ctx.path == JWKS_PATH {
            ctx.route_label = LABEL_AUTH.clone();
            let reply = match &ctx.config.assertion {
                Some(a) => Reply::new(200, "application/jwk-set+json", a.jwks().to_string()),
                None => Reply::error(404, "not_found", "identity assertions are not configured"),
            };
            return self.reply(session, ctx, reply, false).await;
        }

        // The gateway's own endpoints.
        let config = ctx.config.clone();
        if let Some(sub) = ctx
            .path
            .strip_prefix(config.auth.prefix.as_str())
            .filter(|s| s.is_empty() || s.starts_with('/'))
        {
            ctx.route_label = LABEL_AUTH.clone();
            let sub = sub.to_string();
            let reply = Box::pin(crate::auth::endpoints::handle(self, session, ctx, &sub)).await?;
            return self.reply(session, ctx, reply, false).await;
        }

        // Step 4: route, when every reading of the path agrees on one.
        let route = match ctx.config.routes.choose(ctx.host.as_deref(), &path) {
            Ok(route) => route.clone(),
            Err(why) => {
                let reply = self.refusal(session, ctx, &why);
                return self.reply(session, ctx, reply, false).await;
            }
        };
        ctx.route_label = route.name.clone();

        // Step 6: session.
        let lookup = match self.load_session(session, ctx).await {
            Ok(l) => l,
            Err(StoreDown) => {
                if route.access == Access::Authenticated {
                    return self
                        .reply(
                            session,
                            ctx,
                            Reply::error(503, "session_store_unavailable", "try again shortly"),
                            false,
                        )
                        .await;
                }
                Lookup::None
            }
        };
        if let Lookup::Hit(s) = &lookup {
            ctx.identity = Some(s.record.identity.clone());
            ctx.session = Some(s.clone());
        }

        // Step 6b: a bearer token, on routes that take them.
        if route.bearer {
            match Box::pin(self.bearer_identity(session, ctx)).await {
                Ok(None) => {}
                Ok(Some(id)) => {
                    if let Some(current) = &ctx.identity {
                        if current.user != id.user {
                            tracing::warn!(request_id = %ctx.request_id, session_user = %current.user, token_user = %id.user, "session cookie and bearer token name different users; refused");
                            return self
                                .reply(
                                    session,
                                    ctx,
                                    Reply::error(
                                        401,
                                        "conflicting_credentials",
                                        "the session and the bearer token name different users",
                                    ),
                                    false,
                                )
                                .await;
                        }
                    } else {
                        ctx.identity = Some(Arc::new(id));
                    }
                    ctx.bearer = true;
                }
                Err(reply) => return self.reply(session, ctx, reply, false).await,
            }
        }

        // Step 7: policy.
        if route.access == Access::Authenticated {
            match &ctx.identity {
                None => {
                    let r = self.login_required(session, ctx, route.bearer);
                    return self.reply(session, ctx, r, false).await;
                }
                Some(id) if !allowed(&route, id) => {
                    tracing::info!(request_id = %ctx.request_id, user = %id.user, route = %route.name, "access denied by route policy");
                    return self
                        .reply(
                            session,
                            ctx,
                            Reply::error(403, "forbidden", "your account may not use this route"),
                            false,
                        )
                        .await;
                }
                Some(_) => {}
            }
        }

        // Step 8: CSRF on state-changing requests that carry a session. A request proven by
        // a bearer token alone carries no ambient credential a browser could attach.
        if ctx.session.is_some() && !crate::csrf::is_safe_method(&session.req_header().method) {
            if let Some(why) = crate::csrf::cross_site(
                &session.req_header().headers,
                ctx.scheme(),
                ctx.host_raw.as_deref(),
            ) {
                tracing::warn!(request_id = %ctx.request_id, user = %ctx.user(), reason = why, "cross-site request refused");
                return self
                    .reply(
                        session,
                        ctx,
                        Reply::error(403, "cross_site", "cross-site request refused"),
                        false,
                    )
                    .await;
            }
        }
        ctx.route = Some(route);
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let route = ctx
            .route
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route in context"))?;
        let up = &route.upstream;
        let target = up.select().ok_or_else(|| {
            self.shared
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

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let cfg = ctx.config.clone();
        // Step 5: nothing the gateway owns survives from the client.
        let stripped = cfg.identity.strip(req);
        if stripped > 0 {
            tracing::debug!(request_id = %ctx.request_id, stripped, "removed client-sent gateway headers");
        }
        if let Some(scfg) = &cfg.session {
            forward_cookies(req, &scfg.cookie_name)?;
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
                let now = self.shared.clock.now_ms() / 1000;
                let aud = ctx.host.as_deref().unwrap_or("");
                if let Some(token) = a.token(cache_key, id, aud, &ctx.own_origin(), now) {
                    req.insert_header(a.header.clone(), token)?;
                }
            }
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
        if let Some(route) = ctx.route.as_ref().filter(|r| {
            r.strip_prefix || !is_target(req.raw_path(), &ctx.path, ctx.query.as_deref())
        }) {
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

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
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
        if let Some(instruction) = crate::session_headers::take(resp) {
            Box::pin(self.upstream_session_instruction(resp, ctx, instruction)).await?;
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
        if let Some(h) = self.hsts(ctx) {
            resp.insert_header(HSTS, h)?;
        }
        resp.insert_header(X_REQUEST_ID, ctx.request_id.as_str())?;
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let upstream = ctx.route.as_ref().map(|r| r.upstream.name.clone());
        let (code, kind) = match e.etype() {
            ErrorType::HTTPStatus(c) => (*c, "status"),
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
                if e.esource() == &ErrorSource::Upstream =>
            {
                (504, "timeout")
            }
            ErrorType::ConnectTimedout => (504, "timeout"),
            ErrorType::ConnectRefused => (502, "connect_refused"),
            _ => match e.esource() {
                ErrorSource::Upstream => (502, "upstream"),
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                        (0, "downstream")
                    }
                    _ => (400, "downstream"),
                },
                _ => (500, "internal"),
            },
        };
        if let Some(u) = &upstream {
            if code == 502 || code == 504 {
                self.shared
                    .metrics
                    .upstream_errors
                    .with_label_values(&[u, kind])
                    .inc();
            }
        }
        if code > 0 {
            let reply = match code {
                502 => Reply::error(502, "bad_gateway", "the upstream could not be reached"),
                504 => Reply::error(
                    504,
                    "gateway_timeout",
                    "the upstream did not answer in time",
                ),
                400 => Reply::error(400, "bad_request", "malformed request"),
                c => Reply::error(c, "error", "request failed"),
            };
            if let Err(err) = self.reply(session, ctx, reply, true).await {
                tracing::debug!(error = %err, "could not send error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.start.elapsed();
        let m = &self.shared.metrics;
        let method = method_label(&session.req_header().method);
        m.requests
            .with_label_values(&[&*ctx.route_label, method, status_label(status)])
            .inc();
        m.request_duration
            .with_label_values(&[&*ctx.route_label])
            .observe(elapsed.as_secs_f64());
        if let (Some(start), Some(route)) = (ctx.upstream_start, &ctx.route) {
            m.upstream_duration
                .with_label_values(&[&route.upstream.name])
                .observe(start.elapsed().as_secs_f64());
        }
        let upstream = ctx.route.as_ref().map_or("", |r| r.upstream.name.as_str());
        tracing::info!(
            target: "portcullis::access",
            request_id = %ctx.request_id,
            client = %client_ip(session),
            method = %session.req_header().method,
            host = ctx.host.as_deref().unwrap_or(""),
            path = %ctx.path,
            route = %ctx.route_label,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            upstream,
            target = ctx.target.as_deref().unwrap_or(""),
            user = ctx.user(),
            error = e.map(|e| e.etype().as_str()).unwrap_or(""),
        );
    }
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

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "99.100.199.200",
            "255.255.255.255",
            "1.9.10.109",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.1",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }
}
