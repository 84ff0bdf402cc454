//! Session-store scale measurements for docs/performance.md:
//! resident memory per session in the memory store, and how long a real gateway restart
//! takes to serve again with N sessions restored from its snapshot.
//!
//! `cargo build --release && cargo run --release --example session_scale -- 1000000`

use portcullis::identity::Identity;
use portcullis::session::cookie::SessionId;
use portcullis::session::keys::KeyRing;
use portcullis::session::persist;
use portcullis::session::store::{Clock, MemoryStore, SessionRecord, SessionStore, SystemClock};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn get_status(port: u16, cookie: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET /x HTTP/1.1\r\nHost: bench\r\nCookie: session={cookie}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    std::str::from_utf8(&buf[..n])
        .ok()?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("portcullis-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let key = portcullis::session::keys::generate_key().expect("key");
    let keys = KeyRing::parse("bench", &key).expect("keys");
    let rng = ring::rand::SystemRandom::new();
    let now = SystemClock.now_ms();

    let store = MemoryStore::new(n as u64 + 1);
    let before = rss_bytes();
    let mut probe = String::new();
    let t = Instant::now();
    for i in 0..n {
        let id = SessionId::generate(&rng).expect("rng");
        if i == n / 2 {
            probe = id.encode(&keys);
        }
        let who = Identity {
            user: format!("user{i:07}"),
            email: format!("user{i:07}@example.com"),
            groups: vec!["staff".into()],
        };
        store
            .create(id.store_key(), SessionRecord::new(who, now))
            .expect("create");
    }
    let count = store.count();
    let after = rss_bytes();
    println!("sessions created: {count} in {:.2?}", t.elapsed());
    println!(
        "resident memory: {:.1} MiB for {count} sessions = {:.0} bytes/session (user 11 B, email 23 B, one group)",
        (after - before) as f64 / 1048576.0,
        (after - before) as f64 / count as f64
    );

    let snap = dir.join("sessions.snap");
    let t = Instant::now();
    let saved = persist::save(&store, &keys, &snap).expect("save");
    let size = std::fs::metadata(&snap).map(|m| m.len()).unwrap_or(0);
    println!(
        "snapshot written: {saved} sessions, {:.1} MiB, in {:.2?}",
        size as f64 / 1048576.0,
        t.elapsed()
    );
    drop(store);

    let t = Instant::now();
    let fresh = MemoryStore::new(n as u64 + 1);
    let loaded = persist::load(&fresh, &keys, &snap).expect("load");
    println!(
        "snapshot loaded in-process: {loaded} sessions in {:.2?}",
        t.elapsed()
    );
    drop(fresh);

    // A real restart: the release binary, this snapshot, until a restored cookie is served.
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(|d| d.join("portcullis")));
    let Some(bin) = bin.filter(|b| b.exists()) else {
        println!("(build the gateway with `cargo build --release` to measure a real restart)");
        return;
    };
    std::fs::write(dir.join("keys"), format!("{key}\n")).expect("keys");
    std::fs::write(dir.join("users.toml"), "").expect("users");
    let (http, admin, up) = (free_port(), free_port(), free_port());
    let upstream = std::net::TcpListener::bind(("127.0.0.1", up)).expect("upstream");
    std::thread::spawn(move || {
        for s in upstream.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            });
        }
    });
    std::fs::write(
        dir.join("gateway.toml"),
        format!(
            "[listen]\nhttp = [\"127.0.0.1:{http}\"]\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[session]\nkeys_file = \"keys\"\nsecure = false\n\
             max_sessions = {}\npersist_file = \"sessions.snap\"\n[auth]\nusers_file = \"users.toml\"\n\
             [[upstream]]\nname = \"app\"\ntargets = [\"127.0.0.1:{up}\"]\n[[route]]\npath = \"/\"\nupstream = \"app\"\n",
            n + 1
        ),
    )
    .expect("config");
    let t = Instant::now();
    let mut child = std::process::Command::new(&bin)
        .args(["run", "-c", dir.join("gateway.toml").to_str().unwrap_or("")])
        .env("RUST_LOG", "warn")
        .stderr(std::fs::File::create(dir.join("gateway.log")).expect("log"))
        .spawn()
        .expect("start gateway");
    let mut served = None;
    while t.elapsed() < Duration::from_secs(60) {
        if get_status(http, &probe) == Some(200) {
            served = Some(t.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default();
    if let Some(line) = log.lines().find(|l| l.contains("restored sessions")) {
        println!("  gateway log: {line}");
    }
    match served {
        Some(d) => println!(
            "gateway restart with {loaded} sessions: a restored cookie was served after {d:.2?}"
        ),
        None => println!("gateway restart: a restored cookie was not served within 60 s"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
