//! Passkeys in a real browser: Debian's headless Chromium with the DevTools virtual
//! authenticator (CTAP2, internal, resident keys, user verification) against the gateway
//! over TLS at `https://localhost` (a secure context and a valid RP ID). A person logs in
//! with a password, adds a passkey on the account page, uses it as the second step after
//! the password and then to sign in without one; a replayed assertion, a bad signature, an
//! unknown credential, an assertion made for another origin and a sign counter that went
//! back (a cloned authenticator) are each refused, logged and counted. Screenshots of the
//! login, second-step and account pages go to `target/screenshots/`.

mod common;
use common::*;
use std::time::Duration;

/// Installed before every document: records the bodies the page's own script posts to
/// the passkey finish endpoint (to replay them) and the answers, and — when the test asks
/// — corrupts the signature on the way out.
const FETCH_HOOK: &str = r#"(() => {
  const orig = window.fetch;
  window.fetch = function (url, opts) {
    if (String(url).endsWith('/passkey/register') && opts && typeof opts.body === 'string') {
      sessionStorage.setItem('pk-last-register', opts.body);
    }
    if (String(url).endsWith('/passkey/login') && opts && typeof opts.body === 'string') {
      const j = JSON.parse(opts.body);
      if (sessionStorage.getItem('pk-tamper') === 'signature') {
        const s = j.credential.response.signature;
        j.credential.response.signature = s.slice(0, 12) + (s[12] === 'A' ? 'B' : 'A') + s.slice(13);
        opts = Object.assign({}, opts, { body: JSON.stringify(j) });
      }
      sessionStorage.setItem('pk-last-' + j.mode, opts.body);
      sessionStorage.removeItem('pk-answer');
      return orig.call(this, url, opts).then((r) => {
        r.clone().text().then((t) => sessionStorage.setItem('pk-answer', r.status + ' ' + t));
        return r;
      });
    }
    return orig.apply(this, arguments);
  };
})();"#;

/// base64url helpers and an assertion serializer for the cross-origin step, which has to
/// run the WebAuthn call by hand on a page of another origin.
const HELPERS: &str = r#"
const b64u = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const unb64u = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0)).buffer;
"#;

fn std_to_url_b64(s: &str) -> String {
    s.trim_end_matches('=').replace('+', "-").replace('/', "_")
}

struct Browser {
    cdp: browser::Cdp,
    origin: String,
    authenticator: String,
    /// The gateway's log, shown when a step goes wrong.
    log: std::path::PathBuf,
}

impl Browser {
    fn go(&mut self, path: &str) {
        let url = format!("{}{path}", self.origin);
        self.cdp
            .call("Page.navigate", serde_json::json!({ "url": url }));
    }

    fn wait(&mut self, expr: &str, what: &str) {
        let ok = self
            .cdp
            .wait_for(&format!("document.readyState === 'complete' && ({expr})"));
        assert!(
            ok,
            "{what}: at {} showing {}",
            self.cdp.eval("location.href"),
            self.cdp
                .eval("document.body ? document.body.innerText : ''")
        );
    }

    fn password_login(&mut self, rd: &str) {
        self.go(&format!("/.auth/login?rd={rd}"));
        self.wait("!!document.getElementById('password')", "login page");
        self.cdp.eval("document.getElementById('username').value = 'alice'; document.getElementById('password').value = 'alice-pw'; document.querySelector('form button[type=submit]').click(); true");
    }

    /// Click the passkey button of the page (the gateway's script does the rest).
    fn click_passkey(&mut self) {
        self.wait(
            "!!document.querySelector('[data-passkey]') && !document.querySelector('[data-passkey]').hidden",
            "a passkey button the script woke up",
        );
        self.cdp
            .eval_await("document.querySelector('[data-passkey] button').click(); true");
    }

    fn me(&mut self) -> serde_json::Value {
        self.cdp.eval_await(
            "fetch('/.auth/me').then(r => r.status === 200 ? r.json() : {status: r.status})",
        )
    }

    fn sign_out(&mut self) {
        let kind = self.cdp.eval_await(
            "fetch('/.auth/logout', {method: 'POST', redirect: 'manual'}).then(r => r.type)",
        );
        assert_eq!(kind, "opaqueredirect", "logout answers with a redirect");
        assert_eq!(self.me()["status"], 401, "signed out");
    }

