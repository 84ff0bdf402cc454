//! Sessions at the edge over real sockets: login, cookie, store, identity headers,
//! policies, CSRF, redirects, rate limits, expiry, rotation, persistence, revocation.

mod common;
use common::*;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

const COOKIE: &str = "session";

struct Opts {
    store: &'static str,
    idle: &'static str,
    absolute: &'static str,
    attempts: &'static str,
    persist: bool,
    keys: Vec<String>,
    token: bool,
    extra_users: usize,
    /// Set by `env` for store = "redis".
    redis: Option<SocketAddr>,
    /// Set by `env` for store = "memcached".
    memcached: Option<SocketAddr>,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            store: "memory",
            idle: "30m",
            absolute: "12h",
            attempts: "50/1m",
            persist: false,
            keys: vec![gen_key()],
            token: false,
            extra_users: 0,
            redis: None,
            memcached: None,
        }
    }
}

fn hashes() -> &'static (String, String) {
    static H: OnceLock<(String, String)> = OnceLock::new();
    H.get_or_init(|| (hash_password("alice-pw"), hash_password("bob-pw")))
}

fn write_users(dir: &TempDir, extra: usize) {
    let (a, b) = hashes();
    let mut users = format!(
        "[[user]]\nname = \"alice\"\npassword = \"{a}\"\nemail = \"alice@example.com\"\ngroups = [\"admin\", \"dev\"]\n\
         [[user]]\nname = \"bob\"\npassword = \"{b}\"\nemail = \"bob@example.com\"\ngroups = [\"dev\"]\n"
    );
    for i in 0..extra {
        // Same password hash as bob: the name is what matters for identity checks.
        users.push_str(&format!(
            "[[user]]\nname = \"u{i}\"\npassword = \"{b}\"\nemail = \"u{i}@example.com\"\n"
        ));
    }
    dir.write("users.toml", &users);
}

fn write_config(dir: &TempDir, a: &Addrs, echo: SocketAddr, o: &Opts) -> std::path::PathBuf {
    dir.write("session.keys", &(o.keys.join("\n") + "\n"));
    write_users(dir, o.extra_users);
    let persist = if o.persist {
        format!(
            "persist_file = \"{}\"\n",
            dir.path("sessions.snap").display()
        )
    } else {
        String::new()
    };
    let token = if o.token {
        dir.write("admin.token", "test-admin-token-0123456789\n");
        "token_file = \"admin.token\"\n"
    } else {
        ""
    };
    // Batched touches must fit the short idle timeouts some tests use.
    let redis = o.redis.map_or(String::new(), |a| {
        format!("[redis]\nurl = \"redis://{a}/0\"\ntouch_interval = \"1s\"\n")
    }) + &o.memcached.map_or(String::new(), |a| {
        format!("[memcached]\nservers = [\"{a}\"]\ntouch_interval = \"1s\"\n")
    });
    dir.write(
        "gateway.toml",
        &format!(
            r#"{redis}
[listen]
http = ["{http}"]
threads = 2
[admin]
listen = "{admin}"
{token}
[session]
keys_file = "session.keys"
secure = false
store = "{store}"
idle_timeout = "{idle}"
absolute_timeout = "{absolute}"
{persist}
[auth]
users_file = "users.toml"
login_attempts = "{attempts}"
allowed_redirect_hosts = ["app.example.com"]
[[upstream]]
name = "app"
targets = ["{echo}"]
[[route]]
path = "/"
upstream = "app"
[[route]]
path = "/public"
upstream = "app"
access = "public"
[[route]]
path = "/admin"
upstream = "app"
allow_groups = ["admin"]
[[route]]
path = "/bob-only"
upstream = "app"
allow_users = ["bob"]
[[route]]
path = "/app-login"
upstream = "app"
access = "public"
issues_sessions = true
"#,
            http = a.http,
            admin = a.admin,
            idle = o.idle,
            absolute = o.absolute,
            attempts = o.attempts,
            store = o.store,
        ),
    )
}

struct Env {
    // Dropped last: the gateway goes before its Redis or memcached.
    _redis: Option<Proc>,
    dir: TempDir,
    _echo: Proc,
    echo: SocketAddr,
    addrs: Addrs,
    g: Gateway,
}

fn env(tag: &str, mut o: Opts) -> Env {
    let dir = TempDir::new(tag);
    let (echo_proc, echo) = common::echo("app", &dir);
    let addrs = Addrs::new();
    let redis = (o.store == "redis")
        .then(|| {
            let (p, a) = redis_server(&dir);
            o.redis = Some(a);
            p
        })
        .or_else(|| {
            (o.store == "memcached").then(|| {
                let (p, a) = memcached(&dir);
                o.memcached = Some(a);
                p
            })
        });
    let cfg = write_config(&dir, &addrs, echo, &o);
    let g = start_gateway(&dir, &cfg, &addrs, false);
    Env {
        _redis: redis,
        dir,
        _echo: echo_proc,
        echo,
        addrs,
        g,
    }
}

