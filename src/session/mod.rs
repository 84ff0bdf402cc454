//! Sessions at the edge: keys, the cookie, the store, and the per-request lookup.

pub mod codec;
pub mod cookie;
pub mod keys;
pub mod persist;
pub mod provider_tokens;
mod settings;
pub mod stateless;
pub mod store;
pub mod verified;

pub use settings::{SameSite, SessionConfig};

use crate::identity::{Authentication, Identity};
use cookie::{CookieRejection, SessionId, StoreKey};
use std::sync::Arc;
use store::record::Device;
use store::Store;
use store::{Clock, Expiry, SessionRecord, StoreError};

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
    /// Set for `store = "cookie"` sessions.
    pub stateless: Option<StatelessSession>,
}

#[derive(Debug, Clone)]
pub struct StatelessSession {
    pub id: [u8; 16],
    /// A re-sealed cookie value when the idle expiry is due to slide.
    pub reissue: Option<String>,
}

/// What session operations need besides the config: the server-side store (memory mode),
/// the deny-list (cookie mode), the clock and randomness.
pub struct Backends<'a> {
    pub store: &'a Store,
    pub deny: &'a stateless::DenyList,
    pub clock: &'a dyn Clock,
    pub rng: &'a (dyn ring::rand::SecureRandom + Sync),
    pub verified: &'a verified::VerifiedCookies,
}

fn key_of_stateless(id: &[u8; 16]) -> StoreKey {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        &[b"portcullis stateless id v1\0".as_slice(), id].concat(),
    );
    let mut k = [0u8; 32];
    k.copy_from_slice(d.as_ref());
    StoreKey(k)
}

/// Look up the session named by the request's cookie, enforce idle and absolute expiry
/// and slide the idle expiry.
pub async fn lookup<'a>(
    cfg: &SessionConfig,
    b: &Backends<'_>,
    cookie_headers: impl Iterator<Item = &'a [u8]>,
) -> Result<Lookup, StoreError> {
    let value = match cookie::find(cookie_headers, &cfg.cookie_name) {
        None => return Ok(Lookup::None),
        Some(Err(r)) => return Ok(Lookup::Invalid(r)),
        Some(Ok(v)) => v,
    };
    let now = b.clock.now_ms();
    let idle_ms = cfg.idle_timeout.as_millis() as u64;
    let absolute_ms = cfg.absolute_timeout.as_millis() as u64;
    if cfg.stateless {
        let sealed = match stateless::open(&cfg.keys, &cfg.cookie_name, value) {
            Ok(s) => s,
            Err(r) => return Ok(Lookup::Invalid(r)),
        };
        if b.deny.is_denied(&sealed) || b.store.is_denied(&sealed).await? {
            return Ok(Lookup::Miss);
        }
        if now >= sealed.created_ms.saturating_add(absolute_ms) {
            return Ok(Lookup::Expired(Expiry::Absolute));
        }
        if now >= sealed.refreshed_ms.saturating_add(idle_ms) {
            return Ok(Lookup::Expired(Expiry::Idle));
        }
        let reissue = if stateless::refresh_due(&sealed, now, cfg.idle_timeout) {
            let fresh = stateless::Sealed {
                refreshed_ms: now,
                ..sealed.clone()
            };
            stateless::seal(&cfg.keys, &cfg.cookie_name, &fresh, b.rng).ok()
        } else {
            None
        };
        let record =
            SessionRecord::restored(sealed.identity, sealed.created_ms, sealed.refreshed_ms)
                .with_auth(sealed.auth);
        return Ok(Lookup::Hit(ActiveSession {
            key: key_of_stateless(&sealed.id),
            record: Arc::new(record),
            stateless: Some(StatelessSession {
                id: sealed.id,
                reissue,
            }),
        }));
    }
    let generation = cfg.keys.generation();
    let key = match b.verified.get(value, generation) {
        Some(key) => key,
        None => match cookie::verify(value, &cfg.keys) {
            Ok(id) => {
                let key = id.store_key();
                b.verified.remember(value, generation, key);
                key
            }
            Err(r) => return Ok(Lookup::Invalid(r)),
        },
    };
    let Some(record) = b.store.load(cfg, &key).await? else {
        return Ok(Lookup::Miss);
    };
    let idle_ms = idle_ms + b.store.idle_slack_ms();
    if let Some(why) = store::is_expired(&record, now, idle_ms, absolute_ms) {
        b.store.delete(&key).await?;
        return Ok(Lookup::Expired(why));
    }
    b.store.touch(cfg, &key, &record, now);
    Ok(Lookup::Hit(ActiveSession {
        key,
        record,
        stateless: None,
    }))
}

