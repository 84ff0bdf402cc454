//! A real browser for the tests: Debian's headless Chromium, driven over the DevTools
//! protocol (no WebDriver, no page scripts of our own).

use super::*;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::{stream::MaybeTlsStream, Message, WebSocket};

pub struct Cdp {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
}

impl Cdp {
    pub fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
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

    pub fn eval(&mut self, expr: &str) -> serde_json::Value {
        self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expr, "returnByValue": true}),
        )["result"]["value"]
            .clone()
    }

    /// Evaluate `expr`, awaiting it if it is a promise, as if the user had just clicked
    /// (WebAuthn prompts may require a user gesture).
    pub fn eval_await(&mut self, expr: &str) -> serde_json::Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expr, "returnByValue": true, "awaitPromise": true, "userGesture": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// A PNG of the page as it is now, written to `path` (its directory created).
    pub fn screenshot(&mut self, path: &std::path::Path) {
        use base64::Engine;
        let shot = self.call(
            "Page.captureScreenshot",
            serde_json::json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("screenshot base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }

    pub fn wait_for(&mut self, expr: &str) -> bool {
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

/// A headless Chromium with its own profile in `dir`, and a DevTools connection to its
/// page. Certificates are not checked (the tests' are self-signed). Dropping the `Proc`
/// ends the browser.
pub fn chromium(dir: &TempDir) -> (Proc, Cdp) {
    chromium_with(dir, &[])
}

/// `chromium` with more command-line switches.
pub fn chromium_with(dir: &TempDir, extra: &[String]) -> (Proc, Cdp) {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("Debian's chromium is required for this test (scripts/test.sh installs it)");
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
        ])
        .args(extra)
        .arg("about:blank")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromium");
    let browser = Proc {
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
    (browser, cdp)
}
