//! Step 6 of design.md: who is calling. The session cookie (verified, then looked up in
//! the store) and, on `bearer = true` routes, a bearer JWT from a `[[jwt]]` issuer.

use super::{Gateway, Stop};
use crate::auth::oidc::refresh;
use crate::identity::Identity;
use crate::request::{client_ip, load_session, RequestCtx, StoreDown};
use crate::respond::Reply;
use crate::router::{Access, Route};
use crate::session::{ActiveSession, Lookup};
use pingora::proxy::Session;
use std::sync::Arc;

/// The step: sets `ctx.identity` (and `ctx.session`, `ctx.bearer`) from what the request
/// proves. A broken store stops only routes that need a login.
pub(super) async fn identify(
    gw: &Gateway,
    session: &Session,
    ctx: &mut RequestCtx,
    route: &Route,
) -> Result<(), Stop> {
    let lookup = match load_session(&gw.shared, session, ctx).await {
        Ok(l) => l,
        Err(StoreDown) if route.access == Access::Authenticated => {
            return Err(Stop::answer(Reply::error(
                503,
                "session_store_unavailable",
                "try again shortly",
            )));
        }
        Err(StoreDown) => Lookup::None,
    };
    if let Lookup::Hit(s) = lookup {
        if let Some(s) = renewed(gw, ctx, s).await {
            ctx.identity = Some(s.record.identity.clone());
            ctx.session = Some(s);
        }
    }
    if !route.bearer {
        return Ok(());
    }
    let Some(id) = Box::pin(gw.bearer_identity(session, ctx))
        .await
        .map_err(Stop::answer)?
    else {
        return Ok(());
    };
    if let Some(current) = &ctx.identity {
        if current.user != id.user {
            tracing::warn!(request_id = %ctx.request_id, session_user = %current.user, token_user = %id.user, "session cookie and bearer token name different users; refused");
            return Err(Stop::answer(Reply::error(
                401,
                "conflicting_credentials",
                "the session and the bearer token name different users",
            )));
        }
    } else {
        ctx.identity = Some(Arc::new(id));
    }
    ctx.bearer = true;
    Ok(())
}

/// An OIDC session whose provider tokens are due is renewed first (`auth::oidc::refresh`);
/// `None` when the provider refused and the session ended.
async fn renewed(gw: &Gateway, ctx: &RequestCtx, s: ActiveSession) -> Option<ActiveSession> {
    let kept = refresh::renew_if_due(&gw.shared, &ctx.config, s).await;
    if kept.is_none() {
        tracing::info!(request_id = %ctx.request_id, "session ended: the provider refused to renew it");
    }
    kept
}

impl Gateway {
    /// A bearer token on a `bearer = true` route: `Ok(None)` when the request carries none
    /// (or another scheme, such as Basic, which is the app's business), the token's
    /// identity when it verifies, else the 401 to send.
    async fn bearer_identity(
        &self,
        session: &Session,
        ctx: &RequestCtx,
    ) -> Result<Option<Identity>, Reply> {
        let Some(issuers) = ctx.config.jwt.clone() else {
            return Ok(None);
        };
        let mut values = session
            .req_header()
            .headers
            .get_all(http::header::AUTHORIZATION)
            .iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(Reply::error(
                400,
                "bad_request",
                "more than one Authorization header",
            ));
        }
        let value = value.to_str().unwrap_or("");
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Ok(None);
        }
        let now = self.shared.clock.now_ms() / 1000;
        let result = issuers.verify(token.trim_matches(' '), now).await;
        let label = result.as_ref().map_or_else(|r| r.label(), |_| "valid");
        self.shared
            .metrics
            .bearer_tokens
            .with_label_values(&[label])
            .inc();
        match result {
            Ok(id) => Ok(Some(id)),
            Err(r) => {
                tracing::info!(request_id = %ctx.request_id, client = %client_ip(session), reason = %r, "bearer token refused");
                Err(
                    Reply::error(401, "invalid_token", "bearer token refused").header(
                        "www-authenticate",
                        "Bearer realm=\"portcullis\", error=\"invalid_token\"",
                    ),
                )
            }
        }
    }
}
