//! What the auth endpoints read from a request's query: parameters, and `rd` made safe.

use crate::auth::redirect;
use crate::request::RequestCtx;

pub fn query_param(ctx: &RequestCtx, name: &str) -> Option<String> {
    let q = ctx.query.as_deref()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub fn safe_rd(ctx: &RequestCtx, rd: Option<&str>) -> String {
    rd.and_then(|r| redirect::safe_target(r, &ctx.config.auth.allowed_redirect_hosts))
        .unwrap_or_else(|| "/".into())
}
