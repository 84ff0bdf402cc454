//! Sessions at the edge: keys, the cookie, the store, and the per-request lookup.

pub mod cookie;
pub mod keys;
pub mod persist;
pub mod store;

use crate::config::{SameSite, SessionConfig};
use crate::identity::Identity;
use cookie::{CookieRejection, SessionId, StoreKey};
use std::sync::Arc;
use store::{Clock, Expiry, SessionRecord, SessionStore, StoreError};

/// The outcome of looking up the session a request carries.
#[derive(Debug)]
pub enum Lookup {
    /// No cookie of ours.
    None,
    /// A cookie that failed verification (decided without touching the store).
    Invalid(CookieRejection),
    /// A valid cookie whose session is not in the store (logged out, revoked, evicted).
    Miss,
    Expired(Expiry),
    Hit(ActiveSession),
}

impl Lookup {
    /// The `result` label of `portcullis_session_lookups_total`.
    pub fn metric_label(&self) -> Option<&'static str> {
        match self {
            Lookup::None => None,
            Lookup::Invalid(_) => Some("invalid"),
            Lookup::Miss => Some("miss"),
            Lookup::Expired(_) => Some("expired"),
            Lookup::Hit(_) => Some("hit"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ActiveSession {
    pub key: StoreKey,
    pub record: Arc<SessionRecord>,
}

/// Look up the session named by the request's cookie, enforce idle and absolute expiry
/// and slide the idle expiry.
pub fn lookup<'a>(
    cfg: &SessionConfig,
    store: &dyn SessionStore,
    clock: &dyn Clock,
    cookie_headers: impl Iterator<Item = &'a [u8]>,
) -> Result<Lookup, StoreError> {
    let value = match cookie::find(cookie_headers, &cfg.cookie_name) {
        None => return Ok(Lookup::None),
        Some(Err(r)) => return Ok(Lookup::Invalid(r)),
        Some(Ok(v)) => v,
    };
    let id = match cookie::verify(value, &cfg.keys) {
        Ok(id) => id,
        Err(r) => return Ok(Lookup::Invalid(r)),
    };
    let key = id.store_key();
    let Some(record) = store.load(&key)? else {
        return Ok(Lookup::Miss);
    };
    let now = clock.now_ms();
    if let Some(why) = store::is_expired(
        &record,
        now,
        cfg.idle_timeout.as_millis() as u64,
        cfg.absolute_timeout.as_millis() as u64,
    ) {
        store.delete(&key)?;
        return Ok(Lookup::Expired(why));
    }
    store.touch(&key, &record, now)?;
    Ok(Lookup::Hit(ActiveSession { key, record }))
}

/// Start a new session with a fresh random id; returns the cookie value.
pub fn create(
    cfg: &SessionConfig,
    store: &dyn SessionStore,
    clock: &dyn Clock,
    rng: &dyn ring::rand::SecureRandom,
    identity: Identity,
) -> Result<(String, Arc<SessionRecord>), StoreError> {
    let id =
        SessionId::generate(rng).map_err(|_| StoreError::Unavailable("no randomness".into()))?;
    let rec = SessionRecord::new(identity, clock.now_ms());
    let key = id.store_key();
    store.create(key, rec)?;
    let stored = store
        .load(&key)?
        .ok_or_else(|| StoreError::Unavailable("session vanished".into()))?;
    Ok((id.encode(&cfg.keys), stored))
}

fn same_site(s: SameSite) -> &'static str {
    match s {
        SameSite::Strict => "Strict",
        SameSite::Lax => "Lax",
        SameSite::None => "None",
    }
}

/// `Set-Cookie` for a new session. A session cookie (no Max-Age): the server decides expiry.
pub fn set_cookie(cfg: &SessionConfig, value: &str) -> String {
    format!(
        "{}={}; Path=/;{} HttpOnly; SameSite={}",
        cfg.cookie_name,
        value,
        if cfg.secure { " Secure;" } else { "" },
        same_site(cfg.same_site)
    )
}

/// `Set-Cookie` that makes the browser forget the session cookie.
pub fn clear_cookie(cfg: &SessionConfig) -> String {
    format!(
        "{}=; Path=/; Max-Age=0;{} HttpOnly; SameSite={}",
        cfg.cookie_name,
        if cfg.secure { " Secure;" } else { "" },
        same_site(cfg.same_site)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SessionConfig;
    use keys::KeyRing;
    use std::path::PathBuf;
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    use store::{ManualClock, MemoryStore};

    fn cfg() -> SessionConfig {
        SessionConfig {
            keys: Arc::new(KeyRing::from_raw_keys(&[(1u8..=32).collect()])),
            keys_file: PathBuf::new(),
            cookie_name: "s".into(),
            secure: true,
            same_site: SameSite::Lax,
            idle_timeout: Duration::from_secs(60),
            absolute_timeout: Duration::from_secs(300),
            max_sessions: 100,
            persist_file: None,
        }
    }

    fn look(c: &SessionConfig, s: &MemoryStore, clock: &ManualClock, v: &str) -> Lookup {
        let header = format!("s={v}");
        lookup(c, s, clock, [header.as_bytes()].into_iter()).unwrap()
    }

    /// Moves a manual clock through idle sliding and absolute expiry, through the same
    /// lookup the proxy uses.
    #[test]
    fn lookup_enforces_expiry_with_an_injected_clock() {
        let (c, s, clock) = (cfg(), MemoryStore::new(100), ManualClock::default());
        clock.0.store(1_000_000, Ordering::Relaxed);
        let who = Identity {
            user: "alice".into(),
            email: String::new(),
            groups: vec![],
        };
        let (v, _) = create(&c, &s, &clock, &ring::rand::SystemRandom::new(), who).unwrap();
        for _ in 0..5 {
            clock.0.fetch_add(50_000, Ordering::Relaxed); // < 60 s idle each time
            assert!(matches!(look(&c, &s, &clock, &v), Lookup::Hit(_)));
        }
        clock.0.fetch_add(51_000, Ordering::Relaxed); // 301 s since login
        assert!(matches!(
            look(&c, &s, &clock, &v),
            Lookup::Expired(Expiry::Absolute)
        ));
        assert!(
            matches!(look(&c, &s, &clock, &v), Lookup::Miss),
            "an expired session is deleted"
        );

        let who = Identity {
            user: "bob".into(),
            email: String::new(),
            groups: vec![],
        };
        let (v, _) = create(&c, &s, &clock, &ring::rand::SystemRandom::new(), who).unwrap();
        clock.0.fetch_add(60_000, Ordering::Relaxed);
        assert!(matches!(
            look(&c, &s, &clock, &v),
            Lookup::Expired(Expiry::Idle)
        ));
        assert!(matches!(
            look(&c, &s, &clock, "garbage"),
            Lookup::Invalid(_)
        ));
        assert!(matches!(
            lookup(&c, &s, &clock, std::iter::empty()).unwrap(),
            Lookup::None
        ));
    }
}
