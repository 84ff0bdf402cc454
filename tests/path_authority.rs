//! Path authority over real sockets (design.md steps 2 and 4): a path that common
//! upstreams read as another route's is refused, never forwarded; encoded delimiters need
//! the route's `allow_encoded`; hosts compare case-insensitively with one trailing dot
//! ignored (routing and the CSRF origin check); a `Connection` option naming a protected
//! header is the gateway's own `400`, before routing. Over HTTP/1.1 (raw bytes, so no
//! client library rewrites the path) and HTTP/2 over TLS.

mod common;
use common::*;
use std::process::Command;

const ROUTES: &str = r#"
[[upstream]]
name = "app"
targets = ["{echo}"]
[[route]]
path = "/"
upstream = "app"
[[route]]
path = "/admin"
upstream = "app"
allow_groups = ["admin"]
[[route]]
path = "/pub"
upstream = "app"
access = "public"
[[route]]
path = "/git/projects"
upstream = "app"
allow_encoded = ["/"]
[[route]]
host = "app.test"
path = "/"
upstream = "app"
name = "app-host"
"#;

fn write_files(
    dir: &TempDir,
    a: &Addrs,
    echo: std::net::SocketAddr,
    tls: Option<(&str, &str)>,
) -> std::path::PathBuf {
    dir.write("session.keys", &format!("{}\n", gen_key()));
    dir.write(
        "users.toml",
        &format!(
            "[[user]]\nname = \"alice\"\npassword = \"{}\"\ngroups = [\"admin\"]\n[[user]]\nname = \"bob\"\npassword = \"{}\"\ngroups = [\"dev\"]\n",
            hash_password("alice-pw"),
            hash_password("bob-pw")
        ),
    );
    let (tls, secure) = match tls {
        Some((c, k)) => (
            format!(
                "[tls]\nhttps = [\"{}\"]\ncert = \"{c}\"\nkey = \"{k}\"\n",
                a.https
            ),
            "true",
        ),
        None => (String::new(), "false"),
    };
    dir.write(
        "gateway.toml",
        &format!(
            "[listen]\nhttp = [\"{}\"]\nthreads = 2\n{tls}[admin]\nlisten = \"{}\"\n[session]\nkeys_file = \"session.keys\"\nsecure = {secure}\n[auth]\nusers_file = \"users.toml\"\nlogin_attempts = \"50/1m\"\n{}",
            a.http,
            a.admin,
            ROUTES.replace("{echo}", &echo.to_string())
        ),
    )
}

/// Every way of asking for `/admin/…` that the gateway used to route to `/` (and so let
/// bob in), and what it must answer now.
const BYPASSES: [(&str, &str); 13] = [
    ("/Admin/x", "ambiguous_path"),
    ("/ADMIN/x", "ambiguous_path"),
    ("/admin;x=1/y", "ambiguous_path"),
    ("/pub/..;/admin/x", "ambiguous_path"),
    ("/admin./x", "ambiguous_path"),
    ("/admin%20/x", "ambiguous_path"),
    ("/admin%2e%20/x", "ambiguous_path"),
    ("/ADMIN.;jsessionid=1/x", "ambiguous_path"),
    ("/admin%23/x", "encoded_character"),
    ("/admin%3f/x", "encoded_character"),
    ("/admin%3b/x", "encoded_character"),
    ("/admin%25/x", "encoded_character"),
    ("/git/projects/..%2F..%2Fadmin/x", "ambiguous_path"),
];

fn cookie_header(r: &Resp, name: &str) -> String {
    format!(
        "{name}={}",
        r.set_cookie_value(name).expect("session cookie")
    )
}

