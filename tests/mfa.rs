//! Second factors over real sockets: TOTP codes from an independent implementation
//! (PyPI `pyotp`), enrollment from the account page and inside a login, recovery codes,
//! codes used once, brute force limited, step-up with real waiting, the account page's
//! session list and the admin session API.

mod common;
use common::*;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const COOKIE: &str = "session";
const PENDING: &str = "portcullis-mfa";
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// The base32 secret in the otpauth:// URI a page shows.
fn secret_of(page: &str) -> String {
    let uri = page
        .split("otpauth://")
        .nth(1)
        .unwrap_or_else(|| panic!("no otpauth URI in {page}"));
    uri.split("secret=")
        .nth(1)
        .unwrap()
        .split(['&', '<', '"'])
        .next()
        .unwrap()
        .to_string()
}

fn hidden(page: &str, name: &str) -> String {
    page.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        .to_string()
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn start(dir: &TempDir, extra_routes: &str, mfa: &str, attempts: &str) -> Gateway {
    dir.write("session.keys", &gen_key());
    dir.write("admin.token", "admin-token-0123456789abcdef\n");
    dir.write(
        "users.toml",
        &format!(
            "[[user]]\nname = \"alice\"\npassword = \"{p}\"\ngroups = [\"staff\"]\n\
             [[user]]\nname = \"bob\"\npassword = \"{p}\"\ngroups = [\"admins\"]\n\
             [[user]]\nname = \"carol\"\npassword = \"{p}\"\n",
            p = hash_password("pw")
        ),
    );
    let (echo_proc, echo) = echo("app", dir);
    std::mem::forget(echo_proc); // lives as long as the test process
    let addrs = Addrs::new();
    let cfg = dir.write(
        "gateway.toml",
        &format!(
            "[listen]\nhttp = [\"{http}\"]\n[admin]\nlisten = \"{admin}\"\ntoken_file = \"admin.token\"\n\
             [session]\nkeys_file = \"session.keys\"\nsecure = false\n\
             [auth]\nusers_file = \"users.toml\"\nlogin_attempts = \"{attempts}\"\n\
             [mfa]\ncredentials_file = \"state/credentials\"\n{mfa}\
             [[upstream]]\nname = \"app\"\ntargets = [\"{echo}\"]\n\
             [[route]]\npath = \"/\"\nupstream = \"app\"\n{extra_routes}",
            http = addrs.http,
            admin = addrs.admin,
        ),
    );
    start_gateway(dir, &cfg, &addrs, false)
}

/// Password step: either a session (no second factor needed) or a pending login.
enum Step {
    Session(String),
    Pending(String),
}

fn password(gw: SocketAddr, user: &str, extra: &str) -> Step {
    let r = request(
        gw,
        "POST",
        "/.auth/login",
        &[FORM, ("User-Agent", "TestBrowser/1.0")],
        &format!("username={user}&password=pw&rd=%2Fdone{extra}"),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    if let Some(c) = r.set_cookie_value(COOKIE) {
        assert_eq!(r.header("location"), Some("/done"));
        return Step::Session(format!("{COOKIE}={c}"));
    }
    assert_eq!(r.header("location"), Some("/.auth/mfa"));
    let p = r.set_cookie_value(PENDING).expect("a pending login");
    Step::Pending(format!("{PENDING}={p}"))
}

fn submit_code(gw: SocketAddr, pending: &str, code: &str) -> Resp {
    request(
        gw,
        "POST",
        "/.auth/mfa",
        &[FORM, ("Cookie", pending), ("User-Agent", "TestBrowser/1.0")],
        &format!("code={}", enc(code)),
    )
}

fn app(gw: SocketAddr, cookie: &str) -> Resp {
    get(
        gw,
        "/app",
        &[("Cookie", cookie), ("Accept", "application/json")],
    )
}

#[test]
fn totp_enrollment_second_step_recovery_codes_account_page_and_admin_api() {
    let dir = TempDir::new("mfa");
    let g = start(&dir, "", "required_groups = [\"admins\"]\n", "100/1m");
    let gw = g.http;

    // alice has no factor and is not required to: the password gives a session.
    let Step::Session(alice) = password(gw, "alice", "") else {
        panic!("alice needs no second step yet");
    };
    let me = get(gw, "/.auth/me", &[("Cookie", &alice)]);
    assert_eq!(me.json()["amr"], serde_json::json!(["pwd"]), "{}", me.body);
    let page = get(gw, "/.auth/account", &[("Cookie", &alice)]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Signed in as <strong>alice</strong>"));
    assert!(page.body.contains("Add an authenticator app"));
    assert!(
        page.body.contains("TestBrowser/1.0"),
        "the device is listed"
    );

    // She adds a TOTP app (her login is recent): QR code and URI, confirmed by a code.
    let add = |cookie: &str, body: &str| {
        request(
            gw,
            "POST",
            "/.auth/account",
            &[FORM, ("Cookie", cookie)],
            body,
        )
    };
    let begin = add(&alice, "action=totp-begin");
    assert_eq!(begin.status, 200, "{}", begin.body);
    assert!(begin.body.contains("<svg"), "a server-rendered QR code");
    assert!(!begin.body.contains("<script"));
    let secret = secret_of(&begin.body);
    let sealed = hidden(&begin.body, "enrollment");
    let wrong = add(
        &alice,
        &format!(
            "action=totp-confirm&enrollment={}&code=000000",
            enc(&sealed)
        ),
    );
    assert_eq!(wrong.status, 401);
    let ok = add(
        &alice,
        &format!(
            "action=totp-confirm&enrollment={}&code={}",
            enc(&sealed),
            pyotp(&secret, 0)
        ),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    let codes: Vec<String> = ok
        .body
        .split("<li>")
        .skip(1)
        .map(|s| s.split("</li>").next().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10, "{}", ok.body);
    // The enrollment form cannot be replayed by someone else's session.
    let Step::Session(carol) = password(gw, "carol", "") else {
        panic!("carol has no factor");
    };
    let stolen = add(
        &carol,
        &format!(
            "action=totp-confirm&enrollment={}&code={}",
            enc(&sealed),
            pyotp(&secret, 0)
        ),
    );
    assert_eq!(stolen.status, 400);

    // Next login: the password is not enough; the pending login is no session.
    let Step::Pending(pending) = password(gw, "alice", "") else {
        panic!("alice has a factor now");
    };
    assert_eq!(
        app(gw, &pending).status,
        401,
        "a pending login is no session"
    );
    let step = get(gw, "/.auth/mfa", &[("Cookie", &pending)]);
    assert_eq!(step.status, 200);
    assert!(step.body.contains("six-digit code"));
    assert_eq!(submit_code(gw, &pending, "123456").status, 401);
    let next = pyotp(&secret, 30); // the next step: the enrollment's code is spent
    let done = submit_code(gw, &pending, &next);
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.header("location"), Some("/done"));
    let s2 = format!("{COOKIE}={}", done.set_cookie_value(COOKIE).unwrap());
    assert_ne!(s2, alice, "a new session");
    let me = get(gw, "/.auth/me", &[("Cookie", &s2)]);
    assert_eq!(me.json()["amr"], serde_json::json!(["pwd", "otp"]));
    // The pending login completes once; the same code is accepted once.
    let replay = submit_code(gw, &pending, &next);
    assert_eq!(replay.status, 401);
    assert!(replay.set_cookie_value(COOKIE).is_none());
    let replay = submit_code(gw, &pending, &codes[9]);
    assert_eq!(replay.status, 400, "a completed pending login is spent");
    assert!(replay.set_cookie_value(COOKIE).is_none());
    let Step::Pending(again) = password(gw, "alice", "") else {
        panic!()
    };
    assert_eq!(
        submit_code(gw, &again, &next).status,
        401,
        "a code is used once"
    );
    // A recovery code works once, in any spelling.
    let r = submit_code(gw, &again, &codes[0].to_uppercase());
    assert_eq!(r.status, 303, "{}", r.body);
    let Step::Pending(third) = password(gw, "alice", "") else {
        panic!()
    };
    assert_eq!(submit_code(gw, &third, &codes[0]).status, 401);
    // The pending cookie never reaches the app.
    let r = get(
        gw,
        "/app",
        &[
            ("Cookie", &format!("{third}; theme=1; {s2}")),
            ("Accept", "application/json"),
        ],
    );
    assert_eq!(r.upstream_header("cookie"), ["theme=1"]);

    // bob must use a second factor and has none: he enrolls inside his login.
    let Step::Pending(bp) = password(gw, "bob", "") else {
        panic!("bob is required")
    };
    let page = get(gw, "/.auth/mfa", &[("Cookie", &bp)]);
    assert!(page.body.contains("needs a second factor") && page.body.contains("<svg"));
    let bsecret = secret_of(&page.body);
    let r = submit_code(gw, &bp, &pyotp(&bsecret, 0));
    assert_eq!(r.status, 200, "recovery codes, shown once: {}", r.body);
    assert_eq!(r.body.matches("<li>").count(), 10);
    let bob = format!("{COOKIE}={}", r.set_cookie_value(COOKIE).unwrap());
    assert_eq!(app(gw, &bob).upstream_header("x-forwarded-user"), ["bob"]);
    // ... and may not remove his only factor.
    let r = request(
        gw,
        "POST",
        "/.auth/account",
        &[FORM, ("Cookie", &bob)],
        "action=totp-remove",
    );
    assert_eq!(r.status, 403);

    // Stored sealed, 0600, nothing readable.
    let creds = std::fs::read_to_string(dir.path("state/credentials")).unwrap();
    assert!(!creds.contains("alice") && !creds.contains(&secret) && !creds.contains(&bsecret));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path("state/credentials"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The account page lists alice's sessions; she ends one, then all others.
    let page = get(gw, "/.auth/account", &[("Cookie", &s2)]);
    assert!(page.body.contains("this session"));
    let handles: Vec<String> = page
        .body
        .split("name=\"handle\" value=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_string())
        .collect();
    assert!(handles.len() >= 2, "{}", page.body);
    let r = add(&s2, &format!("action=end&handle={}", handles[0]));
    assert_eq!(r.status, 303);
    // Someone else's handle ends nothing.
    let r = add(&carol, &format!("action=end&handle={}", handles[1]));
    assert_eq!(r.status, 404);
    let r = add(&s2, "action=end-others");
    assert_eq!(r.status, 303);
    assert_eq!(app(gw, &alice).status, 401);
    assert_eq!(app(gw, &s2).status, 200, "the current session stays");

    // Admin API: list with opaque handles, end one.
    let token = ("Authorization", "Bearer admin-token-0123456789abcdef");
    assert_eq!(get(g.admin, "/sessions?user=bob", &[]).status, 401);
    let list = get(g.admin, "/sessions?user=bob", &[token]);
    assert_eq!(list.status, 200, "{}", list.body);
    let sessions = list.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        sessions[0]["auth_methods"],
        serde_json::json!(["pwd", "otp"])
    );
    assert_eq!(sessions[0]["user_agent"], "TestBrowser/1.0");
    assert_eq!(sessions[0]["client"], "127.0.0.1");
    let handle = sessions[0]["handle"].as_str().unwrap();
    let bob_id = bob.split('=').nth(1).unwrap();
    assert!(!handle.contains(bob_id) && !list.body.contains(bob_id));
    assert_eq!(
        request(g.admin, "DELETE", "/sessions/garbage", &[token], "").status,
        400
    );
    let r = request(
        g.admin,
        "DELETE",
        &format!("/sessions/{handle}"),
        &[token],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(app(gw, &bob).status, 401);
    assert_eq!(
        request(
            g.admin,
            "DELETE",
            &format!("/sessions/{handle}"),
            &[token],
            ""
        )
        .status,
        404
    );

    // Metrics: counted, promtool-clean, no user names; no secret in the log.
    assert!(
        metric(
            &g,
            "portcullis_mfa_total{method=\"totp\",result=\"success\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &g,
            "portcullis_mfa_total{method=\"recovery\",result=\"success\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &g,
            "portcullis_mfa_total{method=\"totp\",result=\"failure\"}"
        ) >= 2.0
    );
    let m = admin_get(&g, "/metrics").body;
    assert_promtool_accepts(&dir, "mfa-metrics.txt", &m);
    let log = g.proc.log_text();
    for s in [&secret, &bsecret, &codes[1], &next] {
        assert!(!log.contains(s.as_str()), "a secret reached the log");
    }
}

#[test]
fn step_up_asks_for_a_recent_or_stronger_login_and_keeps_the_session() {
    let dir = TempDir::new("mfa-stepup");
    let g = start(
        &dir,
        "[[route]]\npath = \"/recent\"\nupstream = \"app\"\nmax_auth_age = \"3s\"\n\
         [[route]]\npath = \"/strong\"\nupstream = \"app\"\nrequire_mfa = true\n",
        "",
        "100/1m",
    );
    let gw = g.http;
    let Step::Session(s) = password(gw, "alice", "") else {
        panic!()
    };
    let nav = |c: &str, path: &str| get(gw, path, &[("Cookie", c), ("Accept", "text/html")]);
    assert_eq!(nav(&s, "/recent").status, 200);
    std::thread::sleep(Duration::from_millis(3200));
    let r = nav(&s, "/recent?x=1");
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("/.auth/login?rd=%2Frecent%3Fx%3D1&step_up=1")
    );
    let api = get(
        gw,
        "/recent",
        &[("Cookie", &s), ("Accept", "application/json")],
    );
    assert_eq!(api.status, 401);
    assert_eq!(api.json()["error"], "step_up_required");
    assert_eq!(api.json()["max_auth_age_seconds"], 3);
    assert_eq!(app(gw, &s).status, 200, "the session is kept");
    let page = get(gw, "/.auth/login?rd=%2Frecent&step_up=1", &[]);
    assert!(page.body.contains("needs a recent sign-in"));
    let Step::Session(fresh) = password(gw, "alice", "") else {
        panic!()
    };
    assert_eq!(nav(&fresh, "/recent").status, 200);

    // require_mfa: a password-only session is sent to a login that asks for a factor;
    // alice has none, so she enrolls inside that login.
    let r = nav(&fresh, "/strong");
    assert_eq!(r.status, 302);
    let loc = r.header("location").unwrap().to_string();
    assert!(loc.ends_with("&step_up=mfa"), "{loc}");
    let page = get(gw, &loc, &[]);
    assert!(page.body.contains("name=\"mfa\" value=\"1\""));
    let Step::Pending(p) = password(gw, "alice", "&mfa=1") else {
        panic!("the step-up asks for a second factor")
    };
    let step = get(gw, "/.auth/mfa", &[("Cookie", &p)]);
    let secret = secret_of(&step.body);
    let r = submit_code(gw, &p, &pyotp(&secret, 0));
    assert_eq!(r.status, 200);
    let strong = format!("{COOKIE}={}", r.set_cookie_value(COOKIE).unwrap());
    assert_eq!(nav(&strong, "/strong").status, 200);
    assert_eq!(
        get(
            gw,
            "/strong",
            &[("Cookie", &fresh), ("Accept", "application/json")]
        )
        .status,
        401
    );
    assert!(metric(&g, "portcullis_step_up_total{route=\"/strong\"}") >= 1.0);
    assert!(metric(&g, "portcullis_step_up_total{route=\"/recent\"}") >= 2.0);
}

#[test]
fn wrong_codes_count_against_login_attempts() {
    let dir = TempDir::new("mfa-brute");
    let g = start(&dir, "", "required_groups = [\"*\"]\n", "5/1m");
    let gw = g.http;
    let Step::Pending(p) = password(gw, "carol", "") else {
        panic!("everyone is required")
    };
    let statuses: Vec<u16> = (0..7)
        .map(|i| submit_code(gw, &p, &format!("00000{i}")).status)
        .collect();
    assert_eq!(&statuses[..5], [401; 5], "{statuses:?}");
    assert_eq!(statuses[5], 429, "{statuses:?}");
    let r = submit_code(gw, &p, "111111");
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    // Configuration errors at load.
    let cases = [
        ("[mfa]\ntotp = false\npasskeys = false\n", "no second factor"),
        ("[mfa]\ntotp = false\nrequired_groups = [\"staff\"]\n", "required_groups needs totp"),
        ("[[route]]\npath = \"/x\"\nupstream = \"app\"\nmax_auth_age = \"soon\"\n", "max_auth_age"),
        ("[[route]]\npath = \"/x\"\nupstream = \"app\"\naccess = \"public\"\nrequire_mfa = true\n", "authenticated"),
    ];
    let base = std::fs::read_to_string(&g.config).unwrap();
    for (extra, want) in cases {
        let text = if extra.starts_with("[mfa]") {
            base.replace(
                "[mfa]\ncredentials_file = \"state/credentials\"\nrequired_groups = [\"*\"]\n",
                extra,
            )
        } else {
            format!("{base}{extra}")
        };
        let cfg = dir.write("bad.toml", &text);
        let out = Command::new(BIN)
            .args(["check", "-c", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra}: {err}");
        assert!(err.contains(want), "{extra}: {err}");
    }
}
