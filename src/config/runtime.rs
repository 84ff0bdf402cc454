//! The validated configuration the gateway serves with.
//!
//! `build` is the only place where configuration can fail: it resolves addresses, reads
//! keys, certificates and the users file, compiles routes and checks every cross-reference.
//! After it returns, nothing parses configuration again; a reload builds a whole new
//! `Config` and swaps it in.

use super::file::{self, AccessStr, FileConfig, SameSiteStr, StoreKind};
use super::{ConfigError, Source};
use crate::auth::users::Users;
use crate::identity::IdentityHeaders;
use crate::pathnorm::EncodedSet;
use crate::router::{Access, HostPattern, Route, RouteTable};
use crate::session::keys::KeyRing;
pub use crate::session::{SameSite, SessionConfig};
use crate::tls::CertifiedChain;
use crate::tokens::assertion::Assertions;
use crate::upstream::{HealthCheck, Upstream};
use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Everything the gateway needs to serve, validated.
#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    pub http: Vec<SocketAddr>,
    pub threads: usize,
    pub tls: Option<TlsConfig>,
    pub admin: AdminConfig,
    pub session: Option<SessionConfig>,
    pub auth: AuthConfig,
    pub identity: IdentityHeaders,
    /// Signed identity assertions, when `[identity] assertion` is set.
    pub assertion: Option<Arc<Assertions>>,
    /// Bearer-token issuers (`[[jwt]]`); `None` when there are none.
    pub jwt: Option<Arc<crate::tokens::jwt::Issuers>>,
    /// OpenID Providers (`[[oidc]]`); `None` when there are none.
    pub oidc: Option<Arc<crate::auth::oidc::Providers>>,
    /// Second factors (`[mfa]`); `None` when not configured.
    pub mfa: Option<Arc<crate::auth::mfa::MfaSettings>>,
    pub upstreams: Vec<Arc<Upstream>>,
    pub routes: RouteTable,
}

#[derive(Debug)]
pub struct TlsConfig {
    pub https: Vec<SocketAddr>,
    pub chain: Arc<CertifiedChain>,
    /// `None` when HSTS is turned off with `"0"`.
    pub hsts: Option<Duration>,
}

#[derive(Debug)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Bearer token for admin writes; `None` turns writes off.
    pub token: Option<crate::secret::Secret>,
}

#[derive(Debug)]
pub struct AuthConfig {
    pub prefix: String,
    pub users_file: Option<PathBuf>,
    pub users: Arc<Users>,
    /// Failed logins allowed per window, per client address and per user name.
    pub login_attempts: (u32, Duration),
    pub after_logout: String,
    pub allowed_redirect_hosts: Vec<String>,
}

