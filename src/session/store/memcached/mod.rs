//! `store = "memcached"`: sessions shared by every gateway instance, in one or more
//! memcached servers.
//!
//! Keys (all under `key_prefix`, spread over the servers by rendezvous hashing):
//! - `s:<hex store key>` — the sealed record, in the same format as Redis
//!   (`store/sealed.rs`, bound to memcached and to its key); memcached's TTL is the earlier
//!   of the idle deadline (plus `touch_interval`) and the absolute deadline;
//! - `u:<hex SHA-256(user)>` — the user's index (`index.rs`), for revocation without a
//!   scan. A lookup never reads it: it costs logins and revocations one round trip each
//!   (two on a CAS conflict), and requests nothing.
//!
//! **No invalidation channel.** Memcached cannot tell other instances that a session
//! ended, so `near_cache_ttl` is 0 by default and every lookup asks memcached; with a
//! non-zero value a logout or revocation on one instance can go unseen on another for up
//! to that long. On the instance that performs it, it is immediate.
//!
//! **Touches** work as with Redis: queued when the persisted `last_seen` is
//! `touch_interval` old, written back once a second with replace-only sets (`ms … MR`), so
//! a touch never revives a deleted session.
//!
//! **Failure.** Each server fails on its own: a down or slow server makes the sessions it
//! holds answer "store down" (protected routes `503`, never a wrong identity) within
//! `timeout`, then at once for a second (`client.rs`) while a probe retries; the other
//! servers' sessions keep working. Memcached keeps nothing on disk: a restarted server has
//! lost its sessions, and their owners log in again.

mod client;
pub mod index;
mod settings;

pub use settings::MemcachedConfig;

use super::record::{group_filter, Clock, Group, SessionRecord, StoreError, SystemClock};
use super::sealed;
use super::touches::TouchQueue;
use crate::metrics::Metrics;
use crate::session::cookie::StoreKey;
use crate::session::SessionConfig;
use client::{Reply, Server};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// Compare-and-swap retries on the user index before giving up (each retry means another
/// login or revocation of the same user changed it in between).
const CAS_TRIES: usize = 8;

struct Inner {
    cfg: Arc<MemcachedConfig>,
    servers: Vec<Server>,
    seeds: Vec<u64>,
    handle: tokio::runtime::Handle,
    near: Option<moka::sync::Cache<StoreKey, Arc<SessionRecord>>>,
    touches: TouchQueue,
    metrics: Metrics,
    rng: ring::rand::SystemRandom,
}

/// The memcached session store. Owns a small runtime for its connections, so that every
/// socket is driven by one reactor whichever pingora thread asks.
pub struct MemcachedStore {
    inner: Arc<Inner>,
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for MemcachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemcachedStore({})", self.inner.cfg.servers.join(","))
    }
}

impl Drop for MemcachedStore {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn unix_s() -> u64 {
    SystemClock.now_ms() / 1000
}

fn unexpected(op: &str, r: &Reply) -> StoreError {
    StoreError::Unavailable(format!("memcached: unexpected answer to {op}: {r:?}"))
}

impl Inner {
    fn skey(&self, key: &StoreKey) -> String {
        format!("{}s:{}", self.cfg.key_prefix, index::store_key_hex(key))
    }

    /// A group's index: `u:<hex SHA-256(user)>` for a user (as before groups existed),
    /// `g:<hex>` for a provider session or subject.
    fn gkey(&self, group: Group<'_>) -> String {
        format!("{}{}", self.cfg.key_prefix, group.index_name())
    }

    /// `rec` sealed for `skey`, and until when (ms since the epoch) memcached keeps it.
    fn seal_for(
        &self,
        cfg: &SessionConfig,
        skey: &str,
        rec: &SessionRecord,
    ) -> Result<(Vec<u8>, u64), StoreError> {
        let body = sealed::seal(
            sealed::MEMCACHED,
            &cfg.keys,
            skey,
            rec,
            rec.last_seen_ms(),
            &self.rng,
        )
        .ok_or_else(|| StoreError::Unavailable("could not seal the session".into()))?;
        let until = self.touches.deadline(
            rec,
            rec.last_seen_ms(),
            cfg.idle_timeout.as_millis() as u64,
            cfg.absolute_timeout.as_millis() as u64,
        );
        Ok((body, until))
    }

