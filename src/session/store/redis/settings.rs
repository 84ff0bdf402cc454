//! Validated `[redis]`: where the shared session store lives and how patient to be with
//! it (`config::redis` parses the URL forms into these).

use crate::secret::Secret;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// A `redis://` or `rediss://` URL.
    Single(String),
    /// Seed node URLs (`redis://host:port` each).
    Cluster(Vec<String>),
    Sentinel {
        /// Sentinel URLs (`redis://host:port` each).
        sentinels: Vec<String>,
        master: String,
        db: i64,
        tls: bool,
    },
}

/// Validated `[redis]`.
#[derive(Debug)]
pub struct RedisConfig {
    pub target: RedisTarget,
    /// The URL with any password removed, for logs and `/readyz`.
    pub display: String,
    pub key_prefix: String,
    pub password: Option<Secret>,
    pub tls_ca: Option<Vec<u8>>,
    /// Bound on every Redis command; a slower answer counts as "store down".
    pub timeout: Duration,
    /// A session's idle expiry is written back to Redis at most this often per instance.
    pub touch_interval: Duration,
    /// Longest time a session may be served from the local near-cache without Redis.
    pub near_cache_ttl: Duration,
}