pub(crate) fn build(src: &Source<'_>, f: FileConfig) -> Result<Config, ConfigError> {
    let assertion = match (
        f.identity.assertion.get_ref().as_str(),
        f.identity.assertion_key_file.as_str(),
    ) {
        ("", "") => None,
        ("", _) => return Err(src.file(
            "identity.assertion_key_file is set but identity.assertion (the header name) is empty",
        )),
        (_, "") => {
            return Err(src.at(
                f.identity.assertion.span(),
                "identity.assertion needs assertion_key_file (ES256 keys)",
            ))
        }
        (name, file) => Some(Arc::new(
            Assertions::load(name, &src.resolve(file))
                .map_err(|e| src.at(f.identity.assertion.span(), e))?,
        )),
    };

    let http = f
        .listen
        .http
        .iter()
        .map(|a| listen_addr(src, a))
        .collect::<Result<Vec<_>, _>>()?;
    let threads = if f.listen.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        f.listen.threads
    };

    let tls = match &f.tls {
        None => None,
        Some(t) => {
            let https = t
                .https
                .iter()
                .map(|a| listen_addr(src, a))
                .collect::<Result<Vec<_>, _>>()?;
            if https.is_empty() {
                return Err(src.file("[tls] https must name at least one address"));
            }
            let cert_path = src.resolve(t.cert.get_ref());
            let key_path = src.resolve(t.key.get_ref());
            let chain = CertifiedChain::load(&cert_path, &key_path)
                .map_err(|e| src.at(t.cert.span(), e))?;
            let hsts = (!t.hsts.0.is_zero()).then_some(t.hsts.0);
            Some(TlsConfig {
                https,
                chain: Arc::new(chain),
                hsts,
            })
        }
    };
    if http.is_empty() && tls.is_none() {
        return Err(src.file("no listener: set [listen] http or [tls] https"));
    }

    let admin = AdminConfig {
        listen: listen_addr(src, &f.admin.listen)?,
        token: match &f.admin.token_file {
            None => None,
            Some(p) => Some(
                crate::secret::Secret::read_token(&src.resolve(p.get_ref()))
                    .map_err(|e| src.at(p.span(), e))?,
            ),
        },
    };

    let jwt = if f.jwt.is_empty() {
        None
    } else {
        Some(Arc::new(super::jwt::issuers(src, f.jwt)?))
    };

    if let (Some(r), None) = (&f.redis, &f.session) {
        return Err(src.at(
            r.span(),
            "[redis] needs a [session] section with store = \"redis\"",
        ));
    }
    if let (Some(m), None) = (&f.memcached, &f.session) {
        return Err(src.at(
            m.span(),
            "[memcached] needs a [session] section with store = \"memcached\"",
        ));
    }
    let cookie_sessions = f
        .session
        .as_ref()
        .is_some_and(|s| matches!(s.store.get_ref(), StoreKind::Cookie));
    let redis_store = f
        .session
        .as_ref()
        .is_some_and(|s| matches!(s.store.get_ref(), StoreKind::Redis));
    let oidc = super::oidc::providers(src, f.oidc, f.session.is_some(), cookie_sessions)?;
    let session = match f.session {
        None => None,
        Some(s) => Some(session_config(
            src,
            s,
            f.redis.as_ref(),
            f.memcached.as_ref(),
            tls.is_some(),
        )?),
    };

    let identity = IdentityHeaders::new(
        f.identity.user.get_ref(),
        f.identity.email.get_ref(),
        f.identity.groups.get_ref(),
        f.identity
            .strip
            .iter()
            .map(|s| s.get_ref().as_str())
            .chain(assertion.as_ref().map(|a| a.header.as_str()))
            // A client must never pass its own "access token" off as the provider's.
            .chain(
                oidc.iter()
                    .flat_map(|o| o.list.iter())
                    .filter_map(|p| p.settings.access_token_header.as_ref().map(|h| h.as_str())),
            ),
    )
    .map_err(|e| src.at(f.identity.user.span(), e))?;
    for s in [&f.identity.user, &f.identity.email, &f.identity.groups]
        .into_iter()
        .chain(f.identity.strip.iter())
    {
        http::HeaderName::from_bytes(s.get_ref().as_bytes()).map_err(|_| {
            src.at(
                s.span(),
                format!("{:?} is not a valid header name", s.get_ref()),
            )
        })?;
    }

    let auth = auth_config(src, f.auth)?;
    let mfa = super::mfa::settings(src, f.mfa, auth.users_file.is_some(), redis_store)?;

    let mut upstreams: Vec<Arc<Upstream>> = Vec::new();
    for u in f.upstream {
        let name = u.name.get_ref().clone();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(src.at(
                u.name.span(),
                "upstream name must be non-empty [A-Za-z0-9._-]",
            ));
        }
        if upstreams.iter().any(|x| x.name == name) {
            return Err(src.at(u.name.span(), format!("duplicate upstream name {name:?}")));
        }
        if u.targets.get_ref().is_empty() {
            return Err(src.at(u.targets.span(), "an upstream needs at least one target"));
        }
        let mut targets = Vec::new();
        for t in u.targets.get_ref() {
            targets.push((t.get_ref().clone(), resolve_target(src, t)?));
        }
        let health_check = match u.health_check {
            None => None,
            Some(hc) => {
                if !hc.path.starts_with('/') {
                    return Err(src.file(format!(
                        "upstream {name:?}: health_check path must start with '/'"
                    )));
                }
                if hc.interval.0 < Duration::from_millis(100) {
                    return Err(src.file(format!(
                        "upstream {name:?}: health_check interval must be at least 100ms"
                    )));
                }
                Some(HealthCheck {
                    path: hc.path,
                    interval: hc.interval.0,
                })
            }
        };
        if u.connect_timeout.0.is_zero() || u.read_timeout.0.is_zero() {
            return Err(src.file(format!(
                "upstream {name:?}: timeouts must be greater than 0"
            )));
        }
        upstreams.push(Arc::new(Upstream::new(
            name,
            targets,
            health_check,
            u.connect_timeout.0,
            u.read_timeout.0,
        )));
    }

    let mut routes = Vec::new();
    let mut route_spans = Vec::new();
    let mut seen = HashSet::new();
    for r in f.route {
        let upstream = upstreams
            .iter()
            .find(|u| u.name == *r.upstream.get_ref())
            .cloned()
            .ok_or_else(|| {
                src.at(
                    r.upstream.span(),
                    format!("route names unknown upstream {:?}", r.upstream.get_ref()),
                )
            })?;
        let host = match &r.host {
            None => None,
            Some(h) => Some(HostPattern::parse(h.get_ref()).map_err(|e| src.at(h.span(), e))?),
        };
        let prefix = r.path.get_ref().clone();
        if !prefix.starts_with('/') {
            return Err(src.at(r.path.span(), "route path must start with '/'"));
        }
        if crate::pathnorm::normalize(&prefix)
            .ok()
            .map(|n| n.path)
            .as_deref()
            != Some(prefix.as_str())
        {
            return Err(src.at(
                r.path.span(),
                "route path must be in normal form (no '.', '..', '//' segments or percent-escapes of unreserved characters)",
            ));
        }
        if prefix.starts_with(auth.prefix.as_str())
            && (prefix.len() == auth.prefix.len() || prefix[auth.prefix.len()..].starts_with('/'))
        {
            return Err(src.at(
                r.path.span(),
                format!("route path is inside the auth prefix {}", auth.prefix),
            ));
        }
        let key = (
            r.host.as_ref().map(|h| h.get_ref().to_ascii_lowercase()),
            prefix.clone(),
        );
        if !seen.insert(key) {
            return Err(src.at(r.path.span(), "another route has the same host and path"));
        }
        let bearer = *r.bearer.get_ref();
        if bearer && jwt.is_none() {
            return Err(src.at(
                r.bearer.span(),
                "bearer = true needs at least one [[jwt]] issuer",
            ));
        }
        if *r.issues_sessions.get_ref() && session.is_none() {
            return Err(src.at(
                r.issues_sessions.span(),
                "issues_sessions = true needs a [session] section",
            ));
        }
        let access = match r.access.get_ref() {
            AccessStr::Authenticated => Access::Authenticated,
            AccessStr::Public => Access::Public,
        };
        if access == Access::Authenticated && session.is_none() && !bearer {
            return Err(src.at(
                r.path.span(),
                "this route requires a login (access = \"authenticated\", the default) but there is no [session] section; add one or set access = \"public\"",
            ));
        }
        if access == Access::Public && (!r.allow_users.is_empty() || !r.allow_groups.is_empty()) {
            return Err(src.at(
                r.access.span(),
                "allow_users/allow_groups need access = \"authenticated\"",
            ));
        }
        let name = r.name.clone().unwrap_or_else(|| {
            format!(
                "{}{}",
                r.host.as_ref().map_or("", |h| h.get_ref().as_str()),
                prefix
            )
        });
        let mut allow_encoded = EncodedSet::NONE;
        for c in r.allow_encoded.get_ref() {
            let one = EncodedSet::parse_one(c).map_err(|e| src.at(r.allow_encoded.span(), e))?;
            allow_encoded = allow_encoded.union(one);
        }
        let max_auth_age = match r.max_auth_age.get_ref().as_str() {
            "" => None,
            t => Some(
                humantime::parse_duration(t)
                    .map_err(|e| src.at(r.max_auth_age.span(), format!("max_auth_age: {e}")))?,
            ),
        };
        let require_mfa = *r.require_mfa.get_ref();
        if (max_auth_age.is_some() || require_mfa) && access != Access::Authenticated {
            return Err(src.at(
                r.path.span(),
                "max_auth_age/require_mfa need access = \"authenticated\"",
            ));
        }
        if max_auth_age.is_some_and(|a| a < Duration::from_secs(1)) {
            return Err(src.at(r.max_auth_age.span(), "max_auth_age must be at least 1s"));
        }
        if require_mfa && mfa.is_none() && oidc.is_none() {
            return Err(src.at(
                r.require_mfa.span(),
                "require_mfa needs [mfa] (second factors for users_file logins) or an [[oidc]] provider that reports them",
            ));
        }
        route_spans.push(r.path.span());
        routes.push(Route {
            name: name.into(),
            host,
            prefix,
            upstream,
            access,
            allow_users: r.allow_users,
            allow_groups: r.allow_groups,
            strip_prefix: r.strip_prefix,
            issues_sessions: *r.issues_sessions.get_ref(),
            bearer,
            allow_encoded,
            max_auth_age,
            require_mfa,
        });
    }
    // Bearer-only APIs need no login form; any route that sends people to it does.
    if routes
        .iter()
        .any(|r| r.access == Access::Authenticated && !r.bearer)
        && auth.users_file.is_none()
        && oidc.is_none()
    {
        return Err(
            src.file("authenticated routes need [auth] users_file or an [[oidc]] provider so that people can log in")
        );
    }

    let names: Vec<Arc<str>> = routes.iter().map(|r| r.name.clone()).collect();
    let routes = RouteTable::new(routes).map_err(|c| {
        let span = |i: usize| route_spans.get(i).cloned().unwrap_or(0..0);
        let (line, col) = super::line_col(src.text, span(c.first).start);
        src.at(
            span(c.second),
            format!(
                "route {:?} collides with route {:?} at {}:{line}:{col}: their paths read the same to an upstream that is {}, so a request could be authorized by one and served as the other",
                names.get(c.second).map_or("", |n| &**n),
                names.get(c.first).map_or("", |n| &**n),
                src.path.display(),
                c.reading.describe(),
            ),
        )
    })?;

    Ok(Config {
        path: src.path.to_path_buf(),
        http,
        threads,
        tls,
        admin,
        session,
        auth,
        identity,
        assertion,
        jwt,
        oidc,
        mfa,
        upstreams,
        routes,
    })
}

