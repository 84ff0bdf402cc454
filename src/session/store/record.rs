//! What every session store holds and promises: the record, the errors, the store
//! interface, the clock and the expiry rule.
//!
//! The store only keeps records; expiry policy (idle and absolute) is decided by the caller
//! with an injectable clock, so tests can move time and every backend enforces the same
//! rules.

use crate::identity::{Authentication, Identity};
use crate::session::cookie::StoreKey;
use crate::session::provider_tokens::ProviderTokens;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Where a session was started from, for the account page and the admin listing: the
/// client address and a short, printable User-Agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    pub client: String,
    pub agent: String,
}

impl Device {
    /// Printable ASCII only, at most 200 bytes: it is shown on pages and in JSON.
    pub fn new(client: &str, agent: &str) -> Self {
        let clean = |s: &str| -> String {
            s.chars()
                .filter(|c| c.is_ascii() && !c.is_ascii_control())
                .take(200)
                .collect()
        };
        Self {
            client: clean(client),
            agent: clean(agent),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.client.is_empty() && self.agent.is_empty()
    }
}

/// A stored session. Times are milliseconds since the Unix epoch.
#[derive(Debug)]
pub struct SessionRecord {
    pub identity: Arc<Identity>,
    /// How and when the owner authenticated.
    pub auth: Arc<Authentication>,
    /// The OpenID Provider's tokens (OIDC sessions in server-side stores, when kept).
    pub tokens: Option<Arc<ProviderTokens>>,
    /// Where the session was started from (empty for older records and cookie sessions).
    pub device: Arc<Device>,
    pub created_ms: u64,
    last_seen_ms: AtomicU64,
    /// The `last_seen_ms` the shared store (Redis) last recorded; touches are written back
    /// only when this falls `touch_interval` behind.
    persisted_ms: AtomicU64,
}

impl SessionRecord {
    pub fn new(identity: Identity, created_ms: u64) -> Self {
        Self {
            identity: Arc::new(identity),
            auth: Arc::new(Authentication {
                time_ms: created_ms,
                ..Authentication::default()
            }),
            tokens: None,
            device: Arc::default(),
            created_ms,
            last_seen_ms: AtomicU64::new(created_ms),
            persisted_ms: AtomicU64::new(created_ms),
        }
    }

    pub fn restored(identity: Identity, created_ms: u64, last_seen_ms: u64) -> Self {
        Self {
            identity: Arc::new(identity),
            auth: Arc::new(Authentication {
                time_ms: created_ms,
                ..Authentication::default()
            }),
            tokens: None,
            device: Arc::default(),
            created_ms,
            last_seen_ms: AtomicU64::new(last_seen_ms),
            persisted_ms: AtomicU64::new(last_seen_ms),
        }
    }

    /// The same record, with how its owner authenticated.
    pub fn with_auth(mut self, auth: Authentication) -> Self {
        self.auth = Arc::new(auth);
        self
    }

    /// The same record, with the provider's tokens.
    pub fn with_tokens(mut self, tokens: Option<ProviderTokens>) -> Self {
        self.tokens = tokens.map(Arc::new);
        self
    }

    /// The same record, started from `device`.
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = Arc::new(device);
        self
    }

    /// This session with renewed provider tokens: same identity, authentication, creation
    /// and activity.
    pub fn renewed(&self, tokens: ProviderTokens) -> Self {
        Self {
            identity: self.identity.clone(),
            auth: self.auth.clone(),
            tokens: Some(Arc::new(tokens)),
            device: self.device.clone(),
            created_ms: self.created_ms,
            last_seen_ms: AtomicU64::new(self.last_seen_ms()),
            persisted_ms: AtomicU64::new(self.persisted_ms()),
        }
    }

    pub fn last_seen_ms(&self) -> u64 {
        self.last_seen_ms.load(Ordering::Relaxed)
    }

