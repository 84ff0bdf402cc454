//! Route matching: host (exact, then `*.suffix`, then any), then the longest path prefix
//! that ends on a segment boundary (`/api` matches `/api` and `/api/x`, never `/apix`).
//!
//! Lookups cost a handful of hash probes per path segment, independent of the number of
//! routes, so large route tables stay cheap. A request's route is chosen only when every
//! reading of its path ([`crate::readings`]) chooses the same one; the other readings are
//! computed only for paths (or route tables) where they can differ from the exact one.

use crate::pathnorm::{self, EncodedSet, PathTraits};
use crate::readings::{self, Reading};
use crate::upstream::Upstream;
use std::collections::HashMap;
use std::sync::Arc;

/// Whether a route needs a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Authenticated,
    Public,
}

/// One compiled `[[route]]`: where its requests go and who may make them.
#[derive(Debug)]
pub struct Route {
    /// Used as the metrics label and in logs: never a raw request path.
    pub name: Arc<str>,
    pub host: Option<HostPattern>,
    pub prefix: String,
    pub upstream: Arc<Upstream>,
    pub access: Access,
    pub allow_users: Vec<String>,
    pub allow_groups: Vec<String>,
    pub strip_prefix: bool,
    /// The upstream may start and end sessions with `Portcullis-Login`/`-Logout`.
    pub issues_sessions: bool,
    /// `Authorization: Bearer <JWT>` from a `[[jwt]]` issuer is accepted here.
    pub bearer: bool,
    /// Encoded delimiters (`%2F`, `%3B`, …) this route accepts in paths.
    pub allow_encoded: EncodedSet,
    /// Step-up: the session's last authentication must be younger than this.
    pub max_auth_age: Option<std::time::Duration>,
    /// Step-up: only sessions whose login used a second factor.
    pub require_mfa: bool,
}

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
        let lower = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
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

/// Host as matched: lower-case, without port and one trailing dot. Returns `None` for a
/// Host that is not a plausible host name (callers answer 400).
pub fn canonical_host(raw: &str) -> Option<String> {
    split_authority(raw).map(|(host, _)| host)
}

/// An authority (`host[:port]`) as (canonical host, port if given). Host names compare
/// ASCII case-insensitively and `example.com.` is `example.com` (one trailing dot, the
/// DNS root, is dropped; two are not a name), so neither routing nor the CSRF origin check
/// can be steered by the spelling of the same host.
pub fn split_authority(raw: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = parse_authority(raw)?;
    // Most Host headers are already lower-case: copy rather than map byte by byte.
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        host.to_ascii_lowercase()
    } else {
        host.to_string()
    };
    Some((host, port))
}

/// Whether `raw` is an authority `split_authority` accepts, without building its
/// canonical form (the hygiene step only needs the verdict).
pub fn is_valid_authority(raw: &str) -> bool {
    parse_authority(raw).is_some()
}

/// 1-5 ASCII digits, at most 65535.
fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 {
        return None;
    }
    let mut n: u32 = 0;
    for b in p.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(b - b'0');
    }
    u16::try_from(n).ok()
}

/// The host part (one trailing dot dropped, case as sent) and the port. One pass over the
/// bytes: this runs on every request, twice.
fn parse_authority(raw: &str) -> Option<(&str, Option<u16>)> {
    let raw = raw.trim();
    if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal: keep the brackets.
        let end = rest.find(']')?;
        let after = &rest[end + 1..];
        let p = match after.strip_prefix(':') {
            Some(p) => Some(parse_port(p)?),
            None if after.is_empty() => None,
            None => return None,
        };
        let inner = &rest[..end];
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        return Some((&raw[..end + 2], p));
    }
    let (host, p) = match raw.rfind(':') {
        Some(i) => (&raw[..i], Some(parse_port(&raw[i + 1..])?)),
        None => (raw, None),
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.len() > 253 {
        return None;
    }
    // Labels of [A-Za-z0-9_-], separated by single dots, none empty: the start counts as
    // a dot so that a leading dot, `..` and a (second) trailing dot all fail the same test.
    let mut after_dot = true;
    for b in host.bytes() {
        if b == b'.' {
            if after_dot {
                return None;
            }
            after_dot = true;
        } else if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            after_dot = false;
        } else {
            return None;
        }
    }
    if after_dot {
        return None;
    }
    Some((host, p))
}

