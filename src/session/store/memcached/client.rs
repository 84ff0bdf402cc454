//! A small memcached client: the meta text protocol (`mg`, `ms`, `md`, `mn`) over tokio
//! TCP, a pool of connections per server, rendezvous hashing to pick a key's server, and a
//! bound on every operation.
//!
//! Written here rather than taken from a crate (README "Memcached store" says which were
//! evaluated): what the store needs beyond the protocol lines — server choice, a
//! per-operation deadline that throws away a connection left mid-reply, and failing fast
//! while a server is known down — is the part none of them provides.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Memcached's default item size limit; a larger answer is a protocol error here.
const MAX_VALUE: usize = 1024 * 1024;
/// Idle connections kept per server.
const MAX_IDLE: usize = 16;
/// After a failure, requests fail at once for this long instead of each waiting out the
/// timeout; the health probe keeps trying and clears it on the first answer.
const DOWN_FOR: Duration = Duration::from_secs(1);
/// TTLs above this are read by memcached as an absolute Unix time.
const MAX_RELATIVE_TTL: u64 = 30 * 24 * 3600;

/// What a meta command answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// `VA`: a value, with the CAS token when asked for (`c`).
    Value { data: Vec<u8>, cas: Option<u64> },
    /// `HD`: success without a value (stored, deleted, or a hit without `v`), with CAS.
    Done { cas: Option<u64> },
    /// `EN`: no such item.
    Miss,
    /// `NS`: not stored (add on an existing key, replace on a missing one).
    NotStored,
    /// `EX`: the CAS token did not match.
    Exists,
    /// `NF`: not found (delete or CAS on a missing item).
    NotFound,
    /// `MN`: the answer to `mn`.
    Noop,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("memcached {server}: {why}")]
    Down { server: String, why: String },
}

struct Conn {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

fn cas_of(flags: &[&str]) -> Option<u64> {
    flags
        .iter()
        .find_map(|f| f.strip_prefix('c'))
        .and_then(|c| c.parse().ok())
}

impl Conn {
    async fn open(addr: &str) -> std::io::Result<Self> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        Ok(Self {
            r: BufReader::new(r),
            w,
        })
    }

    async fn call(&mut self, req: &[u8]) -> std::io::Result<Reply> {
        self.w.write_all(req).await?;
        let mut line = Vec::with_capacity(64);
        self.r.read_until(b'\n', &mut line).await?;
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let text = std::str::from_utf8(&line)
            .ok()
            .and_then(|t| t.strip_suffix("\r\n"))
            .ok_or_else(|| bad("truncated or non-text reply line"))?;
        let mut parts = text.split(' ');
        let code = parts.next().unwrap_or("");
        let flags: Vec<&str> = parts.collect();
        Ok(match code {
            "VA" => {
                let size: usize = flags
                    .first()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n <= MAX_VALUE)
                    .ok_or_else(|| bad("bad value size"))?;
                let cas = cas_of(&flags[1..]);
                let mut data = vec![0u8; size + 2];
                self.r.read_exact(&mut data).await?;
                if !data.ends_with(b"\r\n") {
                    return Err(bad("value not followed by CRLF"));
                }
                data.truncate(size);
                Reply::Value { data, cas }
            }
            "HD" => Reply::Done {
                cas: cas_of(&flags),
            },
            "EN" => Reply::Miss,
            "NS" => Reply::NotStored,
            "EX" => Reply::Exists,
            "NF" => Reply::NotFound,
            "MN" => Reply::Noop,
            // ERROR, CLIENT_ERROR …, SERVER_ERROR …: the server's own words, which never
            // contain our values (it does not echo data).
            _ => return Err(bad(text)),
        })
    }
}

/// One memcached server: its address, idle connections and health.
pub struct Server {
    pub addr: String,
    /// FNV-1a of the address: stable across processes and builds (unlike std's randomly
    /// keyed hasher), because every gateway instance must pick the same server for a key.
    weight_seed: u64,
    idle: Mutex<Vec<Conn>>,
    down_until: Mutex<Option<Instant>>,
    /// The latest outcome (`Ok`, or why not), for `/readyz`.
    health: Mutex<Result<(), String>>,
    /// Operations that failed since start, for tests and logs.
    pub failures: AtomicU64,
}

/// FNV-1a, 64-bit: a fixed, documented hash, so the server choice never depends on this
/// build's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64's finalizer: spreads the combination of server and key over all 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The server that owns `key_hash` by rendezvous (highest random weight) hashing: each
/// server scores the key, the highest score wins. Adding or removing a server moves only
/// the keys that server wins or held (1/n of them), and the answer does not depend on the
/// order of `servers` in the config. With a handful of servers the O(n) scan costs less
/// than a ring lookup.
pub fn owner(seeds: &[u64], key_hash: u64) -> usize {
    let mut best = 0;
    let mut best_score = 0;
    for (i, s) in seeds.iter().enumerate() {
        let score = mix(s ^ key_hash);
        if i == 0 || score > best_score {
            best = i;
            best_score = score;
        }
    }
    best
}

pub fn seed(addr: &str) -> u64 {
    fnv1a(addr.as_bytes())
}

/// A key's hash for `owner`: the first 8 bytes of the (already uniformly random) store key,
/// or FNV-1a for other keys (the per-user index).
pub fn key_hash(key: &[u8]) -> u64 {
    if key.len() >= 8 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&key[..8]);
        u64::from_le_bytes(b)
    } else {
        fnv1a(key)
    }
}

