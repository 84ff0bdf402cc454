//! portcullis: a reverse-proxy session gateway on pingora.
//!
//! The request path (design.md) runs through `proxy`, one module per step; the domain
//! it works on is `pathnorm` and `readings` (what a path is, and how upstreams read it),
//! `router`, `identity` (owned headers), `csrf`, `session` (cookie, records, stores),
//! `auth` (the gateway's own endpoints, users), `tokens` (bearer JWTs, identity
//! assertions, upstream-issued sessions). `config` builds all of it from gateway.toml;
//! `metrics` the Prometheus registry every layer counts into (a leaf, so the session
//! stores can count without importing `ops`); `ops` is what operators watch (admin
//! listener, logs); `tools` the `demo` and
//! `echo` commands; `server` and `gateway` wire pingora's services together.
#![forbid(unsafe_code)]

pub mod auth;
pub mod cli;
pub mod config;
pub mod csrf;
pub mod gateway;
pub mod identity;
pub mod metrics;
pub mod ops;
pub mod pathnorm;
mod position;
pub mod proxy;
pub mod readings;
pub mod request;
pub mod respond;
pub mod router;
pub mod secret;
pub mod server;
pub mod session;
pub mod tls;
pub mod tokens;
pub mod tools;
pub mod upstream;