    /// The answer the finish endpoint gave the page's script last.
    fn last_answer(&mut self) -> (u16, serde_json::Value) {
        assert!(self
            .cdp
            .wait_for("sessionStorage.getItem('pk-answer') !== null"));
        let a = self.cdp.eval("sessionStorage.getItem('pk-answer')");
        let (status, body) = a.as_str().unwrap().split_once(' ').unwrap();
        (
            status.parse().unwrap(),
            serde_json::from_str(body).unwrap_or_default(),
        )
    }

    fn credentials(&mut self) -> Vec<serde_json::Value> {
        self.cdp.call(
            "WebAuthn.getCredentials",
            serde_json::json!({ "authenticatorId": self.authenticator }),
        )["credentials"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Replace every credential of the authenticator by `cred`.
    fn only_credential(&mut self, cred: serde_json::Value) {
        for c in self.credentials() {
            self.cdp.call(
                "WebAuthn.removeCredential",
                serde_json::json!({ "authenticatorId": self.authenticator, "credentialId": c["credentialId"] }),
            );
        }
        self.cdp.call(
            "WebAuthn.addCredential",
            serde_json::json!({ "authenticatorId": self.authenticator, "credential": cred }),
        );
    }

    /// A passwordless sign-in from the login page that the gateway refuses: the page stays,
    /// shows the message, and the finish answered `status` with `error`.
    fn refused_sign_in(&mut self, status: u16, error: &str) {
        self.go("/.auth/login?rd=/app/whoami");
        self.wait("true", "login page");
        self.cdp
            .eval("sessionStorage.removeItem('pk-answer'); true");
        self.click_passkey();
        let (s, body) = self.last_answer();
        assert_eq!(
            (s, body["error"].as_str().unwrap_or("")),
            (status, error),
            "{body}\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        self.wait(
            "!document.querySelector('[data-passkey] [role=alert]').hidden",
            "the refusal shown on the page",
        );
        assert_eq!(self.me()["status"], 401, "no session after a refusal");
    }
}

fn write_localhost_cert(dir: &TempDir) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "evil.localhost".to_string()])
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    // Chromium trusts this key (--ignore-certificate-errors-spki-list), so its pages have
    // no certificate error: WebAuthn refuses to run on a page that has one.
    let spki = ring::digest::digest(&ring::digest::SHA256, &key.public_key_der());
    use base64::Engine;
    let spki = base64::engine::general_purpose::STANDARD.encode(spki.as_ref());
    (
        dir.write("gw.crt", &cert.pem()),
        dir.write("gw.key", &key.serialize_pem()),
        spki,
    )
}

