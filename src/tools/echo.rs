//! `portcullis echo`: an upstream that answers every request with a JSON description of the
//! request it saw. The natural upstream for tests and the demo. In the demo (`landing`),
//! a browser navigation gets a small HTML page instead: who is signed in, the headers the
//! app received, links to the account page and a sign-out button; API clients still get
//! JSON.
//!
//! A few controls, all opt-in through the request, let tests model real upstream trouble:
//! `?echo_sleep_ms=N` answers late, `/status/NNN` answers with that status,
//! `x-echo-set-cookie: V` adds `Set-Cookie: V`, `x-echo-response-header: Name: value`
//! adds any response header (a stand-in for an app's own login handler), and an
//! `Upgrade` request is accepted
//! with `101` and then echoes raw bytes (WebSocket pass-through).

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 8 * 1024 * 1024;

/// Serve forever on `listener`; `landing`: HTML for browser navigations (the demo).
pub async fn serve(listener: TcpListener, name: String, landing: bool) -> std::io::Result<()> {
    let name: &'static str = Box::leak(name.into_boxed_str());
    loop {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            if let Err(e) = connection(stream, peer, name, landing).await {
                tracing::debug!(error = %e, "echo connection ended");
            }
        });
    }
}

/// Run on its own runtime until the process ends.
pub fn run(listen: SocketAddr, name: String) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let l = TcpListener::bind(listen).await?;
        tracing::info!(listen = %l.local_addr()?, "echo upstream listening");
        serve(l, name, false).await
    })
}

struct Request {
    method: String,
    target: String,
    version: u8,
    headers: Vec<(String, String)>,
}

fn header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

async fn connection(
    mut s: TcpStream,
    peer: SocketAddr,
    name: &'static str,
    landing: bool,
) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        // Read one request head.
        let (req, consumed) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut r = httparse::Request::new(&mut headers);
            match r.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let req = Request {
                        method: r.method.unwrap_or("").to_string(),
                        target: r.path.unwrap_or("").to_string(),
                        version: r.version.unwrap_or(1),
                        headers: r
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_string(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                    };
                    break (req, n);
                }
                Ok(httparse::Status::Partial) => {}
                Err(_) => {
                    s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await?;
                    return Ok(());
                }
            }
            if buf.len() > MAX_HEAD {
                return Ok(());
            }
            let mut chunk = [0u8; 8192];
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        buf.drain(..consumed);

        // Body: Content-Length or chunked.
        let body = if header(&req, "transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            read_chunked(&mut s, &mut buf).await?
        } else {
            let len: usize = header(&req, "content-length")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if len > MAX_BODY {
                return Ok(());
            }
            while buf.len() < len {
                let mut chunk = [0u8; 8192];
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..len).collect()
        };

        if header(&req, "upgrade").is_some() {
            let proto = header(&req, "upgrade").unwrap_or("websocket").to_string();
            let head = format!("HTTP/1.1 101 Switching Protocols\r\nupgrade: {proto}\r\nconnection: upgrade\r\nx-echo-server: {name}\r\n\r\n");
            s.write_all(head.as_bytes()).await?;
            if !buf.is_empty() {
                s.write_all(&buf).await?;
            }
            let (mut r, mut w) = s.split();
            tokio::io::copy(&mut r, &mut w).await?;
            return Ok(());
        }

        let query = req.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        if let Some(ms) = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "echo_sleep_ms")
            .and_then(|(_, v)| v.parse::<u64>().ok())
        {
            tokio::time::sleep(Duration::from_millis(ms.min(120_000))).await;
        }
        let path = req.target.split('?').next().unwrap_or("");
        let status: u16 = path
            .strip_prefix("/status/")
            .and_then(|c| c.parse().ok())
            .filter(|c| (200..600).contains(c))
            .unwrap_or(200);
        let json = serde_json::json!({
            "server": name,
            "peer": peer.to_string(),
            "method": req.method,
            "target": req.target,
            "path": path,
            "version": format!("HTTP/1.{}", req.version),
            "headers": req.headers.iter().map(|(k, v)| [k.as_str(), v.as_str()]).collect::<Vec<_>>(),
            "body": String::from_utf8_lossy(&body),
        });
        let navigation = landing
            && matches!(req.method.as_str(), "GET" | "HEAD")
            && header(&req, "accept").is_some_and(|a| a.contains("text/html"));
        let (body, ctype) = if navigation {
            (landing_page(&req), "text/html; charset=utf-8\r\ncontent-security-policy: default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
        } else {
            (json.to_string(), "application/json")
        };
        let close = header(&req, "connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"))
            || req.version == 0;
        let mut head = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nx-echo-server: {name}\r\n",
            http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or(""),
            if req.method == "HEAD" { 0 } else { body.len() }
        );
        for (k, v) in &req.headers {
            if k.eq_ignore_ascii_case("x-echo-set-cookie") {
                head.push_str(&format!("set-cookie: {v}\r\n"));
            }
            if k.eq_ignore_ascii_case("x-echo-response-header") && v.contains(':') {
                head.push_str(&format!("{v}\r\n"));
            }
        }
        if close {
            head.push_str("connection: close\r\n");
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).await?;
        if req.method != "HEAD" {
            s.write_all(body.as_bytes()).await?;
        }
        if close {
            return Ok(());
        }
    }
}

