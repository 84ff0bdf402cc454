//! The admin listener: `/healthz`, `/readyz`, `/metrics`, and the session API
//! (`GET`/`DELETE /sessions?user=NAME`, `DELETE /sessions/{handle}`).
//! It is a separate listener (loopback by default) so none of this is reachable through
//! the public ports.

use crate::gateway::Shared;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

pub struct Admin {
    pub shared: Arc<Shared>,
}

fn respond(status: u16, ctype: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let len = r.body().len();
    let h = r.headers_mut();
    if let Ok(v) = http::HeaderValue::from_str(ctype) {
        h.insert(http::header::CONTENT_TYPE, v);
    }
    h.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

fn json(status: u16, v: serde_json::Value) -> Response<Vec<u8>> {
    respond(status, "application/json", v.to_string().into_bytes())
}

impl Admin {
    /// Reasons the gateway is not ready; empty when it is.
    pub fn not_ready(&self) -> Vec<String> {
        let cfg = self.shared.config.load();
        let mut reasons = Vec::new();
        if let Err(e) = self.shared.store.health() {
            reasons.push(format!("session store: {e}"));
        }
        for r in cfg.routes.iter() {
            if !r.upstream.any_healthy() {
                reasons.push(format!(
                    "route {}: upstream {} has no healthy target",
                    r.name, r.upstream.name
                ));
            }
        }
        reasons
    }

    /// The session API needs the admin bearer token (listing sessions is as sensitive
    /// as ending them).
    fn authorized(&self, req: &pingora::http::RequestHeader) -> Result<(), Box<Response<Vec<u8>>>> {
        let cfg = self.shared.config.load();
        let Some(token) = &cfg.admin.token else {
            return Err(Box::new(json(
                403,
                serde_json::json!({"error": "admin_writes_disabled", "message": "set [admin] token_file to enable the session API"}),
            )));
        };
        let presented = req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !token.matches(presented.as_bytes()) {
            tracing::warn!("admin request with a missing or wrong bearer token");
            return Err(Box::new(json(
                401,
                serde_json::json!({"error": "unauthorized", "message": "bearer token required"}),
            )));
        }
        Ok(())
    }

    fn user_param(req: &pingora::http::RequestHeader) -> Result<String, Box<Response<Vec<u8>>>> {
        let user = req.uri.query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "user")
                .map(|(_, v)| v.into_owned())
        });
        user.filter(|u| !u.is_empty()).ok_or_else(|| {
            Box::new(json(
                400,
                serde_json::json!({"error": "bad_request", "message": "name the user: ?user=NAME"}),
            ))
        })
    }

    /// `GET /sessions?user=NAME`: that user's live sessions, each with an opaque handle.
    async fn list(&self, req: &pingora::http::RequestHeader) -> Response<Vec<u8>> {
        if let Err(r) = self.authorized(req) {
            return *r;
        }
        let user = match Self::user_param(req) {
            Ok(u) => u,
            Err(r) => return *r,
        };
        let cfg = self.shared.config.load();
        let Some(scfg) = cfg.session.as_ref().filter(|s| !s.stateless) else {
            return json(
                501,
                serde_json::json!({"error": "not_listable", "message": "cookie sessions live in browsers and cannot be listed"}),
            );
        };
        let when = |ms: u64| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
            )
            .to_string()
        };
        match crate::session::list_user(scfg, &self.shared.backends(), &user).await {
            Ok(list) => {
                let sessions: Vec<serde_json::Value> = list
                    .iter()
                    .filter_map(|(k, r)| {
                        let handle = crate::session::handle(&scfg.keys, k, &self.shared.rng)?;
                        Some(serde_json::json!({
                            "handle": handle,
                            "created": when(r.created_ms),
                            "last_seen": when(r.last_seen_ms()),
                            "auth_time": when(r.auth.time_ms),
                            "auth_methods": r.auth.methods,
                            "provider": r.auth.provider,
                            "client": r.device.client,
                            "user_agent": r.device.agent,
                        }))
                    })
                    .collect();
                json(200, serde_json::json!({"user": user, "sessions": sessions}))
            }
            Err(e) => json(
                503,
                serde_json::json!({"error": "session_store_unavailable", "message": e.to_string()}),
            ),
        }
    }

    /// `DELETE /sessions/{handle}`: end one session.
    async fn end_one(&self, req: &pingora::http::RequestHeader, handle: &str) -> Response<Vec<u8>> {
        if let Err(r) = self.authorized(req) {
            return *r;
        }
        let cfg = self.shared.config.load();
        let Some(scfg) = cfg.session.as_ref().filter(|s| !s.stateless) else {
            return json(501, serde_json::json!({"error": "not_listable"}));
        };
        let Some(key) = crate::session::open_handle(&scfg.keys, handle) else {
            return json(
                400,
                serde_json::json!({"error": "bad_handle", "message": "not a session handle of this gateway"}),
            );
        };
        match self.shared.store.delete(&key).await {
            Ok(true) => {
                tracing::info!("admin ended one session");
                json(200, serde_json::json!({"ended": 1}))
            }
            Ok(false) => json(
                404,
                serde_json::json!({"error": "not_found", "message": "that session has already ended"}),
            ),
            Err(e) => json(
                503,
                serde_json::json!({"error": "session_store_unavailable", "message": e.to_string()}),
            ),
        }
    }

    async fn revoke(&self, req: &pingora::http::RequestHeader) -> Response<Vec<u8>> {
        let cfg = self.shared.config.load();
        if let Err(r) = self.authorized(req) {
            return *r;
        }
        let user = match Self::user_param(req) {
            Ok(u) => u,
            Err(r) => return *r,
        };
        let backends = self.shared.backends();
        match crate::session::revoke_user(cfg.session.as_ref(), &backends, &user).await {
            Ok(Some(n)) => {
                tracing::info!(user = %user, revoked = n, "revoked all sessions of user");
                json(200, serde_json::json!({"user": user, "revoked": n}))
            }
            Ok(None) => {
                tracing::info!(user = %user, "revoked all sessions of user (cookie sessions: every one issued until now)");
                json(
                    200,
                    serde_json::json!({"user": user, "revoked": "all issued until now"}),
                )
            }
            Err(e) => json(
                503,
                serde_json::json!({"error": "session_store_unavailable", "message": e.to_string()}),
            ),
        }
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let path = req.uri.path();
        match (&req.method, path) {
            (&http::Method::GET | &http::Method::HEAD, "/healthz") => {
                respond(200, "text/plain", b"ok\n".to_vec())
            }
            (&http::Method::GET | &http::Method::HEAD, "/readyz") => {
                let reasons = self.not_ready();
                // A provider that is down costs its logins only; it does not take this
                // instance out of a load balancer (design.md).
                let degraded: Vec<String> = self
                    .shared
                    .config
                    .load()
                    .oidc
                    .as_ref()
                    .map(|o| {
                        o.list
                            .iter()
                            .filter_map(|p| {
                                p.degraded()
                                    .map(|e| format!("OpenID Provider {}: {e}", p.settings.name))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if reasons.is_empty() && degraded.is_empty() {
                    json(200, serde_json::json!({"ready": true}))
                } else if reasons.is_empty() {
                    json(
                        200,
                        serde_json::json!({"ready": true, "degraded": degraded}),
                    )
                } else {
                    json(503, serde_json::json!({"ready": false, "reasons": reasons}))
                }
            }
            (&http::Method::GET | &http::Method::HEAD, "/metrics") => {
                self.shared
                    .metrics
                    .sessions_active
                    .set(self.shared.store.count() as i64);
                respond(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    self.shared.metrics.render(),
                )
            }
            (&http::Method::DELETE, "/sessions") => {
                let req = req.clone();
                self.revoke(&req).await
            }
            (&http::Method::GET, "/sessions") => {
                let req = req.clone();
                self.list(&req).await
            }
            (&http::Method::DELETE, p) if p.starts_with("/sessions/") => {
                let req = req.clone();
                let handle = p["/sessions/".len()..].to_string();
                self.end_one(&req, &handle).await
            }
            (_, "/healthz" | "/readyz" | "/metrics" | "/sessions") => {
                json(405, serde_json::json!({"error": "method_not_allowed"}))
            }
            _ => json(404, serde_json::json!({"error": "not_found"})),
        }
    }
}
