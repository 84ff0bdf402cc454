//! The ways common upstreams read a normalized path differently from the gateway
//! (design.md step 4: every reading of the path must choose the same route).
//!
//! The gateway forwards exactly the normalized path, but the app behind it may still read
//! that path as another one: Express and ASP.NET Core match routes ignoring ASCII case;
//! Tomcat, Jetty and Spring cut `;parameters` from each segment before they resolve dot
//! segments (so `/pub/..;/admin` is `/admin` to them); IIS and Windows drop trailing dots
//! and spaces from segments (`/admin./x` is `/admin/x`). Each of those is a [`Reading`]; an
//! upstream may combine them, so the router checks every combination.

use std::borrow::Cow;

/// A set of reading rules applied on top of the exact normalized path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Reading(u8);

impl Reading {
    /// The path as the gateway reads it.
    pub const EXACT: Reading = Reading(0);
    /// ASCII letters compared without case.
    pub const CASE: Reading = Reading(1);
    /// `;…` cut from every segment, then dot segments resolved.
    pub const PARAMS: Reading = Reading(2);
    /// Trailing `.`, space and `%20` cut from every segment.
    pub const TRAILING: Reading = Reading(4);
    /// Every rule at once: the loosest reading.
    pub const LOOSE: Reading = Reading(7);
    /// How many distinct readings there are (every subset of the three rules).
    pub const COUNT: usize = 8;

    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    pub fn from_index(i: usize) -> Reading {
        Reading((i as u8) & Self::LOOSE.0)
    }

    pub fn is_exact(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: Reading) -> Reading {
        Reading(self.0 | other.0)
    }

    pub fn has(self, rule: Reading) -> bool {
        self.0 & rule.0 == rule.0
    }

    /// Every non-empty subset of `self`.
    pub fn subsets(self) -> impl Iterator<Item = Reading> {
        let all = self.0;
        (1..=all).filter(move |s| s & !all == 0).map(Reading)
    }

    /// For logs: which rules disagreed.
    pub fn describe(self) -> String {
        let mut parts = Vec::new();
        if self.has(Self::CASE) {
            parts.push("case-insensitive");
        }
        if self.has(Self::PARAMS) {
            parts.push(";parameters cut");
        }
        if self.has(Self::TRAILING) {
            parts.push("trailing dots/spaces cut");
        }
        if parts.is_empty() {
            "exact".into()
        } else {
            parts.join(" + ")
        }
    }
}

/// The rules under which this normalized path may read differently from its exact form.
/// An empty answer means every reading is the exact path, so the router need not compute
/// any (the common case: lower-case paths without `;` or trailing dots).
pub fn sensitive(path: &str) -> Reading {
    let bytes = path.as_bytes();
    // One pass with no early exit and no table lookups: the compiler turns it into a few
    // vector compares per 16 bytes, so a plain path costs next to nothing.
    let (mut upper, mut semi, mut dot_or_escape) = (false, false, false);
    for &b in bytes {
        upper |= b.wrapping_sub(b'A') < 26;
        semi |= b == b';';
        // A segment may end in `.` or `%20`; the loop below decides.
        dot_or_escape |= (b == b'.') | (b == b'%');
    }
    let mut r = if semi { Reading::PARAMS.0 } else { 0 };
    if upper | dot_or_escape {
        let mut i = 0;
        while i < bytes.len() {
            let ends_segment = |at: usize| matches!(bytes.get(at), None | Some(b'/' | b';'));
            match bytes[i] {
                b'%' => {
                    if bytes.get(i + 1..i + 3) == Some(b"20") && ends_segment(i + 3) {
                        r |= Reading::TRAILING.0;
                    }
                    // The escape's hex digits are not letters of the path.
                    i += 3;
                    continue;
                }
                b'.' if ends_segment(i + 1) => r |= Reading::TRAILING.0,
                b'A'..=b'Z' => r |= Reading::CASE.0,
                _ => {}
            }
            i += 1;
        }
    }
    Reading(r)
}

/// Cut trailing `.`, ` ` and `%20` from a segment.
fn cut_trailing(mut s: &str) -> &str {
    loop {
        if let Some(rest) = s.strip_suffix('.').or_else(|| s.strip_suffix(' ')) {
            s = rest;
        } else if let Some(rest) = s.strip_suffix("%20") {
            s = rest;
        } else {
            return s;
        }
    }
}

