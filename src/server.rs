//! Assembling and running the pingora server: the public proxy listeners, the admin
//! listener and the background tasks (health checks, session upkeep, reload on SIGHUP).

use crate::config::Config;
use crate::gateway::Shared;
use crate::metrics::Metrics;
use crate::ops::admin::Admin;
use crate::proxy::Gateway;
use crate::session::persist;
use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("session store: {0}")]
    Store(String),
}

/// Seconds a graceful shutdown lets in-flight requests run before the runtime stops.
/// pingora's default is five minutes, far longer than an operator expects from SIGTERM.
const GRACE_SECONDS: u64 = 3;
const SHUTDOWN_TIMEOUT_SECONDS: u64 = 5;
const SNAPSHOT_EVERY: Duration = Duration::from_secs(60);
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Refuse to start when an address cannot be bound, with a clear message, instead of
/// letting a listener fail later inside pingora.
fn check_bindable(addrs: &[SocketAddr]) -> Result<(), ServeError> {
    for &addr in addrs {
        std::net::TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
    }
    Ok(())
}

pub fn build_shared(config: Config) -> Result<Arc<Shared>, ServeError> {
    let shared = Arc::new(Shared::new(config, Metrics::new()?).map_err(ServeError::Store)?);
    let cfg = shared.config.load();
    if let (Some(scfg), Some(memory)) = (&cfg.session, shared.store.memory()) {
        if let Some(path) = &scfg.persist_file {
            let started = std::time::Instant::now();
            match persist::load(memory, &scfg.keys, path) {
                // Logged at warn so it is seen even with RUST_LOG=warn: a restart that lost
                // (or slowly restored) sessions is what an operator looks for first.
                Ok(n) => tracing::warn!(
                    sessions = n,
                    file = %path.display(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "restored sessions from snapshot"
                ),
                Err(e) => tracing::error!(error = %e, "session snapshot not restored"),
            }
        }
    }
    Ok(shared)
}

/// Serve until a shutdown signal. Blocks.
pub fn serve(shared: Arc<Shared>) -> Result<(), ServeError> {
    let cfg = shared.config.load_full();
    let mut addrs = cfg.http.clone();
    if let Some(t) = &cfg.tls {
        addrs.extend(&t.https);
    }
    addrs.push(cfg.admin.listen);
    check_bindable(&addrs)?;

    let conf = ServerConf {
        threads: cfg.threads,
        grace_period_seconds: Some(GRACE_SECONDS),
        graceful_shutdown_timeout_seconds: Some(SHUTDOWN_TIMEOUT_SECONDS),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut proxy = pingora::proxy::http_proxy_service(
        &server.configuration,
        Gateway {
            shared: shared.clone(),
        },
    );
    for a in &cfg.http {
        proxy.add_listener(ListenerConfig::tcp(a.to_string()).l4_buffer(client_buffers()));
    }
    if let (Some(t), Some(resolver)) = (&cfg.tls, &shared.cert) {
        for a in &t.https {
            // Paths stay empty: the resolver supplies the certificate that config
            // validation already loaded and checked.
            let mut tls = match TlsSettings::intermediate("", "") {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "TLS settings");
                    continue;
                }
            };
            tls.set_cert_resolver(resolver.clone());
            tls.enable_h2();
            proxy.add_listener(
                ListenerConfig::tcp(a.to_string())
                    .tls(tls)
                    .l4_buffer(client_buffers()),
            );
        }
    }
    server.add_service(proxy);

    let mut admin = Service::new(
        "admin".to_string(),
        HttpServer::new_app(Admin {
            shared: shared.clone(),
        }),
    );
    admin.add_tcp(&cfg.admin.listen.to_string());
    server.add_service(admin);

    server.add_service(background_service(
        "health checks",
        HealthChecks {
            shared: shared.clone(),
        },
    ));
    server.add_service(background_service(
        "session upkeep",
        SessionUpkeep {
            shared: shared.clone(),
        },
    ));
    server.add_service(background_service(
        "reload",
        Reloader {
            shared: shared.clone(),
        },
    ));

    tracing::info!(
        http = ?cfg.http,
        https = ?cfg.tls.as_ref().map(|t| &t.https),
        admin = %cfg.admin.listen,
        routes = cfg.routes.len(),
        "portcullis serving"
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals),
    });
    Ok(())
}