/// Log in and return the session cookie value.
fn session_of(h: SocketAddr, user: &str, pw: &str) -> String {
    let r = login(h, user, pw, "/", &[]);
    assert_eq!(r.status, 303, "login {user}: {r:?}");
    r.set_cookie_value(COOKIE).expect("session cookie")
}

fn with_cookie(v: &str) -> String {
    format!("{COOKIE}={v}")
}

fn api(h: SocketAddr, path: &str, cookie: &str) -> Resp {
    get(
        h,
        path,
        &[("Cookie", cookie), ("Accept", "application/json")],
    )
}

fn login_use_logout_replay(store: &'static str) {
    let e = env(
        "flow",
        Opts {
            store,
            ..Opts::default()
        },
    );
    let h = e.g.http;

    let page = get(h, "/.auth/login?rd=/after", &[]);
    assert_eq!(page.status, 200);
    assert!(page
        .body
        .contains("<form method=\"post\" action=\"/.auth/login\">"));
    assert!(page.body.contains("name=\"rd\" value=\"/after\""));
    assert!(page.header("content-security-policy").is_some());

    let r = login(h, "alice", "alice-pw", "/after?x=1", &[]);
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/after?x=1"));
    let sc = r.header("set-cookie").unwrap();
    assert!(
        sc.contains("HttpOnly")
            && sc.contains("SameSite=Lax")
            && sc.contains("Path=/")
            && !sc.contains("Domain"),
        "{sc}"
    );
    let v = r.set_cookie_value(COOKIE).unwrap();

    // The upstream sees the verified identity, the other cookies, and not ours.
    let r = get(
        h,
        "/app",
        &[("Cookie", &format!("theme=dark; {COOKIE}={v}; lang=en"))],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-forwarded-user"), ["alice"]);
    assert_eq!(
        r.upstream_header("x-forwarded-email"),
        ["alice@example.com"]
    );
    assert_eq!(r.upstream_header("x-forwarded-groups"), ["admin,dev"]);
    assert_eq!(r.upstream_header("cookie"), ["theme=dark; lang=en"]);

    let me = api(h, "/.auth/me", &with_cookie(&v));
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["user"], "alice");
    assert_eq!(me.json()["groups"], serde_json::json!(["admin", "dev"]));
    // How they signed in travels with the session in every store's format.
    assert_eq!(me.json()["amr"], serde_json::json!(["pwd"]), "{store}");
    assert_eq!(me.json()["provider"], serde_json::Value::Null);
    assert!(me.json()["auth_time"].as_str().is_some());
    let verify = get(h, "/.auth/verify", &[("Cookie", &with_cookie(&v))]);
    assert_eq!(verify.status, 200);
    assert_eq!(verify.header("x-forwarded-user"), Some("alice"));

    // An upstream may not set or clear the gateway's cookie, in any spacing a browser
    // accepts; its own cookies pass.
    for evil in [
        format!("{COOKIE}=evil; Path=/"),
        format!("{COOKIE} =evil; Path=/"),
        format!("{COOKIE}\t= ; Max-Age=0"),
    ] {
        let r = get(
            h,
            "/app",
            &[("Cookie", &with_cookie(&v)), ("x-echo-set-cookie", &evil)],
        );
        assert!(r.headers_named("set-cookie").is_empty(), "{evil:?}: {r:?}");
    }
    let r = get(
        h,
        "/app",
        &[
            ("Cookie", &with_cookie(&v)),
            ("x-echo-set-cookie", "theme=light"),
        ],
    );
    assert_eq!(r.headers_named("set-cookie"), ["theme=light"]);

    let out = request(
        h,
        "POST",
        "/.auth/logout",
        &[("Cookie", &with_cookie(&v))],
        "",
    );
    assert_eq!(out.status, 303);
    assert_eq!(out.header("location"), Some("/"));
    assert_eq!(out.header("cache-control"), Some("no-store"));
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));

    // Replaying the old cookie: no session.
    assert_eq!(api(h, "/app", &with_cookie(&v)).status, 401);
    assert_eq!(api(h, "/.auth/me", &with_cookie(&v)).status, 401);
    assert_eq!(
        get(h, "/.auth/verify", &[("Cookie", &with_cookie(&v))]).status,
        401
    );
    let m = admin_get(&e.g, "/metrics").body;
    assert!(
        m.contains("portcullis_logins_total{result=\"success\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("portcullis_session_lookups_total{result=\"miss\"}"),
        "{m}"
    );
    let log = e.g.proc.log_text();
    assert!(!log.contains(&v), "the cookie value reached the log");
    assert!(!log.contains("alice-pw"), "the password reached the log");
}

