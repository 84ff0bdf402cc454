//! Per-request state (pingora's `CTX`): what the steps of the request path found out,
//! for the later phases and the access log.

use crate::config::Config;
use crate::gateway::{RequestId, Shared};
use crate::identity::Identity;
use crate::router::Route;
use pingora::proxy::Session;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

/// Route labels for requests that never reached a route.
pub(super) static LABEL_NONE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("none"));
pub(super) static LABEL_AUTH: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("auth"));
pub(super) static LABEL_REDIRECT: LazyLock<Arc<str>> =
    LazyLock::new(|| Arc::from("https_redirect"));

/// Per-request state.
pub struct RequestCtx {
    pub(super) start: Instant,
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
    pub(super) upstream_start: Option<Instant>,
}

impl RequestCtx {
    pub(super) fn new(shared: &Shared) -> Self {
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
