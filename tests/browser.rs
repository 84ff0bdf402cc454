//! A real browser (Debian's headless Chromium, driven over the DevTools protocol) logs in
//! through the login page over TLS; the upstream sees the user and the session cookie is
//! HttpOnly, Secure and invisible to page scripts.

mod common;
use common::*;

#[test]
fn a_real_browser_logs_in_through_the_login_page() {
    let dir = TempDir::new("browser");
    let (_echo, echo) = echo("app", &dir);
    let addrs = Addrs::new();
    let (cert, key) = write_cert(&dir);
    dir.write("session.keys", &gen_key());
    dir.write(
        "users.toml",
        &format!(
            "[[user]]\nname = \"alice\"\npassword = \"{}\"\n",
            hash_password("alice-pw")
        ),
    );
    let cfg = dir.write(
        "gateway.toml",
        &format!(
            "[listen]\nhttp = [\"{}\"]\n[tls]\nhttps = [\"{}\"]\ncert = \"{}\"\nkey = \"{}\"\n[admin]\nlisten = \"{}\"\n\
             [session]\nkeys_file = \"session.keys\"\n[auth]\nusers_file = \"users.toml\"\n\
             [[upstream]]\nname = \"app\"\ntargets = [\"{echo}\"]\n[[route]]\npath = \"/\"\nupstream = \"app\"\n",
            addrs.http,
            addrs.https,
            cert.display(),
            key.display(),
            addrs.admin
        ),
    );
    let g = start_gateway(&dir, &cfg, &addrs, true);
    let origin = format!("https://localhost:{}", g.https.unwrap().port());

    let (_browser, mut cdp) = browser::chromium(&dir);

    // A protected page sends the browser to the login page, rd carried along.
    cdp.call(
        "Page.navigate",
        serde_json::json!({"url": format!("{origin}/app/whoami")}),
    );
    assert!(cdp.wait_for("location.pathname === '/.auth/login' && document.readyState === 'complete' && !!document.getElementById('password')"));
    assert_eq!(
        cdp.eval("document.querySelector('input[name=rd]').value"),
        "/app/whoami"
    );
    // Type and submit like a person would.
    cdp.eval("document.getElementById('username').value = 'alice'; document.getElementById('password').value = 'alice-pw'; document.querySelector('button[type=submit]').click(); true");
    let arrived = cdp.wait_for("location.pathname === '/app/whoami' && document.readyState === 'complete' && document.body.innerText.includes('x-forwarded-user')");
    assert!(
        arrived,
        "after login: {} {}\n{}",
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
    assert_eq!(users, ["alice"], "the upstream saw the user");

    // Scripts cannot read the session cookie; the browser stored it HttpOnly and Secure.
    assert_eq!(cdp.eval("document.cookie"), "");
    let cookies = cdp.call("Network.getCookies", serde_json::json!({"urls": [origin]}));
    let c = cookies["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "__Host-session")
        .expect("session cookie stored");
    assert_eq!(c["httpOnly"], true);
    assert_eq!(c["secure"], true);
    assert_eq!(c["sameSite"], "Lax");
    assert_eq!(c["path"], "/");
}