fn no_session_and_policy_answers(store: &'static str) {
    let e = env(
        "policy",
        Opts {
            store,
            ..Opts::default()
        },
    );
    let h = e.g.http;
    let r = get(
        h,
        "/app/page?q=1",
        &[("Accept", "text/html,application/xhtml+xml")],
    );
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("/.auth/login?rd=%2Fapp%2Fpage%3Fq%3D1")
    );
    let r = get(h, "/app/data", &[("Accept", "application/json")]);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "unauthenticated");
    let r = request(h, "POST", "/app/data", &[("Accept", "text/html")], "x=1");
    assert_eq!(r.status, 401, "non-GET is never redirected");
    assert_eq!(get(h, "/public/x", &[]).status, 200);

    let bob = session_of(h, "bob", "bob-pw");
    let alice = session_of(h, "alice", "alice-pw");
    assert_eq!(api(h, "/admin", &with_cookie(&bob)).status, 403);
    assert_eq!(api(h, "/admin", &with_cookie(&alice)).status, 200);
    assert_eq!(api(h, "/bob-only", &with_cookie(&alice)).status, 403);
    assert_eq!(api(h, "/bob-only", &with_cookie(&bob)).status, 200);
    // Public routes inject identity when there is a session.
    assert_eq!(
        api(h, "/public", &with_cookie(&bob)).upstream_header("x-forwarded-user"),
        ["bob"]
    );
    assert!(api(h, "/public", "")
        .upstream_header("x-forwarded-user")
        .is_empty());
}

fn login_failures_look_the_same_and_sessions_are_never_fixed(store: &'static str) {
    let e = env(
        "fixation",
        Opts {
            store,
            ..Opts::default()
        },
    );
    let h = e.g.http;
    let wrong = login(h, "alice", "nope", "/", &[]);
    let unknown = login(h, "mallory", "nope", "/", &[]);
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    assert!(wrong.body.contains("Invalid user name or password."));
    assert_eq!(
        wrong.body.replace("alice", "X"),
        unknown.body.replace("mallory", "X"),
        "identical failure pages"
    );
    assert!(wrong.header("set-cookie").is_none());

    // A planted, well-formed but unknown cookie is not adopted.
    let planted = session_of(h, "bob", "bob-pw");
    request(
        h,
        "POST",
        "/.auth/logout",
        &[("Cookie", &with_cookie(&planted))],
        "",
    );
    let r = login(
        h,
        "alice",
        "alice-pw",
        "/",
        &[("Cookie", &with_cookie(&planted))],
    );
    let fresh = r.set_cookie_value(COOKIE).unwrap();
    assert_ne!(fresh, planted);
    // Logging in over someone else's live session ends it and issues a new id.
    let before = session_of(h, "bob", "bob-pw");
    let r = login(
        h,
        "alice",
        "alice-pw",
        "/",
        &[("Cookie", &with_cookie(&before))],
    );
    let after = r.set_cookie_value(COOKIE).unwrap();
    assert_ne!(after, before);
    assert_eq!(api(h, "/app", &with_cookie(&before)).status, 401);
    assert_eq!(
        api(h, "/app", &with_cookie(&after)).upstream_header("x-forwarded-user"),
        ["alice"]
    );
}

fn tampered_cookies_are_no_session_and_lose_nothing(store: &'static str) {
    let e = env(
        "tamper",
        Opts {
            store,
            ..Opts::default()
        },
    );
    let h = e.g.http;
    let v = session_of(h, "alice", "alice-pw");
    let mut flipped = v.clone().into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let other_key = {
        let d = TempDir::new("otherkey");
        let _ = d;
        // A syntactically perfect cookie signed with some other gateway's key.
        let keys = portcullis::session::keys::KeyRing::parse("k", &gen_key()).unwrap();
        portcullis::session::cookie::SessionId::generate(&ring::rand::SystemRandom::new())
            .unwrap()
            .encode(&keys)
    };
    let cases = [
        with_cookie(&flipped),
        with_cookie(&v[..v.len() - 1]),
        with_cookie(&format!("{v}A")),
        with_cookie(""),
        with_cookie(&"A".repeat(v.len())),
        with_cookie(&other_key),
        with_cookie(&"x".repeat(3000)),
        with_cookie("%00%0d%0a"),
        format!("{COOKIE}={v}; {COOKIE}={v}"),
        format!("__host-session={v}; SESSION={v}"),
    ];
    for c in &cases {
        let r = api(h, "/app", c);
        assert_eq!(r.status, 401, "{c}: {r:?}");
        let r = get(h, "/app", &[("Cookie", c), ("Accept", "text/html")]);
        assert_eq!(r.status, 302, "{c}");
        assert!(api(h, "/public", c)
            .upstream_header("x-forwarded-user")
            .is_empty());
    }
    // The real session is untouched by all of it.
    assert_eq!(
        api(h, "/app", &with_cookie(&v)).upstream_header("x-forwarded-user"),
        ["alice"]
    );
    assert!(admin_get(&e.g, "/metrics")
        .body
        .contains("portcullis_session_lookups_total{result=\"invalid\"}"));
}