    fn lkey(&self, name: &str) -> String {
        format!("{}l:{name}", self.cfg.key_prefix)
    }

    /// Send `req` to the server that owns `route`, on the store's runtime, recording its
    /// latency and failures under the fixed label `op`.
    async fn run(
        self: &Arc<Self>,
        op: &'static str,
        route: &[u8],
        req: Vec<u8>,
    ) -> Result<Reply, StoreError> {
        let i = client::owner(&self.seeds, client::key_hash(route));
        let me = self.clone();
        let timeout = self.cfg.timeout;
        let start = Instant::now();
        let task = self
            .handle
            .spawn(async move { me.servers[i].call(&req, timeout, false).await });
        // The inner call is bounded by `timeout`; the outer bound only guards against the
        // store's own runtime being stuck.
        let r = match tokio::time::timeout(timeout * 2, task).await {
            Ok(Ok(Ok(reply))) => Ok(reply),
            Ok(Ok(Err(e))) => Err(StoreError::Unavailable(e.to_string())),
            Ok(Err(_)) => Err(StoreError::Unavailable("memcached: task failed".into())),
            Err(_) => Err(StoreError::Unavailable(format!(
                "memcached {}: timed out",
                self.servers[i].addr
            ))),
        };
        self.metrics
            .store_duration
            .with_label_values(&["memcached", op])
            .observe(start.elapsed().as_secs_f64());
        if r.is_err() {
            self.metrics
                .store_errors
                .with_label_values(&["memcached", op])
                .inc();
        }
        r
    }

    /// Add `entry` to the group's index, returning the entries evicted to stay within
    /// `index::MAX_ENTRIES`.
    async fn index_add(
        self: &Arc<Self>,
        group: Group<'_>,
        entry: index::Entry,
        now_ms: u64,
    ) -> Result<Vec<index::Entry>, StoreError> {
        let ukey = self.gkey(group);
        let digest = &group.digest();
        for _ in 0..CAS_TRIES {
            let (old, cas) = match self.run("create", digest, client::get(&ukey)).await? {
                Reply::Value { data, cas } => (index::parse(&data), cas),
                Reply::Miss => (Vec::new(), None),
                other => return Err(unexpected("mg", &other)),
            };
            let (kept, evicted) = index::add(old, entry.clone(), now_ms);
            let until = kept.iter().map(|e| e.deadline_ms).max().unwrap_or(now_ms);
            let ttl = client::ttl_arg(until.saturating_sub(now_ms), unix_s());
            let body = index::render(&kept);
            let req = match cas {
                Some(c) => client::set(&ukey, &body, ttl, 'S', Some(c)),
                None => client::set(&ukey, &body, ttl, 'E', None),
            };
            match self.run("create", digest, req).await? {
                Reply::Done { .. } => return Ok(evicted),
                // Someone else changed (or created) the index in between: read it again.
                Reply::Exists | Reply::NotFound | Reply::NotStored => continue,
                other => return Err(unexpected("ms", &other)),
            }
        }
        Err(StoreError::Unavailable(
            "memcached: the user index kept changing; try again".into(),
        ))
    }

