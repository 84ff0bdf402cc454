//! What operators watch: the admin listener (`/healthz`, `/readyz`, `/metrics`,
//! `/sessions`) and the structured logs. The metrics themselves are `crate::metrics`.

pub mod admin;
pub mod logging;
