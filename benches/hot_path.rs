//! Micro-benchmarks of the per-request hot path: cookie verification, a session lookup
//! that hits the memory store, path normalization, the route decision (with and without
//! the loose readings), owned-header stripping and injection.
//! Run with `cargo bench`; numbers are printed by criterion, nothing is asserted.

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::identity::{Identity, IdentityHeaders};
use portcullis::pathnorm;
use portcullis::router::{Access, Route};
use portcullis::router::{HostPattern, RouteTable};
use portcullis::session::cookie::{self, SessionId};
use portcullis::session::keys::KeyRing;
use portcullis::session::store::{MemoryStore, SessionRecord, SessionStore};
use portcullis::upstream::Upstream;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

fn routes(n: usize) -> RouteTable {
    let up = Arc::new(Upstream::new(
        "u".into(),
        vec![("127.0.0.1:1".into(), "127.0.0.1:1".parse().unwrap())],
        None,
        Duration::from_secs(1),
        Duration::from_secs(1),
    ));
    RouteTable::new(
        (0..n)
            .map(|i| Route {
                name: format!("r{i}").into(),
                host: (i % 3 == 0)
                    .then(|| HostPattern::parse(&format!("h{i}.example.com")).unwrap()),
                prefix: format!("/svc{i}/api"),
                upstream: up.clone(),
                access: Access::Authenticated,
                allow_users: vec![],
                allow_groups: vec![],
                strip_prefix: false,
                issues_sessions: false,
                bearer: false,
                allow_encoded: Default::default(),
                max_auth_age: None,
                require_mfa: false,
            })
            .collect(),
    )
    .expect("distinct routes")
}

fn bench(c: &mut Criterion) {
    let keys = KeyRing::from_raw_keys(&[(0u8..32).collect()]);
    let rng = ring::rand::SystemRandom::new();
    let id = SessionId::generate(&rng).unwrap();
    let value = id.encode(&keys);
    c.bench_function("cookie_verify", |b| {
        b.iter(|| cookie::verify(black_box(&value), &keys).unwrap())
    });

    let store = MemoryStore::new(1_000_000);
    for i in 0..10_000u32 {
        let other = SessionId::generate(&rng).unwrap();
        store
            .create(
                other.store_key(),
                SessionRecord::new(
                    Identity {
                        user: format!("u{i}"),
                        email: String::new(),
                        groups: vec![],
                    },
                    0,
                ),
            )
            .unwrap();
    }
    store
        .create(
            id.store_key(),
            SessionRecord::new(
                Identity {
                    user: "me".into(),
                    email: String::new(),
                    groups: vec![],
                },
                0,
            ),
        )
        .unwrap();
    c.bench_function("cookie_verify_and_store_hit", |b| {
        b.iter(|| {
            let id = cookie::verify(black_box(&value), &keys).unwrap();
            let key = id.store_key();
            let rec = store.load(&key).unwrap().unwrap();
            store.touch(&key, &rec, 1).unwrap();
            rec
        })
    });

    // The route decision as a request makes it (every reading must agree; design.md step
    // 4). For a plain path only the exact reading is looked up; `route_match_suspect`
    // has an upper-case letter, so every case-folded combination is computed too.
    for n in [10, 1000] {
        let t = routes(n);
        let plain = pathnorm::normalize("/svc3/api/users/42/profile").unwrap();
        c.bench_function(&format!("route_match_{n}"), |b| {
            b.iter(|| {
                t.choose(
                    black_box(Some("h3.example.com")),
                    black_box(&plain.path),
                    plain.traits,
                )
            })
        });
    }
    let t = routes(10);
    let suspect = pathnorm::normalize("/svc3/api/Users/42/profile").unwrap();
    c.bench_function("route_match_suspect", |b| {
        b.iter(|| {
            t.choose(
                black_box(Some("h3.example.com")),
                black_box(&suspect.path),
                suspect.traits,
            )
        })
    });
    c.bench_function("path_normalize", |b| {
        b.iter(|| pathnorm::normalize(black_box("/svc3/api/users/42/profile")))
    });

    let ih = IdentityHeaders::new(
        "X-Forwarded-User",
        "X-Forwarded-Email",
        "X-Forwarded-Groups",
        ["Remote-User"].into_iter(),
    )
    .unwrap();
    let who = Identity {
        user: "alice".into(),
        email: "alice@example.com".into(),
        groups: vec!["a".into(), "b".into()],
    };
    let mut base = pingora::http::RequestHeader::build("GET", b"/x", None).unwrap();
    for (k, v) in [
        ("host", "app"),
        ("user-agent", "bench"),
        ("accept", "*/*"),
        ("x-forwarded-user", "spoof"),
        ("cookie", "a=b"),
    ] {
        base.append_header(k, v).unwrap();
    }
    c.bench_function("identity_strip_and_inject", |b| {
        b.iter(|| {
            let mut r = base.clone();
            ih.strip(&mut r);
            ih.inject(&mut r, &who).unwrap();
            r
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