#[test]
fn paths_other_readings_send_elsewhere_are_refused_over_http1() {
    let dir = TempDir::new("pathauth");
    let (_e, e) = echo("a", &dir);
    let addrs = Addrs::new();
    let cfg = write_files(&dir, &addrs, e, None);
    let g = start_gateway(&dir, &cfg, &addrs, false);
    let h = g.http;
    let bob = cookie_header(&login(h, "bob", "bob-pw", "/", &[]), "session");
    let alice = cookie_header(&login(h, "alice", "alice-pw", "/", &[]), "session");
    let with = |c: &str| vec![("Cookie", c.to_string())];

    // The policy itself: bob is refused /admin, alice is let in, both reach /.
    let as_bob = with(&bob);
    let bob_h: Vec<(&str, &str)> = as_bob.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let as_alice = with(&alice);
    let alice_h: Vec<(&str, &str)> = as_alice.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(get(h, "/x", &bob_h).status, 200);
    assert_eq!(get(h, "/admin/x", &bob_h).status, 403);
    assert_eq!(get(h, "/admin/x", &alice_h).status, 200);

    for (path, code) in BYPASSES {
        let r = get(h, path, &bob_h);
        assert_eq!(r.status, 400, "{path}: {r:?}");
        assert_eq!(r.json()["error"], code, "{path}: {r:?}");
        // Refused for everyone alike, before policy: alice is not routed either.
        let r = get(h, path, &alice_h);
        assert_eq!(r.status, 400, "{path} as alice: {r:?}");
    }
    // The session survives every refusal.
    assert_eq!(get(h, "/x", &bob_h).status, 200);

    // A browser gets a short page; an API client JSON.
    let mut nav = bob_h.clone();
    nav.push(("Accept", "text/html,application/xhtml+xml"));
    let r = get(h, "/Admin/x", &nav);
    assert_eq!(r.status, 400);
    assert!(
        r.header("content-type").unwrap().starts_with("text/html"),
        "{r:?}"
    );
    assert!(r.body.contains("ambiguous_path"), "{}", r.body);
    let id = r.header("x-request-id").expect("request id").to_string();
    assert!(r.body.contains(&id), "the page names the request id");
    // Logged with the request id and both route names, never forwarded.
    assert!(
        eventually(std::time::Duration::from_secs(5), || {
            let log = std::fs::read_to_string(&g.proc.log).unwrap_or_default();
            log.lines().any(|l| {
                l.contains("ambiguous path refused") && l.contains(&id) && l.contains("admin")
            })
        }),
        "no log line for {id}"
    );

    // A route that lists "/" in allow_encoded takes it, and the upstream gets it as sent.
    let r = get(h, "/git/projects/group%2fproject/issues", &bob_h);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["target"], "/git/projects/group%2Fproject/issues");
    // …but nothing else it did not list.
    let r = get(h, "/git/projects/a%3Bb", &bob_h);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "encoded_character");
    assert!(r.json()["message"].as_str().unwrap().contains("%3B"));
    // Encoded `/` elsewhere, and NUL anywhere, stay refused.
    for path in ["/x%2fy", "/git/projects/a%00b", "/.auth/login%3f"] {
        let r = get(h, path, &bob_h);
        assert_eq!(r.status, 400, "{path}: {r:?}");
        assert_eq!(r.json()["error"], "encoded_character", "{path}");
    }

    // Plain paths with dots and escapes that read the same everywhere still pass.
    for path in [
        "/static/app.js",
        "/a%20b",
        "/x/.well-known/y",
        "/pub/readme.txt",
    ] {
        assert_eq!(get(h, path, &bob_h).status, 200, "{path}");
    }
}

#[test]
fn hosts_compare_without_case_or_one_trailing_dot_and_connection_cannot_name_owned_headers() {
    let dir = TempDir::new("hostauth");
    let (_e, e) = echo("a", &dir);
    let addrs = Addrs::new();
    let cfg = write_files(&dir, &addrs, e, None);
    let g = start_gateway(&dir, &cfg, &addrs, false);
    let h = g.http;
    let port = h.port();
    let login = login(h, "bob", "bob-pw", "/", &[]);
    let bob = cookie_header(&login, "session");

    for host in ["app.test", "APP.Test", "app.test.", "App.TEST."] {
        let hp = format!("{host}:{port}");
        let r = get(h, "/x", &[("Host", &hp), ("Cookie", &bob)]);
        assert_eq!(r.status, 200, "{host}");
        // The route label shows in the request log; the upstream sees the host as sent.
        assert_eq!(r.upstream_header("x-forwarded-host"), vec![hp.clone()]);
    }
    let r = get(
        h,
        "/x",
        &[("Host", &format!("app.test..:{port}")), ("Cookie", &bob)],
    );
    assert_eq!(r.status, 400, "two trailing dots are not a host name");

    // CSRF: the same host in another spelling is the gateway's own origin; another port
    // or scheme is not.
    let post = |host: &str, origin: &str| {
        request(
            h,
            "POST",
            "/x",
            &[("Host", host), ("Origin", origin), ("Cookie", &bob)],
            "a=1",
        )
        .status
    };
    let own = format!("app.test:{port}");
    assert_eq!(post(&own, &format!("http://APP.test.:{port}")), 200);
    assert_eq!(
        post(
            &format!("App.Test.:{port}"),
            &format!("http://app.test:{port}")
        ),
        200
    );
    assert_eq!(post(&own, &format!("http://app.test:{}", port + 1)), 403);
    assert_eq!(
        post(&own, "http://app.test"),
        403,
        "default port 80 is not {port}"
    );
    assert_eq!(post(&own, &format!("https://app.test:{port}")), 403);
    assert_eq!(post(&own, &format!("http://app.test.evil:{port}")), 403);

    // Connection options naming owned or protected headers: the gateway's own 400, before
    // routing (a host with no route gets it too, not 404) and with the session untouched.
    for option in [
        "X-Forwarded-For",
        "keep-alive, x_forwarded_user",
        "X-Forwarded-Groups",
        "X-Request-Id",
        "Cookie",
        "Content-Length",
    ] {
        let r = get(h, "/x", &[("Connection", option), ("Cookie", &bob)]);
        assert_eq!(r.status, 400, "{option}: {r:?}");
        assert_eq!(r.json()["error"], "bad_connection_header", "{option}");
        let r = get(h, "/x", &[("Host", "nowhere.test"), ("Connection", option)]);
        assert_eq!(r.status, 400, "{option} before routing: {r:?}");
    }
    // Ordinary options still pass (the helper adds `close` itself).
    assert_eq!(
        get(h, "/x", &[("Connection", "close"), ("Cookie", &bob)]).status,
        200
    );
    assert_eq!(
        get(h, "/x", &[("Cookie", &bob)]).status,
        200,
        "session kept"
    );
    let log = std::fs::read_to_string(&g.proc.log).unwrap_or_default();
    assert!(
        !log.contains("Fail to proxy"),
        "no proxy-layer error: {log}"
    );
    assert!(log.contains("Connection option naming a protected header refused"));
}

