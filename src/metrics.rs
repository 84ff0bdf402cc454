//! Prometheus metrics (names are part of the interface, see design.md). Labels hold only
//! route names, upstream names, target labels from the config, methods from a fixed set,
//! status codes and fixed result words: never user names, session ids or raw paths.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub upstream_healthy: IntGaugeVec,
    pub sessions_active: IntGauge,
    pub session_lookups: IntCounterVec,
    pub logins: IntCounterVec,
    pub bearer_tokens: IntCounterVec,
    pub redis_duration: HistogramVec,
    pub redis_errors: IntCounterVec,
    /// Memcached (`store` = "memcached"); Redis keeps its own names above, which
    /// dashboards already use.
    pub store_duration: HistogramVec,
    /// OpenID Connect logins by provider (a config name) and fixed result word.
    pub oidc_logins: IntCounterVec,
    pub oidc_provider_duration: HistogramVec,
    pub oidc_refreshes: IntCounterVec,
    pub mfa: IntCounterVec,
    pub step_up: IntCounterVec,
    pub oidc_backchannel_logouts: IntCounterVec,
    pub store_errors: IntCounterVec,
    pub session_cache: IntCounterVec,
    pub session_invalidations: IntCounter,
}

#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

impl Metrics {
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "portcullis_requests_total",
                "Requests answered, by route, method and status code.",
            ),
            &["route", "method", "code"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "portcullis_request_duration_seconds",
                "Time from request to logged response, by route.",
            )
            .buckets(BUCKETS.to_vec()),
            &["route"],
        )?;
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "portcullis_upstream_duration_seconds",
                "Time from choosing a target to the end of the proxied exchange, by upstream.",
            )
            .buckets(BUCKETS.to_vec()),
            &["upstream"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "portcullis_upstream_errors_total",
                "Failed exchanges with an upstream, by kind.",
            ),
            &["upstream", "kind"],
        )?;
        let upstream_healthy = IntGaugeVec::new(
            Opts::new(
                "portcullis_upstream_healthy",
                "1 when a target passes its health check, else 0.",
            ),
            &["upstream", "target"],
        )?;
        let sessions_active = IntGauge::new(
            "portcullis_sessions_active",
            "Sessions held by the session store.",
        )?;
        let session_lookups = IntCounterVec::new(
            Opts::new(
                "portcullis_session_lookups_total",
                "Session cookie lookups, by result (hit, miss, invalid, expired).",
            ),
            &["result"],
        )?;
        let logins = IntCounterVec::new(
            Opts::new(
                "portcullis_logins_total",
                "Login attempts, by result (success, failure, rate_limited).",
            ),
            &["result"],
        )?;
        let bearer_tokens = IntCounterVec::new(
            Opts::new(
                "portcullis_bearer_tokens_total",
                "Bearer tokens presented on bearer routes, by result (valid or the reason for refusal).",
            ),
            &["result"],
        )?;
        let redis_duration = HistogramVec::new(
            HistogramOpts::new(
                "portcullis_redis_duration_seconds",
                "Latency of Redis session-store operations, by operation.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ]),
            &["op"],
        )?;
        let redis_errors = IntCounterVec::new(
            Opts::new(
                "portcullis_redis_errors_total",
                "Failed or timed-out Redis session-store operations, by operation.",
            ),
            &["op"],
        )?;
        let store_duration = HistogramVec::new(
            HistogramOpts::new(
                "portcullis_store_duration_seconds",
                "Latency of shared session store operations other than Redis, by store and operation.",
            )
            .buckets(vec![
                0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            &["store", "op"],
        )?;
        let store_errors = IntCounterVec::new(
            Opts::new(
                "portcullis_store_errors_total",
                "Failed or timed-out shared session store operations other than Redis, by store and operation.",
            ),
            &["store", "op"],
        )?;
        let oidc_logins = IntCounterVec::new(
            Opts::new(
                "portcullis_oidc_logins_total",
                "Logins through an OpenID Provider, by provider and result.",
            ),
            &["provider", "result"],
        )?;
        let oidc_refreshes = IntCounterVec::new(
            Opts::new(
                "portcullis_oidc_refreshes_total",
                "Renewals of OpenID Provider tokens, by provider and result (renewed, refused, provider_down, provider_error).",
            ),
            &["provider", "result"],
        )?;
        let mfa = IntCounterVec::new(
            Opts::new(
                "portcullis_mfa_total",
                "Second-factor checks, by method (totp, recovery, enroll, passkey, passkey_enroll) and result.",
            ),
            &["method", "result"],
        )?;
        let step_up = IntCounterVec::new(
            Opts::new(
                "portcullis_step_up_total",
                "Requests asked to re-authenticate (max_auth_age, require_mfa), by route.",
            ),
            &["route"],
        )?;
        let oidc_backchannel_logouts = IntCounterVec::new(
            Opts::new(
                "portcullis_oidc_backchannel_logouts_total",
                "OpenID Back-Channel Logout requests, by provider and result.",
            ),
            &["provider", "result"],
        )?;
        let oidc_provider_duration = HistogramVec::new(
            HistogramOpts::new(
                "portcullis_oidc_provider_duration_seconds",
                "Latency of calls to OpenID Providers, by provider and operation.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["provider", "op"],
        )?;
        let session_cache = IntCounterVec::new(
            Opts::new(
                "portcullis_session_cache_total",
                "Near-cache lookups in front of Redis, by result (hit, miss).",
            ),
            &["result"],
        )?;
        let session_invalidations = IntCounter::new(
            "portcullis_session_invalidations_total",
            "Session invalidations received from other instances (and this one) over Redis.",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "portcullis_build_info",
                "Always 1; the version label names the running build.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(upstream_duration.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(upstream_healthy.clone()))?;
        registry.register(Box::new(sessions_active.clone()))?;
        registry.register(Box::new(session_lookups.clone()))?;
        registry.register(Box::new(logins.clone()))?;
        registry.register(Box::new(bearer_tokens.clone()))?;
        registry.register(Box::new(redis_duration.clone()))?;
        registry.register(Box::new(redis_errors.clone()))?;
        registry.register(Box::new(store_duration.clone()))?;
        registry.register(Box::new(store_errors.clone()))?;
        registry.register(Box::new(oidc_logins.clone()))?;
        registry.register(Box::new(oidc_provider_duration.clone()))?;
        registry.register(Box::new(oidc_refreshes.clone()))?;
        registry.register(Box::new(mfa.clone()))?;
        registry.register(Box::new(step_up.clone()))?;
        registry.register(Box::new(oidc_backchannel_logouts.clone()))?;
        registry.register(Box::new(session_cache.clone()))?;
        registry.register(Box::new(session_invalidations.clone()))?;
        registry.register(Box::new(build_info))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        // Pre-create the fixed-label series so dashboards and alerts see zeros, not gaps.
        for r in ["hit", "miss", "invalid", "expired"] {
            session_lookups.with_label_values(&[r]);
        }
        for r in ["success", "failure", "rate_limited"] {
            logins.with_label_values(&[r]);
        }
        Ok(Self {
            registry,
            requests,
            request_duration,
            upstream_duration,
            upstream_errors,
            upstream_healthy,
            sessions_active,
            session_lookups,
            logins,
            bearer_tokens,
            redis_duration,
            redis_errors,
            store_duration,
            store_errors,
            oidc_logins,
            oidc_provider_duration,
            oidc_refreshes,
            mfa,
            step_up,
            oidc_backchannel_logouts,
            session_cache,
            session_invalidations,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// A bounded method label: unknown methods are folded into `OTHER`.
pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}