/// ASCII lower case, leaving percent-escapes' hex digits as normalized (upper case).
fn fold_case(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut escape = 0;
    for c in s.chars() {
        if escape > 0 {
            escape -= 1;
            out.push(c);
        } else if c == '%' {
            escape = 2;
            out.push(c);
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    Cow::Owned(out)
}

/// The normalized path `path` as an upstream following `reading` reads it, or `None` when
/// that reading has no sensible answer (it climbs above the root, or a segment is nothing
/// but dots and spaces), which the caller treats as ambiguous.
pub fn read(path: &str, reading: Reading) -> Option<String> {
    if reading.is_exact() {
        return Some(path.to_string());
    }
    let body = path.strip_prefix('/')?;
    let mut out: Vec<Cow<'_, str>> = Vec::new();
    let mut trailing_slash = false;
    let mut segments = body.split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        let mut s = seg;
        if reading.has(Reading::PARAMS) {
            s = s.split(';').next().unwrap_or("");
        }
        match s {
            "." => {
                trailing_slash = last;
                continue;
            }
            ".." => {
                out.pop()?;
                trailing_slash = last;
                continue;
            }
            _ => {}
        }
        if reading.has(Reading::TRAILING) {
            let cut = cut_trailing(s);
            if cut.is_empty() && !s.is_empty() {
                return None;
            }
            s = cut;
        }
        if s.is_empty() {
            trailing_slash = last;
            continue;
        }
        trailing_slash = false;
        out.push(if reading.has(Reading::CASE) {
            fold_case(s)
        } else {
            Cow::Borrowed(s)
        });
    }
    let mut res = String::with_capacity(path.len());
    for s in &out {
        res.push('/');
        res.push_str(s);
    }
    if res.is_empty() || trailing_slash {
        res.push('/');
    }
    Some(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_not_sensitive() {
        for p in [
            "/",
            "/a/b",
            "/static/app.js",
            "/a%3Fb",
            "/a%20b",
            "/x/.well-known",
        ] {
            assert_eq!(sensitive(p), Reading::EXACT, "{p}");
        }
    }

    #[test]
    fn sensitivity() {
        assert_eq!(sensitive("/Admin/x"), Reading::CASE);
        assert_eq!(sensitive("/admin;x=1/y"), Reading::PARAMS);
        assert_eq!(sensitive("/admin./x"), Reading::TRAILING);
        assert_eq!(sensitive("/admin%20/x"), Reading::TRAILING);
        assert_eq!(sensitive("/admin%20"), Reading::TRAILING);
        assert_eq!(sensitive("/admin."), Reading::TRAILING);
        assert_eq!(
            sensitive("/a.;x/b"),
            Reading::PARAMS.union(Reading::TRAILING)
        );
        assert_eq!(sensitive("/pub/..;/Admin"), Reading::LOOSE);
    }

    #[test]
    fn readings() {
        let r = |p, how| read(p, how);
        assert_eq!(r("/Admin/X", Reading::CASE).as_deref(), Some("/admin/x"));
        assert_eq!(r("/a%3Fb", Reading::CASE).as_deref(), Some("/a%3Fb"));
        assert_eq!(
            r("/admin;x=1/y", Reading::PARAMS).as_deref(),
            Some("/admin/y")
        );
        assert_eq!(
            r("/pub/..;/admin/x", Reading::PARAMS).as_deref(),
            Some("/admin/x")
        );
        assert_eq!(r("/..;/admin", Reading::PARAMS), None);
        assert_eq!(r("/a/;x/b", Reading::PARAMS).as_deref(), Some("/a/b"));
        assert_eq!(r("/a/b/..;", Reading::PARAMS).as_deref(), Some("/a/"));
        assert_eq!(r("/a/;x", Reading::PARAMS).as_deref(), Some("/a/"));
        assert_eq!(
            r("/admin./x", Reading::TRAILING).as_deref(),
            Some("/admin/x")
        );
        assert_eq!(
            r("/admin%20/x", Reading::TRAILING).as_deref(),
            Some("/admin/x")
        );
        assert_eq!(
            r("/admin. %20./x", Reading::TRAILING).as_deref(),
            Some("/admin/x")
        );
        assert_eq!(r("/.../x", Reading::TRAILING), None);
        assert_eq!(r("/a/", Reading::TRAILING).as_deref(), Some("/a/"));
        assert_eq!(
            r("/ADMIN.;v=1/x", Reading::LOOSE).as_deref(),
            Some("/admin/x")
        );
        // PARAMS before TRAILING: `..;` is a dot segment, not three characters to trim.
        assert_eq!(r("/a/b/..;/c", Reading::LOOSE).as_deref(), Some("/a/c"));
    }

    #[test]
    fn subsets_cover_every_combination_once() {
        let all: Vec<_> = Reading::LOOSE.subsets().collect();
        assert_eq!(all.len(), 7);
        let two: Vec<_> = Reading::CASE.union(Reading::TRAILING).subsets().collect();
        assert_eq!(two, vec![Reading::CASE, Reading::TRAILING, Reading(5)]);
        assert_eq!(Reading::EXACT.subsets().count(), 0);
    }
}