#[test]
fn passkeys_in_a_real_browser() {
    let dir = TempDir::new("passkeys");
    let (_echo, echo) = echo("app", &dir);
    let addrs = Addrs::new();
    let (cert, key, spki) = write_localhost_cert(&dir);
    dir.write("session.keys", &gen_key());
    dir.write("admin.token", "admin-token-0123456789abcdef\n");
    dir.write(
        "users.toml",
        &format!(
            "[[user]]\nname = \"alice\"\npassword = \"{}\"\ngroups = [\"staff\"]\n",
            hash_password("alice-pw")
        ),
    );
    let base = format!(
        "[listen]\nhttp = [\"{}\"]\n[tls]\nhttps = [\"{}\"]\ncert = \"{}\"\nkey = \"{}\"\n\
         [admin]\nlisten = \"{}\"\ntoken_file = \"admin.token\"\n\
         [session]\nkeys_file = \"session.keys\"\n[auth]\nusers_file = \"users.toml\"\nlogin_attempts = \"20/1m\"\n\
         [[upstream]]\nname = \"app\"\ntargets = [\"{echo}\"]\n[[route]]\npath = \"/\"\nupstream = \"app\"\n",
        addrs.http,
        addrs.https,
        cert.display(),
        key.display(),
        addrs.admin
    );
    // Passkeys are on by default in [mfa].
    let cfg = dir.write(
        "gateway.toml",
        &format!("{base}[mfa]\ncredentials_file = \"state/credentials\"\n"),
    );
    let g = start_gateway(&dir, &cfg, &addrs, true);
    let port = g.https.unwrap().port();
    let origin = format!("https://localhost:{port}");

    // What the gateway serves around the pages: the script as a cacheable file, the
    // script-allowing CSP only where a passkey is offered.
    let http = reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .resolve("localhost", g.https.unwrap())
        .build()
        .unwrap();
    let js = http
        .get(format!("{origin}/.auth/static/passkey.js"))
        .send()
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(js.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age"));
    let login_page = http.get(format!("{origin}/.auth/login")).send().unwrap();
    let csp = login_page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline'; script"),
        "{csp}"
    );
    let body = login_page.text().unwrap();
    assert!(
        !body.contains("<script>") && !body.contains("onclick"),
        "{body}"
    );
    let other = http.get(format!("{origin}/.auth/mfa")).send().unwrap();
    let csp = other.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        !csp.contains("script-src"),
        "pages without a passkey keep the no-script CSP: {csp}"
    );

    let (_chromium, cdp) = browser::chromium_with(
        &dir,
        &[format!("--ignore-certificate-errors-spki-list={spki}")],
    );
    let mut b = Browser {
        cdp,
        origin: origin.clone(),
        authenticator: String::new(),
        log: g.proc.log.clone(),
    };
    b.cdp
        .call("WebAuthn.enable", serde_json::json!({"enableUI": false}));
    b.authenticator = b.cdp.call(
        "WebAuthn.addVirtualAuthenticator",
        serde_json::json!({"options": {
            "protocol": "ctap2", "transport": "internal", "hasResidentKey": true,
            "hasUserVerification": true, "isUserVerified": true,
            "automaticPresenceSimulation": true}}),
    )["authenticatorId"]
        .as_str()
        .unwrap()
        .to_string();
    b.cdp.call(
        "Page.addScriptToEvaluateOnNewDocument",
        serde_json::json!({ "source": FETCH_HOOK }),
    );
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");

    // 1. A password login (no factor yet), then a passkey added on the account page.
    b.go("/.auth/login?rd=/app/whoami");
    b.wait("!!document.getElementById('password')", "login page");
    b.wait(
        "!document.querySelector('[data-passkey]').hidden",
        "the passkey button woken up by the script",
    );
    b.cdp.screenshot(&shots.join("login.png"));
    b.password_login("/app/whoami");
    b.wait("location.pathname === '/app/whoami'", "after the password");
    assert_eq!(b.me()["amr"], serde_json::json!(["pwd"]));
    b.go("/.auth/account");
    b.wait(
        "document.body.innerText.includes('No passkeys')",
        "account page",
    );
    b.cdp
        .eval("document.getElementById('passkey-name').value = 'test laptop'; true");
    b.click_passkey();
    b.wait(
        "location.pathname === '/.auth/account' && document.body.innerText.includes('test laptop')",
        "the new passkey listed",
    );
    b.cdp.screenshot(&shots.join("account.png"));
    // Its registration posted again: the challenge was used.
    let replay = b.cdp.eval_await(
        "fetch('/.auth/passkey/register', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: sessionStorage.getItem('pk-last-register')}).then(async r => [r.status, await r.json()])",
    );
    assert_eq!(replay[0], 401, "{replay}");
    assert_eq!(replay[1]["error"], "replayed", "{replay}");
    let creds = b.credentials();
    assert_eq!(creds.len(), 1, "{creds:?}");
    assert_eq!(
        creds[0]["isResidentCredential"], true,
        "discoverable: {creds:?}"
    );
    assert_eq!(creds[0]["rpId"], "localhost");
    let cred_id_b64u = std_to_url_b64(creds[0]["credentialId"].as_str().unwrap());

    // 2. The passkey as the second step after the password.
    b.sign_out();
    b.password_login("/app/whoami");
    b.wait(
        "location.pathname === '/.auth/mfa' && !!document.querySelector('[data-passkey]') && !document.querySelector('[data-passkey]').hidden",
        "the second step offering the passkey",
    );
    assert_eq!(
        b.cdp.eval("!!document.getElementById('code')"),
        false,
        "no code form without an app"
    );
    b.cdp.screenshot(&shots.join("second-step.png"));
    b.click_passkey();
    b.wait("location.pathname === '/app/whoami'", "after the passkey");
    let me = b.me();
    assert_eq!(me["user"], "alice");
    assert_eq!(me["amr"], serde_json::json!(["pwd", "hwk"]));
    // Its replay (same pending login, same challenge) gets nothing.
    let replay = b.cdp.eval_await(
        "fetch('/.auth/passkey/login', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: sessionStorage.getItem('pk-last-second-step')}).then(async r => [r.status, await r.json()])",
    );
    assert!(replay[0] == 400 || replay[0] == 401, "{replay}");

    // 3. Passwordless from the login page.
    b.sign_out();
    b.go("/.auth/login?rd=/app/whoami");
    b.click_passkey();
    b.wait(
        "location.pathname === '/app/whoami'",
        "after the passwordless sign-in",
    );
    let me = b.me();
    assert_eq!(me["user"], "alice");
    assert_eq!(me["amr"], serde_json::json!(["hwk"]));

    // 4. The same assertion posted again: the challenge was used.
    b.sign_out();
    let replay = b.cdp.eval_await(
        "fetch('/.auth/passkey/login', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: sessionStorage.getItem('pk-last-sign-in')}).then(async r => [r.status, await r.json()])",
    );
    assert_eq!(replay[0], 401, "{replay}");
    assert_eq!(replay[1]["error"], "replayed", "{replay}");
    assert_eq!(b.me()["status"], 401, "a replay makes no session");

    // 5. A signature that does not verify.
    b.cdp
        .eval("sessionStorage.setItem('pk-tamper', 'signature'); true");
    b.go("/.auth/login?rd=/app/whoami");
    b.wait("true", "login page");
    b.cdp.eval("sessionStorage.removeItem('pk-answer'); true");
    b.click_passkey();
    let (s, body) = b.last_answer();
    assert_eq!(s, 401, "{body}");
    assert_eq!(b.me()["status"], 401);
    b.cdp.eval("sessionStorage.removeItem('pk-tamper'); true");

    // 6. A credential the gateway never registered (a fresh key under alice's handle).
    let real = b.credentials().remove(0);
    let stranger = rcgen::KeyPair::generate().unwrap();
    use base64::Engine;
    let b64 = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
    b.only_credential(serde_json::json!({
        "credentialId": b64(b"a credential nobody registered"),
        "isResidentCredential": true,
        "rpId": "localhost",
        "privateKey": b64(&stranger.serialize_der()),
        "userHandle": real["userHandle"],
        "signCount": 0,
    }));
    b.refused_sign_in(401, "unknown_credential");

    // 7. An assertion the real passkey made for another origin (evil.localhost, same
    // gateway) over a challenge this origin issued: the library sees the wrong origin and
    // RP ID hash.
    let mut evil = real.clone();
    evil["rpId"] = "evil.localhost".into();
    b.only_credential(evil);
    b.go("/.auth/login");
    b.wait("true", "login page");
    let opts = b.cdp.eval_await(
        "fetch('/.auth/passkey/login/options', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({mode: 'sign-in'})}).then(r => r.json())",
    );
    b.cdp.call(
        "Page.navigate",
        serde_json::json!({ "url": format!("https://evil.localhost:{port}/.auth/login") }),
    );
    b.wait("location.hostname === 'evil.localhost'", "the other origin");
    let assertion = b.cdp.eval_await(&format!(
        "{HELPERS} navigator.credentials.get({{publicKey: {{challenge: unb64u({challenge:?}), rpId: 'evil.localhost', userVerification: 'required'}}}}).then(c => JSON.stringify({{id: c.id, rawId: b64u(c.rawId), type: c.type, response: {{authenticatorData: b64u(c.response.authenticatorData), clientDataJSON: b64u(c.response.clientDataJSON), signature: b64u(c.response.signature), userHandle: c.response.userHandle ? b64u(c.response.userHandle) : null}}, extensions: {{}}}}))",
        challenge = opts["options"]["publicKey"]["challenge"].as_str().unwrap()
    ));
    b.go("/.auth/login");
    b.wait("location.hostname === 'localhost'", "back home");
    let finish = serde_json::json!({
        "mode": "sign-in",
        "state": opts["state"],
        "credential": serde_json::from_str::<serde_json::Value>(assertion.as_str().unwrap()).unwrap(),
    });
    let answer = b.cdp.eval_await(&format!(
        "fetch('/.auth/passkey/login', {{method: 'POST', headers: {{'Content-Type': 'application/json'}}, body: {body:?}}}).then(async r => [r.status, await r.json()])",
        body = finish.to_string()
    ));
    assert_eq!(answer[0], 401, "{answer}");
    assert_eq!(answer[1]["error"], "wrong_origin", "{answer}");
    assert_eq!(b.me()["status"], 401);

    // 8. The real passkey again, but with its sign counter set back: a clone.
    let used = real["signCount"].as_u64().unwrap();
    assert!(used >= 2, "the authenticator counts its uses: {real}");
    let mut clone = real.clone();
    clone["signCount"] = 0.into();
    b.only_credential(clone);
    b.refused_sign_in(401, "cloned");
    // The original (its counter ahead of the stored one) still works.
    let mut original = real.clone();
    original["signCount"] = (used + 10).into();
    b.only_credential(original);
    b.go("/.auth/login?rd=/app/whoami");
    b.click_passkey();
    b.wait(
        "location.pathname === '/app/whoami'",
        "the real passkey after the clone",
    );

    // 9. A member of required_groups signs in with a passkey, and cannot remove their
    // last factor.
    std::fs::write(
        &cfg,
        format!("{base}[mfa]\ncredentials_file = \"state/credentials\"\nrequired_groups = [\"staff\"]\n"),
    )
    .unwrap();
    g.proc.signal("HUP");
    std::thread::sleep(Duration::from_millis(1500));
    b.sign_out();
    b.go("/.auth/login?rd=/app/whoami");
    b.click_passkey();
    b.wait(
        "location.pathname === '/app/whoami'",
        "a required member, passwordless",
    );
    assert_eq!(b.me()["amr"], serde_json::json!(["hwk"]));
    b.go("/.auth/account");
    b.wait(
        "document.body.innerText.includes('test laptop')",
        "account page",
    );
    b.cdp.eval(
        "document.querySelector('input[name=action][value=passkey-remove]').form.submit(); true",
    );
    b.wait(
        "document.body.innerText.includes('must keep a second factor')",
        "the last factor kept",
    );

    // Without the requirement, the passkey can be removed.
    std::fs::write(
        &cfg,
        format!("{base}[mfa]\ncredentials_file = \"state/credentials\"\n"),
    )
    .unwrap();
    g.proc.signal("HUP");
    std::thread::sleep(Duration::from_millis(1500));
    b.go("/.auth/account");
    b.wait(
        "document.body.innerText.includes('test laptop')",
        "account page",
    );
    b.cdp.eval(
        "document.querySelector('input[name=action][value=passkey-remove]').form.submit(); true",
    );
    b.wait(
        "location.pathname === '/.auth/account' && document.body.innerText.includes('No passkeys')",
        "the passkey removed",
    );

    // Cross-site or non-JSON posts never reach a ceremony.
    let post = |path: &str, ctype: &str, origin_header: &str| {
        http.post(format!("{origin}{path}"))
            .header("content-type", ctype)
            .header("origin", origin_header)
            .body(r#"{"mode":"sign-in"}"#)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(
        post("/.auth/passkey/login/options", "application/json", &origin),
        200
    );
    assert_eq!(
        post(
            "/.auth/passkey/login/options",
            "application/json",
            "https://evil.example"
        ),
        403
    );
    assert_eq!(
        post("/.auth/passkey/login/options", "text/plain", &origin),
        415
    );
    assert_eq!(
        post(
            "/.auth/passkey/register/options",
            "application/json",
            &origin
        ),
        401,
        "registration needs a session"
    );

    // Logged and counted, never with the credential id.
    let metrics = admin_get(&g, "/metrics").body;
    for result in [
        "success",
        "replayed",
        "failure",
        "unknown_credential",
        "wrong_origin",
        "cloned",
    ] {
        assert!(
            metrics.contains(&format!(
                "portcullis_mfa_total{{method=\"passkey\",result=\"{result}\"}}"
            )),
            "{result}: {metrics}"
        );
    }
    assert!(metrics.contains("portcullis_mfa_total{method=\"passkey_enroll\",result=\"success\"}"));
    let log = g.proc.log_text();
    assert!(log.contains("possibly a cloned authenticator"), "{log}");
    assert!(!log.contains(&cred_id_b64u), "credential id logged");
    assert!(
        !log.contains(creds[0]["credentialId"].as_str().unwrap()),
        "credential id logged"
    );
    // The stored record is sealed: neither the user nor the credential id in clear.
    let stored = std::fs::read_to_string(dir.path("state/credentials")).unwrap();
    assert!(!stored.contains("alice") && !stored.contains(&cred_id_b64u));
}
