//! Cross-site request refusal (design.md step 8), by Fetch Metadata and Origin.
//!
//! Browsers send `Sec-Fetch-Site` and `Origin` on cross-site requests and scripts cannot
//! forge them, so a state-changing request that carries a session and says it came from
//! elsewhere is refused. Non-browser clients send neither and are unaffected.

use http::HeaderMap;

pub fn is_safe_method(m: &http::Method) -> bool {
    matches!(
        *m,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    )
}

/// Is `origin` (an `Origin` header) the origin this request was addressed to: the same
/// scheme, the same host (ASCII case-insensitive, one trailing dot ignored) and the same
/// port (the scheme's default when none is written)?
pub fn is_own_origin(origin: &str, scheme: &str, host: Option<&str>) -> bool {
    let Some((their_scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    if !their_scheme.eq_ignore_ascii_case(scheme) || authority.contains(['/', '@', '?', '#']) {
        return false;
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    let (Some((theirs, their_port)), Some((ours, our_port))) = (
        crate::router::split_authority(authority),
        host.and_then(crate::router::split_authority),
    ) else {
        return false;
    };
    theirs == ours && their_port.unwrap_or(default_port) == our_port.unwrap_or(default_port)
}

/// Why a request is considered cross-site, if it is. `scheme` and `host` (the request's
/// Host, as sent) say which origin it was addressed to.
pub fn cross_site(headers: &HeaderMap, scheme: &str, host: Option<&str>) -> Option<&'static str> {
    if let Some(v) = headers.get("sec-fetch-site") {
        if v.as_bytes().eq_ignore_ascii_case(b"cross-site") {
            return Some("sec-fetch-site: cross-site");
        }
    }
    let mut origins = headers.get_all(http::header::ORIGIN).iter();
    if let Some(o) = origins.next() {
        if origins.next().is_some() {
            return Some("several Origin headers");
        }
        let o = o.to_str().unwrap_or("");
        if !is_own_origin(o, scheme, host) {
            return Some("foreign Origin");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn decisions() {
        let cross_site =
            |h: &HeaderMap, _own: &str| cross_site(h, "https", Some("app.example.com"));
        let own = "https://app.example.com";
        assert_eq!(cross_site(&h(&[]), own), None);
        assert_eq!(
            cross_site(&h(&[("origin", "https://app.example.com")]), own),
            None
        );
        assert_eq!(
            cross_site(&h(&[("sec-fetch-site", "same-origin")]), own),
            None
        );
        assert!(cross_site(&h(&[("sec-fetch-site", "cross-site")]), own).is_some());
        assert!(cross_site(&h(&[("origin", "https://evil.com")]), own).is_some());
        assert!(cross_site(&h(&[("origin", "null")]), own).is_some());
        assert!(cross_site(&h(&[("origin", "http://app.example.com")]), own).is_some());
    }

    #[test]
    fn own_origin_spellings() {
        let own = |o: &str, host: &str| is_own_origin(o, "https", Some(host));
        assert!(own("https://app.example.com", "app.example.com"));
        assert!(own("https://APP.Example.com", "app.example.com"));
        assert!(own("https://app.example.com.", "app.example.com"));
        assert!(own("https://app.example.com", "App.Example.COM."));
        assert!(own("https://app.example.com:443", "app.example.com"));
        assert!(own("https://app.example.com:8443", "app.example.com:8443"));
        assert!(own("https://[::1]:8443", "[::1]:8443"));
        assert!(!own("https://app.example.com:8443", "app.example.com"));
        assert!(!own("https://app.example.com", "app.example.com:8443"));
        assert!(!own("http://app.example.com", "app.example.com"));
        assert!(!own("https://app.example.com..", "app.example.com"));
        assert!(!own("https://evil.com", "app.example.com"));
        assert!(!own("https://app.example.com.evil.com", "app.example.com"));
        assert!(!own("https://app.example.com/", "app.example.com"));
        assert!(!own("https://x@app.example.com", "app.example.com"));
        assert!(!own("null", "app.example.com"));
        assert!(!is_own_origin("https://app.example.com", "https", None));
    }
}