fn listen_addr(src: &Source<'_>, a: &toml::Spanned<String>) -> Result<SocketAddr, ConfigError> {
    a.get_ref().parse::<SocketAddr>().map_err(|_| {
        src.at(
            a.span(),
            format!(
                "{:?} is not a listen address (IP:PORT, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\")",
                a.get_ref()
            ),
        )
    })
}

/// Resolve a target once, at load time: pingora's peer constructor would otherwise resolve
/// (and panic on failure) in the request path.
fn resolve_target(src: &Source<'_>, t: &toml::Spanned<String>) -> Result<SocketAddr, ConfigError> {
    let s = t.get_ref();
    let addrs = s
        .to_socket_addrs()
        .map_err(|e| src.at(t.span(), format!("cannot resolve target {s:?}: {e}")))?;
    let mut addrs: Vec<SocketAddr> = addrs.collect();
    // Prefer IPv4 for names such as localhost that resolve to both, so that a target that
    // only listens on 127.0.0.1 is not reported down.
    addrs.sort_by_key(|a| !a.is_ipv4());
    addrs
        .into_iter()
        .next()
        .ok_or_else(|| src.at(t.span(), format!("target {s:?} resolves to no address")))
}

fn session_config(
    src: &Source<'_>,
    s: file::SessionSection,
    redis: Option<&toml::Spanned<file::RedisSection>>,
    memcached: Option<&toml::Spanned<file::MemcachedSection>>,
    has_tls: bool,
) -> Result<SessionConfig, ConfigError> {
    let keys_file = src.resolve(s.keys_file.get_ref());
    let keys = KeyRing::load(&keys_file).map_err(|e| src.at(s.keys_file.span(), e))?;
    let secure = *s.secure.get_ref();
    if !secure && has_tls {
        return Err(src.at(
            s.secure.span(),
            "secure = false is only allowed without [tls] (local development)",
        ));
    }
    let cookie_name = match &s.cookie {
        Some(c) => {
            let n = c.get_ref();
            if n.is_empty()
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(src.at(c.span(), "cookie name must be non-empty [A-Za-z0-9._-]"));
            }
            if n.starts_with("__Host-") && !secure {
                return Err(src.at(c.span(), "a __Host- cookie requires secure = true"));
            }
            n.clone()
        }
        None if secure => "__Host-session".to_string(),
        None => "session".to_string(),
    };
    let same_site = match s.same_site.get_ref() {
        SameSiteStr::Strict => SameSite::Strict,
        SameSiteStr::Lax => SameSite::Lax,
        SameSiteStr::None => SameSite::None,
    };
    if same_site == SameSite::None && !secure {
        return Err(src.at(
            s.same_site.span(),
            "same_site = \"none\" requires secure = true",
        ));
    }
    let idle = s.idle_timeout.get_ref().0;
    let absolute = s.absolute_timeout.get_ref().0;
    if idle.is_zero() {
        return Err(src.at(s.idle_timeout.span(), "idle_timeout must be greater than 0"));
    }
    if absolute < idle {
        return Err(src.at(
            s.absolute_timeout.span(),
            "absolute_timeout must be >= idle_timeout",
        ));
    }
    let stateless = match s.store.get_ref() {
        StoreKind::Memory => false,
        StoreKind::Cookie => {
            if !s.persist_file.is_empty() {
                return Err(src.at(
                    s.store.span(),
                    "persist_file has no meaning with store = \"cookie\" (nothing is stored)",
                ));
            }
            true
        }
        StoreKind::Redis | StoreKind::Memcached => false,
    };
    let redis = match (s.store.get_ref(), redis) {
        (StoreKind::Redis, Some(r)) => Some(Arc::new(super::redis::redis_config(
            src,
            r.get_ref(),
            Some(idle),
        )?)),
        (StoreKind::Redis, None) => return Err(src.at(
            s.store.span(),
            "store = \"redis\" needs a [redis] section (at least url = \"redis://host:6379/0\")",
        )),
        // Cookie sessions keep their deny-list (logout, revocation) in Redis, shared.
        (StoreKind::Cookie, Some(r)) => Some(Arc::new(super::redis::redis_config(
            src,
            r.get_ref(),
            None,
        )?)),
        (StoreKind::Memory | StoreKind::Memcached, Some(r)) => {
            return Err(src.at(
                r.span(),
                "[redis] is only used with [session] store = \"redis\" (or \"cookie\", for a shared deny-list)",
            ))
        }
        (_, None) => None,
    };
    let memcached = match (s.store.get_ref(), memcached) {
        (StoreKind::Memcached, Some(m)) => Some(Arc::new(super::memcached::memcached_config(
            src,
            m.get_ref(),
            idle,
        )?)),
        (StoreKind::Memcached, None) => return Err(src.at(
            s.store.span(),
            "store = \"memcached\" needs a [memcached] section (at least servers = [\"127.0.0.1:11211\"])",
        )),
        (_, Some(m)) => {
            return Err(src.at(
                m.span(),
                "[memcached] is only used with [session] store = \"memcached\"",
            ))
        }
        (_, None) => None,
    };
    if memcached.is_some() && !s.persist_file.is_empty() {
        return Err(src.at(
            s.store.span(),
            "persist_file has no meaning with store = \"memcached\" (memcached keeps the sessions)",
        ));
    }
    if redis.is_some() && !s.persist_file.is_empty() {
        return Err(src.at(
            s.store.span(),
            "persist_file has no meaning with store = \"redis\" (Redis keeps the sessions)",
        ));
    }
    if s.max_sessions == 0 {
        return Err(src.file("session.max_sessions must be greater than 0"));
    }
    Ok(SessionConfig {
        keys: Arc::new(keys),
        keys_file,
        cookie_name,
        secure,
        same_site,
        idle_timeout: idle,
        absolute_timeout: absolute,
        max_sessions: s.max_sessions,
        persist_file: (!s.persist_file.is_empty()).then(|| src.resolve(&s.persist_file)),
        stateless,
        redis,
        memcached,
    })
}

