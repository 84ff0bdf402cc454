//! Several gateway instances sharing two real `memcached` servers: sessions spread over
//! both, login on one instance and use on another, logout and revocation seen at once
//! everywhere (no near-cache by default), a frozen or killed server costing bounded time
//! and only its own sessions, recovery, and a SIGKILLed gateway.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const COOKIE: &str = "session";
const TOKEN: &str = "test-admin-token-0123456789";

fn pw_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| hash_password("pw"))
}

fn write_shared(dir: &TempDir) {
    dir.write("session.keys", &gen_key());
    dir.write(
        "users.toml",
        &format!(
            "[[user]]\nname = \"alice\"\npassword = \"{h}\"\n[[user]]\nname = \"bob\"\npassword = \"{h}\"\n",
            h = pw_hash()
        ),
    );
    dir.write("admin.token", &format!("{TOKEN}\n"));
}

/// One instance using `servers` (in the order given: the owner of a key must not depend on it).
fn instance(dir: &TempDir, name: &str, servers: &[SocketAddr], echo: SocketAddr) -> Gateway {
    let addrs = Addrs::new();
    let list = servers
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let cfg = dir.write(
        &format!("{name}.toml"),
        &format!(
            "[listen]\nhttp = [\"{http}\"]\nthreads = 2\n[admin]\nlisten = \"{admin}\"\ntoken_file = \"admin.token\"\n\
             [session]\nkeys_file = \"session.keys\"\nsecure = false\nstore = \"memcached\"\n\
             [memcached]\nservers = [{list}]\nkey_prefix = \"pc-test:\"\ntimeout = \"300ms\"\n\
             [auth]\nusers_file = \"users.toml\"\nlogin_attempts = \"1000/1m\"\n\
             [[upstream]]\nname = \"app\"\ntargets = [\"{echo}\"]\n\
             [[route]]\npath = \"/\"\nupstream = \"app\"\n\
             [[route]]\npath = \"/public\"\nupstream = \"app\"\naccess = \"public\"\n",
            http = addrs.http,
            admin = addrs.admin,
        ),
    );
    start_gateway(dir, &cfg, &addrs, false)
}

fn login_cookie(h: SocketAddr, user: &str) -> String {
    let r = login(h, user, "pw", "/", &[]);
    assert_eq!(r.status, 303, "login {user}: {r:?}");
    format!("{COOKIE}={}", r.set_cookie_value(COOKIE).unwrap())
}

fn app(h: SocketAddr, cookie: &str) -> Resp {
    get(
        h,
        "/app",
        &[("Cookie", cookie), ("Accept", "application/json")],
    )
}

fn revoke(g: &Gateway, user: &str) -> Resp {
    request(
        g.admin,
        "DELETE",
        &format!("/sessions?user={user}"),
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        "",
    )
}

