//! Route matching: host (exact, then `*.suffix`, then any), then the longest path prefix
//! that ends on a segment boundary (`/api` matches `/api` and `/api/x`, never `/apix`).
//!
//! Lookups cost a handful of hash probes per path segment, independent of the number of
//! routes, so large route tables stay cheap.

use crate::config::RouteConfig;
use std::collections::HashMap;
use std::sync::Arc;

/// The host part of a route: an exact name or a `*.example.com` wildcard (which matches
/// `a.example.com` and `a.b.example.com`, not `example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// Stored with its leading dot: `.example.com`.
    Suffix(String),
}

impl HostPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let lower = s.trim_end_matches('.').to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, lower),
        };
        if name.is_empty()
            || !name
                .split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            return Err(format!("{s:?} is not a host name (or *.suffix wildcard)"));
        }
        Ok(if wild {
            Self::Suffix(format!(".{name}"))
        } else {
            Self::Exact(name)
        })
    }
}

/// Host as matched: lower-case, without port and trailing dot. Returns `None` for a Host
/// that is not a plausible host name (callers answer 400).
pub fn canonical_host(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal: keep the brackets, drop the port.
        let end = rest.find(']')?;
        let after = &rest[end + 1..];
        if !(after.is_empty()
            || (after.starts_with(':') && after[1..].bytes().all(|b| b.is_ascii_digit())))
        {
            return None;
        }
        if !rest[..end]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        return Some(format!("[{}]", rest[..end].to_ascii_lowercase()));
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) => {
                if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.len() > 5 {
                    return None;
                }
                h
            }
            None => raw,
        }
    };
    let host = host.trim_end_matches('.');
    if host.is_empty()
        || host.len() > 253
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

/// Keys come from the config, so a fast non-cryptographic hasher is safe here: request
/// paths only probe the table, they cannot insert colliding keys.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
struct PrefixTable {
    by_prefix: FastMap<String, usize>,
}

impl PrefixTable {
    fn lookup(&self, path: &str) -> Option<usize> {
        if self.by_prefix.is_empty() {
            return None;
        }
        if let Some(&i) = self.by_prefix.get(path) {
            return Some(i);
        }
        // Walk back over segment boundaries: "/a/b/c" tries "/a/b/", "/a/b", "/a/", "/a", "/".
        let bytes = path.as_bytes();
        let mut end = path.len();
        while let Some(pos) = bytes[..end].iter().rposition(|&b| b == b'/') {
            if pos + 1 < path.len() {
                if let Some(&i) = self.by_prefix.get(&path[..pos + 1]) {
                    return Some(i);
                }
            }
            if pos > 0 {
                if let Some(&i) = self.by_prefix.get(&path[..pos]) {
                    return Some(i);
                }
            }
            end = pos;
        }
        None
    }
}

/// Compiled routes.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<RouteConfig>>,
    exact: FastMap<String, PrefixTable>,
    /// Longest suffix first, so `*.a.example.com` wins over `*.example.com`.
    wildcard: Vec<(String, PrefixTable)>,
    any: PrefixTable,
}

impl RouteTable {
    pub fn new(routes: Vec<RouteConfig>) -> Self {
        let mut t = RouteTable::default();
        for (i, r) in routes.into_iter().enumerate() {
            let table = match &r.host {
                None => &mut t.any,
                Some(HostPattern::Exact(h)) => t.exact.entry(h.clone()).or_default(),
                Some(HostPattern::Suffix(s)) => match t.wildcard.iter().position(|(x, _)| x == s) {
                    Some(p) => &mut t.wildcard[p].1,
                    None => {
                        t.wildcard.push((s.clone(), PrefixTable::default()));
                        let last = t.wildcard.len() - 1;
                        &mut t.wildcard[last].1
                    }
                },
            };
            table.by_prefix.insert(r.prefix.clone(), i);
            t.routes.push(Arc::new(r));
        }
        t.wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        t
    }

