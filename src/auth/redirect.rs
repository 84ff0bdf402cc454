//! Redirect safety for `rd` and `after_logout`: only a local path, or an absolute https URL
//! on an operator-allowed host, ever becomes a `Location`.

/// The target to redirect to, or `None` when it is not safe (callers use `/`).
pub fn safe_target(rd: &str, allowed_hosts: &[String]) -> Option<String> {
    if rd.is_empty() || rd.len() > 2048 {
        return None;
    }
    // Control characters and backslashes are refused outright, also in percent-encoded
    // form: browsers drop tabs/newlines inside URLs and treat `\` like `/`.
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(rd).collect();
    let bad = |b: &u8| *b < 0x20 || *b == 0x7f || *b == b'\\';
    if rd.bytes().any(|b| bad(&b)) || decoded.iter().any(bad) || !rd.is_ascii() {
        return None;
    }
    if rd.starts_with('/') {
        // `//host` and `/%2F/host` are network-path references to another site.
        if rd.starts_with("//") || decoded.starts_with(b"//") {
            return None;
        }
        return Some(rd.to_string());
    }
    let rest = rd.strip_prefix("https://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains('@') || authority.contains('%') {
        return None;
    }
    let host = crate::router::canonical_host(authority)?;
    allowed_hosts.contains(&host).then(|| rd.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_redirects_are_refused() {
        let allowed = vec!["app.example.com".to_string()];
        for bad in [
            "//evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "/%09/evil.com",
            "/%2F/evil.com",
            "/%2f%2fevil.com",
            "/%5Cevil.com",
            "https://evil.com",
            "http://app.example.com/",
            "https://app.example.com@evil.com/",
            "https://evil.com#@app.example.com",
            "https://app.example.com.evil.com/",
            "javascript:alert(1)",
            "JAVASCRIPT:alert(1)",
            "data:text/html,x",
            "/ok\r\nSet-Cookie: x=1",
            "/ok%0d%0aSet-Cookie:x",
            "evil.com",
            "",
            "/\u{00e9}vil",
            " //evil.com",
        ] {
            assert_eq!(safe_target(bad, &allowed), None, "{bad:?}");
        }
        for good in [
            "/",
            "/app?x=1#y",
            "/a/b%20c",
            "https://app.example.com/x",
            "https://APP.example.com:8443/",
        ] {
            assert_eq!(
                safe_target(good, &allowed).as_deref(),
                Some(good),
                "{good:?}"
            );
        }
    }
}