/// `curr_items` from memcached's own `stats`.
fn items(server: SocketAddr) -> u64 {
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"stats\r\n").unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.ends_with(b"END\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out)
        .lines()
        .find_map(|l| l.strip_prefix("STAT curr_items "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[test]
fn instances_share_sessions_over_two_memcached_servers() {
    let dir = TempDir::new("memcached-shared");
    let (_echo, echo) = echo("app", &dir);
    let (_m1, a1) = memcached(&dir);
    let (_m2, a2) = memcached(&dir);
    write_shared(&dir);
    let mut a = instance(&dir, "a", &[a1, a2], echo);
    let b = instance(&dir, "b", &[a2, a1], echo);

    // Sessions made on A work on B with the right identity, whichever server holds them.
    let alice: Vec<String> = (0..12).map(|_| login_cookie(a.http, "alice")).collect();
    let bob = login_cookie(b.http, "bob");
    for c in &alice {
        let r = app(b.http, c);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.upstream_header("x-forwarded-user"), ["alice"]);
    }
    assert_eq!(
        app(a.http, &bob).upstream_header("x-forwarded-user"),
        ["bob"]
    );
    // Both servers hold records: the keys are spread, not all on the first server.
    let (n1, n2) = (items(a1), items(a2));
    println!("items: {a1} {n1}, {a2} {n2}");
    assert!(n1 > 0 && n2 > 0, "{n1} / {n2}");

    // Logout on A: B refuses the cookie on its very next request (no near-cache).
    let out = request(
        a.http,
        "POST",
        "/.auth/logout",
        &[("Cookie", &alice[0])],
        "",
    );
    assert_eq!(out.status, 303);
    assert_eq!(app(b.http, &alice[0]).status, 401);

    // Revoking alice through B's admin ends all her sessions on A at once; bob stays.
    let r = revoke(&b, "alice");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["revoked"], 11, "{r:?}");
    for c in &alice {
        assert_eq!(app(a.http, c).status, 401);
    }
    assert_eq!(app(a.http, &bob).status, 200);
    // A second revocation finds nothing left.
    assert_eq!(revoke(&a, "alice").json()["revoked"], 0);

    // A gateway killed with SIGKILL and restarted: memcached still holds the sessions.
    let c = login_cookie(a.http, "alice");
    a.proc.signal("KILL");
    a.proc.wait_exit(Duration::from_secs(10)).expect("killed");
    let addrs = Addrs {
        http: a.http,
        https: free_addr(),
        admin: a.admin,
    };
    a = start_gateway(&dir, &a.config.clone(), &addrs, false);
    for c in [&c, &bob] {
        assert_eq!(app(a.http, c).status, 200);
    }
    assert_eq!(app(a.http, &alice[0]).status, 401, "a logout stays");

    // Metrics: fixed labels only, promtool's format check, no user name.
    assert!(eventually(Duration::from_secs(5), || admin_get(
        &a, "/readyz"
    )
    .status
        == 200));
    let m = admin_get(&a, "/metrics").body;
    assert!(
        m.contains("portcullis_store_duration_seconds_bucket{op=\"get\",store=\"memcached\""),
        "{m}"
    );
    assert!(!m.contains("alice") && !m.contains("bob"));
    assert_promtool_accepts(&dir, "memcached-metrics.txt", &m);
    // Nothing in memcached names a user in clear: keys are hashes, values sealed. Both
    // servers are read: the two sessions left may well both live on one of them.
    let mut dump = Vec::new();
    for server in [a1, a2] {
        let mut s = TcpStream::connect(server).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"lru_crawler metadump all\r\n").unwrap();
        let mut one = Vec::new();
        let mut buf = [0u8; 8192];
        while !one.ends_with(b"END\r\n") {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            one.extend_from_slice(&buf[..n]);
        }
        dump.extend_from_slice(&one);
    }
    let dump = String::from_utf8_lossy(&dump);
    assert!(
        dump.contains("pc-test%3As%3A") || dump.contains("pc-test:s:"),
        "{dump}"
    );
    assert!(!dump.contains("alice") && !dump.contains("bob"));
}

