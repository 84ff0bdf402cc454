//! When proxying fails (design.md's bad-input table: upstream down → `502`, slow →
//! `504`): the status the client gets and the upstream error metric.

use super::Gateway;
use crate::request::RequestCtx;
use crate::respond::Reply;
use pingora::proxy::{FailToProxy, Session};
use pingora::{Error, ErrorSource, ErrorType};

pub(super) async fn answer(
    gw: &Gateway,
    session: &mut Session,
    e: &Error,
    ctx: &mut RequestCtx,
) -> FailToProxy {
    let upstream = ctx.route.as_ref().map(|r| r.upstream.name.clone());
    let (code, kind) = match e.etype() {
        ErrorType::HTTPStatus(c) => (*c, "status"),
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
            if e.esource() == &ErrorSource::Upstream =>
        {
            (504, "timeout")
        }
        ErrorType::ConnectTimedout => (504, "timeout"),
        ErrorType::ConnectRefused => (502, "connect_refused"),
        _ => match e.esource() {
            ErrorSource::Upstream => (502, "upstream"),
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                    (0, "downstream")
                }
                _ => (400, "downstream"),
            },
            _ => (500, "internal"),
        },
    };
    if let Some(u) = &upstream {
        if code == 502 || code == 504 {
            gw.shared
                .metrics
                .upstream_errors
                .with_label_values(&[u, kind])
                .inc();
        }
    }
    if code > 0 {
        let reply = match code {
            502 => Reply::error(502, "bad_gateway", "the upstream could not be reached"),
            504 => Reply::error(
                504,
                "gateway_timeout",
                "the upstream did not answer in time",
            ),
            400 => Reply::error(400, "bad_request", "malformed request"),
            c => Reply::error(c, "error", "request failed"),
        };
        if let Err(err) = gw.reply(session, ctx, reply, true).await {
            tracing::debug!(error = %err, "could not send error response");
        }
    }
    FailToProxy {
        error_code: code,
        can_reuse_downstream: false,
    }
}
