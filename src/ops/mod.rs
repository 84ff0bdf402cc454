//! What operators watch: the admin listener (`/healthz`, `/readyz`, `/metrics`,
//! `/sessions`), the Prometheus metrics, and the structured logs.

pub mod admin;
pub mod logging;
pub mod metrics;