/// Start a new session with a fresh random id; returns the cookie value.
pub async fn create(
    cfg: &SessionConfig,
    b: &Backends<'_>,
    identity: Identity,
    auth: Authentication,
) -> Result<(String, Arc<SessionRecord>), StoreError> {
    create_with_tokens(cfg, b, identity, auth, None, Device::default()).await
}

/// `create`, keeping the OpenID Provider's tokens with the record. Cookie sessions do not
/// keep them (a cookie has no room for a refresh and an ID token, and a refresh could not
/// be written back): such sessions forgo refresh, forwarding and `id_token_hint`.
pub async fn create_with_tokens(
    cfg: &SessionConfig,
    b: &Backends<'_>,
    identity: Identity,
    auth: Authentication,
    tokens: Option<provider_tokens::ProviderTokens>,
    device: Device,
) -> Result<(String, Arc<SessionRecord>), StoreError> {
    let now = b.clock.now_ms();
    if cfg.stateless {
        let sealed = stateless::Sealed {
            id: stateless::new_id(b.rng).map_err(|e| StoreError::Unavailable(e.to_string()))?,
            created_ms: now,
            refreshed_ms: now,
            identity,
            auth,
        };
        let value =
            stateless::seal(&cfg.keys, &cfg.cookie_name, &sealed, b.rng).map_err(|e| match e {
                stateless::SealError::TooLarge(_) => StoreError::Refused(e.to_string()),
                stateless::SealError::Random => StoreError::Unavailable(e.to_string()),
            })?;
        let record = SessionRecord::new(sealed.identity, now).with_auth(sealed.auth);
        return Ok((value, Arc::new(record)));
    }
    let id =
        SessionId::generate(b.rng).map_err(|_| StoreError::Unavailable("no randomness".into()))?;
    let rec = SessionRecord::new(identity, now)
        .with_auth(auth)
        .with_tokens(tokens.and_then(provider_tokens::ProviderTokens::bounded))
        .with_device(device);
    let key = id.store_key();
    let stored = b.store.create(cfg, key, rec).await?;
    Ok((id.encode(&cfg.keys), stored))
}

/// End a session (logout): delete it from the store, or deny-list a cookie session so that
/// a copy of the cookie is dead too.
pub async fn end(
    cfg: &SessionConfig,
    b: &Backends<'_>,
    active: &ActiveSession,
) -> Result<(), StoreError> {
    match &active.stateless {
        Some(s) => {
            b.deny.deny(s.id);
            b.store.deny(&s.id, cfg.absolute_timeout).await
        }
        None => b.store.delete(&active.key).await.map(|_| ()),
    }
}

/// Revoke every session of `user`. Returns how many were removed when the store can count
/// them (memory), `None` for cookie sessions (all issued until now are denied).
pub async fn revoke_user(
    cfg: Option<&SessionConfig>,
    b: &Backends<'_>,
    user: &str,
) -> Result<Option<usize>, StoreError> {
    if let Some(c) = cfg.filter(|c| c.stateless) {
        let now = b.clock.now_ms();
        b.deny.deny_user(user, now);
        b.store.deny_user(user, now, c.absolute_timeout).await?;
        return Ok(None);
    }
    b.store.delete_user(user).await.map(Some)
}

const HANDLE_AAD: &[u8] = b"portcullis session handle v1\0";

