//! Log in with an OpenID Provider (`[[oidc]]`): discovery, the authorization code flow
//! with PKCE, and the ID token checks of OpenID Connect Core §3.1.3.7.
//!
//! `config` builds a `Provider` per `[[oidc]]` from `ProviderSettings`; discovery happens
//! at the first login (and again after a failure), never at load, so `portcullis check`
//! works offline and `run` starts while a provider is down.

pub mod claims;
mod discovery;
pub mod endpoints;
pub mod flow;
pub mod id_token;
pub mod logout;
pub mod refresh;
mod token;

pub use discovery::{Discovered, Metadata};

use crate::secret::Secret;
use crate::session::cookie::StoreKey;
use arc_swap::ArcSwapOption;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Validated `[[oidc]]`.
#[derive(Debug)]
pub struct ProviderSettings {
    pub name: String,
    pub display_name: String,
    /// Exactly as configured (no trailing slash added or removed): `iss` must equal it.
    pub issuer: String,
    pub client_id: String,
    /// `None`: a public client (PKCE alone).
    pub client_secret: Option<Secret>,
    pub scopes: Vec<String>,
    pub ca_pem: Option<Vec<u8>>,
    pub user_claim: String,
    pub email_claim: String,
    pub groups_claim: String,
    /// Lower-case domains; empty = any.
    pub allowed_email_domains: Vec<String>,
    /// Bound on every call to the provider.
    pub timeout: Duration,
    /// Keep the refresh token and renew the provider's tokens before they expire.
    pub refresh: bool,
    /// Forward the session's current access token to upstreams in this header.
    pub access_token_header: Option<http::HeaderName>,
    /// Logout also ends the provider's session (RP-Initiated Logout 1.0).
    pub provider_logout: bool,
}

/// Why a login through a provider did not happen. Each maps to one status of the error
/// page (design.md): 400 the browser's request was bad or replayed, 403 refused, 502 the
/// provider answered badly, 503 it did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    BadAnswer(String),
    #[error("{0}")]
    Down(String),
}

impl OidcError {
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Refused(_) => 403,
            Self::BadAnswer(_) => 502,
            Self::Down(_) => 503,
        }
    }

    /// The fixed word for metrics and the page's error code.
    pub fn label(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Refused(_) => "refused",
            Self::BadAnswer(_) => "provider_error",
            Self::Down(_) => "provider_down",
        }
    }
}

/// After a failed discovery, wait this long before asking the provider again, so that a
/// stream of login attempts against a dead provider does not become a stream of requests.
const REDISCOVER_AFTER: Duration = Duration::from_secs(2);

/// One provider: its settings and what discovery found.
pub struct Provider {
    pub settings: ProviderSettings,
    client: reqwest::Client,
    discovered: ArcSwapOption<Discovered>,
    last_failure: Mutex<Option<(Instant, OidcError)>>,
    discovering: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Provider({})", self.settings.name)
    }
}

impl Provider {
    pub fn new(settings: ProviderSettings) -> Result<Self, String> {
        let client = discovery::http_client(settings.ca_pem.as_deref(), settings.timeout)?;
        Ok(Self {
            settings,
            client,
            discovered: ArcSwapOption::empty(),
            last_failure: Mutex::new(None),
            discovering: tokio::sync::Mutex::new(()),
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.client
    }

    /// Why the provider is not usable, when its last discovery failed and none has
    /// succeeded since (for `/readyz`'s `degraded` list). Providers are not probed: a
    /// provider nobody has tried to sign in with yet is not listed.
    pub fn degraded(&self) -> Option<String> {
        if self.discovered.load().is_some() {
            return None;
        }
        self.last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(_, e)| e.to_string())
    }

    /// The provider's metadata and keys, discovering them first if needed.
    pub async fn discovered(&self) -> Result<Arc<Discovered>, OidcError> {
        if let Some(d) = self.discovered.load_full() {
            return Ok(d);
        }
        let recent = |f: &Option<(Instant, OidcError)>| {
            f.as_ref()
                .filter(|(t, _)| t.elapsed() < REDISCOVER_AFTER)
                .map(|(_, e)| e.clone())
        };
        if let Some(e) = recent(&self.last_failure.lock().unwrap_or_else(|p| p.into_inner())) {
            return Err(e);
        }
        let _one = self.discovering.lock().await;
        if let Some(d) = self.discovered.load_full() {
            return Ok(d);
        }
        if let Some(e) = recent(&self.last_failure.lock().unwrap_or_else(|p| p.into_inner())) {
            return Err(e);
        }
        match discovery::discover(&self.settings, &self.client).await {
            Ok(d) => {
                tracing::info!(provider = %self.settings.name, issuer = %self.settings.issuer, "OpenID Provider discovered");
                let d = Arc::new(d);
                self.discovered.store(Some(d.clone()));
                Ok(d)
            }
            Err(e) => {
                tracing::warn!(provider = %self.settings.name, error = %e, "OpenID Provider discovery failed");
                *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }
}

/// Every configured provider, and the renewals in flight in this process.
#[derive(Debug)]
pub struct Providers {
    pub list: Vec<Arc<Provider>>,
    /// One lock per session being renewed here (`refresh`).
    flights: moka::sync::Cache<StoreKey, Arc<tokio::sync::Mutex<()>>>,
    /// Sessions whose last renewal failed, until they may try again.
    backoff: moka::sync::Cache<StoreKey, ()>,
}

impl Providers {
    pub fn new(list: Vec<Arc<Provider>>) -> Self {
        Self {
            list,
            flights: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(120))
                .build(),
            backoff: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(refresh::RETRY_AFTER)
                .build(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Provider>> {
        self.list.iter().find(|p| p.settings.name == name)
    }

    /// The provider whose `issuer` is exactly `iss`.
    pub fn by_issuer(&self, iss: &str) -> Option<&Arc<Provider>> {
        self.list.iter().find(|p| p.settings.issuer == iss)
    }

    fn flight(&self, key: &StoreKey) -> Arc<tokio::sync::Mutex<()>> {
        self.flights
            .get_with(*key, || Arc::new(tokio::sync::Mutex::new(())))
    }

    fn backing_off(&self, key: &StoreKey) -> bool {
        self.backoff.contains_key(key)
    }

    fn back_off(&self, key: &StoreKey) {
        self.backoff.insert(*key, ());
    }
}
