//! A reference point for `benches/load.sh`: the smallest possible pingora 0.9 reverse
//! proxy (no sessions, no filters, same allocator and thread count as portcullis). The
//! difference between this and nginx is what pingora itself costs; the difference between
//! this and portcullis is what portcullis adds.
//!
//! `cargo run --release --example bare_pingora -- LISTEN UPSTREAM THREADS [CERT KEY]`
//!
//! With CERT and KEY (PEM files) LISTEN is a TLS listener instead, set up the way
//! portcullis sets up its own: pingora's rustls `TlsSettings::intermediate` (TLS 1.2 and
//! 1.3, rustls' default server config) with h2 offered through ALPN.
//!
//! With `BARE_L4_READ_BUFFER=BYTES` the (plain) listener's per-connection read buffer is
//! that size instead of pingora's default 64 KiB (`ListenerConfig::l4_buffer`), to price
//! what that buffer costs an idle keep-alive connection; `BARE_L4_WRITE_BUFFER=BYTES` does
//! the same for the write buffer (default 1 460 bytes).
//!
//! With `BARE_TIMEOUTS=1` in the environment the upstream peer gets the connect, read, write
//! and idle timeouts portcullis sets, to price them on their own (about 3% of throughput in
//! one A/B run on the development machine).

use async_trait::async_trait;
use pingora::listeners::ListenerConfig;
use pingora::prelude::HttpPeer;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use std::net::SocketAddr;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare(SocketAddr);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> pingora::Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.0, false, String::new());
        if std::env::var_os("BARE_TIMEOUTS").is_some() {
            let t = std::time::Duration::from_secs(30);
            peer.options.connection_timeout = Some(t);
            peer.options.total_connection_timeout = Some(t);
            peer.options.read_timeout = Some(t);
            peer.options.write_timeout = Some(t);
            peer.options.idle_timeout = Some(std::time::Duration::from_secs(60));
        }
        Ok(Box::new(peer))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream), Some(threads)) = (args.get(1), args.get(2), args.get(3))
    else {
        eprintln!("usage: bare_pingora LISTEN UPSTREAM THREADS [CERT KEY]");
        std::process::exit(2);
    };
    let (Ok(upstream), Ok(threads)) = (upstream.parse::<SocketAddr>(), threads.parse::<usize>())
    else {
        eprintln!("bad UPSTREAM or THREADS");
        std::process::exit(2);
    };
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, Bare(upstream));
    match (args.get(4), args.get(5)) {
        (Some(cert), Some(key)) => {
            let mut tls = match pingora::listeners::tls::TlsSettings::intermediate(cert, key) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("TLS settings: {e}");
                    std::process::exit(2);
                }
            };
            tls.enable_h2();
            proxy.add_tls_with_settings(listen, None, tls);
        }
        _ => {
            let (read, write) = (
                buffer_size("BARE_L4_READ_BUFFER"),
                buffer_size("BARE_L4_WRITE_BUFFER"),
            );
            if read.is_none() && write.is_none() {
                proxy.add_tcp(listen);
            } else {
                proxy.add_listener(
                    ListenerConfig::tcp(listen).l4_buffer(L4BufferSettings { read, write }),
                );
            }
        }
    }
    server.add_service(proxy);
    server.run_forever();
}

/// A buffer size from the environment; unset means pingora's default.
fn buffer_size(var: &str) -> Option<usize> {
    let v = std::env::var(var).ok()?;
    match v.parse() {
        Ok(n) => Some(n),
        Err(_) => {
            eprintln!("bad {var}: {v}");
            std::process::exit(2);
        }
    }
}