fn auth_config(src: &Source<'_>, a: file::AuthSection) -> Result<AuthConfig, ConfigError> {
    let prefix = a.prefix.get_ref().trim_end_matches('/').to_string();
    if !prefix.starts_with('/')
        || prefix.len() < 2
        || crate::pathnorm::normalize(&prefix)
            .ok()
            .map(|n| n.path)
            .as_deref()
            != Some(prefix.as_str())
    {
        return Err(src.at(
            a.prefix.span(),
            "auth prefix must be a normal path such as \"/.auth\"",
        ));
    }
    let (users_file, users) = match &a.users_file {
        None => (None, Users::default()),
        Some(p) => {
            let path = src.resolve(p.get_ref());
            let users = Users::load(&path).map_err(|e| src.at(p.span(), e))?;
            (Some(path), users)
        }
    };
    let login_attempts =
        parse_rate(a.login_attempts.get_ref()).map_err(|e| src.at(a.login_attempts.span(), e))?;
    let allowed_redirect_hosts: Vec<String> = a
        .allowed_redirect_hosts
        .iter()
        .map(|h| h.get_ref().to_ascii_lowercase())
        .collect();
    for h in &a.allowed_redirect_hosts {
        if HostPattern::parse(h.get_ref()).is_err() || h.get_ref().starts_with("*.") {
            return Err(src.at(
                h.span(),
                "allowed_redirect_hosts entries are plain host names",
            ));
        }
    }
    let after_logout = a.after_logout.get_ref().clone();
    if crate::auth::redirect::safe_target(&after_logout, &allowed_redirect_hosts).as_deref()
        != Some(after_logout.as_str())
    {
        return Err(src.at(
            a.after_logout.span(),
            "after_logout must be a local path or a URL on an allowed_redirect_hosts host",
        ));
    }
    Ok(AuthConfig {
        prefix,
        users_file,
        users: Arc::new(users),
        login_attempts,
        after_logout,
        allowed_redirect_hosts,
    })
}

/// `"5/1m"`: five per minute.
fn parse_rate(s: &str) -> Result<(u32, Duration), String> {
    let (n, per) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not a rate; write COUNT/DURATION such as \"5/1m\""))?;
    let n: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: count must be a whole number"))?;
    let per = file::parse_duration(per)?;
    if n == 0 || per.is_zero() {
        return Err(format!("{s:?}: count and duration must be greater than 0"));
    }
    Ok((n, per))
}
