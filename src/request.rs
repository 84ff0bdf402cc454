//! Per-request state (pingora's `CTX`): what the steps of the request path found out,
//! for the later phases, the gateway's own endpoints and the access log; and the
//! session lookup both of them make.

use crate::config::Config;
use crate::gateway::{RequestId, Shared};
use crate::identity::Identity;
use crate::router::Route;
use crate::session::{self, Lookup};
use pingora::proxy::Session;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

/// Route labels for requests that never reached a route.
pub(crate) static LABEL_NONE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("none"));
pub(crate) static LABEL_AUTH: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("auth"));
pub(crate) static LABEL_REDIRECT: LazyLock<Arc<str>> =
    LazyLock::new(|| Arc::from("https_redirect"));

/// Per-request state.
pub struct RequestCtx {
    pub(crate) start: Instant,
    pub request_id: RequestId,
    pub config: Arc<Config>,
    pub tls: bool,
    /// Host as sent (for X-Forwarded-Host and origins), and canonical (for routing).
    pub host_raw: Option<String>,
    pub host: Option<String>,
    /// Normalized path, without query.
    pub path: String,
    pub query: Option<String>,
    pub route: Option<Arc<Route>>,
    /// The `route` metric label: a route name or one of the fixed labels above.
    pub route_label: Arc<str>,
    pub identity: Option<Arc<Identity>>,
    /// The session the request carried, if it was valid.
    pub session: Option<crate::session::ActiveSession>,
    /// The identity was proven by a bearer token (possibly alongside a matching session).
    pub bearer: bool,
    pub target: Option<Arc<str>>,
    pub(crate) upstream_start: Option<Instant>,
}

impl RequestCtx {
    pub(crate) fn new(shared: &Shared) -> Self {
        RequestCtx {
            start: Instant::now(),
            request_id: shared.next_request_id(),
            config: shared.config.load_full(),
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

/// The session store did not answer; the details are already logged.
#[derive(Debug, Clone, Copy)]
pub struct StoreDown;

fn count_lookup(shared: &Shared, lookup: &Lookup, ctx: &RequestCtx, session: &Session) {
    if let Some(l) = lookup.metric_label() {
        shared.metrics.session_lookups.with_label_values(&[l]).inc();
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
    shared: &Shared,
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
    match session::lookup(scfg, &shared.backends(), cookies).await {
        Ok(l) => {
            count_lookup(shared, &l, ctx, session);
            Ok(l)
        }
        Err(e) => {
            tracing::error!(request_id = %ctx.request_id, error = %e, "session store failed");
            Err(StoreDown)
        }
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

/// Where a request comes from, as a session records it at login.
pub fn device_of(session: &Session) -> crate::session::store::record::Device {
    let agent = session
        .req_header()
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    crate::session::store::record::Device::new(&client_ip(session), agent)
}

#[cfg(test)]
mod tests {
    use super::*;

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
