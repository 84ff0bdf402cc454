//! Request-path normalization (design.md step 3).
//!
//! The route is matched on the normalized path and the upstream receives exactly that
//! path, so the authorization decision and the upstream can never disagree about which
//! resource was asked for (`/public/../admin` is `/admin` for both).

/// Why a path was refused. All of these are answered with `400`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is not origin-form")]
    NotOriginForm,
    #[error("path contains an encoded '/', '\\' or NUL")]
    EncodedSeparator,
    #[error("path contains a backslash or control character")]
    BadCharacter,
    #[error("path contains a malformed percent-escape")]
    BadEscape,
    #[error("path climbs above the root")]
    AboveRoot,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Normalize a raw path (no query): decode percent-escapes of unreserved characters,
/// upper-case the remaining escapes, resolve `.` and `..`, and merge repeated slashes.
/// Encoded `/`, `\` and NUL are refused rather than decoded: a backend that decodes them
/// later would see a different path than the one we authorized.
pub fn normalize(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    // Pass 1: percent-decoding of unreserved characters only.
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (h, l) = match (
                bytes.get(i + 1).and_then(|&x| hex(x)),
                bytes.get(i + 2).and_then(|&x| hex(x)),
            ) {
                (Some(h), Some(l)) => (h, l),
                _ => return Err(PathError::BadEscape),
            };
            let v = h * 16 + l;
            if v == b'/' || v == b'\\' || v == 0 {
                return Err(PathError::EncodedSeparator);
            }
            if is_unreserved(v) {
                decoded.push(v);
            } else {
                decoded.push(b'%');
                decoded.extend_from_slice(format!("{v:02X}").as_bytes());
            }
            i += 3;
            continue;
        }
        if b == b'\\' || b < 0x20 || b == 0x7f {
            return Err(PathError::BadCharacter);
        }
        decoded.push(b);
        i += 1;
    }
    // Pass 2: segments. An empty segment (from `//`) is merged away; a trailing slash is
    // kept because `/dir/` and `/dir` are different resources to many apps.
    let trailing = decoded.ends_with(b"/") || decoded.ends_with(b"/.") || decoded.ends_with(b"/..");
    let mut out: Vec<&[u8]> = Vec::new();
    for seg in decoded.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            s => out.push(s),
        }
    }
    let mut res = String::with_capacity(decoded.len());
    for seg in &out {
        res.push('/');
        // Every byte is either ASCII or part of a UTF-8 sequence copied whole from a &str.
        res.push_str(&String::from_utf8_lossy(seg));
    }
    if res.is_empty() || (trailing && !res.ends_with('/')) {
        res.push('/');
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_forms() {
        for (i, o) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("//a///b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/b/../c", "/a/c"),
            ("/a/%2e%2e/c", "/c"),
            ("/a/%2E/c", "/a/c"),
            ("/%61dmin", "/admin"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb", "/a%3Fb"),
            ("/dir/", "/dir/"),
            ("/dir/.", "/dir/"),
            ("/a/..", "/"),
        ] {
            assert_eq!(normalize(i).as_deref(), Ok(o), "{i}");
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(normalize("a"), Err(PathError::NotOriginForm));
        assert_eq!(normalize("*"), Err(PathError::NotOriginForm));
        assert_eq!(normalize("http://x/"), Err(PathError::NotOriginForm));
        assert_eq!(normalize("/a%2fb"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/a%2Fb"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/a%5cb"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/a%00"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/a\\b"), Err(PathError::BadCharacter));
        assert_eq!(normalize("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(normalize("/a%2"), Err(PathError::BadEscape));
        assert_eq!(normalize("/.."), Err(PathError::AboveRoot));
        assert_eq!(normalize("/a/../.."), Err(PathError::AboveRoot));
    }
}
