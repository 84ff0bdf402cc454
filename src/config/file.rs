//! The schema of `gateway.toml` exactly as operators write it.
//!
//! Nothing here is trusted or resolved: these types only describe the file's shape so that
//! serde can reject unknown keys and wrong types with a position. `runtime.rs` turns them
//! into the validated configuration the gateway actually serves with.

use serde::{Deserialize, Deserializer};
use std::time::Duration;
use toml::Spanned;

/// A duration written as a humantime string (`"30m"`, `"12h"`, `"0"`).
///
/// Parsing happens during deserialization so that a bad value is reported at its own
/// line and column, like any other type error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationStr(pub Duration);

impl<'de> Deserialize<'de> for DurationStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(DurationStr)
            .map_err(serde::de::Error::custom)
    }
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("invalid duration {s:?} ({e}); write e.g. \"30s\", \"30m\", \"12h\", \"365d\"")
    })
}

/// A default value that has no place in the file (span 0..0 means "not written").
fn unspanned<T: Default>() -> Spanned<T> {
    Spanned::new(0..0, T::default())
}

fn d(secs: u64) -> DurationStr {
    DurationStr(Duration::from_secs(secs))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub listen: ListenSection,
    pub tls: Option<TlsSection>,
    #[serde(default)]
    pub admin: AdminSection,
    pub session: Option<SessionSection>,
    pub redis: Option<Spanned<RedisSection>>,
    pub memcached: Option<Spanned<MemcachedSection>>,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub identity: IdentitySection,
    #[serde(default)]
    pub jwt: Vec<JwtSection>,
    #[serde(default)]
    pub oidc: Vec<OidcSection>,
    pub mfa: Option<Spanned<MfaSection>>,
    #[serde(default)]
    pub upstream: Vec<UpstreamSection>,
    #[serde(default)]
    pub route: Vec<RouteSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    #[serde(default = "default_http")]
    pub http: Vec<Spanned<String>>,
    #[serde(default)]
    pub threads: usize,
}

fn default_http() -> Vec<Spanned<String>> {
    vec![Spanned::new(0..0, "127.0.0.1:8080".to_string())]
}

