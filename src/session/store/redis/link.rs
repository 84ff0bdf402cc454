//! Connections to Redis in its three shapes (single node, Sentinel, Cluster), with bounded
//! timeouts and reconnection.
//!
//! Connections are made on the store's own runtime (`rt`), so their driver tasks never live
//! on a pingora worker runtime; commands are sent from any runtime over the multiplexed
//! handle. A failed connect is not retried for `RETRY_AFTER`, so a dead Redis costs each
//! request one fast failure, not a connect timeout.

use super::{RedisConfig, RedisTarget};
use crate::session::store::StoreError;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, FromRedisValue, IntoConnectionInfo, TlsCertificates};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RETRY_AFTER: Duration = Duration::from_millis(250);

#[derive(Clone)]
enum Handle {
    Plain(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Handle {
    async fn run<T: FromRedisValue>(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            Self::Plain(c) => cmd.query_async(c).await,
            Self::Cluster(c) => cmd.query_async(c).await,
        }
    }

    async fn run_pipe(&mut self, pipe: &redis::Pipeline) -> redis::RedisResult<()> {
        match self {
            Self::Plain(c) => c.req_packed_commands(pipe, 0, pipe.len()).await.map(|_| ()),
            Self::Cluster(c) => pipe.query_async::<()>(c).await,
        }
    }
}

pub struct Link {
    cfg: Arc<RedisConfig>,
    rt: tokio::runtime::Handle,
    current: Mutex<Option<Handle>>,
    last_failure: Mutex<Option<Instant>>,
    connecting: tokio::sync::Mutex<()>,
    sentinel: Option<Arc<tokio::sync::Mutex<redis::sentinel::SentinelClient>>>,
}

fn with_password(url: &str, cfg: &RedisConfig) -> redis::RedisResult<redis::ConnectionInfo> {
    let info = url.into_connection_info()?;
    Ok(match &cfg.password {
        None => info,
        Some(pw) => {
            let pw = String::from_utf8_lossy(pw.expose()).into_owned();
            let settings = info.redis_settings().clone().set_password(pw);
            info.set_redis_settings(settings)
        }
    })
}

fn client_for(url: &str, cfg: &RedisConfig) -> redis::RedisResult<Client> {
    let info = with_password(url, cfg)?;
    match &cfg.tls_ca {
        Some(ca) => Client::build_with_tls(
            info,
            TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.clone()),
            },
        ),
        None => Client::open(info),
    }
}

impl Link {
    pub fn new(cfg: Arc<RedisConfig>, rt: tokio::runtime::Handle) -> Result<Self, String> {
        let sentinel = match &cfg.target {
            RedisTarget::Sentinel {
                sentinels,
                master,
                db,
                tls,
            } => {
                let mut settings = redis::RedisConnectionInfo::default().set_db(*db);
                if let Some(pw) = &cfg.password {
                    settings = settings.set_password(String::from_utf8_lossy(pw.expose()));
                }
                let mut node = redis::sentinel::SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(settings);
                if *tls {
                    node = node.set_tls_mode(redis::TlsMode::Secure);
                }
                let client = redis::sentinel::SentinelClient::build(
                    sentinels.clone(),
                    master.clone(),
                    Some(node),
                    redis::sentinel::SentinelServerType::Master,
                )
                .map_err(|e| format!("redis sentinel: {e}"))?;
                Some(Arc::new(tokio::sync::Mutex::new(client)))
            }
            _ => None,
        };
        Ok(Self {
            cfg,
            rt,
            current: Mutex::new(None),
            last_failure: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            sentinel,
        })
    }

