//! A real browser (Debian's headless Chromium, driven over the DevTools protocol) logs in
//! through the login page over TLS; the upstream sees the user and the session cookie is
//! HttpOnly, Secure and invisible to page scripts.

mod common;
use common::*;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::{stream::MaybeTlsStream, Message, WebSocket};

struct Cdp {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
}

impl Cdp {
    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next += 1;
        let id = self.next;
        self.ws
            .send(Message::text(
                serde_json::json!({"id": id, "method": method, "params": params}).to_string(),
            ))
            .unwrap();
        loop {
            let msg = self.ws.read().expect("devtools message");
            if let Message::Text(t) = msg {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    fn eval(&mut self, expr: &str) -> serde_json::Value {
        self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expr, "returnByValue": true}),
        )["result"]["value"]
            .clone()
    }

    fn wait_for(&mut self, expr: &str) -> bool {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if self.eval(expr) == serde_json::Value::Bool(true) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

#[test]
fn a_real_browser_logs_in_through_the_login_page() {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("Debian's chromium is required for this test (scripts/test.sh installs it)");
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

    let profile = dir.path("profile");
    let child = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--ignore-certificate-errors",
            "--remote-debugging-port=0",
            &format!("--user-data-dir={}", profile.display()),
            "about:blank",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromium");
    let _browser = Proc {
        child,
        log: dir.path("chromium.log"),
        term_first: true,
    };
    let port_file = profile.join("DevToolsActivePort");
    assert!(eventually(Duration::from_secs(20), || port_file.exists()
        && std::fs::read_to_string(&port_file)
            .unwrap_or_default()
            .lines()
            .count()
            >= 2));
    let port: u16 = std::fs::read_to_string(&port_file)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let devtools: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut page_ws = None;
    assert!(eventually(Duration::from_secs(10), || {
        let list = get(devtools, "/json/list", &[]);
        page_ws = serde_json::from_str::<serde_json::Value>(&list.body)
            .ok()
            .and_then(|v| {
                v.as_array()?.iter().find(|t| t["type"] == "page")?["webSocketDebuggerUrl"]
                    .as_str()
                    .map(str::to_string)
            });
        page_ws.is_some()
    }));
    let (ws, _) = tungstenite::connect(page_ws.unwrap()).expect("devtools websocket");
    let mut cdp = Cdp { ws, next: 0 };
    cdp.call("Page.enable", serde_json::json!({}));
    cdp.call("Network.enable", serde_json::json!({}));

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
