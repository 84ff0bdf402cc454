//! The `ProxyHttp` implementation: pingora's phases, each a few lines that hand over to
//! one step of design.md's request path. A step returns what the next one needs or a
//! [`Stop`] — the answer that ends the request at the gateway — and `request_filter` is
//! the one place that writes such an answer.

mod access_log;
mod credentials;
mod failure;
pub mod hygiene;
mod policy;
mod response;
mod routing;
mod target;
mod upstream_request;

pub use crate::request::{client_ip, RequestCtx, StoreDown};
pub use routing::JWKS_PATH;

use crate::gateway::Shared;
use crate::respond::Reply;
use crate::router;
use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::Error;
use std::sync::Arc;

pub struct Gateway {
    pub shared: Arc<Shared>,
}

/// How a step ends a request before it reaches an upstream: with an answer the gateway
/// writes itself (`close` ends the connection after it), or with a failure for pingora.
pub enum Stop {
    Answer { reply: Reply, close: bool },
    Failed(Box<Error>),
}

impl Stop {
    pub fn answer(reply: Reply) -> Self {
        Stop::Answer {
            reply,
            close: false,
        }
    }

    /// After framing errors the rest of the byte stream cannot be trusted.
    pub fn closing(reply: Reply) -> Self {
        Stop::Answer { reply, close: true }
    }
}

impl From<Box<Error>> for Stop {
    fn from(e: Box<Error>) -> Self {
        Stop::Failed(e)
    }
}

impl Gateway {
    /// Write a gateway-generated reply with the headers every response gets.
    pub async fn reply(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        reply: Reply,
        close: bool,
    ) -> pingora::Result<bool> {
        let mut reply = reply.header("x-request-id", ctx.request_id.as_str());
        if let Some(h) = self.hsts(ctx) {
            reply = reply.header("strict-transport-security", h);
        }
        reply.send(session, close).await?;
        Ok(true)
    }

    /// Step-up, counted per route when it asks.
    fn step_up(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        route: &router::Route,
    ) -> Result<(), Stop> {
        let r = policy::step_up(session, ctx, route, self.shared.clock.now_ms());
        if r.is_err() {
            self.shared
                .metrics
                .step_up
                .with_label_values(&[&route.name])
                .inc();
        }
        r
    }

    fn hsts(&self, ctx: &RequestCtx) -> Option<String> {
        let tls = ctx.config.tls.as_ref()?;
        let age = tls.hsts?;
        ctx.tls.then(|| format!("max-age={}", age.as_secs()))
    }

    /// design.md's request path up to the upstream, one step per line.
    async fn admit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<(), Stop> {
        ctx.tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        hygiene::refuse_malformed(session, ctx)?; // 2: framing, Host, limits, Connection
        let traits = target::read(session, ctx)?; // 1: HTTPS redirect; 3: one normal path
        routing::own_endpoints(self, session, ctx, traits).await?; // login, logout, …
        let route = routing::choose(session, ctx, traits)?; // 4: every reading agrees
        credentials::identify(self, session, ctx, &route).await?; // 6: session, bearer
        policy::authorize(session, ctx, &route)?; // 7: login, users, groups
        self.step_up(session, ctx, &route)?; // 7: max_auth_age, require_mfa
        policy::refuse_cross_site(session, ctx)?; // 8: CSRF
        ctx.route = Some(route);
        Ok(())
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(&self.shared)
    }

    /// No downstream modules. pingora's default adds its response compression module,
    /// disabled, and a disabled module still builds a context and runs its filters on
    /// every request; the gateway compresses nothing (that is the app's choice).
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    /// Steps 1-8; `Ok(true)` when the gateway answered itself.
    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        match self.admit(session, ctx).await {
            Ok(()) => Ok(false),
            Err(Stop::Answer { reply, close }) => self.reply(session, ctx, reply, close).await,
            Err(Stop::Failed(e)) => Err(e),
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        upstream_request::peer(self, ctx)
    }

    /// Steps 5 and 9.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        upstream_request::prepare(self, session, req, ctx)
    }

    /// Step 10.
    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        response::filter(self, resp, ctx).await
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        failure::answer(self, session, e, ctx).await
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        access_log::record(self, session, e, ctx);
    }
}
