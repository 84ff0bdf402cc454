//! Upstreams: round robin over healthy targets, and active HTTP health checks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
}

/// One target of an upstream, resolved at load time.
#[derive(Debug)]
pub struct Target {
    /// As written in the config; used as the `target` metric label (operator-chosen, bounded).
    pub label: std::sync::Arc<str>,
    pub addr: SocketAddr,
    healthy: AtomicBool,
}

impl Target {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub targets: Vec<Target>,
    pub health_check: Option<HealthCheck>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    next: AtomicUsize,
}

impl Upstream {
    pub fn new(
        name: String,
        targets: Vec<(String, SocketAddr)>,
        health_check: Option<HealthCheck>,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> Self {
        Self {
            name,
            targets: targets
                .into_iter()
                .map(|(label, addr)| Target {
                    label: label.into(),
                    addr,
                    healthy: AtomicBool::new(true),
                })
                .collect(),
            health_check,
            connect_timeout,
            read_timeout,
            next: AtomicUsize::new(0),
        }
    }

    /// The next healthy target in round-robin order, or `None` when every target is down.
    pub fn select(&self) -> Option<&Target> {
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.targets[(start + i) % n])
            .find(|t| t.is_healthy())
    }

    pub fn any_healthy(&self) -> bool {
        self.targets.iter().any(Target::is_healthy)
    }

    /// Carry health state over from the previous configuration on reload, so a reload does
    /// not put a known-dead target back into rotation.
    pub fn inherit_health(&self, old: &Upstream) {
        for t in &self.targets {
            if let Some(o) = old.targets.iter().find(|o| o.addr == t.addr) {
                t.healthy.store(o.is_healthy(), Ordering::Relaxed);
            }
        }
    }

    /// Probe every target once and record the result; returns `(label, healthy)` pairs of
    /// the targets whose state changed.
    pub async fn check_all(&self) -> Vec<(String, bool)> {
        let Some(hc) = &self.health_check else {
            return Vec::new();
        };
        // Targets are probed one after another: each probe is bounded by connect_timeout
        // and upstreams have a handful of targets, so this stays well inside an interval.
        let mut changed = Vec::new();
        for t in &self.targets {
            let ok = probe(t.addr, &hc.path, self.connect_timeout).await;
            if t.healthy.swap(ok, Ordering::Relaxed) != ok {
                changed.push((t.label.to_string(), ok));
            }
        }
        changed
    }
}

/// One health probe: `GET path` over HTTP/1.1; healthy on any 2xx or 3xx within `timeout`.
async fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> bool {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: portcullis-health\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = [0u8; 32];
        let mut n = 0;
        while n < 12 {
            let r = s.read(&mut buf[n..]).await.ok()?;
            if r == 0 {
                break;
            }
            n += r;
        }
        let line = std::str::from_utf8(&buf[..n]).ok()?;
        let code: u16 = line.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()?;
        Some((200..400).contains(&code))
    };
    matches!(tokio::time::timeout(timeout, fut).await, Ok(Some(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_skips_unhealthy() {
        let u = Upstream::new(
            "u".into(),
            vec![
                ("a".into(), "127.0.0.1:1".parse().unwrap()),
                ("b".into(), "127.0.0.1:2".parse().unwrap()),
                ("c".into(), "127.0.0.1:3".parse().unwrap()),
            ],
            None,
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let picks: Vec<_> = (0..3)
            .map(|_| u.select().unwrap().label.to_string())
            .collect();
        assert_eq!(picks, ["a", "b", "c"]);
        u.targets[1].healthy.store(false, Ordering::Relaxed);
        let picks: Vec<_> = (0..4)
            .map(|_| u.select().unwrap().label.to_string())
            .collect();
        assert!(!picks.contains(&"b".to_string()));
        for t in &u.targets {
            t.healthy.store(false, Ordering::Relaxed);
        }
        assert!(u.select().is_none());
        assert!(!u.any_healthy());
    }
}