/// An opaque handle naming a session in listings (account page, admin API): the store key
/// sealed with the key ring, so it is neither the session id nor its hash, and any
/// instance with the same keys can open it.
pub fn handle(
    keys: &keys::KeyRing,
    key: &StoreKey,
    rng: &dyn ring::rand::SecureRandom,
) -> Option<String> {
    use base64::Engine;
    let sealed = keys.seal(HANDLE_AAD, key.0.to_vec(), rng)?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed))
}

pub fn open_handle(keys: &keys::KeyRing, handle: &str) -> Option<StoreKey> {
    use base64::Engine;
    if handle.len() > 200 {
        return None;
    }
    let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(handle)
        .ok()?;
    let plain = keys.open(HANDLE_AAD, &mut raw)?;
    Some(StoreKey(plain.try_into().ok()?))
}

/// A user's live sessions (expired ones left out), newest first.
pub async fn list_user(
    cfg: &SessionConfig,
    b: &Backends<'_>,
    user: &str,
) -> Result<Vec<(StoreKey, Arc<SessionRecord>)>, StoreError> {
    let now = b.clock.now_ms();
    let idle = cfg.idle_timeout.as_millis() as u64 + b.store.idle_slack_ms();
    let absolute = cfg.absolute_timeout.as_millis() as u64;
    let mut list: Vec<_> = b
        .store
        .list_group(cfg, store::Group::User(user))
        .await?
        .into_iter()
        .filter(|(_, r)| store::is_expired(r, now, idle, absolute).is_none())
        .collect();
    list.sort_by_key(|(_, r)| std::cmp::Reverse(r.created_ms));
    Ok(list)
}

fn same_site(s: SameSite) -> ::cookie::SameSite {
    match s {
        SameSite::Strict => ::cookie::SameSite::Strict,
        SameSite::Lax => ::cookie::SameSite::Lax,
        SameSite::None => ::cookie::SameSite::None,
    }
}

/// The attributes every session cookie carries: `Path=/` and no `Domain` (what the
/// `__Host-` prefix demands, and what keeps the cookie from sibling hosts), `HttpOnly`
/// (page scripts never see it), `Secure` unless configured off for plain-HTTP
/// development, and the configured `SameSite`.
fn session_cookie<'a>(cfg: &'a SessionConfig, value: &'a str) -> ::cookie::CookieBuilder<'a> {
    ::cookie::Cookie::build((cfg.cookie_name.as_str(), value))
        .path("/")
        .secure(cfg.secure)
        .http_only(true)
        .same_site(same_site(cfg.same_site))
}

/// `Set-Cookie` for a new session. A session cookie (no Max-Age): the server decides expiry.
pub fn set_cookie(cfg: &SessionConfig, value: &str) -> String {
    session_cookie(cfg, value).build().to_string()
}

