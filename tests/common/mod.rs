//! Test harness: starts the real `portcullis` binary and the `portcullis echo` upstream on
//! free loopback ports, and speaks HTTP to them over real sockets.
#![allow(dead_code)]

pub mod browser;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A child process that is killed when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    /// Ask politely first (SIGTERM) so that the process takes its own children down: a
    /// SIGKILLed nginx master leaves its workers running, holding our stdout open.
    pub term_first: bool,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.term_first {
            self.signal("TERM");
            if self.wait_exit(Duration::from_secs(5)).is_some() {
                return;
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait for exit; `None` if still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("portcullis-test-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("tempdir");
        Self(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn wait_port(addr: SocketAddr) {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listening on {addr}");
}

pub fn echo(name: &str, dir: &TempDir) -> (Proc, SocketAddr) {
    let addr = free_addr();
    let p = echo_at(name, addr, dir);
    (p, addr)
}

pub fn echo_at(name: &str, addr: SocketAddr, dir: &TempDir) -> Proc {
    let log = dir.path(&format!("echo-{name}-{}.log", addr.port()));
    let child = Command::new(BIN)
        .args(["echo", "--listen", &addr.to_string(), "--name", name])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn echo");
    wait_port(addr);
    Proc {
        child,
        log,
        term_first: false,
    }
}

pub fn gen_key() -> String {
    let out = Command::new(BIN).arg("gen-key").output().expect("gen-key");
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

pub fn hash_password(pw: &str) -> String {
    let mut c = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("hash-password");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(format!("{pw}\n").as_bytes())
        .expect("write");
    let out = c.wait_with_output().expect("wait");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

/// Write a self-signed certificate for localhost/127.0.0.1; returns (cert, key) paths.
pub fn write_cert(dir: &TempDir) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("cert");
    (
        dir.write("gw.crt", &ck.cert.pem()),
        dir.write("gw.key", &ck.key_pair.serialize_pem()),
    )
}

/// A running gateway and the addresses it listens on.
pub struct Gateway {
    pub proc: Proc,
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub config: PathBuf,
}

pub struct Addrs {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
}

impl Addrs {
    pub fn new() -> Self {
        Self {
            http: free_addr(),
            https: free_addr(),
            admin: free_addr(),
        }
    }
}

/// Start `portcullis run` with `config` (already written); waits for the admin port.
pub fn start_gateway(dir: &TempDir, config: &Path, addrs: &Addrs, tls: bool) -> Gateway {
    let log = dir.path(&format!("gateway-{}.log", addrs.http.port()));
    let child = Command::new(BIN)
        .args(["run", "-c", config.to_str().expect("path")])
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("log"),
        )
        .spawn()
        .expect("spawn gateway");
    let g = Gateway {
        proc: Proc {
            child,
            log,
            term_first: false,
        },
        http: addrs.http,
        https: tls.then_some(addrs.https),
        admin: addrs.admin,
        config: config.to_path_buf(),
    };
    wait_port(addrs.admin);
    wait_port(addrs.http);
    if tls {
        wait_port(addrs.https);
    }
    g
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    /// Headers the echo upstream saw: (name as received, value).
    pub fn upstream_headers(&self) -> Vec<(String, String)> {
        self.json()["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap_or("").to_string(),
                    p[1].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
    pub fn upstream_header(&self, name: &str) -> Vec<String> {
        self.upstream_headers()
            .into_iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }
    /// The session cookie value set by this response, if any.
    pub fn set_cookie_value(&self, name: &str) -> Option<String> {
        self.headers_named("set-cookie").into_iter().find_map(|c| {
            c.strip_prefix(&format!("{name}="))
                .map(|v| v.split(';').next().unwrap_or("").to_string())
        })
    }
}

/// Send raw bytes, read until the server closes (or 10 s), parse the first response.
pub fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse(text: &str) -> Resp {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: Option<usize> = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok());
    let body = match len {
        Some(n) => body.get(..n).unwrap_or(body).to_string(),
        None => body.to_string(),
    };
    Resp {
        status,
        headers,
        body,
    }
}

/// One HTTP/1.1 request with `Connection: close`. `headers` are sent verbatim.
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut req = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("Connection: close\r\n\r\n");
    req.push_str(body);
    parse(&raw(addr, req.as_bytes()))
}

pub fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Resp {
    request(addr, "GET", target, headers, "")
}

pub fn admin_get(g: &Gateway, path: &str) -> Resp {
    get(g.admin, path, &[])
}

/// Poll until `f` holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// Log in with a form POST; returns the response.
pub fn login(
    addr: SocketAddr,
    user: &str,
    password: &str,
    rd: &str,
    extra: &[(&str, &str)],
) -> Resp {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("username", user)
        .append_pair("password", password)
        .append_pair("rd", rd)
        .finish();
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    headers.extend_from_slice(extra);
    request(addr, "POST", "/.auth/login", &headers, &body)
}

/// Start a real `redis-server` on `addr` (loopback), with `extra` arguments. Logs go to
/// the test directory; data (for `--appendonly yes`) too.
pub fn redis_server_at(dir: &TempDir, addr: SocketAddr, extra: &[&str]) -> Proc {
    let log = dir.path(&format!("redis-{}.log", addr.port()));
    let data = dir.path(&format!("redis-{}", addr.port()));
    std::fs::create_dir_all(&data).expect("redis dir");
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("log");
    let child = Command::new("redis-server")
        .args(["--port", &addr.port().to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--protected-mode", "no"])
        .arg("--dir")
        .arg(&data)
        .args(extra)
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("redis-server is required (scripts/test.sh installs it)");
    let p = Proc {
        child,
        log,
        term_first: true,
    };
    wait_port(addr);
    p
}

pub fn redis_server(dir: &TempDir) -> (Proc, SocketAddr) {
    let addr = free_addr();
    (redis_server_at(dir, addr, &[]), addr)
}

/// Start a real `memcached` on `addr` (loopback, 64 MiB). `-M` is not used: a store
/// running out of memory evicts, as an operator's default memcached would.
pub fn memcached_at(dir: &TempDir, addr: SocketAddr) -> Proc {
    let log = dir.path(&format!("memcached-{}.log", addr.port()));
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("log");
    let child = Command::new("memcached")
        .args(["-l", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["-U", "0", "-m", "64", "-u", "nobody"])
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("memcached is required (scripts/test.sh installs it)");
    let p = Proc {
        child,
        log,
        term_first: true,
    };
    wait_port(addr);
    p
}

pub fn memcached(dir: &TempDir) -> (Proc, SocketAddr) {
    let addr = free_addr();
    (memcached_at(dir, addr), addr)
}

/// `promtool check metrics` on a `/metrics` body (Prometheus' own format checker).
pub fn assert_promtool_accepts(dir: &TempDir, name: &str, metrics: &str) {
    let file = dir.write(name, metrics);
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).expect("metrics file"))
        .output()
        .expect("promtool (Debian package prometheus) must be installed");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the first `/metrics` line that starts with `line` (0 when absent).
pub fn metric(g: &Gateway, line: &str) -> f64 {
    admin_get(g, "/metrics")
        .body
        .lines()
        .find(|l| l.starts_with(line))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The TOTP code PyPI `pyotp` computes for the base32 `secret` at now + `offset_s`: an
/// implementation independent of the gateway's (scripts/test.sh installs it).
pub fn pyotp(secret: &str, offset_s: i64) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, time, pyotp; print(pyotp.TOTP(sys.argv[1]).at(int(time.time()) + int(sys.argv[2])))",
            secret,
            &offset_s.to_string(),
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "pyotp (scripts/test.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
