//! Logging in through real OpenID Providers: node `oidc-provider` 8.x (OpenID Certified),
//! started here on loopback over HTTPS with a self-signed certificate the gateway trusts
//! through `ca_file`, its development login form driven by an HTTP client with a cookie
//! jar (what a browser does, minus rendering). Two providers at once.

mod common;
use common::*;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

const COOKIE: &str = "session";

struct Idp {
    _proc: Proc,
    name: String,
    issuer: String,
}

fn provider_dir() -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider");
    assert!(
        d.join("node_modules/oidc-provider").exists(),
        "run `npm ci` in tests/oidc-provider (scripts/test.sh does)"
    );
    d
}

/// Start an OpenID Provider with one client for the gateway at `gw` (plain HTTP).
fn idp(
    dir: &TempDir,
    name: &str,
    gw: SocketAddr,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Idp {
    idp_for(
        dir,
        name,
        &format!("http://{gw}/.auth/oidc/callback"),
        cert,
        key,
    )
}

fn idp_for(
    dir: &TempDir,
    name: &str,
    redirect_uri: &str,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Idp {
    let client = serde_json::json!({ "redirect_uris": [redirect_uri] });
    idp_with(dir, name, free_addr(), client, cert, key, None)
}

/// An OpenID Provider at `addr` whose one client is `client` (merged over the basics);
/// `access_ttl`: the access tokens' lifetime in seconds.
fn idp_with(
    dir: &TempDir,
    name: &str,
    addr: SocketAddr,
    client: serde_json::Value,
    cert: &std::path::Path,
    key: &std::path::Path,
    access_ttl: Option<u64>,
) -> Idp {
    let mut c = serde_json::json!({
        "client_id": format!("gw-{name}"),
        "client_secret": format!("secret-of-{name}-0123456789"),
        "token_endpoint_auth_method": "client_secret_basic",
    });
    for (k, v) in client.as_object().unwrap() {
        c[k] = v.clone();
    }
    let mut cfg = serde_json::json!({
        "port": addr.port(),
        "cert": cert, "key": key,
        "clients": [c],
    });
    if let Some(t) = access_ttl {
        cfg["access_ttl"] = t.into();
    }
    let log = dir.path(&format!("idp-{name}-{}.log", std::process::id()));
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let child = Command::new("node")
        .arg(provider_dir().join("provider.mjs"))
        .arg(cfg.to_string())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .expect("node (20) is required");
    let p = Proc {
        child,
        log,
        term_first: true,
    };
    wait_port(addr);
    dir.write(
        &format!("{name}.secret"),
        &format!("secret-of-{name}-0123456789\n"),
    );
    Idp {
        _proc: p,
        name: name.to_string(),
        issuer: format!("https://127.0.0.1:{}", addr.port()),
    }
}

fn oidc_section(name: &str, issuer: &str, extra: &str) -> String {
    format!(
        "[[oidc]]\nname = \"{name}\"\ndisplay_name = \"{name} SSO\"\nissuer = \"{issuer}\"\nclient_id = \"gw-{name}\"\n\
         client_secret_file = \"{name}.secret\"\nca_file = \"idp.crt\"\ntimeout = \"3s\"\n{extra}"
    )
}

fn gateway(dir: &TempDir, addrs: &Addrs, echo: SocketAddr, users: bool, oidc: &str) -> Gateway {
    dir.write("session.keys", &gen_key());
    let users_line = if users {
        dir.write(
            "users.toml",
            &format!(
                "[[user]]\nname = \"bob\"\npassword = \"{}\"\n",
                hash_password("pw")
            ),
        );
        "users_file = \"users.toml\"\n"
    } else {
        ""
    };
    let cfg = dir.write(
        "gateway.toml",
        &format!(
            "[listen]\nhttp = [\"{http}\"]\n[admin]\nlisten = \"{admin}\"\n\
             [session]\nkeys_file = \"session.keys\"\nsecure = false\n\
             [auth]\n{users_line}\
             [[upstream]]\nname = \"app\"\ntargets = [\"{echo}\"]\n\
             [[route]]\npath = \"/\"\nupstream = \"app\"\n{oidc}",
            http = addrs.http,
            admin = addrs.admin,
        ),
    );
    start_gateway(dir, &cfg, addrs, false)
}

/// A browser stand-in: one cookie jar for every host, no automatic redirects.
fn browser(ca: &str) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn location(r: &reqwest::blocking::Response) -> String {
    r.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no location: {}", r.status()))
        .to_str()
        .unwrap()
        .to_string()
}

fn absolute(base: &str, loc: &str) -> String {
    if loc.starts_with("http") {
        loc.to_string()
    } else {
        format!("{base}{loc}")
    }
}

/// Walk the provider's pages as `login` until it sends the browser back to the gateway's
/// callback; returns that callback URL (not yet followed).
fn at_provider(b: &reqwest::blocking::Client, issuer: &str, auth_url: &str, login: &str) -> String {
    let mut url = auth_url.to_string();
    for _ in 0..12 {
        let r = b.get(&url).send().unwrap();
        if r.status().is_redirection() {
            let next = absolute(issuer, &location(&r));
            if next.contains("/.auth/oidc/callback") {
                return next;
            }
            url = next;
            continue;
        }
        assert_eq!(r.status(), 200, "{url}");
        let html = r.text().unwrap();
        let action = html
            .split("action=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| panic!("no form at {url}: {html}"))
            .to_string();
        let prompt = if html.contains("value=\"login\"") {
            "login"
        } else {
            "consent"
        };
        let r = b
            .post(absolute(issuer, &action))
            .form(&[("prompt", prompt), ("login", login), ("password", "any")])
            .send()
            .unwrap();
        assert!(r.status().is_redirection(), "{prompt}: {}", r.status());
        url = absolute(issuer, &location(&r));
        if url.contains("/.auth/oidc/callback") {
            return url;
        }
    }
    panic!("the provider never sent the browser back");
}

/// Start at the gateway, sign in at the provider; returns the callback URL.
fn sign_in_until_callback(
    b: &reqwest::blocking::Client,
    gw: SocketAddr,
    idp: &Idp,
    login: &str,
) -> String {
    let name = &idp.name;
    let r = b
        .get(format!("http://{gw}/.auth/oidc/{name}/start?rd=/after"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 302, "start");
    let auth = location(&r);
    assert!(auth.starts_with(&idp.issuer), "{auth}");
    assert!(auth.contains("code_challenge_method=S256") && auth.contains("nonce="));
    at_provider(b, &idp.issuer, &auth, login)
}

fn session_cookie(r: &reqwest::blocking::Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{COOKIE}=")) && !v.contains("Max-Age=0"))
        .map(|v| v.split(';').next().unwrap().to_string())
}

fn token_calls(b: &reqwest::blocking::Client, idp: &Idp) -> u64 {
    let v: serde_json::Value = b
        .get(format!("{}/_counts", idp.issuer))
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["/token"].as_u64().unwrap_or(0)
}

#[test]
fn people_sign_in_through_either_of_two_providers() {
    let dir = TempDir::new("oidc");
    let (_echo, echo) = echo("app", &dir);
    let addrs = Addrs::new();
    let (cert, key) = write_cert(&dir);
    std::fs::copy(&cert, dir.path("idp.crt")).unwrap();
    let ca = std::fs::read_to_string(&cert).unwrap();
    let corp = idp(&dir, "corp", addrs.http, &cert, &key);
    let other = idp(&dir, "other", addrs.http, &cert, &key);
    let oidc = oidc_section(
        "corp",
        &corp.issuer,
        "user_claim = \"preferred_username\"\ngroups_claim = \"realm_access.roles\"\nallowed_email_domains = [\"example.com\"]\n",
    ) + &oidc_section("other", &other.issuer, "user_claim = \"email\"\n");
    let g = gateway(&dir, &addrs, echo, true, &oidc);
    let gw = g.http;

    // The login page offers both providers beside the password form.
    let page = get(gw, "/.auth/login?rd=/x", &[]);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Sign in with corp SSO") && page.body.contains("Sign in with other SSO")
    );
    assert!(
        page.body.contains("/.auth/oidc/corp/start?rd=%2Fx"),
        "{}",
        page.body
    );
    assert!(page.body.contains("name=\"password\""));

    // A person with a password session signs in through corp: a new session, the old one
    // ends, identity from the configured (nested) claims.
    let b = browser(&ca);
    let r = b
        .post(format!("http://{gw}/.auth/login"))
        .form(&[("username", "bob"), ("password", "pw"), ("rd", "/")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    let before = session_cookie(&r).unwrap();
    let callback = sign_in_until_callback(&b, gw, &corp, "alice");
    assert!(
        callback.contains("iss="),
        "RFC 9207 iss in the answer: {callback}"
    );
    let r = b.get(&callback).send().unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().unwrap_or_default());
    assert_eq!(location(&r), "/after");
    let after = session_cookie(&r).expect("a session");
    assert_ne!(before, after, "a new session id");
    let app = get(gw, "/app", &[("Cookie", &after)]);
    assert_eq!(app.status, 200);
    assert_eq!(app.upstream_header("x-forwarded-user"), ["alice"]);
    assert_eq!(
        app.upstream_header("x-forwarded-email"),
        ["alice@example.com"]
    );
    assert_eq!(app.upstream_header("x-forwarded-groups"), ["reader,writer"]);
    let me = get(
        gw,
        "/.auth/me",
        &[("Cookie", &after), ("Accept", "application/json")],
    );
    assert_eq!(me.json()["provider"], "corp", "{}", me.body);
    assert!(me.json()["auth_time"].as_str().is_some());
    assert_eq!(
        get(
            gw,
            "/app",
            &[("Cookie", &before), ("Accept", "application/json")]
        )
        .status,
        401,
        "the pre-login session ended"
    );

    // Replaying the same callback (same browser, same state cookie gone or reused): 400.
    let tokens = token_calls(&b, &corp);
    let again = b.get(&callback).send().unwrap();
    assert_eq!(again.status(), 400);
    assert!(session_cookie(&again).is_none());
    assert_eq!(
        token_calls(&b, &corp),
        tokens,
        "a replayed callback redeems nothing"
    );

    // The other provider, its own claim mapping.
    let b2 = browser(&ca);
    let cb = sign_in_until_callback(&b2, gw, &other, "carol");
    let r = b2.get(&cb).send().unwrap();
    assert_eq!(r.status(), 303);
    let c = session_cookie(&r).unwrap();
    let app = get(gw, "/app", &[("Cookie", &c)]);
    assert_eq!(
        app.upstream_header("x-forwarded-user"),
        ["carol@example.com"]
    );
    assert_eq!(app.upstream_header("x-forwarded-groups"), ["dev,staff"]);
    // The login-state cookie, like the session cookie, never reaches the app.
    let app = get(
        gw,
        "/app",
        &[("Cookie", &format!("portcullis-oidc=abc; theme=1; {c}"))],
    );
    assert_eq!(app.upstream_header("cookie"), ["theme=1"]);

    // Mix-up: corp's answer with other's iss is refused before the code is redeemed.
    let b3 = browser(&ca);
    let cb = sign_in_until_callback(&b3, gw, &corp, "alice");
    let tokens = token_calls(&b3, &corp);
    let swapped = cb.replace(
        &format!(
            "iss={}",
            form_urlencoded::byte_serialize(corp.issuer.as_bytes()).collect::<String>()
        ),
        &format!(
            "iss={}",
            form_urlencoded::byte_serialize(other.issuer.as_bytes()).collect::<String>()
        ),
    );
    assert_ne!(swapped, cb);
    let r = b3.get(&swapped).send().unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(token_calls(&b3, &corp), tokens);

    // A forged state with a genuine state cookie: 400, no session.
    let b4 = browser(&ca);
    let cb = sign_in_until_callback(&b4, gw, &corp, "alice");
    let forged = cb.replacen("state=", "state=x", 1);
    let r = b4.get(&forged).send().unwrap();
    assert_eq!(r.status(), 400);
    assert!(session_cookie(&r).is_none());
    // No state cookie at all (another browser): 400.
    let r = browser(&ca).get(&cb).send().unwrap();
    assert_eq!(r.status(), 400);
    let body = r.text().unwrap();
    assert!(body.contains("Start again"), "{body}");

    // The provider's refusal (the person cancelled): a 403 page, no session.
    let b5 = browser(&ca);
    let r = b5
        .get(format!("http://{gw}/.auth/oidc/corp/start?rd=/"))
        .send()
        .unwrap();
    let auth = location(&r);
    let state = auth
        .split("state=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let iss = form_urlencoded::byte_serialize(corp.issuer.as_bytes()).collect::<String>();
    let r = b5
        .get(format!(
            "http://{gw}/.auth/oidc/callback?error=access_denied&state={state}&iss={iss}"
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(session_cookie(&r).is_none());
    assert!(r.text().unwrap().contains("access_denied"));

    // allowed_email_domains needs a verified address in an allowed domain; claims that
    // could split a header are refused.
    for (who, status) in [("unverified", 403), ("outsider", 403), ("comma", 403)] {
        let b = browser(&ca);
        let cb = sign_in_until_callback(&b, gw, &corp, who);
        let r = b.get(&cb).send().unwrap();
        assert_eq!(r.status(), status, "{who}");
        assert!(session_cookie(&r).is_none(), "{who}");
    }

    // Metrics and logs: fixed labels, no code, state or token anywhere.
    assert!(
        metric(
            &g,
            "portcullis_oidc_logins_total{provider=\"corp\",result=\"success\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &g,
            "portcullis_oidc_logins_total{provider=\"corp\",result=\"refused\"}"
        ) >= 3.0
    );
    let m = admin_get(&g, "/metrics").body;
    assert_promtool_accepts(&dir, "oidc-metrics.txt", &m);
    let code = cb.split("code=").nth(1).unwrap().split('&').next().unwrap();
    let log = g.proc.log_text();
    assert!(!log.contains(code), "a code reached the log");
    assert!(!m.contains(code));
    assert!(log.contains("OpenID sign-in refused"));
}

#[test]
fn a_provider_that_is_down_costs_its_logins_only() {
    let dir = TempDir::new("oidc-down");
    let (_echo, echo) = echo("app", &dir);
    let addrs = Addrs::new();
    let (cert, _key) = write_cert(&dir);
    std::fs::copy(&cert, dir.path("idp.crt")).unwrap();
    dir.write("gone.secret", "x\n");
    // Nothing listens at this issuer.
    let gone = format!("https://127.0.0.1:{}", free_addr().port());
    let g = gateway(&dir, &addrs, echo, false, &oidc_section("gone", &gone, ""));
    // One provider, no users file: the login page goes straight to it...
    let r = get(g.http, "/.auth/login?rd=/y", &[]);
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/.auth/oidc/gone/start?rd=%2Fy"));
    // ...which answers a 503 page with a way to try again; the gateway stays ready.
    let r = get(g.http, "/.auth/oidc/gone/start?rd=/y", &[]);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("Start again"));
    let ready = admin_get(&g, "/readyz");
    assert_eq!(ready.status, 200);
    assert!(
        ready.body.contains("degraded") && ready.body.contains("OpenID Provider gone"),
        "{}",
        ready.body
    );
    assert!(
        metric(
            &g,
            "portcullis_oidc_logins_total{provider=\"gone\",result=\"provider_down\"}"
        ) >= 1.0
    );
}

#[test]
fn oidc_settings_are_checked_offline_at_load() {
    let dir = TempDir::new("oidc-config");
    dir.write("session.keys", &gen_key());
    dir.write("s.secret", "s\n");
    let base = "[listen]\nhttp = [\"127.0.0.1:1\"]\n[session]\nkeys_file = \"session.keys\"\n[[upstream]]\nname = \"a\"\ntargets = [\"127.0.0.1:2\"]\n[[route]]\npath = \"/\"\nupstream = \"a\"\n";
    let ok = "[[oidc]]\nname = \"corp\"\nissuer = \"https://idp.example.com\"\nclient_id = \"gw\"\nclient_secret_file = \"s.secret\"\n";
    let cases = [
        (ok.replace("corp", "Corp"), "[a-z0-9-]"),
        (ok.replace("https://idp", "http://idp"), "https://"),
        (ok.to_string() + "refresh = 1\n", "invalid type"),
        (
            ok.to_string() + "access_token_header = \"Authorization\"\n",
            "relies on",
        ),
        (
            ok.to_string() + "access_token_header = \"X Token\"\n",
            "not a valid header name",
        ),
        (ok.to_string() + "scopes = [\"email\"]\n", "openid"),
        (ok.to_string() + ok, "same name"),
        (ok.replace("s.secret", "missing.secret"), "cannot read"),
        (ok.to_string() + "prompt = \"login\"\n", "unknown field"),
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
        assert!(err.contains("gateway.toml:"), "{err}");
    }
    // The README's examples (deploy/oidc/) pass `portcullis check` as shipped.
    for ex in ["google", "entra", "keycloak"] {
        let text = std::fs::read_to_string(format!(
            "{}/deploy/oidc/{ex}.toml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        std::fs::create_dir_all(dir.path("secrets")).unwrap();
        dir.write(&format!("secrets/{ex}.secret"), "s\n");
        let cfg = dir.write("gateway.toml", &format!("{base}{text}"));
        let out = Command::new(BIN)
            .args(["check", "-c", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{ex}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Cookie sessions keep no provider tokens: there is nothing to forward.
    let cookie_base = base.replace(
        "keys_file = \"session.keys\"\n",
        "keys_file = \"session.keys\"\nstore = \"cookie\"\n",
    );
    let cfg = dir.write(
        "gateway.toml",
        &format!("{cookie_base}{ok}access_token_header = \"X-Token\"\n"),
    );
    let out = Command::new(BIN)
        .args(["check", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("keeps no provider tokens"), "{err}");
    // A valid section passes without contacting the provider (idp.example.com does not
    // resolve here), with every setting that keeps tokens.
    let all = format!("{ok}refresh = true\nprovider_logout = true\naccess_token_header = \"X-Forwarded-Access-Token\"\n");
    let cfg = dir.write("gateway.toml", &format!("{base}{all}"));
    let out = Command::new(BIN)
        .args(["check", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = dir.write("gateway.toml", &format!("{base}{ok}"));
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

#[test]
fn a_real_browser_signs_in_through_the_provider_over_tls() {
    let dir = TempDir::new("oidc-browser");
    let (_echo, echo) = echo("app", &dir);
    let addrs = Addrs::new();
    let (cert, key) = write_cert(&dir);
    std::fs::copy(&cert, dir.path("idp.crt")).unwrap();
    let origin = format!("https://localhost:{}", addrs.https.port());
    let corp = idp_for(
        &dir,
        "corp",
        &format!("{origin}/.auth/oidc/callback"),
        &cert,
        &key,
    );
    dir.write("session.keys", &gen_key());
    dir.write(
        "users.toml",
        &format!(
            "[[user]]\nname = \"bob\"\npassword = \"{}\"\n",
            hash_password("pw")
        ),
    );
    let cfg = dir.write(
        "gateway.toml",
        &format!(
            "[listen]\nhttp = [\"{}\"]\n[tls]\nhttps = [\"{}\"]\ncert = \"{}\"\nkey = \"{}\"\n[admin]\nlisten = \"{}\"\n\
             [session]\nkeys_file = \"session.keys\"\n[auth]\nusers_file = \"users.toml\"\n\
             [[upstream]]\nname = \"app\"\ntargets = [\"{echo}\"]\n[[route]]\npath = \"/\"\nupstream = \"app\"\n{}",
            addrs.http,
            addrs.https,
            cert.display(),
            key.display(),
            addrs.admin,
            oidc_section("corp", &corp.issuer, "user_claim = \"preferred_username\"\n"),
        ),
    );
    let g = start_gateway(&dir, &cfg, &addrs, true);
    let (_chromium, mut cdp) = browser::chromium(&dir);

    // A protected page → the login page → the provider's button.
    cdp.call(
        "Page.navigate",
        serde_json::json!({"url": format!("{origin}/app/whoami")}),
    );
    assert!(cdp.wait_for("location.pathname === '/.auth/login' && document.readyState === 'complete' && !!document.querySelector('a.provider')"));
    cdp.eval("document.querySelector('a.provider').click(); true");
    // The provider's own login form, then its consent form, filled in like a person would.
    let at_idp = format!(
        "location.origin === '{}' && document.readyState === 'complete'",
        corp.issuer
    );
    assert!(
        cdp.wait_for(&format!(
            "{at_idp} && !!document.querySelector('input[name=login]')"
        )),
        "{}",
        cdp.eval("location.href")
    );
    cdp.eval("document.querySelector('input[name=login]').value = 'alice'; document.querySelector('input[name=password]').value = 'x'; document.querySelector('form').submit(); true");
    assert!(cdp.wait_for(&format!("({at_idp} && !!document.querySelector('input[value=consent]')) || location.pathname === '/app/whoami'")));
    if cdp.eval("location.pathname") != "/app/whoami" {
        cdp.eval("document.querySelector('form').submit(); true");
    }
    let arrived = cdp.wait_for("location.pathname === '/app/whoami' && document.readyState === 'complete' && document.body.innerText.includes('x-forwarded-user')");
    assert!(
        arrived,
        "{} {}\n{}",
        cdp.eval("location.href"),
        cdp.eval("document.body.innerText"),
        g.proc.log_text()
    );
    let body: serde_json::Value =
        serde_json::from_str(cdp.eval("document.body.innerText").as_str().unwrap()).unwrap();
    let users: Vec<&str> = body["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0] == "x-forwarded-user")
        .map(|h| h[1].as_str().unwrap())
        .collect();
    assert_eq!(users, ["alice"]);
    // The login-state cookie was Secure, __Host- and is gone once used; the session is set.
    let cookies = cdp.call("Network.getCookies", serde_json::json!({"urls": [origin]}));
    let names: Vec<&str> = cookies["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"__Host-session"), "{names:?}");
    assert!(!names.contains(&"__Host-portcullis-oidc"), "{names:?}");
}

#[test]
fn id_tokens_signed_with_hs256_are_refused_even_when_the_provider_offers_it() {
    // A real provider told to sign this client's ID tokens with HS256, keyed by the client
    // secret (oidc-provider's dev keystore offers only RS256 besides): the gateway never
    // accepts a symmetric ID token, whatever the provider advertises.
    let dir = TempDir::new("oidc-alg");
    let (_echo, echo) = echo("app", &dir);
    let addrs = Addrs::new();
    let (cert, key) = write_cert(&dir);
    std::fs::copy(&cert, dir.path("idp.crt")).unwrap();
    let ca = std::fs::read_to_string(&cert).unwrap();
    let addr = free_addr();
    let secret = "secret-of-hs-0123456789-0123456789-0123456789";
    let cfg = serde_json::json!({"port": addr.port(), "cert": cert, "key": key,
        "idTokenAlgs": ["RS256", "HS256"],
        "clients": [{"client_id": "gw-hs", "client_secret": secret,
            "redirect_uris": [format!("http://{}/.auth/oidc/callback", addrs.http)],
            "token_endpoint_auth_method": "client_secret_basic",
            "id_token_signed_response_alg": "HS256"}]});
    let log = dir.path("idp-alg.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new("node")
        .arg(provider_dir().join("provider.mjs"))
        .arg(cfg.to_string())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let hs = Idp {
        _proc: Proc {
            child,
            log,
            term_first: true,
        },
        name: "hs".into(),
        issuer: format!("https://127.0.0.1:{}", addr.port()),
    };
    wait_port(addr);
    dir.write("hs.secret", &format!("{secret}\n"));
    let g = gateway(
        &dir,
        &addrs,
        echo,
        true,
        &oidc_section("hs", &hs.issuer, ""),
    );
    let b = browser(&ca);
    let cb = sign_in_until_callback(&b, g.http, &hs, "alice");
    let r = b.get(&cb).send().unwrap();
    assert_eq!(r.status(), 502);
    assert!(session_cookie(&r).is_none());
    assert!(r.text().unwrap().contains("algorithm not accepted"));
    assert!(
        metric(
            &g,
            "portcullis_oidc_logins_total{provider=\"hs\",result=\"provider_error\"}"
        ) >= 1.0
    );
}

/// The provider's tokens, due for renewal: twenty requests at once cost the provider one
/// refresh, the access token the app receives is the current one, a provider that is down
/// costs nothing but the renewal, and a refresh token the provider no longer knows ends
/// the session.
#[test]
fn provider_tokens_are_renewed_once_forwarded_and_a_refused_renewal_ends_the_session() {
    let dir = TempDir::new("oidc-refresh");
    let (_echo, echo) = echo("app", &dir);
    let addrs = Addrs::new();
    let (cert, key) = write_cert(&dir);
    std::fs::copy(&cert, dir.path("idp.crt")).unwrap();
    let ca = std::fs::read_to_string(&cert).unwrap();
    let at = free_addr();
    let client = serde_json::json!({
        "redirect_uris": [format!("http://{}/.auth/oidc/callback", addrs.http)],
        "grant_types": ["authorization_code", "refresh_token"],
    });
    let corp = idp_with(&dir, "corp", at, client.clone(), &cert, &key, Some(4));
    let g = gateway(
        &dir,
        &addrs,
        echo,
        false,
        &oidc_section(
            "corp",
            &corp.issuer,
            "scopes = [\"openid\", \"email\", \"profile\", \"offline_access\"]\n\
             access_token_header = \"X-Forwarded-Access-Token\"\n",
        ),
    );
    let gw = g.http;
    let sign_in = |who: &str| {
        let b = browser(&ca);
        let cb = sign_in_until_callback(&b, gw, &corp, who);
        assert!(cb.contains("code="), "{cb}");
        let r = b.get(&cb).send().unwrap();
        assert_eq!(r.status(), 303);
        (session_cookie(&r).unwrap(), std::time::Instant::now())
    };
    let (alice, t0) = sign_in("alice");
    let (bob, _) = sign_in("bob");
    let api = |c: &str| get(gw, "/app", &[("Cookie", c), ("Accept", "application/json")]);
    let token_of = |r: &Resp| r.upstream_header("x-forwarded-access-token");

    // The access token goes to the app; a client's own header of that name never does.
    let r = get(
        gw,
        "/app",
        &[("Cookie", &alice), ("X-Forwarded-Access-Token", "forged")],
    );
    assert_eq!(r.status, 200);
    let first = token_of(&r);
    assert_eq!(first.len(), 1, "{:?}", r.upstream_headers());
    assert!(first[0] != "forged" && first[0].len() > 20);
    let r = get(gw, "/app", &[("x_forwarded_access_token", "forged")]);
    assert_eq!(r.status, 401, "no session");
    // Forward auth (nginx auth_request) gets it too, to pass on.
    let v = get(gw, "/.auth/verify", &[("Cookie", &alice)]);
    assert_eq!(v.status, 200);
    assert_eq!(
        v.header("x-forwarded-access-token"),
        Some(first[0].as_str())
    );

    // Due after 3 of its 4 seconds: twenty requests at once, one refresh at the provider.
    std::thread::sleep(Duration::from_millis(3300).saturating_sub(t0.elapsed()));
    let b = browser(&ca);
    let before = token_calls(&b, &corp);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..20).map(|_| s.spawn(|| api(&alice).status)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(token_calls(&b, &corp), before + 1, "exactly one refresh");
    let second = token_of(&api(&alice));
    assert_eq!(second.len(), 1);
    assert_ne!(second, first, "the renewed access token is forwarded");
    assert_eq!(
        metric(
            &g,
            "portcullis_oidc_refreshes_total{provider=\"corp\",result=\"renewed\"}"
        ),
        1.0
    );

    // The provider goes down: the session stays, the renewal is counted as failed.
    drop(corp);
    std::thread::sleep(Duration::from_millis(3300));
    assert_eq!(
        api(&alice).status,
        200,
        "a provider that is down ends no session"
    );
    assert!(
        metric(
            &g,
            "portcullis_oidc_refreshes_total{provider=\"corp\",result=\"provider_down\"}"
        ) >= 1.0
    );

    // It comes back having forgotten every grant (in-memory): bob's renewal is refused
    // and his session ends; alice's waits out its retry delay and stays.
    let corp = idp_with(&dir, "corp", at, client, &cert, &key, Some(4));
    assert_eq!(api(&bob).status, 401, "a refused renewal ends the session");
    assert_eq!(api(&bob).status, 401, "and it stays ended");
    assert_eq!(api(&alice).status, 200);
    assert!(
        metric(
            &g,
            "portcullis_oidc_refreshes_total{provider=\"corp\",result=\"refused\"}"
        ) >= 1.0
    );
    // No token of any kind in the log.
    let log = g.proc.log_text();
    for t in first.iter().chain(second.iter()) {
        assert!(!log.contains(t.as_str()), "an access token reached the log");
    }
    let m = admin_get(&g, "/metrics").body;
    assert_promtool_accepts(&dir, "refresh-metrics.txt", &m);
    drop(corp);
}

/// Logout with `provider_logout = true` goes on to the provider, whose Back-Channel Logout
/// then ends every gateway session of that provider session, on both instances sharing
/// Redis; forged logout tokens end nothing.
#[test]
fn provider_logout_and_back_channel_logout_end_sessions_on_every_instance() {
    let dir = TempDir::new("oidc-bcl");
    let (_echo, echo) = echo("app", &dir);
    let (_redis, raddr) = redis_server(&dir);
    let (cert, key) = write_cert(&dir);
    std::fs::copy(&cert, dir.path("idp.crt")).unwrap();
    let ca = std::fs::read_to_string(&cert).unwrap();
    dir.write("session.keys", &gen_key());
    // B on another loopback address: a browser keeps cookies per host, not per port, and
    // one browser signs in to both.
    let on_two = std::net::TcpListener::bind("127.0.0.2:0")
        .expect("127.0.0.2")
        .local_addr()
        .unwrap();
    let (aa, ab) = (
        Addrs::new(),
        Addrs {
            http: on_two,
            ..Addrs::new()
        },
    );
    let client = serde_json::json!({
        "redirect_uris": [
            format!("http://{}/.auth/oidc/callback", aa.http),
            format!("http://{}/.auth/oidc/callback", ab.http),
        ],
        "post_logout_redirect_uris": [format!("http://{}/", aa.http)],
        "backchannel_logout_uri": format!("http://{}/.auth/oidc/backchannel-logout", aa.http),
        "backchannel_logout_session_required": true,
    });
    let corp = idp_with(&dir, "corp", free_addr(), client, &cert, &key, None);
    let instance = |name: &str, addrs: &Addrs| {
        let cfg = dir.write(
            &format!("{name}.toml"),
            &format!(
                "[listen]\nhttp = [\"{http}\"]\n[admin]\nlisten = \"{admin}\"\n\
                 [session]\nkeys_file = \"session.keys\"\nsecure = false\nstore = \"redis\"\n\
                 [redis]\nurl = \"redis://{raddr}/0\"\nkey_prefix = \"bcl:\"\n\
                 [auth]\nafter_logout = \"/\"\n\
                 [[upstream]]\nname = \"app\"\ntargets = [\"{echo}\"]\n\
                 [[route]]\npath = \"/\"\nupstream = \"app\"\n{oidc}",
                http = addrs.http,
                admin = addrs.admin,
                oidc = oidc_section("corp", &corp.issuer, "provider_logout = true\n"),
            ),
        );
        let g = start_gateway(&dir, &cfg, addrs, false);
        let live = eventually(Duration::from_secs(10), || {
            g.proc.log_text().contains("invalidation channel is live")
        });
        assert!(live, "{name}: never subscribed");
        g
    };
    let (a, b) = (instance("a", &aa), instance("b", &ab));
    let api = |gw: SocketAddr, c: &str| {
        get(gw, "/app", &[("Cookie", c), ("Accept", "application/json")]).status
    };
    // One person signs in through both instances (one provider session, one sid) ...
    let person = browser(&ca);
    let mut cookies = Vec::new();
    for gw in [a.http, b.http] {
        let cb = sign_in_until_callback(&person, gw, &corp, "alice");
        let r = person.get(&cb).send().unwrap();
        assert_eq!(r.status(), 303);
        cookies.push(session_cookie(&r).unwrap());
    }
    // ... and someone else once.
    let other = browser(&ca);
    let cb = sign_in_until_callback(&other, a.http, &corp, "carol");
    let carol = session_cookie(&other.get(&cb).send().unwrap()).unwrap();
    for c in &cookies {
        assert_eq!(api(a.http, c), 200);
        assert_eq!(api(b.http, c), 200, "B's near-cache holds it now");
    }

    // Forged logout tokens end nothing: alg none, a key the provider never published, a
    // token from nowhere, no token, the wrong content type.
    let b64 = |v: &serde_json::Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({"iss": corp.issuer, "aud": "gw-corp", "iat": now,
        "jti": "j-1", "sub": "alice",
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}}});
    let none = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none"})),
        b64(&claims)
    );
    let foreign_key = jsonwebtoken::EncodingKey::from_secret(b"secret-of-corp-0123456789");
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &foreign_key,
    )
    .unwrap();
    let form = "application/x-www-form-urlencoded";
    for (ctype, body) in [
        (form, format!("logout_token={none}")),
        (form, format!("logout_token={hs}")),
        (form, "logout_token=a.b.c".to_string()),
        (form, String::new()),
    ] {
        let r = request(
            a.http,
            "POST",
            "/.auth/oidc/backchannel-logout",
            &[("Content-Type", ctype)],
            &body,
        );
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.json()["error"], "invalid_request");
    }
    let r = request(
        a.http,
        "POST",
        "/.auth/oidc/backchannel-logout",
        &[("Content-Type", "application/json")],
        "{}",
    );
    assert_eq!(r.status, 415);
    for c in &cookies {
        assert_eq!(api(b.http, c), 200, "nothing ended");
    }

    // Logout at A: the gateway session ends, and the browser goes on to the provider.
    let r = person
        .post(format!("http://{}/.auth/logout", a.http))
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    let end = location(&r);
    assert!(end.starts_with(&corp.issuer), "{end}");
    for part in ["id_token_hint=", "client_id=gw-corp", "state="] {
        assert!(end.contains(part), "{part} in {end}");
    }
    let back = form_urlencoded::byte_serialize(format!("http://{}/", aa.http).as_bytes())
        .collect::<String>();
    assert!(
        end.contains(&format!("post_logout_redirect_uri={back}")),
        "{end}"
    );
    assert_eq!(api(b.http, &cookies[0]), 401, "the session logged out at A");
    // The provider asks the person to confirm, then tells the gateway (back channel).
    let page = person.get(&end).send().unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().unwrap();
    let field = |name: &str| {
        html.split(&format!("name=\"{name}\" value=\""))
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| panic!("no {name} in {html}"))
            .to_string()
    };
    let action = html
        .split("action=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let r = person
        .post(absolute(&corp.issuer, &action))
        .form(&[("xsrf", field("xsrf").as_str()), ("logout", "yes")])
        .send()
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert!(
        location(&r).starts_with(&format!("http://{}/?state=", aa.http)),
        "back at after_logout with the state: {}",
        location(&r)
    );
    // The other gateway session of that provider session ends on B at once; carol's stays.
    assert!(
        eventually(Duration::from_secs(3), || api(b.http, &cookies[1]) == 401),
        "back-channel logout reached every instance"
    );
    assert_eq!(api(a.http, &cookies[1]), 401);
    assert_eq!(api(b.http, &carol), 200);
    assert_eq!(
        metric(
            &a,
            "portcullis_oidc_backchannel_logouts_total{provider=\"corp\",result=\"success\"}"
        ),
        1.0
    );
    let log = a.proc.log_text();
    assert!(log.contains("back-channel logout"), "{log}");
    assert!(!log.contains(&cookies[1].split('=').nth(1).unwrap().to_string()));
}
