//! `store = "redis"`: sessions shared by every gateway instance, with a local near-cache.
//!
//! Keys (all under `key_prefix`):
//! - `s:<hex store key>` — the sealed record (`store/sealed.rs`); its TTL is the earlier of the
//!   idle deadline (plus `touch_interval`, see below) and the absolute deadline;
//! - `u:<hex SHA-256(user)>` — the set of that user's session keys, for revocation;
//! - `g:<hex SHA-256(…)>` — the same for one provider session (`sid`) or subject, for
//!   OpenID Back-Channel Logout (`record::Group`);
//! - `l:<name>` — short-lived claims: one provider refresh at a time per session, a
//!   logout token's `jti` or a login `state` used once across instances;
//! - channel `invalidate` — `k <hex> …` when sessions end, `p <instance>` heartbeats.
//!
//! **Near-cache.** Records read from Redis are kept in a moka cache for `near_cache_ttl`.
//! Every instance subscribes to the invalidation channel; a logout, revocation or expiry
//! anywhere removes the session from every near-cache. The cache is used only while the
//! subscription is known to be alive: each instance publishes a heartbeat every second and
//! must hear its own heartbeats; after `HEARTBEAT_LOST` of silence (or a dropped
//! connection) the near-cache is emptied and bypassed until the subscription is back, so a
//! revoked session is never served from memory. A read that raced an invalidation is not
//! cached (an epoch counter tells).
//!
//! **Touches.** Sliding the idle expiry costs no Redis write per request: a session is
//! queued for a write-back when its persisted `last_seen` is `touch_interval` old, and a
//! background task writes the queue once a second (`SET … XX`, so a touch never revives a
//! deleted session). To never expire an active session early, the idle deadline is
//! `last_seen + idle_timeout + touch_interval`: a session may outlive its last request by
//! at most `idle_timeout + touch_interval`.

mod link;
mod settings;

pub use settings::{RedisConfig, RedisTarget};

use super::record::{group_filter, Group, SessionRecord, StoreError};
use super::sealed;
use super::touches::TouchQueue;
use crate::metrics::Metrics;
use crate::session::cookie::StoreKey;
use crate::session::SessionConfig;
use futures_util::StreamExt;
use link::Link;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HEARTBEAT: Duration = Duration::from_secs(1);
const HEARTBEAT_LOST: Duration = Duration::from_secs(3);
const MAX_KEYS_PER_MESSAGE: usize = 200;

/// State shared with the background tasks.
struct Inner {
    cfg: Arc<RedisConfig>,
    link: Link,
    near: moka::sync::Cache<StoreKey, Arc<SessionRecord>>,
    /// `store = "cookie"`: cached answers of "is this cookie session id denied?"
    denied_ids: moka::sync::Cache<[u8; 16], bool>,
    /// `store = "cookie"`: cached "sessions of this user issued up to T are revoked" (0 =
    /// none), by hex SHA-256 of the user name.
    revoked_users: moka::sync::Cache<String, u64>,
    /// The invalidation subscription is alive (see module docs).
    subscribed: AtomicBool,
    /// Bumped on every invalidation; a read that saw it move does not fill the cache.
    epoch: AtomicU64,
    last_heard: Mutex<Instant>,
    touches: TouchQueue,
    /// The outcome of the latest Redis command (`Ok`, or why not), for `/readyz`.
    health: Mutex<Result<(), String>>,
    instance: String,
    metrics: Metrics,
    rng: ring::rand::SystemRandom,
}

/// The Redis session store. Owns a small runtime for its connections and tasks.
pub struct RedisStore {
    inner: Arc<Inner>,
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisStore({})", self.inner.cfg.display)
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        // Dropping a runtime from inside async code panics; let it wind down on its own.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn user_hash(user: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, user.as_bytes()).as_ref())
}

fn unhex_id(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut k = [0u8; 16];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(k)
}