    fn cached(&self) -> Option<Handle> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn reset(&self) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    async fn handle(&self) -> Result<Handle, StoreError> {
        if let Some(h) = self.cached() {
            return Ok(h);
        }
        let recently_failed = || {
            self.last_failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|t| t.elapsed() < RETRY_AFTER)
        };
        if recently_failed() {
            return Err(StoreError::Unavailable("redis: reconnecting".into()));
        }
        let _one = self.connecting.lock().await;
        if let Some(h) = self.cached() {
            return Ok(h);
        }
        if recently_failed() {
            return Err(StoreError::Unavailable("redis: reconnecting".into()));
        }
        let cfg = self.cfg.clone();
        let sentinel = self.sentinel.clone();
        let timeout = cfg.timeout * 2;
        let made = tokio::time::timeout(
            timeout,
            self.rt.spawn(async move { connect(&cfg, sentinel).await }),
        )
        .await;
        let result = match made {
            Ok(Ok(Ok(h))) => Ok(h),
            Ok(Ok(Err(e))) => Err(format!("redis: cannot connect: {e}")),
            Ok(Err(_)) => Err("redis: connect task failed".into()),
            Err(_) => Err("redis: connect timed out".into()),
        };
        match result {
            Ok(h) => {
                *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(h.clone());
                Ok(h)
            }
            Err(e) => {
                *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                Err(StoreError::Unavailable(e))
            }
        }
    }

    fn failed(&self, e: &redis::RedisError) {
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_unrecoverable_error()
            || e.is_timeout()
            || e.is_connection_refusal()
        {
            self.reset();
        }
    }

    /// Turn a command's outcome into the store's: a connection-level failure or a timeout
    /// also drops the connection, so that the next command reconnects.
    fn settle<T>(
        &self,
        outcome: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, StoreError> {
        match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.failed(&e);
                Err(StoreError::Unavailable(format!("redis: {e}")))
            }
            Err(_) => {
                self.reset();
                Err(StoreError::Unavailable("redis: timed out".into()))
            }
        }
    }

    /// Run one command within the configured timeout.
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut h = self.handle().await?;
        self.settle(tokio::time::timeout(self.cfg.timeout, h.run(cmd)).await)
    }

    /// Run a pipeline (the touch batches) within four times the command timeout.
    pub async fn pipeline(&self, pipe: &redis::Pipeline) -> Result<(), StoreError> {
        let mut h = self.handle().await?;
        self.settle(tokio::time::timeout(self.cfg.timeout * 4, h.run_pipe(pipe)).await)
    }

    /// A dedicated (non-multiplexed) connection for SUBSCRIBE. In a Cluster, any node will
    /// do: PUBLISH is broadcast to every node.
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, String> {
        let client = match &self.cfg.target {
            RedisTarget::Single(url) => client_for(url, &self.cfg).map_err(|e| e.to_string())?,
            RedisTarget::Cluster(nodes) => {
                let mut last = String::from("no nodes");
                let mut found = None;
                for n in nodes {
                    match client_for(n, &self.cfg) {
                        Ok(c) => match tokio::time::timeout(
                            self.cfg.timeout * 2,
                            c.get_multiplexed_async_connection(),
                        )
                        .await
                        {
                            Ok(Ok(_)) => {
                                found = Some(c);
                                break;
                            }
                            Ok(Err(e)) => last = e.to_string(),
                            Err(_) => last = "timed out".into(),
                        },
                        Err(e) => last = e.to_string(),
                    }
                }
                found.ok_or(last)?
            }
            RedisTarget::Sentinel { .. } => {
                let s = self.sentinel.as_ref().ok_or("no sentinel client")?;
                let mut s = s.lock().await;
                tokio::time::timeout(self.cfg.timeout * 2, s.async_get_client())
                    .await
                    .map_err(|_| "sentinel timed out".to_string())?
                    .map_err(|e| e.to_string())?
            }
        };
        tokio::time::timeout(self.cfg.timeout * 2, client.get_async_pubsub())
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())
    }
}

async fn connect(
    cfg: &RedisConfig,
    sentinel: Option<Arc<tokio::sync::Mutex<redis::sentinel::SentinelClient>>>,
) -> redis::RedisResult<Handle> {
    let conn_cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(cfg.timeout * 2))
        .set_response_timeout(Some(cfg.timeout));
    match &cfg.target {
        RedisTarget::Single(url) => {
            let c = client_for(url, cfg)?;
            Ok(Handle::Plain(
                c.get_multiplexed_async_connection_with_config(&conn_cfg)
                    .await?,
            ))
        }
        RedisTarget::Cluster(nodes) => {
            let mut b = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                .connection_timeout(cfg.timeout * 2)
                .response_timeout(cfg.timeout)
                .retries(1);
            if let Some(pw) = &cfg.password {
                b = b.password(String::from_utf8_lossy(pw.expose()));
            }
            if let Some(ca) = &cfg.tls_ca {
                b = b.certs(TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                });
            }
            Ok(Handle::Cluster(b.build()?.get_async_connection().await?))
        }
        RedisTarget::Sentinel { .. } => {
            let s = sentinel.ok_or_else(|| {
                redis::RedisError::from((redis::ErrorKind::Client, "no sentinel client"))
            })?;
            // Asking the Sentinels on every (re)connect is what follows a failover.
            let client = s.lock().await.async_get_client().await?;
            Ok(Handle::Plain(
                client
                    .get_multiplexed_async_connection_with_config(&conn_cfg)
                    .await?,
            ))
        }
    }
}