impl Default for ListenSection {
    fn default() -> Self {
        Self {
            http: default_http(),
            threads: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    #[serde(default = "default_https")]
    pub https: Vec<Spanned<String>>,
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
    #[serde(default = "default_hsts")]
    pub hsts: DurationStr,
}

fn default_https() -> Vec<Spanned<String>> {
    vec![Spanned::new(0..0, "127.0.0.1:8443".to_string())]
}
fn default_hsts() -> DurationStr {
    d(365 * 24 * 3600)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    #[serde(default = "default_admin")]
    pub listen: Spanned<String>,
    #[serde(default)]
    pub token_file: Option<Spanned<String>>,
}

fn default_admin() -> Spanned<String> {
    Spanned::new(0..0, "127.0.0.1:9901".to_string())
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: default_admin(),
            token_file: None,
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SameSiteStr {
    Strict,
    Lax,
    None,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Memory,
    Redis,
    Memcached,
    Cookie,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSection {
    pub keys_file: Spanned<String>,
    pub cookie: Option<Spanned<String>>,
    #[serde(default = "yes")]
    pub secure: Spanned<bool>,
    #[serde(default = "default_same_site")]
    pub same_site: Spanned<SameSiteStr>,
    #[serde(default = "default_idle")]
    pub idle_timeout: Spanned<DurationStr>,
    #[serde(default = "default_absolute")]
    pub absolute_timeout: Spanned<DurationStr>,
    #[serde(default = "default_store")]
    pub store: Spanned<StoreKind>,
    #[serde(default = "default_max_sessions")]
    pub max_sessions: u64,
    #[serde(default)]
    pub persist_file: String,
}

fn yes() -> Spanned<bool> {
    Spanned::new(0..0, true)
}
fn default_same_site() -> Spanned<SameSiteStr> {
    Spanned::new(0..0, SameSiteStr::Lax)
}
fn default_idle() -> Spanned<DurationStr> {
    Spanned::new(0..0, d(30 * 60))
}
fn default_absolute() -> Spanned<DurationStr> {
    Spanned::new(0..0, d(12 * 3600))
}
fn default_store() -> Spanned<StoreKind> {
    Spanned::new(0..0, StoreKind::Memory)
}
fn default_max_sessions() -> u64 {
    1_000_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    #[serde(default = "default_redis_url")]
    pub url: Spanned<String>,
    #[serde(default = "default_key_prefix")]
    pub key_prefix: Spanned<String>,
    /// The Redis password (AUTH), kept out of gateway.toml.
    pub password_file: Option<Spanned<String>>,
    /// PEM CA certificates for `rediss://` servers with a private CA.
    pub tls_ca_file: Option<Spanned<String>>,
    #[serde(default = "default_redis_timeout")]
    pub timeout: Spanned<DurationStr>,
    #[serde(default = "default_touch_interval")]
    pub touch_interval: Spanned<DurationStr>,
    #[serde(default = "default_near_cache_ttl")]
    pub near_cache_ttl: Spanned<DurationStr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemcachedSection {
    #[serde(default = "default_memcached_servers")]
    pub servers: Spanned<Vec<Spanned<String>>>,
    #[serde(default = "default_key_prefix")]
    pub key_prefix: Spanned<String>,
    #[serde(default = "default_redis_timeout")]
    pub timeout: Spanned<DurationStr>,
    #[serde(default = "default_touch_interval")]
    pub touch_interval: Spanned<DurationStr>,
    /// No invalidation channel: off unless the operator accepts delayed logouts.
    #[serde(default = "default_memcached_near_cache_ttl")]
    pub near_cache_ttl: Spanned<DurationStr>,
}

fn default_memcached_servers() -> Spanned<Vec<Spanned<String>>> {
    Spanned::new(0..0, vec![Spanned::new(0..0, "127.0.0.1:11211".into())])
}
fn default_memcached_near_cache_ttl() -> Spanned<DurationStr> {
    Spanned::new(0..0, d(0))
}

fn default_redis_url() -> Spanned<String> {
    Spanned::new(0..0, "redis://127.0.0.1:6379/0".into())
}
fn default_key_prefix() -> Spanned<String> {
    Spanned::new(0..0, "portcullis:".into())
}
fn default_redis_timeout() -> Spanned<DurationStr> {
    Spanned::new(0..0, DurationStr(Duration::from_millis(500)))
}
fn default_touch_interval() -> Spanned<DurationStr> {
    Spanned::new(0..0, d(60))
}
fn default_near_cache_ttl() -> Spanned<DurationStr> {
    Spanned::new(0..0, d(30))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    #[serde(default = "default_auth_prefix")]
    pub prefix: Spanned<String>,
    #[serde(default)]
    pub users_file: Option<Spanned<String>>,
    #[serde(default = "default_login_attempts")]
    pub login_attempts: Spanned<String>,
    #[serde(default = "default_after_logout")]
    pub after_logout: Spanned<String>,
    #[serde(default)]
    pub allowed_redirect_hosts: Vec<Spanned<String>>,
}

fn default_auth_prefix() -> Spanned<String> {
    Spanned::new(0..0, "/.auth".into())
}
fn default_login_attempts() -> Spanned<String> {
    Spanned::new(0..0, "5/1m".into())
}
fn default_after_logout() -> Spanned<String> {
    Spanned::new(0..0, "/".into())
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            prefix: default_auth_prefix(),
            users_file: None,
            login_attempts: default_login_attempts(),
            after_logout: default_after_logout(),
            allowed_redirect_hosts: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    #[serde(default = "default_user_header")]
    pub user: Spanned<String>,
    #[serde(default = "default_email_header")]
    pub email: Spanned<String>,
    #[serde(default = "default_groups_header")]
    pub groups: Spanned<String>,
    #[serde(default)]
    pub strip: Vec<Spanned<String>>,
    #[serde(default = "unspanned")]
    pub assertion: Spanned<String>,
    #[serde(default)]
    pub assertion_key_file: String,
}

fn default_user_header() -> Spanned<String> {
    Spanned::new(0..0, "X-Forwarded-User".into())
}
fn default_email_header() -> Spanned<String> {
    Spanned::new(0..0, "X-Forwarded-Email".into())
}
fn default_groups_header() -> Spanned<String> {
    Spanned::new(0..0, "X-Forwarded-Groups".into())
}

impl Default for IdentitySection {
    fn default() -> Self {
        Self {
            user: default_user_header(),
            email: default_email_header(),
            groups: default_groups_header(),
            strip: Vec::new(),
            assertion: Spanned::new(0..0, String::new()),
            assertion_key_file: String::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSection {
    #[serde(default = "default_hc_path")]
    pub path: String,
    #[serde(default = "default_hc_interval")]
    pub interval: DurationStr,
}

fn default_hc_path() -> String {
    "/".into()
}
fn default_hc_interval() -> DurationStr {
    d(5)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    pub name: Spanned<String>,
    pub targets: Spanned<Vec<Spanned<String>>>,
    pub health_check: Option<HealthCheckSection>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: DurationStr,
    #[serde(default = "default_read_timeout")]
    pub read_timeout: DurationStr,
}

fn default_connect_timeout() -> DurationStr {
    d(2)
}
fn default_read_timeout() -> DurationStr {
    d(60)
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccessStr {
    #[default]
    Authenticated,
    Public,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub host: Option<Spanned<String>>,
    #[serde(default = "default_route_path")]
    pub path: Spanned<String>,
    pub upstream: Spanned<String>,
    #[serde(default = "unspanned")]
    pub access: Spanned<AccessStr>,
    #[serde(default)]
    pub allow_users: Vec<String>,
    #[serde(default)]
    pub allow_groups: Vec<String>,
    #[serde(default)]
    pub strip_prefix: bool,
    #[serde(default = "unspanned")]
    pub bearer: Spanned<bool>,
    #[serde(default = "unspanned")]
    pub issues_sessions: Spanned<bool>,
    /// A name for metrics and logs; defaults to `host + path`.
    pub name: Option<String>,
    /// Encoded delimiters this route accepts in paths: "/", "\\", ";", "?", "#", "%".
    #[serde(default = "unspanned")]
    pub allow_encoded: Spanned<Vec<String>>,
    /// Step-up: the last authentication must be younger than this ("" = any age).
    #[serde(default = "unspanned")]
    pub max_auth_age: Spanned<String>,
    /// Step-up: only sessions whose login used a second factor.
    #[serde(default = "unspanned")]
    pub require_mfa: Spanned<bool>,
}

/// `[mfa]`: second factors for users of `users_file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MfaSection {
    #[serde(default = "yes")]
    pub totp: Spanned<bool>,
    /// WebAuthn passkeys (RP ID = the gateway's host).
    #[serde(default = "yes")]
    pub passkeys: Spanned<bool>,
    #[serde(default)]
    pub required_groups: Vec<String>,
    #[serde(default = "default_credentials_file")]
    pub credentials_file: Spanned<String>,
}

fn default_credentials_file() -> Spanned<String> {
    Spanned::new(0..0, "state/credentials".to_string())
}

/// `[[jwt]]`: one issuer of bearer tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSection {
    pub name: Spanned<String>,
    pub display_name: Option<String>,
    pub issuer: Spanned<String>,
    pub client_id: Spanned<String>,
    pub client_secret_file: Option<Spanned<String>>,
    #[serde(default = "default_oidc_scopes")]
    pub scopes: Spanned<Vec<String>>,
    pub ca_file: Option<Spanned<String>>,
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    #[serde(default = "default_email_claim")]
    pub email_claim: String,
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    #[serde(default = "no_domains")]
    pub allowed_email_domains: Spanned<Vec<String>>,
    #[serde(default = "yes")]
    pub refresh: Spanned<bool>,
    #[serde(default = "no_header")]
    pub access_token_header: Spanned<String>,
    #[serde(default = "no")]
    pub provider_logout: Spanned<bool>,
    #[serde(default = "default_oidc_timeout")]
    pub timeout: Spanned<DurationStr>,
}

fn no() -> Spanned<bool> {
    Spanned::new(0..0, false)
}
fn no_domains() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}
fn no_header() -> Spanned<String> {
    Spanned::new(0..0, String::new())
}
fn default_oidc_scopes() -> Spanned<Vec<String>> {
    Spanned::new(
        0..0,
        vec!["openid".into(), "email".into(), "profile".into()],
    )
}
fn default_oidc_timeout() -> Spanned<DurationStr> {
    Spanned::new(0..0, d(5))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSection {
    pub issuer: Spanned<String>,
    pub audiences: Spanned<Vec<String>>,
    pub algorithms: Spanned<Vec<Spanned<String>>>,
    pub jwks_file: Option<Spanned<String>>,
    pub jwks_url: Option<Spanned<String>>,
    /// Extra CA certificates (PEM) trusted for `jwks_url`, e.g. a private IdP's.
    pub jwks_ca_file: Option<Spanned<String>>,
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh: DurationStr,
    pub secret_file: Option<Spanned<String>>,
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    #[serde(default = "default_email_claim")]
    pub email_claim: String,
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    #[serde(default = "default_leeway")]
    pub leeway: Spanned<DurationStr>,
}

fn default_jwks_refresh() -> DurationStr {
    d(600)
}
fn default_user_claim() -> String {
    "sub".into()
}
fn default_email_claim() -> String {
    "email".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_leeway() -> Spanned<DurationStr> {
    Spanned::new(0..0, d(60))
}

fn default_route_path() -> Spanned<String> {
    Spanned::new(0..0, "/".into())
}
