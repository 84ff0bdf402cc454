//! What a session is allowed to be, as validated from `[session]`, `[redis]` and `[memcached]`: the
//! session domain's own types, which `config` builds (they never import `config`).

use super::keys::KeyRing;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use super::store::memcached::MemcachedConfig;
pub use super::store::redis::RedisConfig;

/// The cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

/// Validated `[session]`.
#[derive(Debug)]
pub struct SessionConfig {
    pub keys: Arc<KeyRing>,
    pub keys_file: PathBuf,
    pub cookie_name: String,
    pub secure: bool,
    pub same_site: SameSite,
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    pub max_sessions: u64,
    pub persist_file: Option<PathBuf>,
    /// `store = "cookie"`: the sealed record rides in the cookie, nothing is stored.
    pub stateless: bool,
    /// `store = "redis"`: sessions live in Redis, shared by every instance.
    pub redis: Option<Arc<RedisConfig>>,
    /// `store = "memcached"`: sessions live in memcached, shared by every instance.
    pub memcached: Option<Arc<MemcachedConfig>>,
}
