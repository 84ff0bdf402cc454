//! Validated `[memcached]`: which servers hold the sessions and how patient to be with
//! them (`config::memcached` checks the values and builds this).

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemcachedConfig {
    /// `host:port` as written; resolved when a connection is opened. Order does not
    /// matter: rendezvous hashing gives the same owner whatever the order.
    pub servers: Vec<String>,
    pub key_prefix: String,
    /// Bound on every operation (connect included); slower counts as "store down".
    pub timeout: Duration,
    /// A session's idle expiry is written back at most this often per instance.
    pub touch_interval: Duration,
    /// How long a record read from memcached may be served from this instance's memory.
    /// Memcached cannot tell other instances about a logout, so this is also how long a
    /// logout elsewhere can go unseen here. 0 = ask memcached on every request.
    pub near_cache_ttl: Duration,
}