#[test]
fn a_frozen_or_killed_server_costs_bounded_time_and_only_its_sessions() {
    let dir = TempDir::new("memcached-down");
    let (_echo, echo) = echo("app", &dir);
    let (m1, a1) = memcached(&dir);
    let (mut m2, a2) = memcached(&dir);
    write_shared(&dir);
    let g = instance(&dir, "g", &[a1, a2], echo);
    let users = ["alice", "bob"];
    let sessions: Vec<(&str, String)> = (0..16)
        .map(|i| (users[i % 2], login_cookie(g.http, users[i % 2])))
        .collect();
    assert!(eventually(Duration::from_secs(5), || admin_get(
        &g, "/readyz"
    )
    .status
        == 200));

    // One pass over every session: each answer is bounded in time and is either the
    // right identity or 503, never another user. Returns (200s, 503s, 401s).
    let pass = |what: &str| -> (usize, usize, usize) {
        let (mut ok, mut down, mut gone) = (0, 0, 0);
        for (user, c) in &sessions {
            let t = Instant::now();
            let r = app(g.http, c);
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "{what}: a request took {:?}",
                t.elapsed()
            );
            match r.status {
                200 => {
                    assert_eq!(r.upstream_header("x-forwarded-user"), [*user], "{what}");
                    ok += 1;
                }
                503 => {
                    assert_eq!(r.json()["error"], "session_store_unavailable");
                    down += 1;
                }
                401 => gone += 1,
                s => panic!("{what}: unexpected {s}: {r:?}"),
            }
        }
        (ok, down, gone)
    };
    assert_eq!(pass("healthy"), (16, 0, 0));

    // SIGSTOP one server: its sessions answer 503 within the timeout, the others 200.
    m1.signal("STOP");
    let (ok, down, gone) = pass("frozen");
    println!("m1 frozen: {ok} x 200, {down} x 503");
    assert!(ok > 0 && down > 0 && gone == 0, "{ok} {down} {gone}");
    assert_eq!(
        get(g.http, "/public/x", &[]).status,
        200,
        "public routes serve"
    );
    assert!(eventually(Duration::from_secs(5), || admin_get(
        &g, "/readyz"
    )
    .status
        == 503));
    let ready = admin_get(&g, "/readyz").body;
    assert!(
        ready.contains(&a1.to_string()),
        "readyz names the server: {ready}"
    );
    assert!(!ready.contains(&a2.to_string()), "{ready}");
    assert!(
        metric(
            &g,
            "portcullis_store_errors_total{op=\"get\",store=\"memcached\"}"
        ) >= 1.0
    );

    // SIGCONT: everything recovers by itself.
    m1.signal("CONT");
    assert!(eventually(Duration::from_secs(10), || pass("thawed") == (16, 0, 0)));
    assert!(eventually(Duration::from_secs(5), || admin_get(
        &g, "/readyz"
    )
    .status
        == 200));

    // SIGKILL the other server: its sessions 503, then, restarted empty, they are gone
    // (memcached keeps nothing on disk): their owners log in again. m1's are untouched.
    m2.signal("KILL");
    m2.wait_exit(Duration::from_secs(5))
        .expect("memcached killed");
    let (ok_killed, down_killed, _) = pass("killed");
    assert!(
        ok_killed > 0 && down_killed > 0,
        "{ok_killed} {down_killed}"
    );
    let _m2 = memcached_at(&dir, a2);
    assert!(eventually(Duration::from_secs(10), || {
        let (ok, down, gone) = pass("restarted");
        down == 0 && ok == ok_killed && gone == 16 - ok_killed
    }));
    assert!(eventually(Duration::from_secs(5), || admin_get(
        &g, "/readyz"
    )
    .status
        == 200));
    // Logging in again works and lands anywhere.
    let again = login_cookie(g.http, "alice");
    assert_eq!(app(g.http, &again).status, 200);
    assert!(!g.proc.log_text().contains("panicked"));
}

#[test]
fn memcached_settings_are_checked_at_load() {
    let dir = TempDir::new("memcached-config");
    dir.write("session.keys", &gen_key());
    let base = "[listen]\nhttp = [\"127.0.0.1:1\"]\n[[upstream]]\nname = \"a\"\ntargets = [\"127.0.0.1:2\"]\n[[route]]\npath = \"/\"\nupstream = \"a\"\naccess = \"public\"\n";
    let s = "[session]\nkeys_file = \"session.keys\"\nstore = \"memcached\"\n";
    let cases = [
        (s.to_string(), "needs a [memcached] section"),
        (
            "[session]\nkeys_file = \"session.keys\"\n[memcached]\n".into(),
            "only used with",
        ),
        (format!("{s}[memcached]\nservers = []\n"), "at least one"),
        (
            format!("{s}[memcached]\nservers = [\"127.0.0.1\"]\n"),
            "needs host:port",
        ),
        (
            format!("{s}[memcached]\nservers = [\"a:1\", \"a:1\"]\n"),
            "listed twice",
        ),
        (format!("{s}[memcached]\nservers = [\"a:0\"]\n"), "bad port"),
        (
            format!("{s}[memcached]\nkey_prefix = \"a b\"\n"),
            "printable ASCII",
        ),
        (
            format!("{s}[memcached]\ntimeout = \"1m\"\n"),
            "between 10ms and 10s",
        ),
        (
            format!("{s}[memcached]\nnear_cache_ttl = \"10m\"\n"),
            "at most 5m",
        ),
        (
            format!("{s}persist_file = \"x\"\n[memcached]\n"),
            "no meaning",
        ),
        (format!("{s}[memcached]\nport = 1\n"), "unknown field"),
    ];
    for (section, want) in cases {
        let cfg = dir.write("gateway.toml", &format!("{base}{section}"));
        let out = Command::new(BIN)
            .args(["check", "-c", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{section}: {err}");
        assert!(err.contains(want), "{section}: {err}");
        assert!(err.contains("gateway.toml:"), "file:line:col: {err}");
    }
    let cfg = dir.write(
        "gateway.toml",
        &format!("{base}{s}[memcached]\nservers = [\"127.0.0.1:11211\", \"[::1]:11211\"]\n"),
    );
    let out = Command::new(BIN)
        .args(["check", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