#[test]
fn the_same_refusals_over_http2() {
    let dir = TempDir::new("pathauth-h2");
    let (_e, e) = echo("a", &dir);
    let addrs = Addrs::new();
    let (c, k) = write_cert(&dir);
    let cfg = write_files(
        &dir,
        &addrs,
        e,
        Some((c.to_str().unwrap(), k.to_str().unwrap())),
    );
    let g = start_gateway(&dir, &cfg, &addrs, true);
    let base = format!("https://localhost:{}", g.https.unwrap().port());
    let client = reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .post(format!("{base}/.auth/login"))
        .form(&[("username", "bob"), ("password", "bob-pw"), ("rd", "/")])
        .send()
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 303);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("__Host-session="))
        .map(|v| format!("__Host-session={}", v.split(';').next().unwrap()))
        .expect("cookie");
    let get = |path: &str| {
        let r = client
            .get(format!("{base}{path}"))
            .header("cookie", &cookie)
            .send()
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2, "{path}");
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().unwrap_or_default();
        (status, body)
    };
    assert_eq!(get("/x").0, 200);
    assert_eq!(get("/admin/x").0, 403);
    for (path, code) in BYPASSES {
        let (status, body) = get(path);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"], code, "{path}");
    }
    let (status, body) = get("/git/projects/group%2Fproject");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["target"], "/git/projects/group%2Fproject");
    assert_eq!(get("/x").0, 200, "session kept");
}

#[test]
fn routes_that_collide_under_the_loose_reading_are_a_config_error() {
    let dir = TempDir::new("collide");
    let (_e, e) = echo("a", &dir);
    let addrs = Addrs::new();
    let cfg = write_files(&dir, &addrs, e, None);
    let base = std::fs::read_to_string(&cfg).unwrap();
    let cases = [
        (
            "[[route]]\npath = \"/ADMIN\"\nupstream = \"app\"\n",
            "collides with route \"/admin\" at",
            "case-insensitive",
        ),
        (
            "[[route]]\npath = \"/pub.\"\nupstream = \"app\"\n",
            "collides with route \"/pub\" at",
            "trailing dots",
        ),
        (
            "[[route]]\npath = \"/pub;v=2\"\nupstream = \"app\"\n",
            "collides with route \"/pub\" at",
            ";parameters",
        ),
        (
            "[[route]]\npath = \"/y\"\nupstream = \"app\"\nallow_encoded = [\"%00\"]\n",
            "NUL is never allowed",
            "",
        ),
        (
            "[[route]]\npath = \"/y\"\nupstream = \"app\"\nallow_encoded = [\"x\"]\n",
            "is not an encoded character",
            "",
        ),
    ];
    for (i, (extra, want, how)) in cases.iter().enumerate() {
        let path = dir.write(&format!("bad{i}.toml"), &format!("{base}{extra}"));
        let out = Command::new(BIN)
            .args(["check", "-c", path.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra}: {err}");
        assert!(err.contains(want) && err.contains(how), "{extra}: {err}");
        // `file:line:col` of the new route, and of the one it collides with.
        let name = format!("bad{i}.toml:");
        assert!(err.contains(&name), "{err}");
        if how.is_empty() {
            continue;
        }
        assert_eq!(err.matches(&name).count(), 2, "both positions: {err}");
    }
}