    async fn flush_touches(self: &Arc<Self>) {
        let batch = self.touches.take();
        let now = SystemClock.now_ms();
        let mut failed = 0usize;
        for (key, p) in batch {
            let last = p.rec.last_seen_ms();
            let until = self
                .touches
                .deadline(&p.rec, last, p.idle_ms, p.absolute_ms);
            if until <= now {
                continue;
            }
            let skey = self.skey(&key);
            let Some(body) =
                sealed::seal(sealed::MEMCACHED, &p.keys, &skey, &p.rec, last, &self.rng)
            else {
                continue;
            };
            let ttl = client::ttl_arg(until - now, now / 1000);
            match self
                .run("touch", &key.0, client::set(&skey, &body, ttl, 'R', None))
                .await
            {
                Ok(Reply::Done { .. }) => p.rec.set_persisted(last),
                // Deleted meanwhile (logout elsewhere): replace-only did not revive it.
                Ok(Reply::NotStored) => {
                    if let Some(n) = &self.near {
                        n.invalidate(&key);
                    }
                }
                Ok(_) | Err(_) => failed += 1,
            }
        }
        if failed > 0 {
            // Not fatal: the next request of each session queues it again.
            tracing::warn!(
                sessions = failed,
                "could not write session touches to memcached"
            );
        }
    }

    /// Probe every server (its health feeds `/readyz`), then write the touches.
    async fn housekeeper(self: Arc<Self>) {
        let mut tick = tokio::time::interval(HOUSEKEEPING);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let probes = self.servers.iter().map(|s| async {
                let was = s.health();
                let now = s.call(client::NOOP, self.cfg.timeout, true).await;
                match (&was, &now) {
                    (Err(_), Ok(_)) => tracing::info!(server = %s.addr, "memcached server answers"),
                    (Ok(()), Err(e)) => {
                        tracing::warn!(server = %s.addr, error = %e, "memcached server down")
                    }
                    _ => {}
                }
            });
            futures_util::future::join_all(probes).await;
            self.flush_touches().await;
        }
    }
}