/// Keys come from the config, so a fast non-cryptographic hasher is safe here: request
/// paths only probe the table, they cannot insert colliding keys.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The prefixes of one host bucket, once per [`Reading`]: under a reading, a path is
/// matched against the route prefixes read the same way (`/Admin` under the
/// case-insensitive reading is `/admin`, for the path and the route alike). The exact
/// reading, which every request uses, has its own field; the others are boxed so the
/// bucket stays small.
#[derive(Debug, Default)]
struct PrefixTable {
    exact: FastMap<String, usize>,
    loose: Box<[FastMap<String, usize>; Reading::COUNT - 1]>,
}

impl PrefixTable {
    fn map(&self, reading: Reading) -> &FastMap<String, usize> {
        match reading.index() {
            0 => &self.exact,
            // A reading is three bits, so 1..=7 here: always inside `loose`.
            i => &self.loose[i - 1],
        }
    }

    /// Add a route's prefix under every reading; `Err(other)` names a route whose prefix
    /// reads the same under some reading.
    fn insert(&mut self, prefix: &str, route: usize) -> Result<(), (usize, Reading)> {
        for i in 0..Reading::COUNT {
            let reading = Reading::from_index(i);
            // A prefix with no answer under a reading (`/...`) cannot be reached through it.
            let Some(key) = readings::read(prefix, reading) else {
                continue;
            };
            let map = match i {
                0 => &mut self.exact,
                i => &mut self.loose[i - 1],
            };
            match map.get(&key) {
                Some(&other) if other != route => return Err((other, reading)),
                Some(_) => {}
                None => {
                    map.insert(key, route);
                }
            }
        }
        Ok(())
    }

    fn lookup(&self, path: &str, reading: Reading) -> Option<usize> {
        let by_prefix = self.map(reading);
        if by_prefix.is_empty() {
            return None;
        }
        if let Some(&i) = by_prefix.get(path) {
            return Some(i);
        }
        // Walk back over segment boundaries: "/a/b/c" tries "/a/b/", "/a/b", "/a/", "/a", "/".
        let bytes = path.as_bytes();
        let mut end = path.len();
        while let Some(pos) = bytes[..end].iter().rposition(|&b| b == b'/') {
            if pos + 1 < path.len() {
                if let Some(&i) = by_prefix.get(&path[..pos + 1]) {
                    return Some(i);
                }
            }
            if pos > 0 {
                if let Some(&i) = by_prefix.get(&path[..pos]) {
                    return Some(i);
                }
            }
            end = pos;
        }
        None
    }
}

/// Two routes whose prefixes (on the same host) read the same under some reading: one of
/// them could never be chosen without ambiguity. Indexes are into the list given to
/// [`RouteTable::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteCollision {
    pub first: usize,
    pub second: usize,
    pub reading: Reading,
}

/// Why no route was chosen for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoute {
    /// No route for this host and path (`404`).
    Unknown,
    /// Readings of the path disagree about the route (`400 ambiguous_path`). Boxed: the
    /// answer of every request carries this type, and this variant is rare.
    Ambiguous(Box<Ambiguity>),
    /// Encoded delimiters the chosen route does not allow (`400 encoded_character`).
    Encoded(EncodedSet),
}

/// Which routes two readings of a path chose. Names are route names (or `"none"`), safe
/// for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ambiguity {
    pub reading: Reading,
    pub exact: Arc<str>,
    pub other: Arc<str>,
}