    /// The route for a canonical host (see [`canonical_host`]) and a normalized path.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Arc<RouteConfig>> {
        if let Some(host) = host {
            if let Some(i) = self.exact.get(host).and_then(|t| t.lookup(path)) {
                return self.routes.get(i);
            }
            for (suffix, table) in &self.wildcard {
                if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                    if let Some(i) = table.lookup(path) {
                        return self.routes.get(i);
                    }
                }
            }
        }
        self.any.lookup(path).and_then(|i| self.routes.get(i))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<RouteConfig>> {
        self.routes.iter()
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// The path the upstream sees for a route with `strip_prefix`.
pub fn strip_prefix<'a>(prefix: &str, path: &'a str) -> std::borrow::Cow<'a, str> {
    let p = prefix.trim_end_matches('/');
    match path.strip_prefix(p) {
        Some("") => "/".into(),
        Some(rest) if rest.starts_with('/') => rest.into(),
        _ => path.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Access;
    use crate::upstream::Upstream;
    use std::time::Duration;

    fn route(host: Option<&str>, prefix: &str, name: &str) -> RouteConfig {
        let up = Arc::new(Upstream::new(
            "u".into(),
            vec![("127.0.0.1:1".into(), "127.0.0.1:1".parse().unwrap())],
            None,
            Duration::from_secs(1),
            Duration::from_secs(1),
        ));
        RouteConfig {
            name: name.into(),
            host: host.map(|h| HostPattern::parse(h).unwrap()),
            prefix: prefix.into(),
            upstream: up,
            access: Access::Public,
            allow_users: vec![],
            allow_groups: vec![],
            strip_prefix: false,
            issues_sessions: false,
            bearer: false,
        }
    }

    fn name<'a>(t: &'a RouteTable, host: Option<&str>, path: &str) -> Option<&'a str> {
        t.find(host, path).map(|r| &*r.name)
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let t = RouteTable::new(vec![
            route(None, "/", "root"),
            route(None, "/api", "api"),
            route(None, "/api/v2/", "v2"),
        ]);
        assert_eq!(name(&t, None, "/"), Some("root"));
        assert_eq!(name(&t, None, "/x"), Some("root"));
        assert_eq!(name(&t, None, "/api"), Some("api"));
        assert_eq!(name(&t, None, "/api/"), Some("api"));
        assert_eq!(name(&t, None, "/api/users"), Some("api"));
        assert_eq!(name(&t, None, "/apix"), Some("root"));
        assert_eq!(name(&t, None, "/api/v2"), Some("api"));
        assert_eq!(name(&t, None, "/api/v2/x"), Some("v2"));
    }

    #[test]
    fn hosts_exact_then_wildcard_then_any() {
        let t = RouteTable::new(vec![
            route(Some("app.example.com"), "/", "exact"),
            route(Some("*.example.com"), "/", "wild"),
            route(Some("*.deep.example.com"), "/", "deep"),
            route(None, "/only", "any"),
        ]);
        assert_eq!(name(&t, Some("app.example.com"), "/x"), Some("exact"));
        assert_eq!(name(&t, Some("b.example.com"), "/x"), Some("wild"));
        assert_eq!(name(&t, Some("a.deep.example.com"), "/x"), Some("deep"));
        assert_eq!(name(&t, Some("example.com"), "/x"), None);
        assert_eq!(name(&t, Some("example.com"), "/only"), Some("any"));
        assert_eq!(name(&t, Some("evilexample.com"), "/x"), None);
        assert_eq!(name(&t, None, "/x"), None);
    }

    #[test]
    fn canonical_hosts() {
        assert_eq!(
            canonical_host("App.Example.com:8443").as_deref(),
            Some("app.example.com")
        );
        assert_eq!(
            canonical_host("example.com.").as_deref(),
            Some("example.com")
        );
        assert_eq!(canonical_host("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(canonical_host("a b"), None);
        assert_eq!(canonical_host("a/b"), None);
        assert_eq!(canonical_host("x:"), None);
        assert_eq!(canonical_host(""), None);
        assert_eq!(canonical_host("user@host"), None);
    }

    #[test]
    fn prefix_stripping() {
        assert_eq!(strip_prefix("/api", "/api/x"), "/x");
        assert_eq!(strip_prefix("/api", "/api"), "/");
        assert_eq!(strip_prefix("/api/", "/api/x"), "/x");
        assert_eq!(strip_prefix("/", "/x"), "/x");
    }
}
