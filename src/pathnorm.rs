//! Request-path normalization (design.md step 3).
//!
//! The route is matched on the normalized path and the upstream receives exactly that
//! path, so the authorization decision and the upstream can never disagree about which
//! resource was asked for (`/public/../admin` is `/admin` for both). Escapes of the
//! delimiters upstreams disagree about stay encoded and are reported in [`EncodedSet`], so
//! that the route can refuse them (design.md step 2, `allow_encoded`).

use crate::readings::Reading;

/// Why a path was refused. All of these are answered with `400`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is not origin-form")]
    NotOriginForm,
    #[error("path contains an encoded NUL")]
    EncodedNul,
    #[error("path contains a backslash, space or control character")]
    BadCharacter,
    #[error("path contains a malformed percent-escape")]
    BadEscape,
    #[error("path climbs above the root")]
    AboveRoot,
}

/// The encoded delimiters a path carried: `%2F` `%5C` `%3B` `%3F` `%23` `%25`. Each is read
/// one way by the gateway (a plain character inside a segment) and another way by an
/// upstream that decodes before it splits, so each must be allowed by the route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodedSet(u8);

/// (decoded byte, how `allow_encoded` spells it, the escape as normalized)
const DELIMITERS: [(u8, &str, &str); 6] = [
    (b'/', "/", "%2F"),
    (b'\\', "\\", "%5C"),
    (b';', ";", "%3B"),
    (b'?', "?", "%3F"),
    (b'#', "#", "%23"),
    (b'%', "%", "%25"),
];

impl EncodedSet {
    pub const NONE: EncodedSet = EncodedSet(0);

    fn bit(decoded: u8) -> Option<u8> {
        DELIMITERS
            .iter()
            .position(|d| d.0 == decoded)
            .map(|i| 1 << i)
    }

    /// From `allow_encoded`'s spelling of one character (`"/"`, `"%2F"` or `"%2f"`).
    pub fn parse_one(s: &str) -> Result<Self, String> {
        if matches!(s, "\0" | "%00" | "NUL" | "nul") {
            return Err("NUL is never allowed in a path".into());
        }
        DELIMITERS
            .iter()
            .position(|d| d.1 == s || d.2.eq_ignore_ascii_case(s))
            .map(|i| EncodedSet(1 << i))
            .ok_or_else(|| {
                format!(
                    "{s:?} is not an encoded character a route can allow (one of \"/\", \"\\\\\", \";\", \"?\", \"#\", \"%\")"
                )
            })
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: EncodedSet) -> EncodedSet {
        EncodedSet(self.0 | other.0)
    }

    /// The characters in `self` that `allowed` does not list.
    pub fn without(self, allowed: EncodedSet) -> EncodedSet {
        EncodedSet(self.0 & !allowed.0)
    }

    /// The escapes as they appear in a normalized path, e.g. `"%2F, %3B"`.
    pub fn escapes(self) -> String {
        DELIMITERS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, d)| d.2)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What routing needs to know about a normalized path besides its text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathTraits {
    pub encoded: EncodedSet,
    /// The readings under which the path may read differently from its exact form
    /// ([`crate::readings::sensitive`]); exact for most paths, which lets the router skip
    /// the other readings.
    pub suspect: Reading,
}

/// A normalized path, the encoded delimiters it still carries, and the readings it is
/// sensitive to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    pub path: String,
    pub traits: PathTraits,
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

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Normalize a raw path (no query): decode percent-escapes of unreserved characters,
/// upper-case the remaining escapes, resolve `.` and `..`, and merge repeated slashes.
/// An encoded NUL is refused outright; the other encoded delimiters stay encoded (never
/// decoded: a backend that decodes them later would see a different path than the one we
/// authorized) and are reported so the route can refuse them.
pub fn normalize(path: &str) -> Result<NormalPath, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    let mut encoded = EncodedSet::NONE;
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
            if v == 0 {
                return Err(PathError::EncodedNul);
            }
            if is_unreserved(v) {
                decoded.push(v);
            } else {
                if let Some(bit) = EncodedSet::bit(v) {
                    encoded.0 |= bit;
                }
                decoded.extend_from_slice(&[b'%', HEX_UPPER[h as usize], HEX_UPPER[l as usize]]);
            }
            i += 3;
            continue;
        }
        // A raw space is refused too: HTTP/1 cannot carry one, so only an h2 `:path` could,
        // and upstreams disagree about where such a path ends.
        if b == b'\\' || b <= 0x20 || b == 0x7f {
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
    let suspect = crate::readings::sensitive(&res);
    Ok(NormalPath {
        path: res,
        traits: PathTraits { encoded, suspect },
    })
}