/// The demo's landing page: what the app behind the gateway received.
fn landing_page(req: &Request) -> String {
    use crate::auth::page::escape;
    let user = header(req, "x-forwarded-user").unwrap_or("");
    let who = if user.is_empty() {
        "Nobody is signed in (this is a public route).".to_string()
    } else {
        format!("Signed in as <strong>{}</strong>.", escape(user))
    };
    let rows: String = req
        .headers
        .iter()
        .map(|(k, v)| {
            let mark = if k.to_ascii_lowercase().starts_with("x-forwarded-") {
                " class=\"id\""
            } else {
                ""
            };
            format!(
                "<tr{mark}><td>{}</td><td>{}</td></tr>\n",
                escape(k),
                escape(v)
            )
        })
        .collect();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>portcullis demo</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; padding: 0 1rem; color: #1d1f23; }}
table {{ border-collapse: collapse; width: 100%; font-size: .9rem; }}
td {{ border-bottom: 1px solid #e3e5e8; padding: .35rem .4rem; vertical-align: top; overflow-wrap: anywhere; }}
td:first-child {{ font-family: ui-monospace, monospace; white-space: nowrap; }}
tr.id td {{ background: #eef4ff; font-weight: 600; }}
button {{ padding: .45rem .9rem; border: 0; border-radius: 4px; background: #2b5fd9; color: #fff; cursor: pointer; }}
nav a, nav form {{ margin-right: 1rem; }} nav form {{ display: inline; }}
</style></head>
<body>
<h1>portcullis demo</h1>
<p>{who} This page is the demo's app (the <code>echo</code> upstream); the gateway in front of it logged you in and added the highlighted headers — anything a client sends under those names is removed first.</p>
<nav><a href="/.auth/account">Your account</a> <a href="/.auth/me">/.auth/me (JSON)</a>
<form method="post" action="/.auth/logout"><button type="submit">Sign out</button></form></nav>
<h2>What the app received</h2>
<p><code>{method} {target}</code></p>
<table>
{rows}</table>
</body></html>
"#,
        method = escape(&req.method),
        target = escape(&req.target),
    )
}

async fn read_chunked(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                break p;
            }
            let mut chunk = [0u8; 8192];
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let size_str = String::from_utf8_lossy(&buf[..line_end]).to_string();
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
        buf.drain(..line_end + 2);
        if body.len() + size > MAX_BODY {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        while buf.len() < size + 2 {
            let mut chunk = [0u8; 8192];
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
        if size == 0 {
            return Ok(body);
        }
    }
}