impl Server {
    pub fn new(addr: String) -> Self {
        Self {
            weight_seed: seed(&addr),
            addr,
            idle: Mutex::new(Vec::new()),
            down_until: Mutex::new(None),
            health: Mutex::new(Err("not connected yet".into())),
            failures: AtomicU64::new(0),
        }
    }

    pub fn seed(&self) -> u64 {
        self.weight_seed
    }

    pub fn health(&self) -> Result<(), String> {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn down(&self, why: String) -> ClientError {
        ClientError::Down {
            server: self.addr.clone(),
            why,
        }
    }

    /// Run one request within `timeout`. `probe` ignores the fail-fast window (the
    /// health check is what ends it).
    pub async fn call(
        &self,
        req: &[u8],
        timeout: Duration,
        probe: bool,
    ) -> Result<Reply, ClientError> {
        if !probe {
            let until = *self.down_until.lock().unwrap_or_else(|p| p.into_inner());
            if until.is_some_and(|t| Instant::now() < t) {
                return Err(self.down("down (retrying)".into()));
            }
        }
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let work = async {
            let mut conn = match pooled {
                Some(c) => c,
                None => Conn::open(&self.addr).await?,
            };
            let reply = conn.call(req).await?;
            Ok::<_, std::io::Error>((conn, reply))
        };
        let outcome = match tokio::time::timeout(timeout, work).await {
            Ok(Ok((conn, reply))) => {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                if idle.len() < MAX_IDLE {
                    idle.push(conn);
                }
                Ok(reply)
            }
            // The connection is dropped either way: it may hold half a reply.
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_string()),
        };
        match outcome {
            Ok(r) => {
                *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
                *self.health.lock().unwrap_or_else(|p| p.into_inner()) = Ok(());
                Ok(r)
            }
            Err(why) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
                *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now() + DOWN_FOR);
                *self.health.lock().unwrap_or_else(|p| p.into_inner()) = Err(why.clone());
                Err(self.down(why))
            }
        }
    }
}

/// A TTL for `ms` from milliseconds: rounded up to whole seconds (memcached's unit), plus
/// two: memcached's clock ticks once a second, so an item set with `T4` lives between 3
/// and 4 seconds (measured here: 3.27 s), and the record should outlive the gateway's own
/// deadline, so that a late request is told "expired" rather than "no such session".
/// Written as an absolute Unix time when longer than memcached's 30-day relative limit.
/// Holding a record a little long is safe: the gateway checks idle and absolute expiry
/// itself, to the millisecond, on every lookup.
pub fn ttl_arg(ttl_ms: u64, now_unix_s: u64) -> u64 {
    let s = ttl_ms.div_ceil(1000) + 2;
    if s > MAX_RELATIVE_TTL {
        now_unix_s + s
    } else {
        s
    }
}

/// `mg <key> v c`: the value and its CAS token.
pub fn get(key: &str) -> Vec<u8> {
    format!("mg {key} v c\r\n").into_bytes()
}

/// `ms <key> <len> T<ttl> [C<cas>] M<mode>` + data. Modes: `E` add (only if absent), `R`
/// replace (only if present: a touch never revives a deleted session), `S` set.
pub fn set(key: &str, data: &[u8], ttl: u64, mode: char, cas: Option<u64>) -> Vec<u8> {
    let cas = cas.map_or(String::new(), |c| format!(" C{c}"));
    let mut out = format!("ms {key} {} T{ttl}{cas} M{mode}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// `md <key> [C<cas>]`.
pub fn delete(key: &str, cas: Option<u64>) -> Vec<u8> {
    let cas = cas.map_or(String::new(), |c| format!(" C{c}"));
    format!("md {key}{cas}\r\n").into_bytes()
}

pub const NOOP: &[u8] = b"mn\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_moves_only_the_keys_of_the_added_server() {
        let four: Vec<u64> = (0..4).map(|i| seed(&format!("10.0.0.{i}:11211"))).collect();
        let mut five = four.clone();
        five.push(seed("10.0.0.4:11211"));
        let n = 20_000u64;
        let mut moved = 0;
        let mut per = [0u32; 4];
        for k in 0..n {
            let h = mix(k);
            let a = owner(&four, h);
            let b = owner(&five, h);
            per[a] += 1;
            if a != b {
                moved += 1;
                assert_eq!(b, 4, "a key only ever moves to the new server");
            }
        }
        let share = moved as f64 / n as f64;
        assert!((0.15..0.25).contains(&share), "moved {share}");
        for p in per {
            assert!((4_000..6_000).contains(&p), "balanced: {per:?}");
        }
        // Order of the config list does not matter.
        let mut reversed = four.clone();
        reversed.reverse();
        for k in 0..1000u64 {
            let h = mix(k);
            assert_eq!(four[owner(&four, h)], reversed[owner(&reversed, h)]);
        }
    }

    #[test]
    fn ttls_round_up_and_switch_to_absolute_past_30_days() {
        assert_eq!(ttl_arg(1, 0), 3);
        assert_eq!(ttl_arg(1_001, 0), 4);
        assert_eq!(ttl_arg(3_600_000, 0), 3602);
        assert_eq!(ttl_arg(40 * 86_400_000, 1_000), 1_000 + 40 * 86_400 + 2);
    }

    #[test]
    fn requests_are_meta_commands() {
        assert_eq!(get("p:s:ab"), b"mg p:s:ab v c\r\n");
        assert_eq!(
            set("k", b"xy", 5, 'E', None),
            b"ms k 2 T5 ME\r\nxy\r\n".to_vec()
        );
        assert_eq!(set("k", b"", 5, 'S', Some(9)), b"ms k 0 T5 C9 MS\r\n\r\n");
        assert_eq!(delete("k", Some(3)), b"md k C3\r\n");
    }
}
