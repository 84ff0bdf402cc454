//! The end of every request: one access-log line (design.md "Logs") and the request
//! metrics, labelled by route name, never by path or user.

use super::Gateway;
use crate::metrics::method_label;
use crate::request::{client_ip, RequestCtx};
use pingora::proxy::Session;
use pingora::Error;

/// Status code label without a per-request allocation for the common codes.
fn status_label(code: u16) -> &'static str {
    match code {
        200 => "200",
        101 => "101",
        204 => "204",
        301 => "301",
        302 => "302",
        303 => "303",
        304 => "304",
        308 => "308",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        0 => "0",
        c if (100..200).contains(&c) => "1xx",
        c if (200..300).contains(&c) => "2xx",
        c if (300..400).contains(&c) => "3xx",
        c if (400..500).contains(&c) => "4xx",
        _ => "5xx",
    }
}

pub(super) fn record(gw: &Gateway, session: &Session, e: Option<&Error>, ctx: &RequestCtx) {
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let elapsed = ctx.start.elapsed();
    let m = &gw.shared.metrics;
    let method = method_label(&session.req_header().method);
    m.requests
        .with_label_values(&[&*ctx.route_label, method, status_label(status)])
        .inc();
    m.request_duration
        .with_label_values(&[&*ctx.route_label])
        .observe(elapsed.as_secs_f64());
    if let (Some(start), Some(route)) = (ctx.upstream_start, &ctx.route) {
        m.upstream_duration
            .with_label_values(&[&route.upstream.name])
            .observe(start.elapsed().as_secs_f64());
    }
    let upstream = ctx.route.as_ref().map_or("", |r| r.upstream.name.as_str());
    tracing::info!(
        target: "portcullis::access",
        request_id = %ctx.request_id,
        client = %client_ip(session),
        method = %session.req_header().method,
        host = ctx.host.as_deref().unwrap_or(""),
        path = %ctx.path,
        route = %ctx.route_label,
        status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        upstream,
        target = ctx.target.as_deref().unwrap_or(""),
        user = ctx.user(),
        error = e.map(|e| e.etype().as_str()).unwrap_or(""),
    );
}