    pub fn seen(&self, now_ms: u64) {
        self.last_seen_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    pub fn persisted_ms(&self) -> u64 {
        self.persisted_ms.load(Ordering::Relaxed)
    }

    pub fn set_persisted(&self, ms: u64) {
        self.persisted_ms.fetch_max(ms, Ordering::Relaxed);
    }
}

/// A set of sessions a store can end at once: every session of a user (admin revocation),
/// or every session that came from one provider session (`sid`) or one provider subject
/// (OpenID Back-Channel Logout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group<'a> {
    User(&'a str),
    ProviderSession { provider: &'a str, sid: &'a str },
    ProviderSubject { provider: &'a str, subject: &'a str },
}

impl<'a> Group<'a> {
    /// The groups a record belongs to, the user's first.
    pub fn of(rec: &'a SessionRecord) -> Vec<Group<'a>> {
        let mut g = vec![Group::User(&rec.identity.user)];
        let a = &rec.auth;
        if !a.provider.is_empty() {
            if !a.sid.is_empty() {
                g.push(Group::ProviderSession {
                    provider: &a.provider,
                    sid: &a.sid,
                });
            }
            if !a.subject.is_empty() {
                g.push(Group::ProviderSubject {
                    provider: &a.provider,
                    subject: &a.subject,
                });
            }
        }
        g
    }

    pub fn matches(&self, rec: &SessionRecord) -> bool {
        match *self {
            Group::User(u) => rec.identity.user == u,
            Group::ProviderSession { provider, sid } => {
                rec.auth.provider == provider && rec.auth.sid == sid
            }
            Group::ProviderSubject { provider, subject } => {
                rec.auth.provider == provider && rec.auth.subject == subject
            }
        }
    }

    /// SHA-256 naming the group in shared stores: of the user name alone for a user
    /// (unchanged since the user index existed, so indexes written before still work and
    /// memcached still finds them on the same server), else of the kind and its parts,
    /// NUL-separated (validated names hold no NUL, and the kind keeps a `sid` from passing
    /// for a subject).
    pub fn digest(&self) -> [u8; 32] {
        let input = match *self {
            Group::User(u) => u.as_bytes().to_vec(),
            Group::ProviderSession { provider, sid } => {
                [b"sid\0", provider.as_bytes(), b"\0", sid.as_bytes()].concat()
            }
            Group::ProviderSubject { provider, subject } => {
                [b"sub\0", provider.as_bytes(), b"\0", subject.as_bytes()].concat()
            }
        };
        let mut out = [0u8; 32];
        out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &input).as_ref());
        out
    }

    /// The index's key under the store's prefix: `u:<hex>` for users, `g:<hex>` otherwise.
    pub fn index_name(&self) -> String {
        let tag = if matches!(self, Group::User(_)) {
            "u:"
        } else {
            "g:"
        };
        let mut s = String::with_capacity(2 + 64);
        s.push_str(tag);
        for b in self.digest() {
            s.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
            s.push(char::from_digit((b & 15) as u32, 16).unwrap_or('0'));
        }
        s
    }
}

/// A near-cache filter for the sessions of `group` (moka wants an owned `'static` closure).
pub fn group_filter(
    group: Group<'_>,
) -> impl Fn(&StoreKey, &Arc<SessionRecord>) -> bool + Send + Sync + 'static {
    let (kind, a, b) = match group {
        Group::User(u) => (0u8, u.to_string(), String::new()),
        Group::ProviderSession { provider, sid } => (1, provider.to_string(), sid.to_string()),
        Group::ProviderSubject { provider, subject } => {
            (2, provider.to_string(), subject.to_string())
        }
    };
    move |_, r| {
        let g = match kind {
            0 => Group::User(&a),
            1 => Group::ProviderSession {
                provider: &a,
                sid: &b,
            },
            _ => Group::ProviderSubject {
                provider: &a,
                subject: &b,
            },
        };
        g.matches(r)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The session cannot be created as asked (e.g. too large for a cookie session).
    #[error("{0}")]
    Refused(String),
}

/// Create / load / touch / delete sessions. Implementations must never return a record
/// under a key it was not created with: an evicted session is simply gone.
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    fn create(&self, key: StoreKey, rec: SessionRecord) -> Result<(), StoreError>;
    fn load(&self, key: &StoreKey) -> Result<Option<Arc<SessionRecord>>, StoreError>;
    /// Slide the idle expiry.
    fn touch(&self, key: &StoreKey, rec: &SessionRecord, now_ms: u64) -> Result<(), StoreError>;
    fn delete(&self, key: &StoreKey) -> Result<bool, StoreError>;
    /// Revoke every session of `user`; returns how many were removed.
    fn delete_user(&self, user: &str) -> Result<usize, StoreError>;
    /// Number of sessions held (approximate for caches).
    fn count(&self) -> u64;
    /// Is the store able to serve (used by `/readyz`)?
    fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Time source; tests inject a manual clock to move through idle and absolute expiry.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> u64;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct ManualClock(pub AtomicU64);

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why a record is no longer valid, if it is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Idle,
    Absolute,
}

pub fn is_expired(
    rec: &SessionRecord,
    now_ms: u64,
    idle_ms: u64,
    absolute_ms: u64,
) -> Option<Expiry> {
    if now_ms >= rec.created_ms.saturating_add(absolute_ms) {
        Some(Expiry::Absolute)
    } else if now_ms >= rec.last_seen_ms().saturating_add(idle_ms) {
        Some(Expiry::Idle)
    } else {
        None
    }
}
