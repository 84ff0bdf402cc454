//! `[memcached]`: which servers hold the sessions and how patient to be with them.

use super::file::MemcachedSection;
use super::{ConfigError, Source};
pub use crate::session::store::memcached::MemcachedConfig;
use std::time::Duration;

/// More servers than a session store needs; bounds the per-request server choice.
const MAX_SERVERS: usize = 64;

/// `host:port`, `[v6]:port`; the port a number. Names resolve at connect time.
fn check_server(s: &str) -> Result<(), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("memcached server {s:?} needs host:port"))?;
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    if !host_ok {
        return Err(format!("memcached server {s:?}: bad host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("memcached server {s:?}: bad port")),
    }
}

pub(crate) fn memcached_config(
    src: &Source<'_>,
    m: &MemcachedSection,
    idle: Duration,
) -> Result<MemcachedConfig, ConfigError> {
    let list = m.servers.get_ref();
    if list.is_empty() {
        return Err(src.at(m.servers.span(), "servers must name at least one host:port"));
    }
    if list.len() > MAX_SERVERS {
        return Err(src.at(
            m.servers.span(),
            format!("at most {MAX_SERVERS} memcached servers"),
        ));
    }
    let mut servers: Vec<String> = Vec::with_capacity(list.len());
    for s in list {
        check_server(s.get_ref()).map_err(|e| src.at(s.span(), e))?;
        if servers.contains(s.get_ref()) {
            return Err(src.at(s.span(), format!("{:?} is listed twice", s.get_ref())));
        }
        servers.push(s.get_ref().clone());
    }
    let prefix = m.key_prefix.get_ref();
    // Memcached keys are at most 250 bytes of printable ASCII without spaces; ours are the
    // prefix plus 66 characters.
    if prefix.is_empty() || prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(src.at(
            m.key_prefix.span(),
            "key_prefix must be 1-64 printable ASCII characters without spaces",
        ));
    }
    let timeout = m.timeout.get_ref().0;
    if timeout < Duration::from_millis(10) || timeout > Duration::from_secs(10) {
        return Err(src.at(m.timeout.span(), "timeout must be between 10ms and 10s"));
    }
    let touch = m.touch_interval.get_ref().0;
    if touch.is_zero() || touch > idle / 2 {
        return Err(src.at(
            m.touch_interval.span(),
            format!(
                "touch_interval must be > 0 and at most half of idle_timeout ({}s)",
                idle.as_secs() / 2
            ),
        ));
    }
    let ttl = m.near_cache_ttl.get_ref().0;
    if ttl > Duration::from_secs(300) {
        return Err(src.at(m.near_cache_ttl.span(), "near_cache_ttl is at most 5m"));
    }
    Ok(MemcachedConfig {
        servers,
        key_prefix: prefix.clone(),
        timeout,
        touch_interval: touch,
        near_cache_ttl: ttl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        for ok in ["127.0.0.1:11211", "[::1]:11211", "cache-1.internal:11211"] {
            assert!(check_server(ok).is_ok(), "{ok}");
        }
        for bad in [
            "127.0.0.1",
            ":11211",
            "a:0",
            "a:99999",
            "[zz]:1",
            "a b:1",
            "a:x",
        ] {
            assert!(check_server(bad).is_err(), "{bad}");
        }
    }
}
