//! Property test of design.md step 4: for any path built from hostile pieces, the gateway
//! either refuses it or forwards it under the route that every reading of the forwarded
//! path chooses — exact, ASCII case-folded, `;parameters` cut, trailing dots/spaces cut,
//! and each combination of those (an upstream may apply several), plus, on a route that
//! allows encoded `/`, the reading of an upstream that decodes it.
//!
//! The readings and the route matching here are written independently of the gateway's
//! (plain string work, a linear scan over routes), so that a mistake in one is caught by
//! the other. Failing cases are shrunk by proptest and kept in
//! `tests/path_readings.proptest-regressions`; the named cases at the bottom are the
//! ones from the original report.

use portcullis::pathnorm::{self, EncodedSet};
use portcullis::router::{Access, Route};
use portcullis::router::{NoRoute, RouteTable};
use portcullis::upstream::Upstream;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use std::sync::Arc;
use std::time::Duration;

/// (prefix, name, access, allowed encoded delimiters)
const ROUTES: [(&str, &str, Access, &str); 7] = [
    ("/", "root", Access::Authenticated, ""),
    ("/admin", "admin", Access::Authenticated, ""),
    ("/pub", "pub", Access::Public, ""),
    ("/api/v1", "api", Access::Authenticated, ""),
    ("/Reports", "reports", Access::Authenticated, ""),
    ("/files/", "files", Access::Public, ""),
    ("/git/projects", "git", Access::Authenticated, "/"),
];

fn table() -> RouteTable {
    let up = Arc::new(Upstream::new(
        "app".into(),
        vec![("127.0.0.1:1".into(), "127.0.0.1:1".parse().unwrap())],
        None,
        Duration::from_secs(1),
        Duration::from_secs(1),
    ));
    RouteTable::new(
        ROUTES
            .iter()
            .map(|&(prefix, name, access, allow)| Route {
                name: name.into(),
                host: None,
                prefix: prefix.into(),
                upstream: up.clone(),
                access,
                allow_users: vec![],
                allow_groups: if name == "admin" {
                    vec!["admin".into()]
                } else {
                    vec![]
                },
                strip_prefix: false,
                issues_sessions: false,
                bearer: false,
                max_auth_age: None,
                require_mfa: false,
                allow_encoded: if allow.is_empty() {
                    EncodedSet::NONE
                } else {
                    EncodedSet::parse_one(allow).unwrap()
                },
            })
            .collect(),
    )
    .expect("routes are distinct under every reading")
}

// ---- the reference: one reading rule at a time, on the path the upstream receives ----

/// Lower-case ASCII letters outside percent-escapes.
fn ref_fold(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.extend_from_slice(&b[i..i + 3]);
            i += 3;
        } else {
            out.push(b[i].to_ascii_lowercase());
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Resolve `.`/`..` and empty segments; `None` above the root.
fn ref_resolve(segments: Vec<String>) -> Option<String> {
    let trailing = matches!(segments.last().map(String::as_str), Some("" | "." | ".."));
    let mut stack: Vec<String> = Vec::new();
    for s in segments {
        match s.as_str() {
            "" | "." => {}
            ".." => {
                stack.pop()?;
            }
            _ => stack.push(s),
        }
    }
    let mut p = format!("/{}", stack.join("/"));
    if trailing && !p.ends_with('/') {
        p.push('/');
    }
    Some(p)
}

fn segments(path: &str) -> Vec<String> {
    path[1..].split('/').map(str::to_string).collect()
}

fn ref_cut_params(path: &str) -> Option<String> {
    ref_resolve(
        segments(path)
            .into_iter()
            .map(|s| s.split(';').next().unwrap_or("").to_string())
            .collect(),
    )
}

/// Trailing `.`/space/`%20` cut; a segment of nothing but those has no reading.
fn ref_cut_trailing(path: &str) -> Option<String> {
    let mut out = Vec::new();
    for s in segments(path) {
        if s == "." || s == ".." {
            out.push(s);
            continue;
        }
        let mut t = s.as_str();
        while let Some(r) = t
            .strip_suffix("%20")
            .or_else(|| t.strip_suffix('.'))
            .or_else(|| t.strip_suffix(' '))
        {
            t = r;
        }
        if t.is_empty() && !s.is_empty() {
            return None;
        }
        out.push(t.to_string());
    }
    ref_resolve(out)
}

/// A combination of rules, applied as an upstream would: fold, cut `;`, cut trailing.
fn ref_read(path: &str, fold: bool, params: bool, trailing: bool) -> Option<String> {
    let mut p = path.to_string();
    if fold {
        p = ref_fold(&p);
    }
    if params {
        p = ref_cut_params(&p)?;
    }
    if trailing {
        p = ref_cut_trailing(&p)?;
    }
    Some(p)
}

/// Longest route prefix on a segment boundary, both sides read the same way.
fn ref_route(path: &str, fold: bool, params: bool, trailing: bool) -> Option<&'static str> {
    ROUTES
        .iter()
        .filter_map(|&(prefix, name, _, _)| {
            let pre = ref_read(prefix, fold, params, trailing)?;
            let under = path == pre
                || pre.ends_with('/') && path.starts_with(&pre)
                || path.starts_with(&pre) && path.as_bytes().get(pre.len()) == Some(&b'/');
            under.then_some((pre.len(), name))
        })
        .max()
        .map(|(_, name)| name)
}

/// `%2F` decoded as `/` (the reading of an upstream that decodes before it splits).
fn ref_decode_slash(path: &str) -> Option<String> {
    ref_resolve(segments(&path.replace("%2F", "/")))
}

