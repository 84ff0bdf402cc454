//! portcullis: a reverse-proxy session gateway on pingora.
//!
//! The request path (design.md) runs through `proxy`; each step lives in its own module:
//! `hygiene` (malformed requests), `pathnorm` (normalization), `router`, `session`,
//! `csrf`, `identity` (owned headers), `respond` (gateway-written answers).
#![forbid(unsafe_code)]

pub mod admin;
pub mod assertion;
pub mod auth;
pub mod cli;
pub mod config;
pub mod csrf;
pub mod demo;
pub mod echo;
pub mod gateway;
pub mod identity;
pub mod jwt;
pub mod logging;
pub mod metrics;
pub mod pathnorm;
pub mod proxy;
pub mod readings;
pub mod respond;
pub mod router;
pub mod secret;
pub mod server;
pub mod session;
pub mod session_headers;
pub mod tls;
pub mod upstream;