fn spoofed_identity_headers_are_replaced_on_every_route(store: &'static str) {
    let e = env(
        "spoof",
        Opts {
            store,
            ..Opts::default()
        },
    );
    let h = e.g.http;
    let bob = session_of(h, "bob", "bob-pw");
    for path in ["/app", "/public"] {
        for (name, val) in [
            ("X-Forwarded-User", "alice"),
            ("x-forwarded-user", "alice"),
            ("X_Forwarded_User", "alice"),
            ("X.Forwarded.User", "alice"),
            ("X-Forwarded-Groups", "admin"),
            ("X_FORWARDED_EMAIL", "alice@example.com"),
        ] {
            let r = get(h, path, &[("Cookie", &with_cookie(&bob)), (name, val)]);
            assert_eq!(r.status, 200);
            let users: Vec<_> = r
                .upstream_headers()
                .into_iter()
                .filter(|(k, _)| k.to_lowercase().replace(['_', '.'], "-") == "x-forwarded-user")
                .collect();
            assert_eq!(
                users,
                [("x-forwarded-user".to_string(), "bob".to_string())],
                "{path} {name}"
            );
            assert!(!r.body.contains("alice"), "{path} {name}: {}", r.body);
        }
    }
}

fn redirect_targets_never_leave_the_site(store: &'static str) {
    let e = env(
        "redirects",
        Opts {
            store,
            ..Opts::default()
        },
    );
    let h = e.g.http;
    for bad in [
        "//evil.com",
        "/\\evil.com",
        "/%09/evil.com",
        "/%2F%2Fevil.com",
        "https://evil.com",
        "http://app.example.com/",
        "javascript:alert(1)",
        "https://app.example.com@evil.com/",
        "/x\r\nSet-Cookie: a=b",
        "https://app.example.com.evil.com",
    ] {
        let r = login(h, "alice", "alice-pw", bad, &[]);
        assert_eq!(r.status, 303);
        assert_eq!(r.header("location"), Some("/"), "{bad:?}");
    }
    let r = login(h, "alice", "alice-pw", "https://app.example.com/home", &[]);
    assert_eq!(r.header("location"), Some("https://app.example.com/home"));
    let page = get(h, "/.auth/login?rd=%2F%2Fevil.com", &[]);
    assert!(
        page.body.contains("name=\"rd\" value=\"/\""),
        "{}",
        page.body
    );
}