fn unhex(s: &str) -> Option<StoreKey> {
    if s.len() != 64 {
        return None;
    }
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(StoreKey(k))
}

impl Inner {
    fn skey(&self, key: &StoreKey) -> String {
        format!("{}s:{}", self.cfg.key_prefix, hex(&key.0))
    }

    /// `rec` sealed for `skey`, and how long from `now` Redis keeps it (ms, at least 1).
    fn seal_for(
        &self,
        cfg: &SessionConfig,
        skey: &str,
        rec: &SessionRecord,
        now: u64,
    ) -> Result<(Vec<u8>, u64), StoreError> {
        let sealed = sealed::seal(
            sealed::REDIS,
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
        Ok((sealed, until.saturating_sub(now).max(1)))
    }

    fn gkey(&self, group: Group<'_>) -> String {
        format!("{}{}", self.cfg.key_prefix, group.index_name())
    }

    fn dkey(&self, id: &[u8; 16]) -> String {
        format!("{}d:{}", self.cfg.key_prefix, hex(id))
    }

    fn dukey(&self, user_hash: &str) -> String {
        format!("{}du:{user_hash}", self.cfg.key_prefix)
    }

    fn channel(&self) -> String {
        format!("{}invalidate", self.cfg.key_prefix)
    }

    fn near_usable(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    fn drop_near_cache(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.near.invalidate_all();
        self.denied_ids.invalidate_all();
        self.revoked_users.invalidate_all();
    }

    async fn publish(&self, msg: String) {
        let cmd = redis::cmd("PUBLISH").arg(self.channel()).arg(msg).clone();
        if let Err(e) = self.timed::<i64>("publish", &cmd).await {
            // The change is already in Redis; other instances' caches drop it within
            // near_cache_ttl at the latest.
            tracing::warn!(error = %e, "could not publish a session invalidation");
        }
    }

    /// Run a command, recording its latency and errors under the fixed label `op`.
    async fn timed<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        let r = self.link.query(cmd).await;
        self.metrics
            .redis_duration
            .with_label_values(&[op])
            .observe(start.elapsed().as_secs_f64());
        if r.is_err() {
            self.metrics.redis_errors.with_label_values(&[op]).inc();
        }
        // Readiness follows the latest answer, from requests and heartbeats alike.
        let state = r.as_ref().map(|_| ()).map_err(|e| e.to_string());
        *self.health.lock().unwrap_or_else(|p| p.into_inner()) = state;
        r
    }

    async fn publish_keys(&self, keys: &[StoreKey]) {
        for chunk in keys.chunks(MAX_KEYS_PER_MESSAGE) {
            let mut msg = String::from("k");
            for k in chunk {
                msg.push(' ');
                msg.push_str(&hex(&k.0));
            }
            self.publish(msg).await;
        }
    }

    fn on_message(&self, payload: &str) {
        *self.last_heard.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        if !self.subscribed.load(Ordering::Acquire) {
            // Back after silence: whatever was cached before may have missed messages.
            self.drop_near_cache();
            self.subscribed.store(true, Ordering::Release);
            tracing::info!("session invalidation channel is live; near-cache in use");
        }
        let mut parts = payload.split(' ');
        match parts.next() {
            Some("k") => {
                self.epoch.fetch_add(1, Ordering::AcqRel);
                for k in parts.filter_map(unhex) {
                    self.near.invalidate(&k);
                    self.metrics.session_invalidations.inc();
                }
            }
            Some("d") => {
                self.epoch.fetch_add(1, Ordering::AcqRel);
                for id in parts.filter_map(unhex_id) {
                    self.denied_ids.insert(id, true);
                    self.metrics.session_invalidations.inc();
                }
            }
            Some("du") => {
                self.epoch.fetch_add(1, Ordering::AcqRel);
                for u in parts {
                    self.revoked_users.invalidate(u);
                    self.metrics.session_invalidations.inc();
                }
            }
            _ => {}
        }
    }

    fn lost_channel(&self, why: &str) {
        if self.subscribed.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                reason = why,
                "session invalidation channel lost; near-cache dropped until it is back"
            );
        }
        self.drop_near_cache();
    }

    /// Subscribe, and keep subscribing; runs for the life of the store.
    async fn subscriber(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.link.pubsub().await {
                Ok(mut ps) => {
                    match tokio::time::timeout(self.cfg.timeout * 2, ps.subscribe(self.channel()))
                        .await
                        .unwrap_or_else(|_| {
                            Err(redis::RedisError::from((
                                redis::ErrorKind::Io,
                                "subscribe timed out",
                            )))
                        }) {
                        Ok(()) => {
                            backoff = Duration::from_millis(100);
                            let mut stream = ps.into_on_message();
                            loop {
                                match tokio::time::timeout(HEARTBEAT_LOST, stream.next()).await {
                                    Ok(Some(msg)) => {
                                        let payload: String = msg.get_payload().unwrap_or_default();
                                        self.on_message(&payload);
                                    }
                                    Ok(None) => {
                                        self.lost_channel("connection closed");
                                        break;
                                    }
                                    Err(_) => {
                                        self.lost_channel("no heartbeat");
                                        break;
                                    }
                                }
                            }
                        }
                        Err(e) => self.lost_channel(&format!("subscribe failed: {e}")),
                    }
                }
                Err(e) => {
                    self.lost_channel(&format!("cannot connect: {e}"));
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// Heartbeats, health and touch write-back; runs for the life of the store.
    async fn housekeeper(self: Arc<Self>) {
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let beat = redis::cmd("PUBLISH")
                .arg(self.channel())
                .arg(format!("p {}", self.instance))
                .clone();
            let _ = self.timed::<i64>("publish", &beat).await;
            let silent = self
                .last_heard
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed()
                > HEARTBEAT_LOST;
            if silent && self.subscribed.load(Ordering::Acquire) {
                self.lost_channel("own heartbeats not heard");
            }
            self.flush_touches().await;
        }
    }

    async fn flush_touches(&self) {
        let batch = self.touches.take();
        if batch.is_empty() {
            return;
        }
        let now = super::record::Clock::now_ms(&super::record::SystemClock);
        let mut pipe = redis::pipe();
        let mut written = Vec::new();
        for (key, p) in &batch {
            let last = p.rec.last_seen_ms();
            let deadline = self
                .touches
                .deadline(&p.rec, last, p.idle_ms, p.absolute_ms);
            if deadline <= now {
                continue;
            }
            let skey = self.skey(key);
            let Some(sealed) = sealed::seal(sealed::REDIS, &p.keys, &skey, &p.rec, last, &self.rng)
            else {
                continue;
            };
            pipe.cmd("SET")
                .arg(&skey)
                .arg(sealed)
                .arg("PX")
                .arg(deadline - now)
                .arg("XX")
                .ignore();
            written.push((p.rec.clone(), last));
        }
        if written.is_empty() {
            return;
        }
        let start = Instant::now();
        let r = self.link.pipeline(&pipe).await;
        self.metrics
            .redis_duration
            .with_label_values(&["touch"])
            .observe(start.elapsed().as_secs_f64());
        match r {
            Ok(()) => {
                for (rec, last) in written {
                    rec.set_persisted(last);
                }
            }
            Err(e) => {
                // Not fatal: the next request of each session queues it again.
                self.metrics
                    .redis_errors
                    .with_label_values(&["touch"])
                    .inc();
                tracing::warn!(error = %e, sessions = written.len(), "could not write session touches");
            }
        }
    }
}

impl RedisStore {
    /// Connect lazily: nothing here waits for Redis, so the gateway starts (and serves its
    /// public routes) while Redis is still down.
    pub fn new(cfg: Arc<RedisConfig>, max_sessions: u64, metrics: Metrics) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("portcullis-redis")
            .enable_all()
            .build()
            .map_err(|e| format!("redis runtime: {e}"))?;
        let link = Link::new(cfg.clone(), rt.handle().clone())?;
        let mut id = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
            .map_err(|_| "no randomness".to_string())?;
        let touches = TouchQueue::new(cfg.touch_interval);
        let inner = Arc::new(Inner {
            touches,
            near: moka::sync::Cache::builder()
                .max_capacity(max_sessions)
                .time_to_live(cfg.near_cache_ttl.max(Duration::from_millis(1)))
                .support_invalidation_closures()
                .build(),
            denied_ids: moka::sync::Cache::builder()
                .max_capacity(max_sessions)
                .time_to_live(cfg.near_cache_ttl.max(Duration::from_millis(1)))
                .build(),
            revoked_users: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cfg.near_cache_ttl.max(Duration::from_millis(1)))
                .build(),
            cfg,
            link,
            subscribed: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            last_heard: Mutex::new(Instant::now()),
            health: Mutex::new(Err("not connected yet".into())),
            instance: hex(&id),
            metrics,
            rng: ring::rand::SystemRandom::new(),
        });
        rt.spawn(inner.clone().subscriber());
        rt.spawn(inner.clone().housekeeper());
        Ok(Self {
            inner,
            rt: Some(rt),
        })
    }

    pub fn describe(&self) -> &str {
        &self.inner.cfg.display
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
        let (sealed, ttl) = i.seal_for(cfg, &skey, &rec, rec.created_ms)?;
        let absolute_ms = cfg.absolute_timeout.as_millis() as u64;
        // The indexes first: a session Redis holds must always be revocable.
        for g in Group::of(&rec) {
            let gkey = i.gkey(g);
            let add = redis::cmd("SADD").arg(&gkey).arg(hex(&key.0)).clone();
            i.timed::<i64>("create", &add).await?;
            let exp = redis::cmd("PEXPIRE").arg(&gkey).arg(absolute_ms).clone();
            i.timed::<i64>("create", &exp).await?;
        }
        let set = redis::cmd("SET")
            .arg(&skey)
            .arg(sealed)
            .arg("PX")
            .arg(ttl)
            .arg("NX")
            .clone();
        let ok: Option<String> = i.timed("create", &set).await?;
        if ok.is_none() {
            return Err(StoreError::Unavailable(
                "session id collision (refusing to overwrite)".into(),
            ));
        }
        let rec = Arc::new(rec);
        if i.near_usable() {
            i.near.insert(key, rec.clone());
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

    /// Read the record from Redis itself, past the near-cache (before a refresh, which
    /// must start from the latest refresh token any instance saved).
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
        near: bool,
    ) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let i = &self.inner;
        if near && i.near_usable() {
            if let Some(r) = i.near.get(key) {
                i.metrics.session_cache.with_label_values(&["hit"]).inc();
                return Ok(Some(r));
            }
        }
        i.metrics.session_cache.with_label_values(&["miss"]).inc();
        let epoch = i.epoch.load(Ordering::Acquire);
        let skey = i.skey(key);
        let get = redis::cmd("GET").arg(&skey).clone();
        let value: Option<Vec<u8>> = i.timed("get", &get).await?;
        let Some(value) = value else {
            return Ok(None);
        };
        let Some(rec) = sealed::open(sealed::REDIS, &cfg.keys, &skey, &value) else {
            tracing::warn!("a Redis session record did not open (key removed from keys_file, or altered); treated as no session");
            return Ok(None);
        };
        let rec = Arc::new(rec);
        if i.near_usable() && i.epoch.load(Ordering::Acquire) == epoch {
            i.near.insert(*key, rec.clone());
        }
        Ok(Some(rec))
    }

    /// Slide the idle expiry (see `store/touches.rs`).
    pub fn touch(&self, cfg: &SessionConfig, key: &StoreKey, rec: &Arc<SessionRecord>, now: u64) {
        self.inner.touches.touch(cfg, key, rec, now);
    }

    pub async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        let i = &self.inner;
        i.near.invalidate(key);
        i.touches.forget(key);
        let del = redis::cmd("DEL").arg(i.skey(key)).clone();
        let n: i64 = i.timed("delete", &del).await?;
        i.publish_keys(std::slice::from_ref(key)).await;
        Ok(n > 0)
    }

    /// Write a renewed record over the session's (`SET … XX`: never reviving a session
    /// that ended meanwhile) and drop the old one from every near-cache.
    pub async fn replace(
        &self,
        cfg: &SessionConfig,
        key: &StoreKey,
        rec: SessionRecord,
        now: u64,
    ) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let i = &self.inner;
        let skey = i.skey(key);
        let (sealed, ttl) = i.seal_for(cfg, &skey, &rec, now)?;
        let set = redis::cmd("SET")
            .arg(&skey)
            .arg(sealed)
            .arg("PX")
            .arg(ttl)
            .arg("XX")
            .clone();
        let ok: Option<String> = i.timed("refresh", &set).await?;
        i.near.invalidate(key);
        i.publish_keys(std::slice::from_ref(key)).await;
        Ok(ok.map(|_| Arc::new(rec)))
    }

    /// Claim `name` for `ttl` across every instance: `true` for the first claim only
    /// (`SET NX PX`).
    pub async fn claim(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let i = &self.inner;
        let set = redis::cmd("SET")
            .arg(format!("{}l:{name}", i.cfg.key_prefix))
            .arg(1)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .arg("NX")
            .clone();
        let ok: Option<String> = i.timed("claim", &set).await?;
        Ok(ok.is_some())
    }

    /// A durable value under `f:<name>` (enrolled second factors), no expiry.
    pub async fn get_value(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let i = &self.inner;
        let get = redis::cmd("GET")
            .arg(format!("{}f:{name}", i.cfg.key_prefix))
            .clone();
        i.timed("get", &get).await
    }

    pub async fn set_value(&self, name: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let i = &self.inner;
        let set = redis::cmd("SET")
            .arg(format!("{}f:{name}", i.cfg.key_prefix))
            .arg(value)
            .clone();
        i.timed::<()>("create", &set).await
    }

    pub async fn release(&self, name: &str) -> Result<(), StoreError> {
        let i = &self.inner;
        let del = redis::cmd("DEL")
            .arg(format!("{}l:{name}", i.cfg.key_prefix))
            .clone();
        i.timed::<i64>("claim", &del).await.map(|_| ())
    }

    /// The sessions of `group` that Redis still holds (read past the near-cache).
    pub async fn list_group(
        &self,
        cfg: &SessionConfig,
        group: Group<'_>,
    ) -> Result<Vec<(StoreKey, Arc<SessionRecord>)>, StoreError> {
        let i = &self.inner;
        let members: Vec<String> = i
            .timed("get", &redis::cmd("SMEMBERS").arg(i.gkey(group)).clone())
            .await?;
        let mut out = Vec::new();
        for k in members.iter().filter_map(|m| unhex(m)) {
            if let Some(r) = self.load_fresh(cfg, &k).await? {
                // An index line can outlive a session whose key was reused by nobody else;
                // the record itself says whose it is.
                if group.matches(&r) {
                    out.push((k, r));
                }
            }
        }
        Ok(out)
    }

    pub async fn delete_group(&self, group: Group<'_>) -> Result<usize, StoreError> {
        let i = &self.inner;
        let ukey = i.gkey(group);
        let members: Vec<String> = i
            .timed("revoke", &redis::cmd("SMEMBERS").arg(&ukey).clone())
            .await?;
        let keys: Vec<StoreKey> = members.iter().filter_map(|m| unhex(m)).collect();
        let mut removed = 0;
        for k in &keys {
            i.near.invalidate(k);
            let n: i64 = i
                .timed("revoke", &redis::cmd("DEL").arg(i.skey(k)).clone())
                .await?;
            removed += n as usize;
        }
        i.timed::<i64>("revoke", &redis::cmd("DEL").arg(&ukey).clone())
            .await?;
        // Anything this instance cached for the group goes too, indexed or not.
        let _ = i.near.invalidate_entries_if(group_filter(group));
        i.publish_keys(&keys).await;
        Ok(removed)
    }

    /// `store = "cookie"` with `[redis]`: is this cookie session logged out, or its user
    /// revoked since it was issued? Answers are cached like sessions (and dropped with
    /// the invalidation channel), so a copied cookie is dead on every instance.
    pub async fn is_denied(
        &self,
        id: &[u8; 16],
        user: &str,
        created_ms: u64,
    ) -> Result<bool, StoreError> {
        let i = &self.inner;
        let usable = i.near_usable();
        let epoch = i.epoch.load(Ordering::Acquire);
        let denied = match i.denied_ids.get(id).filter(|_| usable) {
            Some(d) => d,
            None => {
                let n: i64 = i
                    .timed("get", &redis::cmd("EXISTS").arg(i.dkey(id)).clone())
                    .await?;
                if usable && i.epoch.load(Ordering::Acquire) == epoch {
                    i.denied_ids.insert(*id, n > 0);
                }
                n > 0
            }
        };
        if denied {
            return Ok(true);
        }
        let uh = user_hash(user);
        let revoked_before = match i.revoked_users.get(&uh).filter(|_| usable) {
            Some(t) => t,
            None => {
                let v: Option<String> = i
                    .timed("get", &redis::cmd("GET").arg(i.dukey(&uh)).clone())
                    .await?;
                let t = v.and_then(|v| v.parse().ok()).unwrap_or(0);
                if usable && i.epoch.load(Ordering::Acquire) == epoch {
                    i.revoked_users.insert(uh, t);
                }
                t
            }
        };
        Ok(created_ms <= revoked_before)
    }

    /// Deny one cookie session id (logout) until `ttl` has passed.
    pub async fn deny(&self, id: &[u8; 16], ttl: Duration) -> Result<(), StoreError> {
        let i = &self.inner;
        let set = redis::cmd("SET")
            .arg(i.dkey(id))
            .arg(1)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .clone();
        i.timed::<()>("delete", &set).await?;
        i.denied_ids.insert(*id, true);
        i.publish(format!("d {}", hex(id))).await;
        Ok(())
    }

    /// Deny every cookie session of `user` issued up to `now_ms`, until `ttl` has passed.
    pub async fn deny_user(
        &self,
        user: &str,
        now_ms: u64,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let i = &self.inner;
        let uh = user_hash(user);
        let set = redis::cmd("SET")
            .arg(i.dukey(&uh))
            .arg(now_ms.to_string())
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .clone();
        i.timed::<()>("revoke", &set).await?;
        i.revoked_users.insert(uh.clone(), now_ms);
        i.publish(format!("du {uh}")).await;
        Ok(())
    }

    /// Sessions in this instance's near-cache (Redis itself is not scanned).
    pub fn count(&self) -> u64 {
        self.inner.near.run_pending_tasks();
        self.inner.near.entry_count()
    }

    pub fn health(&self) -> Result<(), String> {
        self.inner
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map_err(|e| format!("{} ({})", e, self.inner.cfg.display))
    }

    /// Whether the near-cache is in use (the invalidation channel is alive).
    pub fn near_cache_live(&self) -> bool {
        self.inner.near_usable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let k = StoreKey([0xab; 32]);
        assert_eq!(unhex(&hex(&k.0)), Some(k));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex(&"g".repeat(64)), None);
    }
}