/// A normalized path as an upstream that decodes delimiters before it splits reads it:
/// `%2F` and `%5C` become `/`, `%3B` becomes `;`, and `%3F` or `%23` end the path (a query
/// or fragment to such a reader); then normalized again. `%25` stays: decoding it once
/// would only produce another escape.
pub fn decode_delimiters(path: &str) -> Result<NormalPath, PathError> {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3).unwrap_or(&rest[at..]);
        match escape {
            "%2F" | "%5C" => out.push('/'),
            "%3B" => out.push(';'),
            "%3F" | "%23" => return normalize(&out),
            other => out.push_str(other),
        }
        rest = &rest[(at + escape.len())..];
    }
    out.push_str(rest);
    normalize(&out)
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
            assert_eq!(normalize(i).map(|n| n.path).as_deref(), Ok(o), "{i}");
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(normalize("a"), Err(PathError::NotOriginForm));
        assert_eq!(normalize("*"), Err(PathError::NotOriginForm));
        assert_eq!(normalize("http://x/"), Err(PathError::NotOriginForm));
        assert_eq!(normalize("/a%00"), Err(PathError::EncodedNul));
        assert_eq!(normalize("/a\\b"), Err(PathError::BadCharacter));
        assert_eq!(normalize("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(normalize("/a%2"), Err(PathError::BadEscape));
        assert_eq!(normalize("/.."), Err(PathError::AboveRoot));
        assert_eq!(normalize("/a/../.."), Err(PathError::AboveRoot));
    }

    #[test]
    fn encoded_delimiters_stay_encoded_and_are_reported() {
        let n = normalize("/a%2fb/c%3bd%3F%23%25%5c").unwrap();
        assert_eq!(n.path, "/a%2Fb/c%3Bd%3F%23%25%5C");
        assert_eq!(n.traits.encoded.escapes(), "%2F, %5C, %3B, %3F, %23, %25");
        // `..%2F` is not a dot segment: it stays one segment.
        assert_eq!(normalize("/a/..%2fb").unwrap().path, "/a/..%2Fb");
        let plain = normalize("/a%20b%e2%82%ac").unwrap();
        assert!(
            plain.traits.encoded.is_empty(),
            "space and UTF-8 escapes are not delimiters"
        );
        let allowed = EncodedSet::parse_one("/").unwrap();
        assert_eq!(
            n.traits.encoded.without(allowed).escapes(),
            "%5C, %3B, %3F, %23, %25"
        );
        assert!(normalize("/a%2Fb")
            .unwrap()
            .traits
            .encoded
            .without(allowed)
            .is_empty());
    }

    #[test]
    fn allow_encoded_spellings() {
        assert_eq!(EncodedSet::parse_one("%2f"), EncodedSet::parse_one("/"));
        assert_eq!(EncodedSet::parse_one("%3B"), EncodedSet::parse_one(";"));
        assert!(EncodedSet::parse_one("\\0").is_err());
        assert!(EncodedSet::parse_one("%00").unwrap_err().contains("NUL"));
        assert!(EncodedSet::parse_one("a").is_err());
    }

    #[test]
    fn decoding_delimiters() {
        let d = |p: &str| decode_delimiters(&normalize(p).unwrap().path).map(|n| n.path);
        assert_eq!(
            d("/api/group%2Fproject").as_deref(),
            Ok("/api/group/project")
        );
        assert_eq!(d("/api/x%2F..%2F..%2Fadmin").as_deref(), Ok("/admin"));
        assert_eq!(d("/a%5Cb").as_deref(), Ok("/a/b"));
        assert_eq!(d("/a%3Bv=1/b").as_deref(), Ok("/a;v=1/b"));
        assert_eq!(d("/a%3Fx/b").as_deref(), Ok("/a"));
        assert_eq!(d("/a%23x").as_deref(), Ok("/a"));
        assert_eq!(d("/100%25").as_deref(), Ok("/100%25"));
        assert_eq!(d("/a/..%2F..%2F.."), Err(PathError::AboveRoot));
    }

    #[test]
    fn suspect_readings_are_noted_while_normalizing() {
        for p in [
            "/a/b",
            "/static/app.js",
            "/A",
            "/%41",
            "/a;b",
            "/a%3Bb",
            "/a./b",
            "/a%2e/b",
            "/a%20",
            "/a%20b",
            "/a%2520",
            "/x/.well-known",
            "/%7eu",
        ] {
            let n = normalize(p).unwrap();
            assert_eq!(n.traits.suspect, crate::readings::sensitive(&n.path), "{p}");
        }
        assert!(normalize("/svc/api/users/42")
            .unwrap()
            .traits
            .suspect
            .is_exact());
        assert!(!normalize("/%41dmin").unwrap().traits.suspect.is_exact());
    }
}
