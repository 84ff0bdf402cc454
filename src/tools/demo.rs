//! `portcullis demo`: a complete gateway with no files. A self-signed certificate and a
//! session key are generated in memory, the echo upstream starts on a free loopback port,
//! and a `demo` user gets a random password that is printed once.

use crate::auth::users::{hash_password, Users};
use crate::config::{AdminConfig, AuthConfig, Config, SameSite, SessionConfig, TlsConfig};
use crate::identity::{Identity, IdentityHeaders};
use crate::router::{Access, Route, RouteTable};
use crate::session::keys::KeyRing;
use crate::tls::CertifiedChain;
use crate::upstream::{HealthCheck, Upstream};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SecureRandom;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct DemoOptions {
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

pub struct Demo {
    pub config: Config,
    pub password: String,
    pub echo: SocketAddr,
}

fn random(n: usize) -> Result<Vec<u8>, String> {
    let mut b = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| "no randomness available".to_string())?;
    Ok(b)
}

/// Start the echo upstream on a free port in a thread of its own.
fn start_echo() -> Result<SocketAddr, String> {
    let std_listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("echo upstream: {e}"))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    let addr = std_listener.local_addr().map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("echo".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return tracing::error!(error = %e, "echo runtime"),
            };
            rt.block_on(async move {
                match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => {
                        if let Err(e) = crate::tools::echo::serve(l, "demo-echo".into(), true).await
                        {
                            tracing::error!(error = %e, "echo upstream stopped");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "echo upstream"),
                }
            });
        })
        .map_err(|e| e.to_string())?;
    Ok(addr)
}

pub fn build(opts: &DemoOptions) -> Result<Demo, String> {
    let echo = start_echo()?;
    let password = URL_SAFE_NO_PAD.encode(random(12)?);
    let users = Users::from_identities(vec![(
        Identity {
            user: "demo".into(),
            email: "demo@example.com".into(),
            groups: vec!["demo".into()],
        },
        hash_password(&password)?,
    )])?;
    let chain = CertifiedChain::self_signed(&["localhost", "127.0.0.1"])?;
    let keys = KeyRing::from_raw_keys(&[random(32)?]);
    let upstream = Arc::new(Upstream::new(
        "echo".into(),
        vec![(echo.to_string(), echo)],
        Some(HealthCheck {
            path: "/".into(),
            interval: Duration::from_secs(5),
        }),
        Duration::from_secs(2),
        Duration::from_secs(60),
    ));
    let route = |name: &str, prefix: &str, access| Route {
        name: name.into(),
        host: None,
        prefix: prefix.into(),
        upstream: upstream.clone(),
        access,
        allow_users: vec![],
        allow_groups: vec![],
        strip_prefix: false,
        issues_sessions: false,
        bearer: false,
        allow_encoded: Default::default(),
        max_auth_age: None,
        require_mfa: false,
    };
    let config = Config {
        path: PathBuf::from("<demo>"),
        http: vec![opts.http],
        threads: 2,
        tls: Some(TlsConfig {
            https: vec![opts.https],
            chain: Arc::new(chain),
            hsts: Some(Duration::from_secs(365 * 86400)),
        }),
        admin: AdminConfig {
            listen: opts.admin,
            token: None,
        },
        session: Some(SessionConfig {
            keys: Arc::new(keys),
            keys_file: PathBuf::from("<generated>"),
            cookie_name: "__Host-session".into(),
            secure: true,
            same_site: SameSite::Lax,
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            max_sessions: 100_000,
            persist_file: None,
            stateless: false,
            redis: None,
            memcached: None,
        }),
        auth: AuthConfig {
            prefix: "/.auth".into(),
            users_file: None,
            users: Arc::new(users),
            login_attempts: (5, Duration::from_secs(60)),
            after_logout: "/".into(),
            allowed_redirect_hosts: vec![],
        },
        identity: IdentityHeaders::new(
            "X-Forwarded-User",
            "X-Forwarded-Email",
            "X-Forwarded-Groups",
            std::iter::empty(),
        )?,
        assertion: None,
        jwt: None,
        // Second factors work in the demo too: enrolled factors go to a temporary file.
        mfa: Some(Arc::new(crate::auth::mfa::MfaSettings {
            totp: true,
            passkeys: true,
            required_groups: vec![],
            store: crate::auth::mfa::FactorStore::File(
                std::env::temp_dir().join(format!(
                    "portcullis-demo-{}.credentials",
                    std::process::id()
                )),
                Default::default(),
            ),
        })),
        oidc: None,
        upstreams: vec![upstream.clone()],
        routes: RouteTable::new(vec![
            route("app", "/", Access::Authenticated),
            route("public", "/public", Access::Public),
        ])
        .map_err(|c| format!("demo routes collide: {c:?}"))?,
    };
    Ok(Demo {
        config,
        password,
        echo,
    })
}