impl MemcachedStore {
    /// Connect lazily: nothing here waits for memcached, so the gateway starts (and serves
    /// its public routes) while a server is still down.
    pub fn new(
        cfg: Arc<MemcachedConfig>,
        max_sessions: u64,
        metrics: Metrics,
    ) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("portcullis-memcached")
            .enable_all()
            .build()
            .map_err(|e| format!("memcached runtime: {e}"))?;
        let servers: Vec<Server> = cfg.servers.iter().cloned().map(Server::new).collect();
        let seeds = servers.iter().map(Server::seed).collect();
        let near = (!cfg.near_cache_ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(max_sessions)
                .time_to_live(cfg.near_cache_ttl)
                .support_invalidation_closures()
                .build()
        });
        let touches = TouchQueue::new(cfg.touch_interval);
        let inner = Arc::new(Inner {
            touches,
            cfg,
            servers,
            seeds,
            handle: rt.handle().clone(),
            near,
            metrics,
            rng: ring::rand::SystemRandom::new(),
        });
        rt.spawn(inner.clone().housekeeper());
        Ok(Self {
            inner,
            rt: Some(rt),
        })
    }

    pub fn describe(&self) -> String {
        self.inner.cfg.servers.join(",")
    }

    /// Extra idle time a record gets because touches are written back in batches.
    pub fn idle_slack_ms(&self) -> u64 {
        self.inner.cfg.touch_interval.as_millis() as u64
    }

    pub async fn create(
        &self,
        cfg: &SessionConfig,
        key: StoreKey,
        rec: SessionRecord,
    ) -> Result<Arc<SessionRecord>, StoreError> {
        let i = &self.inner;
        let skey = i.skey(&key);
        let (body, until) = i.seal_for(cfg, &skey, &rec)?;
        let absolute_ms = cfg.absolute_timeout.as_millis() as u64;
        let now = rec.created_ms;
        // The indexes first: a session memcached holds must always be revocable.
        let mut evicted = Vec::new();
        for g in Group::of(&rec) {
            let entry = index::Entry {
                key,
                deadline_ms: now + absolute_ms,
            };
            evicted.extend(i.index_add(g, entry, now).await?);
        }
        let ttl = client::ttl_arg(until - now, now / 1000);
        match i
            .run("create", &key.0, client::set(&skey, &body, ttl, 'E', None))
            .await?
        {
            Reply::Done { .. } => {}
            Reply::NotStored => {
                return Err(StoreError::Unavailable(
                    "session id collision (refusing to overwrite)".into(),
                ))
            }
            other => return Err(unexpected("ms", &other)),
        }
        for e in evicted {
            // Over the per-user bound: the session closest to its end goes.
            let _ = i
                .run("revoke", &e.key.0, client::delete(&i.skey(&e.key), None))
                .await;
        }
        let rec = Arc::new(rec);
        if let Some(n) = &i.near {
            n.insert(key, rec.clone());
        }
        Ok(rec)
    }

    pub async fn load(
        &self,
        cfg: &SessionConfig,
        key: &StoreKey,
    ) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.load_from(cfg, key, true).await
    }

    /// Read the record from memcached itself, past the near-cache.
    pub async fn load_fresh(
        &self,
        cfg: &SessionConfig,
        key: &StoreKey,
    ) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.load_from(cfg, key, false).await
    }

    async fn load_from(
        &self,
        cfg: &SessionConfig,
        key: &StoreKey,
        use_near: bool,
    ) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let i = &self.inner;
        if let Some(n) = i.near.as_ref().filter(|_| use_near) {
            if let Some(r) = n.get(key) {
                i.metrics.session_cache.with_label_values(&["hit"]).inc();
                return Ok(Some(r));
            }
            i.metrics.session_cache.with_label_values(&["miss"]).inc();
        }
        let skey = i.skey(key);
        let data = match i.run("get", &key.0, client::get(&skey)).await? {
            Reply::Value { data, .. } => data,
            Reply::Miss => return Ok(None),
            other => return Err(unexpected("mg", &other)),
        };
        let Some(rec) = sealed::open(sealed::MEMCACHED, &cfg.keys, &skey, &data) else {
            tracing::warn!("a memcached session record did not open (key removed from keys_file, or altered); treated as no session");
            return Ok(None);
        };
        let rec = Arc::new(rec);
        if let Some(n) = &i.near {
            n.insert(*key, rec.clone());
        }
        Ok(Some(rec))
    }

    /// Slide the idle expiry (see `store/touches.rs`).
    pub fn touch(&self, cfg: &SessionConfig, key: &StoreKey, rec: &Arc<SessionRecord>, now: u64) {
        self.inner.touches.touch(cfg, key, rec, now);
    }

    pub async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        let i = &self.inner;
        if let Some(n) = &i.near {
            n.invalidate(key);
        }
        i.touches.forget(key);
        // The index line stays until it expires or the index is next rewritten: harmless,
        // a revocation deleting a missing key is a no-op.
        match i
            .run("delete", &key.0, client::delete(&i.skey(key), None))
            .await?
        {
            Reply::Done { .. } => Ok(true),
            Reply::NotFound => Ok(false),
            other => Err(unexpected("md", &other)),
        }
    }

    /// Write a renewed record over the session's (replace mode: never reviving a session
    /// that ended meanwhile). `None`: the session is gone.
    pub async fn replace(
        &self,
        cfg: &SessionConfig,
        key: &StoreKey,
        rec: SessionRecord,
        now: u64,
    ) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let i = &self.inner;
        let skey = i.skey(key);
        let (body, until) = i.seal_for(cfg, &skey, &rec)?;
        let ttl = client::ttl_arg(until.saturating_sub(now), now / 1000);
        if let Some(n) = &i.near {
            n.invalidate(key);
        }
        match i
            .run("refresh", &key.0, client::set(&skey, &body, ttl, 'R', None))
            .await?
        {
            Reply::Done { .. } => Ok(Some(Arc::new(rec))),
            Reply::NotStored | Reply::NotFound => Ok(None),
            other => Err(unexpected("ms", &other)),
        }
    }

    /// Claim `name` for `ttl` across every instance (add mode: the first claim only).
    pub async fn claim(&self, name: &str, ttl: std::time::Duration) -> Result<bool, StoreError> {
        let i = &self.inner;
        let k = i.lkey(name);
        let t = client::ttl_arg(ttl.as_millis() as u64, unix_s());
        match i
            .run("claim", k.as_bytes(), client::set(&k, b"1", t, 'E', None))
            .await?
        {
            Reply::Done { .. } => Ok(true),
            Reply::NotStored | Reply::Exists => Ok(false),
            other => Err(unexpected("ms", &other)),
        }
    }

    pub async fn release(&self, name: &str) -> Result<(), StoreError> {
        let i = &self.inner;
        let k = i.lkey(name);
        match i
            .run("claim", k.as_bytes(), client::delete(&k, None))
            .await?
        {
            Reply::Done { .. } | Reply::NotFound => Ok(()),
            other => Err(unexpected("md", &other)),
        }
    }

    /// The sessions of `group` that memcached still holds (read past the near-cache).
    pub async fn list_group(
        &self,
        cfg: &SessionConfig,
        group: Group<'_>,
    ) -> Result<Vec<(StoreKey, Arc<SessionRecord>)>, StoreError> {
        let i = &self.inner;
        let digest = &group.digest();
        let entries = match i.run("get", digest, client::get(&i.gkey(group))).await? {
            Reply::Value { data, .. } => index::parse(&data),
            Reply::Miss => Vec::new(),
            other => return Err(unexpected("mg", &other)),
        };
        let mut out = Vec::new();
        for e in entries {
            if let Some(r) = self.load_fresh(cfg, &e.key).await? {
                if group.matches(&r) {
                    out.push((e.key, r));
                }
            }
        }
        Ok(out)
    }

    /// End every session of `group`: read the index, delete each record, then delete the
    /// index only if nobody added to it meanwhile (CAS); otherwise go round again.
    pub async fn delete_group(&self, group: Group<'_>) -> Result<usize, StoreError> {
        let i = &self.inner;
        let ukey = i.gkey(group);
        let digest = &group.digest();
        let mut removed = 0;
        let mut done = false;
        for _ in 0..CAS_TRIES {
            let (entries, cas) = match i.run("revoke", digest, client::get(&ukey)).await? {
                Reply::Value { data, cas } => (index::parse(&data), cas),
                Reply::Miss => {
                    done = true;
                    break;
                }
                other => return Err(unexpected("mg", &other)),
            };
            for e in &entries {
                if let Some(n) = &i.near {
                    n.invalidate(&e.key);
                }
                i.touches.forget(&e.key);
                match i
                    .run("revoke", &e.key.0, client::delete(&i.skey(&e.key), None))
                    .await?
                {
                    Reply::Done { .. } => removed += 1,
                    Reply::NotFound => {}
                    other => return Err(unexpected("md", &other)),
                }
            }
            match i.run("revoke", digest, client::delete(&ukey, cas)).await? {
                Reply::Done { .. } | Reply::NotFound => {
                    done = true;
                    break;
                }
                // A login added a session after we read the index: delete that one too.
                Reply::Exists => continue,
                other => return Err(unexpected("md", &other)),
            }
        }
        if let Some(n) = &i.near {
            let _ = n.invalidate_entries_if(group_filter(group));
        }
        if !done {
            return Err(StoreError::Unavailable(
                "memcached: the user index kept changing; revoke again".into(),
            ));
        }
        Ok(removed)
    }

    /// Sessions in this instance's near-cache (memcached cannot count its items by kind).
    pub fn count(&self) -> u64 {
        self.inner.near.as_ref().map_or(0, |n| {
            n.run_pending_tasks();
            n.entry_count()
        })
    }

    /// Ready when every server answered its latest operation or probe; otherwise the
    /// message names each server that did not.
    pub fn health(&self) -> Result<(), String> {
        let down: Vec<String> = self
            .inner
            .servers
            .iter()
            .filter_map(|s| {
                s.health()
                    .err()
                    .map(|e| format!("memcached {}: {e}", s.addr))
            })
            .collect();
        if down.is_empty() {
            Ok(())
        } else {
            Err(down.join("; "))
        }
    }
}
