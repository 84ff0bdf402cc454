//! Tokens the gateway verifies or issues: bearer JWTs from `[[jwt]]` issuers, signed
//! identity assertions for upstreams, and the `Portcullis-Login`/`-Logout` headers of
//! upstreams that issue sessions.

pub mod assertion;
pub mod jwt;
pub mod session_headers;