/// SIGTERM and SIGINT both shut down gracefully: in-flight requests finish.
struct Signals;

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; shutting down");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: graceful shutdown"),
            _ = int.recv() => tracing::info!("SIGINT: graceful shutdown"),
        }
        ShutdownSignal::GracefulTerminate
    }
}

struct HealthChecks {
    shared: Arc<Shared>,
}

#[async_trait]
impl BackgroundService for HealthChecks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut last: std::collections::HashMap<String, std::time::Instant> = Default::default();
        loop {
            let cfg = self.shared.config.load_full();
            for u in &cfg.upstreams {
                let Some(hc) = &u.health_check else { continue };
                if last.get(&u.name).is_some_and(|t| t.elapsed() < hc.interval) {
                    continue;
                }
                last.insert(u.name.clone(), std::time::Instant::now());
                for (target, healthy) in u.check_all().await {
                    if healthy {
                        tracing::info!(upstream = %u.name, target = %target, "target is healthy again");
                    } else {
                        tracing::warn!(upstream = %u.name, target = %target, "target failed its health check; out of rotation");
                    }
                }
            }
            self.shared.publish_health();
            // Fine-grained ticks only when there is something to time; otherwise wake once a
            // second (to notice health checks added by a reload) rather than ten times.
            let tick = if cfg.upstreams.iter().any(|u| u.health_check.is_some()) {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(1)
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }
}

struct SessionUpkeep {
    shared: Arc<Shared>,
}

impl SessionUpkeep {
    fn snapshot(&self) {
        let cfg = self.shared.config.load();
        let Some(scfg) = &cfg.session else { return };
        let (Some(path), Some(memory)) = (&scfg.persist_file, self.shared.store.memory()) else {
            return;
        };
        match persist::save(memory, &scfg.keys, path) {
            Ok(n) => {
                tracing::info!(sessions = n, file = %path.display(), "session snapshot written")
            }
            Err(e) => tracing::error!(error = %e, "session snapshot failed"),
        }
    }

    fn sweep(&self) {
        let cfg = self.shared.config.load();
        let (Some(scfg), Some(memory)) = (&cfg.session, self.shared.store.memory()) else {
            return;
        };
        let n = memory.sweep(
            self.shared.clock.now_ms(),
            scfg.idle_timeout.as_millis() as u64,
            scfg.absolute_timeout.as_millis() as u64,
        );
        if n > 0 {
            tracing::debug!(removed = n, "expired sessions swept");
        }
    }
}

#[async_trait]
impl BackgroundService for SessionUpkeep {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        let mut snap = tokio::time::interval(SNAPSHOT_EVERY);
        snap.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    self.sweep();
                    self.snapshot();
                    return;
                }
                _ = sweep.tick() => self.sweep(),
                _ = snap.tick() => self.snapshot(),
            }
        }
    }
}

struct Reloader {
    shared: Arc<Shared>,
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::error!("cannot watch SIGHUP; reload disabled");
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = hup.recv() => match self.shared.reload() {
                    Ok(()) => tracing::info!("configuration reloaded"),
                    Err(e) => tracing::error!(error = %e, "reload failed; still serving the previous configuration"),
                },
            }
        }
    }
}

/// The read buffer of each client connection. pingora's default, 64 KiB, is allocated for
/// every connection for as long as it stays open: about 100 KiB of resident memory per idle
/// keep-alive connection against nginx's 0.55 KiB (`benches/load.sh`, 10 000 idle
/// connections). With 4 KiB a bare pingora held 41 KiB per idle connection at the same
/// throughput (`benches/l4_buffer.sh`). Reads at least as large as the buffer (request
/// bodies) bypass it (tokio's `BufReader`), so bodies take no extra copy or read either way.
const CLIENT_READ_BUFFER: usize = 4 * 1024;

/// The write buffer of each client connection. pingora's default, 1 460 bytes, sends a
/// response whose head and body together are larger (most HTML and JSON answers) in two
/// writes: the head, then the body. With 8 KiB, head and body up to that size go out in one
/// (a 4 000-byte body: 2 system calls a request to the upstream and client instead of 3,
/// counted with `strace -c`). Larger bodies bypass the buffer, as reads do.
const CLIENT_WRITE_BUFFER: usize = 8 * 1024;

fn client_buffers() -> L4BufferSettings {
    L4BufferSettings::new(CLIENT_READ_BUFFER, CLIENT_WRITE_BUFFER)
}