/// `Set-Cookie` that makes the browser forget the session cookie.
pub fn clear_cookie(cfg: &SessionConfig) -> String {
    session_cookie(cfg, "")
        .max_age(::cookie::time::Duration::ZERO)
        .build()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
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
            stateless: false,
            redis: None,
            memcached: None,
        }
    }

    fn backends<'a>(
        s: &'a Store,
        clock: &'a ManualClock,
        deny: &'a stateless::DenyList,
        rng: &'a ring::rand::SystemRandom,
    ) -> Backends<'a> {
        Backends {
            store: s,
            deny,
            clock,
            rng,
            // One table for every test: key ring generations keep them apart.
            verified: TEST_VERIFIED.get_or_init(|| verified::VerifiedCookies::new(100)),
        }
    }

    static TEST_VERIFIED: std::sync::OnceLock<verified::VerifiedCookies> =
        std::sync::OnceLock::new();

    /// A new password session of `user`; its cookie value.
    fn sign_in(c: &SessionConfig, s: &Store, clock: &ManualClock, user: &str) -> String {
        let (deny, rng) = (
            stateless::DenyList::new(Duration::from_secs(600)),
            ring::rand::SystemRandom::new(),
        );
        let who = Identity {
            user: user.into(),
            email: String::new(),
            groups: vec![],
        };
        create(
            c,
            &backends(s, clock, &deny, &rng),
            who,
            Authentication::password(0),
        )
        .now_or_never()
        .unwrap()
        .unwrap()
        .0
    }

    fn look(c: &SessionConfig, s: &Store, clock: &ManualClock, v: &str) -> Lookup {
        let header = format!("s={v}");
        let (deny, rng) = (
            stateless::DenyList::new(Duration::from_secs(600)),
            ring::rand::SystemRandom::new(),
        );
        lookup(
            c,
            &backends(s, clock, &deny, &rng),
            [header.as_bytes()].into_iter(),
        )
        .now_or_never()
        .expect("the memory store never waits")
        .unwrap()
    }

    /// Moves a manual clock through idle sliding and absolute expiry, through the same
    /// lookup the proxy uses.
    #[test]
    fn lookup_enforces_expiry_with_an_injected_clock() {
        let (c, s, clock) = (
            cfg(),
            Store::Memory(Arc::new(MemoryStore::new(100))),
            ManualClock::default(),
        );
        clock.0.store(1_000_000, Ordering::Relaxed);
        let who = Identity {
            user: "alice".into(),
            email: String::new(),
            groups: vec![],
        };
        let (deny, rng) = (
            stateless::DenyList::new(Duration::from_secs(600)),
            ring::rand::SystemRandom::new(),
        );
        let (v, _) = create(
            &c,
            &backends(&s, &clock, &deny, &rng),
            who,
            Authentication::password(0),
        )
        .now_or_never()
        .unwrap()
        .unwrap();
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

        let v = sign_in(&c, &s, &clock, "bob");
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
            lookup(&c, &backends(&s, &clock, &deny, &rng), std::iter::empty())
                .now_or_never()
                .unwrap()
                .unwrap(),
            Lookup::None
        ));
    }

    /// The second lookup of a cookie comes from the verified-cookie table; a reloaded key
    /// ring without the cookie's key refuses it even so, one with the key still accepts it.
    #[test]
    fn verified_cookies_follow_the_key_ring() {
        let c = cfg();
        let (s, clock) = (
            Store::Memory(Arc::new(MemoryStore::new(100))),
            ManualClock::default(),
        );
        let v = sign_in(&c, &s, &clock, "carol");
        assert!(matches!(look(&c, &s, &clock, &v), Lookup::Hit(_)));
        let generation = c.keys.generation();
        assert!(
            TEST_VERIFIED.get().unwrap().get(&v, generation).is_some(),
            "remembered after the first verification"
        );
        assert!(matches!(look(&c, &s, &clock, &v), Lookup::Hit(_)));

        let other = SessionConfig {
            keys: Arc::new(KeyRing::from_raw_keys(&[(101u8..=132).collect()])),
            ..cfg()
        };
        assert!(matches!(
            look(&other, &s, &clock, &v),
            Lookup::Invalid(CookieRejection::UnknownKey)
        ));
        let rotated = SessionConfig {
            keys: Arc::new(KeyRing::from_raw_keys(&[
                (101u8..=132).collect(),
                (1u8..=32).collect(),
            ])),
            ..cfg()
        };
        assert!(matches!(look(&rotated, &s, &clock, &v), Lookup::Hit(_)));
    }

    #[test]
    fn set_cookie_attributes() {
        let mut c = cfg();
        let attrs = |h: &str| {
            let mut v: Vec<String> = h.split("; ").map(str::to_string).collect();
            v.sort();
            v
        };
        assert_eq!(
            attrs(&set_cookie(&c, "v1.abc")),
            ["HttpOnly", "Path=/", "SameSite=Lax", "Secure", "s=v1.abc"]
        );
        assert_eq!(
            attrs(&clear_cookie(&c)),
            [
                "HttpOnly",
                "Max-Age=0",
                "Path=/",
                "SameSite=Lax",
                "Secure",
                "s="
            ]
        );
        c.secure = false;
        c.same_site = SameSite::Strict;
        assert_eq!(
            attrs(&set_cookie(&c, "x")),
            ["HttpOnly", "Path=/", "SameSite=Strict", "s=x"]
        );
    }
}