/// Compiled routes.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    exact: FastMap<String, PrefixTable>,
    /// Longest suffix first, so `*.a.example.com` wins over `*.example.com`.
    wildcard: Vec<(String, PrefixTable)>,
    any: PrefixTable,
    /// Readings under which some route prefix differs from its exact form (`/Reports`,
    /// `/a;b`): those must be checked on every path, not only on paths that look suspect.
    prefix_sensitive: Reading,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> Result<Self, RouteCollision> {
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
            table
                .insert(&r.prefix, i)
                .map_err(|(first, reading)| RouteCollision {
                    first,
                    second: i,
                    reading,
                })?;
            for rule in [Reading::CASE, Reading::PARAMS, Reading::TRAILING] {
                if readings::read(&r.prefix, rule).as_deref() != Some(r.prefix.as_str()) {
                    t.prefix_sensitive = t.prefix_sensitive.union(rule);
                }
            }
            t.routes.push(Arc::new(r));
        }
        t.wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        Ok(t)
    }

    fn lookup(&self, host: Option<&str>, path: &str, reading: Reading) -> Option<usize> {
        if let Some(host) = host {
            if let Some(i) = self.exact.get(host).and_then(|t| t.lookup(path, reading)) {
                return Some(i);
            }
            for (suffix, table) in &self.wildcard {
                if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                    if let Some(i) = table.lookup(path, reading) {
                        return Some(i);
                    }
                }
            }
        }
        self.any.lookup(path, reading)
    }

    /// The route for a canonical host (see [`canonical_host`]) and a normalized path, on
    /// the exact reading alone. Requests go through [`RouteTable::choose`].
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Arc<Route>> {
        self.lookup(host, path, Reading::EXACT)
            .and_then(|i| self.routes.get(i))
    }

    fn label(&self, i: Option<usize>) -> Arc<str> {
        i.and_then(|i| self.routes.get(i))
            .map_or_else(|| Arc::from("none"), |r| r.name.clone())
    }

    /// The route index every reading of `path` agrees on (`Ok(None)`: no route under any),
    /// given the exact reading's answer and the readings `path` is sensitive to.
    fn agreed(
        &self,
        host: Option<&str>,
        path: &str,
        exact: Option<usize>,
        suspect: Reading,
    ) -> Result<Option<usize>, NoRoute> {
        for reading in suspect.union(self.prefix_sensitive).subsets() {
            let other = readings::read(path, reading).map(|p| self.lookup(host, &p, reading));
            if other != Some(exact) {
                return Err(NoRoute::Ambiguous(Box::new(Ambiguity {
                    reading,
                    exact: self.label(exact),
                    other: self.label(other.flatten()),
                })));
            }
        }
        Ok(exact)
    }

    /// design.md step 4 with step 2's encoded delimiters: the route for a canonical host
    /// and a normalized path, chosen only when every reading of the path chooses it and
    /// the route allows the encoded delimiters the path carries. With delimiters the route
    /// allows, the path as an upstream that decodes them reads it must choose the same
    /// route too (`/api/x%2F..%2F..%2Fadmin` must not reach `/admin`'s app as `/api`'s).
    pub fn choose(
        &self,
        host: Option<&str>,
        path: &str,
        traits: PathTraits,
    ) -> Result<&Arc<Route>, NoRoute> {
        let exact = self.lookup(host, path, Reading::EXACT);
        if traits.suspect.union(self.prefix_sensitive).is_exact() && traits.encoded.is_empty() {
            // Most requests: every reading is the exact path itself.
            return exact
                .and_then(|i| self.routes.get(i))
                .ok_or(NoRoute::Unknown);
        }
        self.choose_carefully(host, path, traits, exact)
    }

    // Kept out of line so that `choose`, which nearly every request ends in, stays small
    // enough to inline into the request filter.
    #[inline(never)]
    fn choose_carefully(
        &self,
        host: Option<&str>,
        path: &str,
        traits: PathTraits,
        exact: Option<usize>,
    ) -> Result<&Arc<Route>, NoRoute> {
        let chosen = self.agreed(host, path, exact, traits.suspect)?;
        let route = chosen.and_then(|i| self.routes.get(i));
        let allowed = route.map_or(EncodedSet::NONE, |r| r.allow_encoded);
        let refused = traits.encoded.without(allowed);
        if !refused.is_empty() {
            return Err(NoRoute::Encoded(refused));
        }
        let route = route.ok_or(NoRoute::Unknown)?;
        if !traits.encoded.is_empty() {
            let decoded = pathnorm::decode_delimiters(path).ok().map(|d| {
                let exact = self.lookup(host, &d.path, Reading::EXACT);
                self.agreed(host, &d.path, exact, d.traits.suspect)
            });
            if !matches!(decoded, Some(Ok(Some(i))) if Some(i) == chosen) {
                return Err(NoRoute::Ambiguous(Box::new(Ambiguity {
                    reading: Reading::EXACT,
                    exact: route.name.clone(),
                    other: match decoded {
                        Some(Ok(i)) => self.label(i),
                        _ => Arc::from("none"),
                    },
                })));
            }
        }
        Ok(route)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
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
    use std::time::Duration;

    fn route(host: Option<&str>, prefix: &str, name: &str) -> Route {
        let up = Arc::new(Upstream::new(
            "u".into(),
            vec![("127.0.0.1:1".into(), "127.0.0.1:1".parse().unwrap())],
            None,
            Duration::from_secs(1),
            Duration::from_secs(1),
        ));
        Route {
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
            allow_encoded: Default::default(),
            max_auth_age: None,
            require_mfa: false,
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
        ])
        .unwrap();
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
        ])
        .unwrap();
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
        assert_eq!(
            canonical_host("APP.example.com.:443").as_deref(),
            Some("app.example.com")
        );
        assert_eq!(canonical_host("example.com.."), None);
        assert_eq!(canonical_host("a..b"), None);
        assert_eq!(canonical_host("."), None);
        assert_eq!(canonical_host("a:99999"), None);
        assert_eq!(
            split_authority("[::1]:8443"),
            Some(("[::1]".into(), Some(8443)))
        );
        assert_eq!(split_authority("A.test."), Some(("a.test".into(), None)));
    }

    fn choose<'a>(t: &'a RouteTable, path: &str) -> Result<&'a str, NoRoute> {
        let n = pathnorm::normalize(path).expect("normal path");
        t.choose(None, &n.path, n.traits).map(|r| &*r.name)
    }

    fn is_ambiguous(r: Result<&str, NoRoute>) -> bool {
        matches!(r, Err(NoRoute::Ambiguous(_)))
    }

    #[test]
    fn every_reading_must_choose_the_same_route() {
        let t = RouteTable::new(vec![
            route(None, "/", "root"),
            route(None, "/admin", "admin"),
        ])
        .unwrap();
        assert_eq!(choose(&t, "/admin/x"), Ok("admin"));
        assert_eq!(
            choose(&t, "/x/Admin"),
            Ok("root"),
            "case alone moves nothing here"
        );
        assert_eq!(choose(&t, "/static/app.js"), Ok("root"));
        for p in [
            "/Admin/x",
            "/ADMIN/x",
            "/admin;x=1/y",
            "/pub/..;/admin/x",
            "/admin./x",
            "/admin%20/x",
            "/admin.%20./x",
            "/ADMIN.;x/y",
        ] {
            assert!(is_ambiguous(choose(&t, p)), "{p}: {:?}", choose(&t, p));
        }
        for p in [
            "/admin%23/x",
            "/admin%3f/x",
            "/admin%3b/x",
            "/admin%2f",
            "/a%25",
        ] {
            assert!(
                matches!(choose(&t, p), Err(NoRoute::Encoded(_))),
                "{p}: {:?}",
                choose(&t, p)
            );
        }
    }

    #[test]
    fn routes_with_upper_case_or_dots_are_matched_loosely_too() {
        let t = RouteTable::new(vec![
            route(None, "/", "root"),
            route(None, "/Reports", "rep"),
        ])
        .unwrap();
        assert_eq!(choose(&t, "/Reports/q1"), Ok("rep"));
        // A case-insensitive upstream serves /reports as /Reports: never as the root route.
        assert!(is_ambiguous(choose(&t, "/reports/q1")));
        assert!(is_ambiguous(choose(&t, "/REPORTS")));
    }

    #[test]
    fn allowed_encoded_delimiters_must_not_move_the_route() {
        let mut api = route(None, "/api/projects", "api");
        api.allow_encoded = EncodedSet::parse_one("/").unwrap();
        let t = RouteTable::new(vec![
            route(None, "/", "root"),
            route(None, "/admin", "admin"),
            api,
        ])
        .unwrap();
        assert_eq!(choose(&t, "/api/projects/group%2Fproject"), Ok("api"));
        assert!(matches!(
            choose(&t, "/api/projects/a%3Bb"),
            Err(NoRoute::Encoded(_))
        ));
        assert!(is_ambiguous(choose(&t, "/api/projects/..%2F..%2Fadmin")));
        assert!(matches!(choose(&t, "/x%2Fy"), Err(NoRoute::Encoded(_))));
    }

    #[test]
    fn routes_that_read_the_same_collide_at_load() {
        for (a, b) in [
            ("/api", "/API"),
            ("/api", "/api."),
            ("/api", "/api;v=1"),
            ("/Api", "/aPI"),
        ] {
            let c = RouteTable::new(vec![route(None, a, "a"), route(None, b, "b")]).unwrap_err();
            assert_eq!((c.first, c.second), (0, 1), "{a} {b}");
        }
        // Different hosts never collide.
        assert!(RouteTable::new(vec![
            route(Some("a.test"), "/api", "a"),
            route(Some("b.test"), "/API", "b")
        ])
        .is_ok());
    }

    #[test]
    fn prefix_stripping() {
        assert_eq!(strip_prefix("/api", "/api/x"), "/x");
        assert_eq!(strip_prefix("/api", "/api"), "/");
        assert_eq!(strip_prefix("/api/", "/api/x"), "/x");
        assert_eq!(strip_prefix("/", "/x"), "/x");
    }
}
