//! Step 4 of design.md: the gateway's own endpoints first (no route may shadow them),
//! then the route that every reading of the path agrees on. A path that readings
//! disagree about, or that carries encoded delimiters its route does not allow, is
//! refused here.

use super::policy::is_navigation;
use super::{Gateway, Stop};
use crate::pathnorm::PathTraits;
use crate::request::{client_ip, RequestCtx, LABEL_AUTH};
use crate::respond::Reply;
use crate::router::NoRoute;
use crate::router::Route;
use pingora::proxy::Session;
use std::sync::Arc;

/// Where verifiers fetch the assertion keys.
pub const JWKS_PATH: &str = "/.well-known/portcullis/jwks.json";

/// The gateway's own endpoints: the assertion keys and everything under the auth prefix.
/// They answer here (as a `Stop`); any other path goes on to routing.
pub(super) async fn own_endpoints(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    traits: PathTraits,
) -> Result<(), Stop> {
    let config = ctx.config.clone();
    let sub = ctx
        .path
        .strip_prefix(config.auth.prefix.as_str())
        .filter(|s| s.is_empty() || s.starts_with('/'));
    if ctx.path != JWKS_PATH && sub.is_none() {
        return Ok(());
    }
    ctx.route_label = LABEL_AUTH.clone();
    // They take no encoded delimiters (they have no allow_encoded).
    if !traits.encoded.is_empty() {
        return Err(Stop::answer(refusal(
            session,
            ctx,
            &NoRoute::Encoded(traits.encoded),
        )));
    }
    let reply = match (ctx.path == JWKS_PATH, sub, &config.assertion) {
        (true, _, Some(a)) => Reply::new(200, "application/jwk-set+json", a.jwks().to_string()),
        (true, _, None) => Reply::error(404, "not_found", "identity assertions are not configured"),
        (false, Some(sub), _) => {
            let sub = sub.to_string();
            Box::pin(crate::auth::endpoints::handle(
                &gw.shared, session, ctx, &sub,
            ))
            .await?
        }
        (false, None, _) => return Ok(()),
    };
    Err(Stop::answer(reply))
}

/// The step: the route every reading of the path chooses.
pub(super) fn choose(
    session: &Session,
    ctx: &mut RequestCtx,
    traits: PathTraits,
) -> Result<Arc<Route>, Stop> {
    let route = ctx
        .config
        .routes
        .choose(ctx.host.as_deref(), &ctx.path, traits)
        .map_err(|why| Stop::answer(refusal(session, ctx, &why)))?
        .clone();
    ctx.route_label = route.name.clone();
    Ok(route)
}

/// The answer when no route was chosen (design.md steps 2 and 4). Ambiguous paths are
/// logged: they are how authorization bypasses are probed.
fn refusal(session: &Session, ctx: &RequestCtx, why: &NoRoute) -> Reply {
    let (code, message) = match why {
        NoRoute::Unknown => {
            return Reply::error(404, "no_route", "no route for this host and path")
        }
        NoRoute::Ambiguous(a) => {
            let crate::router::Ambiguity {
                reading,
                exact,
                other,
            } = &**a;
            tracing::info!(
                request_id = %ctx.request_id,
                client = %client_ip(session),
                path = %ctx.path,
                route = %exact,
                other_route = %other,
                reading = %reading.describe(),
                "ambiguous path refused: upstreams would read it as another route's"
            );
            (
                "ambiguous_path",
                "this path could be read as belonging to another route, so it is refused"
                    .to_string(),
            )
        }
        NoRoute::Encoded(set) => {
            tracing::info!(request_id = %ctx.request_id, client = %client_ip(session), path = %ctx.path, escapes = %set.escapes(), "encoded delimiter refused");
            (
                "encoded_character",
                format!(
                    "the path contains encoded delimiters this route does not accept: {}",
                    set.escapes()
                ),
            )
        }
    };
    if is_navigation(session.req_header()) {
        Reply::html(
            400,
            crate::auth::page::refusal("Bad request", &message, code, ctx.request_id.as_str()),
        )
    } else {
        Reply::error(400, code, &message)
    }
}
