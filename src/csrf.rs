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

/// Why a request is considered cross-site, if it is.
pub fn cross_site(headers: &HeaderMap, own_origin: &str) -> Option<&'static str> {
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
        if !o.eq_ignore_ascii_case(own_origin) {
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
}
