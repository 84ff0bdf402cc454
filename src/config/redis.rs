//! `[redis]`: where the shared session store lives and how patient to be with it.
//!
//! One `url` key names every deployment shape:
//! - `redis://[user:pass@]host:port[/db]` or `rediss://…` (TLS): a single node;
//! - `redis+cluster://host:port,host:port,…` (or `rediss+cluster://`): Cluster seed nodes;
//! - `redis+sentinel://host:port,host:port/master-name[/db]` (or `rediss+sentinel://`):
//!   Sentinels, and the name of the master they watch.

use super::file::RedisSection;
use super::{ConfigError, Source};
use crate::secret::Secret;
pub use crate::session::store::redis::{RedisConfig, RedisTarget};
use std::time::Duration;

/// Split `scheme://[userinfo@]hosts[/rest]`.
fn split(url: &str) -> Option<(&str, Option<&str>, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    Some((scheme, userinfo, hosts, path))
}

pub(crate) fn parse_target(url: &str) -> Result<(RedisTarget, String), String> {
    let (scheme, userinfo, hosts, path) =
        split(url).ok_or("redis url must look like redis://host:port/0")?;
    let hosts: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();
    if hosts.is_empty() {
        return Err("redis url names no host".into());
    }
    for h in &hosts {
        if !h.contains(':') {
            return Err(format!("redis host {h:?} needs a port"));
        }
    }
    let auth = userinfo.map_or(String::new(), |u| format!("{u}@"));
    let display_auth = userinfo.map_or(String::new(), |u| match u.split_once(':') {
        Some((user, _)) => format!("{user}:***@"),
        None => "***@".into(),
    });
    let display = format!("{scheme}://{display_auth}{}/{path}", hosts.join(","));
    let target = match scheme {
        "redis" | "rediss" => {
            if hosts.len() != 1 {
                return Err(format!(
                    "{scheme}:// names one node; use {scheme}+cluster:// or {scheme}+sentinel:// for several"
                ));
            }
            redis::Client::open(url).map_err(|e| format!("redis url: {e}"))?;
            RedisTarget::Single(url.to_string())
        }
        "redis+cluster" | "rediss+cluster" => {
            if !path.is_empty() && path != "0" {
                return Err("a Redis Cluster has only database 0".into());
            }
            let base = scheme.trim_end_matches("+cluster");
            RedisTarget::Cluster(
                hosts
                    .iter()
                    .map(|h| format!("{base}://{auth}{h}"))
                    .collect(),
            )
        }
        "redis+sentinel" | "rediss+sentinel" => {
            let mut parts = path.split('/');
            let master = parts.next().unwrap_or("").to_string();
            if master.is_empty() {
                return Err(
                    "redis+sentinel:// needs the master name: redis+sentinel://host:26379/mymaster/0"
                        .into(),
                );
            }
            let db = match parts.next() {
                None | Some("") => 0,
                Some(d) => d
                    .parse()
                    .map_err(|_| format!("database {d:?} is not a number"))?,
            };
            RedisTarget::Sentinel {
                sentinels: hosts.iter().map(|h| format!("redis://{h}")).collect(),
                master,
                db,
                tls: scheme == "rediss+sentinel",
            }
        }
        other => {
            return Err(format!(
                "unknown redis url scheme {other:?}: use redis://, rediss://, redis+cluster:// or redis+sentinel://"
            ))
        }
    };
    Ok((target, display))
}

pub(crate) fn redis_config(
    src: &Source<'_>,
    r: &RedisSection,
    // `None` for cookie sessions, which only keep their deny-list in Redis (no touches).
    idle: Option<Duration>,
) -> Result<RedisConfig, ConfigError> {
    let (target, display) = parse_target(r.url.get_ref()).map_err(|e| src.at(r.url.span(), e))?;
    let prefix = r.key_prefix.get_ref();
    if prefix.is_empty() || prefix.len() > 64 || prefix.chars().any(|c| c.is_control() || c == ' ')
    {
        return Err(src.at(
            r.key_prefix.span(),
            "key_prefix must be 1-64 characters without spaces",
        ));
    }
    let timeout = r.timeout.get_ref().0;
    if timeout < Duration::from_millis(10) || timeout > Duration::from_secs(10) {
        return Err(src.at(r.timeout.span(), "timeout must be between 10ms and 10s"));
    }
    let touch = r.touch_interval.get_ref().0;
    if touch.is_zero() || idle.is_some_and(|idle| touch > idle / 2) {
        return Err(src.at(
            r.touch_interval.span(),
            format!(
                "touch_interval must be > 0 and at most half of idle_timeout ({}s)",
                idle.map_or(0, |i| i.as_secs() / 2)
            ),
        ));
    }
    let ttl = r.near_cache_ttl.get_ref().0;
    if ttl > Duration::from_secs(300) {
        return Err(src.at(r.near_cache_ttl.span(), "near_cache_ttl is at most 5m"));
    }
    let read = |p: &toml::Spanned<String>| {
        let path = src.resolve(p.get_ref());
        std::fs::read(&path)
            .map_err(|e| src.at(p.span(), format!("cannot read {}: {e}", path.display())))
    };
    let password = match &r.password_file {
        None => None,
        Some(p) => {
            let raw = read(p)?;
            let text = String::from_utf8(raw).map_err(|_| src.at(p.span(), "not UTF-8"))?;
            let pw = text.lines().next().unwrap_or("").trim().to_string();
            if pw.is_empty() {
                return Err(src.at(p.span(), "password file is empty"));
            }
            Some(Secret::new(pw.into_bytes()))
        }
    };
    let tls_ca = match &r.tls_ca_file {
        None => None,
        Some(p) => Some(read(p)?),
    };
    Ok(RedisConfig {
        target,
        display,
        key_prefix: prefix.clone(),
        password,
        tls_ca,
        timeout,
        touch_interval: touch,
        near_cache_ttl: ttl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_url_form_parses_and_passwords_never_display() {
        let (t, d) = parse_target("redis://:s3cret@127.0.0.1:6379/2").unwrap();
        assert_eq!(
            t,
            RedisTarget::Single("redis://:s3cret@127.0.0.1:6379/2".into())
        );
        assert!(!d.contains("s3cret"), "{d}");
        let (t, _) = parse_target("rediss://127.0.0.1:6380").unwrap();
        assert!(matches!(t, RedisTarget::Single(_)));
        let (t, d) = parse_target("redis+cluster://u:pw@10.0.0.1:7000,10.0.0.2:7001").unwrap();
        assert_eq!(
            t,
            RedisTarget::Cluster(vec![
                "redis://u:pw@10.0.0.1:7000".into(),
                "redis://u:pw@10.0.0.2:7001".into()
            ])
        );
        assert!(!d.contains("pw@") && d.contains("u:***@"), "{d}");
        let (t, _) = parse_target("rediss+sentinel://s1:26379,s2:26379/mymaster/3").unwrap();
        assert_eq!(
            t,
            RedisTarget::Sentinel {
                sentinels: vec!["redis://s1:26379".into(), "redis://s2:26379".into()],
                master: "mymaster".into(),
                db: 3,
                tls: true
            }
        );
        for bad in [
            "127.0.0.1:6379",
            "http://127.0.0.1:6379",
            "redis://a:1,b:2",
            "redis+sentinel://s1:26379",
            "redis+cluster://a:1/3",
            "redis://hostonly",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}
