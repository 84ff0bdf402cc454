//! Login, logout and the identity endpoints under `[auth] prefix`.

pub mod endpoints;
pub mod oidc;
pub mod page;
pub mod params;
pub mod ratelimit;
pub mod redirect;
pub mod users;