fn cross_site_requests_with_a_session_are_refused(store: &'static str) {
    let e = env(
        "csrf",
        Opts {
            store,
            ..Opts::default()
        },
    );
    let h = e.g.http;
    let v = session_of(h, "alice", "alice-pw");
    let c = with_cookie(&v);
    let own = format!("http://{h}");
    let r = request(
        h,
        "POST",
        "/app/transfer",
        &[("Cookie", &c), ("Sec-Fetch-Site", "cross-site")],
        "a=1",
    );
    assert_eq!(r.status, 403);
    let r = request(
        h,
        "POST",
        "/app/transfer",
        &[("Cookie", &c), ("Origin", "https://evil.com")],
        "a=1",
    );
    assert_eq!(r.status, 403);
    let r = request(
        h,
        "DELETE",
        "/app/x",
        &[("Cookie", &c), ("Origin", "null")],
        "",
    );
    assert_eq!(r.status, 403);
    let r = request(
        h,
        "POST",
        "/app/transfer",
        &[
            ("Cookie", &c),
            ("Origin", &own),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        "a=1",
    );
    assert_eq!(r.status, 200, "same-origin POST passes");
    assert_eq!(r.json()["body"], "a=1");
    // A body far larger than a client connection's 4 KiB read buffer arrives whole.
    let big = "0123456789abcdef".repeat(128 * 1024);
    let r = request(h, "POST", "/app/upload", &[("Cookie", &c)], &big);
    assert_eq!(r.status, 200);
    assert!(r.json()["body"] == big.as_str(), "2 MiB body intact");
    let r = request(h, "POST", "/app/transfer", &[("Cookie", &c)], "a=1");
    assert_eq!(r.status, 200, "non-browser clients send neither header");
    assert_eq!(
        get(
            h,
            "/app",
            &[("Cookie", &c), ("Sec-Fetch-Site", "cross-site")]
        )
        .status,
        200,
        "safe methods pass"
    );
    // Cross-site logout and login are refused; the session survives.
    let r = request(
        h,
        "POST",
        "/.auth/logout",
        &[("Cookie", &c), ("Sec-Fetch-Site", "cross-site")],
        "",
    );
    assert_eq!(r.status, 403);
    assert_eq!(api(h, "/app", &c).status, 200);
    let r = login(h, "bob", "bob-pw", "/", &[("Origin", "https://evil.com")]);
    assert_eq!(r.status, 403);
}

fn failed_logins_are_rate_limited(store: &'static str) {
    let e = env(
        "ratelimit",
        Opts {
            store,
            attempts: "3/1m",
            ..Opts::default()
        },
    );
    let h = e.g.http;
    for _ in 0..3 {
        assert_eq!(login(h, "alice", "wrong", "/", &[]).status, 401);
    }
    let r = login(h, "alice", "alice-pw", "/", &[]);
    assert_eq!(r.status, 429, "even the right password waits");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    // The limit is per address too: another user name from the same client is blocked.
    assert_eq!(login(h, "bob", "bob-pw", "/", &[]).status, 429);
    assert!(admin_get(&e.g, "/metrics")
        .body
        .contains("portcullis_logins_total{result=\"rate_limited\"} 2"));
}

fn idle_and_absolute_expiry(store: &'static str) {
    let e = env(
        "expiry",
        Opts {
            store,
            idle: "2s",
            absolute: "5s",
            ..Opts::default()
        },
    );
    let h = e.g.http;
    let mut v = session_of(h, "alice", "alice-pw");
    // Deadlines are measured from here, not from fixed sleeps: a loaded machine may take
    // a while between requests, and the absolute limit must not be reached by accident.
    let since_login = std::time::Instant::now();
    // Activity slides the idle expiry: 3 x 1.2 s > 2 s idle. (Cookie sessions slide by
    // re-issuing the cookie; a browser keeps the newest one, and so does this loop.)
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1200));
        let r = api(h, "/app", &with_cookie(&v));
        assert_eq!(r.status, 200);
        if let Some(newer) = r.set_cookie_value(COOKIE) {
            assert_eq!(
                r.header("cache-control"),
                Some("no-store"),
                "a re-issued cookie is never cacheable"
            );
            v = newer;
        }
    }
    // ...but not past the absolute limit (5 s since login).
    assert!(
        since_login.elapsed() < Duration::from_secs(5),
        "the machine was too slow to test sliding"
    );
    std::thread::sleep(Duration::from_millis(5200).saturating_sub(since_login.elapsed()));
    assert_eq!(
        api(h, "/app", &with_cookie(&v)).status,
        401,
        "absolute expiry"
    );
    let w = session_of(h, "alice", "alice-pw");
    // Redis writes touches back in batches, so its idle deadline is idle_timeout +
    // touch_interval (1 s here): the documented bound.
    let slack = if store == "redis" || store == "memcached" {
        1000
    } else {
        0
    };
    std::thread::sleep(Duration::from_millis(2300 + slack));
    assert_eq!(api(h, "/app", &with_cookie(&w)).status, 401, "idle expiry");
    let m = admin_get(&e.g, "/metrics").body;
    assert!(
        m.contains("portcullis_session_lookups_total{result=\"expired\"} 2"),
        "{}",
        m.lines()
            .filter(|l| l.starts_with("portcullis_session_lookups_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn restart(e: &mut Env) {
    e.g.proc.signal("TERM");
    e.g.proc
        .wait_exit(Duration::from_secs(20))
        .expect("gateway exited");
    e.g = start_gateway(&e.dir, &e.g.config.clone(), &e.addrs, false);
}

#[test]
fn sessions_survive_restarts_and_key_rotation() {
    let k1 = gen_key();
    let mut e = env(
        "rotate",
        Opts {
            persist: true,
            keys: vec![k1.clone()],
            ..Opts::default()
        },
    );
    let v = session_of(e.g.http, "alice", "alice-pw");
    restart(&mut e);
    assert_eq!(
        api(e.g.http, "/app", &with_cookie(&v)).upstream_header("x-forwarded-user"),
        ["alice"],
        "restored from snapshot"
    );

    // A new signing key in front: old cookies stay valid, new ones use the new key.
    let k2 = gen_key();
    e.dir.write("session.keys", &format!("{k2}\n{k1}\n"));
    restart(&mut e);
    assert_eq!(
        api(e.g.http, "/app", &with_cookie(&v)).status,
        200,
        "old key still verifies"
    );
    let v2 = session_of(e.g.http, "bob", "bob-pw");
    assert_ne!(&v2[..6], &v[..6], "new cookies carry the new key id");

    // The old key removed by a reload, without a restart: the process has verified (and
    // remembered) both cookies before; the old key's is dead at once all the same, the
    // new key's still live.
    for c in [&v, &v2] {
        assert_eq!(api(e.g.http, "/app", &with_cookie(c)).status, 200);
    }
    e.dir.write("session.keys", &format!("{k2}\n"));
    let reloads =
        e.g.proc
            .log_text()
            .matches("configuration reloaded")
            .count();
    e.g.proc.signal("HUP");
    assert!(eventually(Duration::from_secs(5), || e
        .g
        .proc
        .log_text()
        .matches("configuration reloaded")
        .count()
        > reloads));
    assert_eq!(api(e.g.http, "/app", &with_cookie(&v)).status, 401);
    assert_eq!(
        api(e.g.http, "/app", &with_cookie(&v2)).upstream_header("x-forwarded-user"),
        ["bob"]
    );
    // And after a restart too.
    restart(&mut e);
    assert_eq!(api(e.g.http, "/app", &with_cookie(&v)).status, 401);
    assert_eq!(
        api(e.g.http, "/app", &with_cookie(&v2)).upstream_header("x-forwarded-user"),
        ["bob"]
    );

    // A corrupt snapshot is reported and ignored, never trusted.
    e.g.proc.signal("TERM");
    e.g.proc.wait_exit(Duration::from_secs(20)).expect("exit");
    let snap = e.dir.path("sessions.snap");
    let mut data = std::fs::read(&snap).unwrap();
    let n = data.len();
    data[n - 3] ^= 0xff;
    std::fs::write(&snap, data).unwrap();
    e.g = start_gateway(&e.dir, &e.g.config.clone(), &e.addrs, false);
    assert_eq!(api(e.g.http, "/app", &with_cookie(&v2)).status, 401);
    assert!(e.g.proc.log_text().contains("does not authenticate"));
    assert!(e.echo.port() > 0);
}

fn revoking_all_sessions_of_a_user(store: &'static str) {
    let e = env(
        "revoke",
        Opts {
            store,
            token: true,
            ..Opts::default()
        },
    );
    let h = e.g.http;
    let a1 = session_of(h, "alice", "alice-pw");
    let a2 = session_of(h, "alice", "alice-pw");
    let b = session_of(h, "bob", "bob-pw");
    let del = |auth: &str| {
        request(
            e.g.admin,
            "DELETE",
            "/sessions?user=alice",
            &[("Authorization", auth)],
            "",
        )
    };
    assert_eq!(del("").status, 401);
    assert_eq!(del("Bearer wrong-token-wrong-token").status, 401);
    assert_eq!(
        api(h, "/app", &with_cookie(&a1)).status,
        200,
        "a rejected revocation changes nothing"
    );
    let r = del("Bearer test-admin-token-0123456789");
    assert_eq!(r.status, 200, "{r:?}");
    if store != "cookie" {
        assert_eq!(r.json()["revoked"], 2);
    }
    assert_eq!(api(h, "/app", &with_cookie(&a1)).status, 401);
    assert_eq!(api(h, "/app", &with_cookie(&a2)).status, 401);
    assert_eq!(api(h, "/app", &with_cookie(&b)).status, 200);
    assert!(e.g.proc.log_text().contains("revoked all sessions of user"));
}

/// Keep-alive HTTP/1.1 client for the load test.
struct Conn(std::io::BufReader<std::net::TcpStream>);

impl Conn {
    fn new(addr: SocketAddr) -> Self {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Self(std::io::BufReader::new(s))
    }
    fn get(&mut self, host: SocketAddr, path: &str, cookie: &str) -> (u16, String) {
        use std::io::{BufRead, Read, Write};
        // One write per request: a request split over several small segments meets
        // Nagle's algorithm and delayed ACKs (~40 ms each).
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nAccept: application/json\r\n\r\n");
        self.0.get_mut().write_all(req.as_bytes()).unwrap();
        let mut line = String::new();
        self.0.read_line(&mut line).unwrap();
        let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut len = 0;
        loop {
            line.clear();
            self.0.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0u8; len];
        self.0.read_exact(&mut body).unwrap();
        (status, String::from_utf8(body).unwrap())
    }
}

fn concurrent_users_never_see_each_other(store: &'static str) {
    let e = env(
        "concurrency",
        Opts {
            store,
            extra_users: 20,
            ..Opts::default()
        },
    );
    let h = e.g.http;
    // 200 sessions: ten per user. A few through the login form; the rest through an
    // issuing upstream's Portcullis-Login, which skips 200 deliberately slow password
    // hashes but creates sessions in the same store the same way.
    let mut sessions = Vec::new();
    for i in 0..200 {
        let user = format!("u{}", i % 20);
        let v = if i < 20 {
            session_of(h, &user, "bob-pw")
        } else {
            let hdr = format!("Portcullis-Login: {{\"user\": \"{user}\"}}");
            let r = get(h, "/app-login", &[("x-echo-response-header", &hdr)]);
            r.set_cookie_value(COOKIE).expect("upstream-issued session")
        };
        sessions.push((user.clone(), v));
    }
    let sessions = std::sync::Arc::new(sessions);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let sessions = sessions.clone();
            std::thread::spawn(move || {
                let mut conn = Conn::new(h);
                for i in 0..2500 {
                    let (user, v) = &sessions[(t * 7919 + i * 31) % sessions.len()];
                    let (status, body) = conn.get(h, &format!("/app/{i}"), &with_cookie(v));
                    assert_eq!(status, 200);
                    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
                    let seen: Vec<&str> = json["headers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|h| h[0] == "x-forwarded-user")
                        .map(|h| h[1].as_str().unwrap())
                        .collect();
                    assert_eq!(seen, [user.as_str()], "request {i} of thread {t}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no thread saw a wrong identity");
    }
    let m = admin_get(&e.g, "/metrics").body;
    assert!(
        m.contains("portcullis_session_lookups_total{result=\"hit\"} 20000"),
        "{}",
        m.lines()
            .filter(|l| l.contains("lookups"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn nginx_auth_request_uses_the_verify_endpoint(store: &'static str) {
    let Some(nginx) = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        panic!("nginx is required for this test (scripts/test.sh installs it)");
    };
    let e = env(
        "nginx",
        Opts {
            store,
            ..Opts::default()
        },
    );
    let h = e.g.http;
    let listen = free_addr();
    let conf = e.dir.write(
        "nginx.conf",
        &format!(
            r#"daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir}; uwsgi_temp_path {dir}; scgi_temp_path {dir};
  server {{
    listen {listen};
    location = /_auth {{
      internal;
      proxy_pass http://{h}/.auth/verify;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
    }}
    location / {{
      auth_request /_auth;
      auth_request_set $user $upstream_http_x_forwarded_user;
      proxy_set_header X-Forwarded-User $user;
      proxy_pass http://{echo};
    }}
  }}
}}
"#,
            dir = e.dir.0.display(),
            echo = e.echo,
        ),
    );
    let child = std::process::Command::new(nginx)
        .args([
            "-c",
            conf.to_str().unwrap(),
            "-p",
            e.dir.0.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nginx");
    let _nginx = Proc {
        child,
        log: e.dir.path("nginx-error.log"),
        term_first: true,
    };
    wait_port(listen);
    assert_eq!(get(listen, "/x", &[]).status, 401);
    let v = session_of(h, "alice", "alice-pw");
    let r = get(
        listen,
        "/x",
        &[
            ("Cookie", &with_cookie(&v)),
            ("X-Forwarded-User", "mallory"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.upstream_header("x-forwarded-user"), ["alice"]);
}

#[test]
fn sighup_reloads_users_and_survives_a_broken_config() {
    let e = env("reload", Opts::default());
    let h = e.g.http;
    let alice = session_of(h, "alice", "alice-pw");
    assert_eq!(login(h, "carol", "carol-pw", "/", &[]).status, 401);
    let users = std::fs::read_to_string(e.dir.path("users.toml")).unwrap();
    let carol = hash_password("carol-pw");
    e.dir.write(
        "users.toml",
        &format!("{users}[[user]]\nname = \"carol\"\npassword = \"{carol}\"\n"),
    );
    e.g.proc.signal("HUP");
    assert!(eventually(Duration::from_secs(5), || e
        .g
        .proc
        .log_text()
        .contains("configuration reloaded")));
    assert_eq!(login(h, "carol", "carol-pw", "/", &[]).status, 303);
    assert_eq!(
        api(h, "/app", &with_cookie(&alice)).status,
        200,
        "a reload logs nobody out"
    );

    let good = std::fs::read_to_string(&e.g.config).unwrap();
    std::fs::write(
        &e.g.config,
        format!("{good}\n[[route]]\npath = \"/x\"\nupstream = \"nope\"\n"),
    )
    .unwrap();
    e.g.proc.signal("HUP");
    assert!(eventually(Duration::from_secs(5), || e
        .g
        .proc
        .log_text()
        .contains("reload failed")));
    assert_eq!(
        api(h, "/app", &with_cookie(&alice)).status,
        200,
        "the old config keeps serving"
    );
    assert!(e.g.proc.log_text().contains("route names unknown upstream"));
}

fn an_upstream_with_its_own_login_can_start_and_end_sessions(store: &'static str) {
    let e = env(
        "issued",
        Opts {
            store,
            ..Opts::default()
        },
    );
    let h = e.g.http;
    let login_hdr =
        r#"Portcullis-Login: {"user": "carol", "email": "carol@example.com", "groups": ["ops"]}"#;

    // The app's login handler answers with Portcullis-Login: the gateway starts a session.
    let before = session_of(h, "bob", "bob-pw");
    let r = request(
        h,
        "POST",
        "/app-login",
        &[
            ("Cookie", &with_cookie(&before)),
            ("x-echo-response-header", login_hdr),
        ],
        "u=carol",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("portcullis-login").is_none(),
        "the header never reaches the client"
    );
    let v = r.set_cookie_value(COOKIE).expect("session cookie");
    assert_ne!(v, before, "a fresh id");
    assert_eq!(
        api(h, "/app", &with_cookie(&before)).status,
        401,
        "the session the request carried ended"
    );
    let seen = api(h, "/app", &with_cookie(&v));
    assert_eq!(seen.upstream_header("x-forwarded-user"), ["carol"]);
    assert_eq!(seen.upstream_header("x-forwarded-groups"), ["ops"]);

    // Portcullis-Logout ends it.
    let r = get(
        h,
        "/app-login/out",
        &[
            ("Cookie", &with_cookie(&v)),
            ("x-echo-response-header", "Portcullis-Logout: 1"),
        ],
    );
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert!(r.header("portcullis-logout").is_none());
    assert_eq!(api(h, "/app", &with_cookie(&v)).status, 401);

    // From any other route the headers are removed and never honoured.
    for path in ["/public/x", "/app"] {
        let cookie = with_cookie(&session_of(h, "bob", "bob-pw"));
        let r = get(
            h,
            path,
            &[("Cookie", &cookie), ("x-echo-response-header", login_hdr)],
        );
        assert_eq!(r.status, 200);
        assert!(
            r.header("set-cookie").is_none() && r.header("portcullis-login").is_none(),
            "{path}: {r:?}"
        );
        assert_eq!(
            api(h, "/app", &cookie).upstream_header("x-forwarded-user"),
            ["bob"]
        );
    }
    // Malformed or hostile identities are refused.
    for bad in [
        r#"Portcullis-Login: {"user": ""}"#,
        "Portcullis-Login: not-json",
        r#"Portcullis-Login: {"user": "a", "admin": true}"#,
    ] {
        let r = get(h, "/app-login", &[("x-echo-response-header", bad)]);
        assert!(r.header("set-cookie").is_none(), "{bad}: {r:?}");
    }
    let log = e.g.proc.log_text();
    assert!(log.contains("login by upstream") && log.contains("logout by upstream"));
    assert!(log.contains("without issues_sessions"));
}

/// The same suite runs against every session backend.
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        mod memory_store {
            $( #[test] fn $name() { super::$name("memory") } )*
        }
        mod cookie_store {
            $( #[test] fn $name() { super::$name("cookie") } )*
        }
        mod redis_store {
            $( #[test] fn $name() { super::$name("redis") } )*
        }
        mod memcached_store {
            $( #[test] fn $name() { super::$name("memcached") } )*
        }
    };
}

for_each_backend!(
    login_use_logout_replay,
    no_session_and_policy_answers,
    login_failures_look_the_same_and_sessions_are_never_fixed,
    tampered_cookies_are_no_session_and_lose_nothing,
    spoofed_identity_headers_are_replaced_on_every_route,
    redirect_targets_never_leave_the_site,
    cross_site_requests_with_a_session_are_refused,
    failed_logins_are_rate_limited,
    idle_and_absolute_expiry,
    revoking_all_sessions_of_a_user,
    concurrent_users_never_see_each_other,
    nginx_auth_request_uses_the_verify_endpoint,
    an_upstream_with_its_own_login_can_start_and_end_sessions,
);

#[test]
fn cookie_sessions_refuse_identities_too_large_for_a_cookie() {
    let dir = TempDir::new("cookie-big");
    let (_echo, echo) = common::echo("app", &dir);
    let addrs = Addrs::new();
    let o = Opts {
        store: "cookie",
        ..Opts::default()
    };
    let cfg = write_config(&dir, &addrs, echo, &o);
    let groups: Vec<String> = (0..120)
        .map(|i| format!("\"a-rather-long-group-name-number-{i:03}\""))
        .collect();
    let (_, b) = hashes();
    let users = std::fs::read_to_string(dir.path("users.toml")).unwrap();
    dir.write(
        "users.toml",
        &format!(
            "{users}[[user]]\nname = \"big\"\npassword = \"{b}\"\ngroups = [{}]\n",
            groups.join(", ")
        ),
    );
    let g = start_gateway(&dir, &cfg, &addrs, false);
    let r = login(g.http, "big", "bob-pw", "/", &[]);
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(r.json()["error"], "session_refused");
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("too large for a cookie session"));
    assert!(r.header("set-cookie").is_none());
    // Nothing is stored server-side in cookie mode.
    let v = session_of(g.http, "alice", "alice-pw");
    assert!(v.starts_with("c1."));
    assert!(admin_get(&g, "/metrics")
        .body
        .contains("portcullis_sessions_active 0"));
}