/// The property, for one raw path: `Err` explains a violation.
fn check(t: &RouteTable, raw: &str) -> Result<(), String> {
    let Ok(norm) = pathnorm::normalize(raw) else {
        return Ok(()); // refused before routing
    };
    // The shortcut normalize takes (noting suspect bytes as it decodes) must agree with
    // the full scan: the router skips every other reading when it says "exact".
    if norm.traits.suspect != portcullis::readings::sensitive(&norm.path) {
        return Err(format!(
            "{raw}: normalize says {:?}, the scan says {:?}",
            norm.traits.suspect,
            portcullis::readings::sensitive(&norm.path)
        ));
    }
    let chosen = match t.choose(None, &norm.path, norm.traits) {
        Ok(r) => r.name.to_string(),
        Err(NoRoute::Ambiguous(_) | NoRoute::Encoded(_) | NoRoute::Unknown) => return Ok(()),
    };
    let upstream_path = &norm.path;
    let mut views = vec![upstream_path.clone()];
    if let Some(d) =
        ref_decode_slash(upstream_path).filter(|_| norm.traits.encoded != EncodedSet::NONE)
    {
        views.push(d);
    } else if norm.traits.encoded != EncodedSet::NONE {
        return Err(format!(
            "{raw}: forwarded to {chosen} though decoding its %2F climbs above the root"
        ));
    }
    for view in &views {
        for rules in 0..8u8 {
            let (f, p, tr) = (rules & 1 != 0, rules & 2 != 0, rules & 4 != 0);
            let Some(read) = ref_read(view, f, p, tr) else {
                return Err(format!(
                    "{raw}: forwarded as {upstream_path} to {chosen}, but reading (fold={f}, params={p}, trailing={tr}) of {view} has no answer"
                ));
            };
            let theirs = ref_route(&read, f, p, tr);
            if theirs != Some(chosen.as_str()) {
                return Err(format!(
                    "{raw}: forwarded as {upstream_path} to route {chosen}, but an upstream reading it with (fold={f}, params={p}, trailing={tr}) sees {read}, route {theirs:?}"
                ));
            }
        }
    }
    Ok(())
}

/// Pieces that equal, case-vary or prefix a protected route, dot segments and their
/// disguises, `;` parameters, trailing dots and spaces, escapes reserved and unreserved.
const PIECES: &[&str] = &[
    "admin",
    "Admin",
    "ADMIN",
    "adm",
    "admins",
    "administrator",
    "pub",
    "PUB",
    "api",
    "v1",
    "V1",
    "Reports",
    "reports",
    "REPORTS",
    "files",
    "Files",
    "git",
    "projects",
    "x",
    "",
    ".",
    "..",
    "..;",
    ".;",
    ";",
    ";x",
    ";x=1",
    "admin;x=1",
    "admin;",
    "admin.",
    "admin..",
    "admin. ",
    "admin%20",
    "admin%20.",
    "...",
    "..%20",
    ". ",
    "%2e",
    "%2E%2e",
    "%2e%2e;",
    "%61dmin",
    "%41DMIN",
    "adm%69n",
    "admin%3b",
    "admin%3B",
    "admin%3f",
    "admin%23",
    "admin%25",
    "admin%2f",
    "a%2Fb",
    "..%2F",
    "..%2f..%2fadmin",
    "%2e%2e%2fadmin",
    "%5c",
    "admin%5c",
    "%00",
    "%zz",
    "%",
    "%7e",
    "~",
    "a.b",
    "v1.",
    "Api",
    "pub;jsessionid=1",
];

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(PIECES).prop_map(str::to_string),
        1 => "[a-zA-Z.;% 0-9]{0,5}",
    ]
}

fn hostile_path() -> impl Strategy<Value = String> {
    (prop::collection::vec(piece(), 1..7), any::<bool>()).prop_map(|(segs, slash)| {
        let mut p = format!("/{}", segs.join("/"));
        if slash {
            p.push('/');
        }
        p
    })
}

proptest! {
    #![proptest_config(Config {
        cases: 20_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..Config::default()
    })]

    #[test]
    fn every_forwarded_path_is_read_as_its_route_by_every_upstream(path in hostile_path()) {
        let t = table();
        if let Err(why) = check(&t, &path) {
            return Err(TestCaseError::fail(why));
        }
    }
}

#[test]
fn the_reference_agrees_with_plain_paths() {
    // The reference is not vacuous: plain paths are forwarded and it names their routes.
    let t = table();
    for (path, route) in [
        ("/admin/users", "admin"),
        ("/pub/x", "pub"),
        ("/Reports/2026", "reports"),
        ("/files/a.txt", "files"),
        ("/git/projects/group%2Fproject", "git"),
        ("/other", "root"),
    ] {
        let n = pathnorm::normalize(path).unwrap();
        assert_eq!(
            t.choose(None, &n.path, n.traits)
                .map(|r| r.name.to_string())
                .ok()
                .as_deref(),
            Some(route),
            "{path}"
        );
        assert_eq!(check(&t, path), Ok(()), "{path}");
        let loose = ref_read(&n.path, true, true, true).unwrap();
        assert_eq!(ref_route(&loose, true, true, true), Some(route), "{path}");
    }
}

#[test]
fn the_reported_bypasses_are_refused() {
    let t = table();
    for path in [
        "/Admin/x",
        "/ADMIN/x",
        "/admin;x=1/y",
        "/pub/..;/admin/x",
        "/admin./x",
        "/admin%20/x",
        "/admin%23/x",
        "/admin%3f/x",
        "/admin%3b/x",
        "/reports/2026",
        "/git/projects/..%2F..%2Fadmin",
    ] {
        let n = pathnorm::normalize(path).unwrap();
        assert!(
            t.choose(None, &n.path, n.traits).is_err(),
            "{path} was routed"
        );
    }
}
