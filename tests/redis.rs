//! Several gateway instances sharing real `redis-server`s: a single node and a 3-master
//! local Cluster. Login on one instance, use on another; logout and revocation propagate
//! through the near-caches; Redis dies and comes back; a gateway is SIGKILLed.

mod common;
use common::*;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const COOKIE: &str = "session";
const TOKEN: &str = "test-admin-token-0123456789";

fn alice_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| hash_password("alice-pw"))
}

/// Shared files (keys, users, admin token) for every instance in `dir`.
fn write_shared(dir: &TempDir) {
    dir.write("session.keys", &gen_key());
    dir.write(
        "users.toml",
        &format!(
            "[[user]]\nname = \"alice\"\npassword = \"{h}\"\nemail = \"alice@example.com\"\n\
             [[user]]\nname = \"bob\"\npassword = \"{h}\"\n",
            h = alice_hash()
        ),
    );
    dir.write("admin.token", &format!("{TOKEN}\n"));
}

/// One gateway instance's config, pointing at `url`.
fn instance(dir: &TempDir, name: &str, url: &str, echo: SocketAddr) -> Gateway {
    instance_with(dir, name, url, echo, "redis")
}

fn instance_with(dir: &TempDir, name: &str, url: &str, echo: SocketAddr, store: &str) -> Gateway {
    instance_full(dir, name, url, echo, store, "", true)
}

/// `redis_extra`: more lines for the `[redis]` section.
fn instance_full(
    dir: &TempDir,
    name: &str,
    url: &str,
    echo: SocketAddr,
    store: &str,
    redis_extra: &str,
    wait_live: bool,
) -> Gateway {
    let addrs = Addrs::new();
    let cfg = dir.write(
        &format!("{name}.toml"),
        &format!(
            "[listen]\nhttp = [\"{http}\"]\nthreads = 2\n[admin]\nlisten = \"{admin}\"\ntoken_file = \"admin.token\"\n\
             [session]\nkeys_file = \"session.keys\"\nsecure = false\nstore = \"{store}\"\n\
             [redis]\nurl = \"{url}\"\nkey_prefix = \"pc-test:\"\ntimeout = \"300ms\"\n{redis_extra}\
             [auth]\nusers_file = \"users.toml\"\nlogin_attempts = \"100/1m\"\n\
             [[upstream]]\nname = \"app\"\ntargets = [\"{echo}\"]\n\
             [[route]]\npath = \"/\"\nupstream = \"app\"\n\
             [[route]]\npath = \"/public\"\nupstream = \"app\"\naccess = \"public\"\n",
            http = addrs.http,
            admin = addrs.admin,
        ),
    );
    let g = start_gateway(dir, &cfg, &addrs, false);
    // The subscription comes up in the background; the tests are about an instance whose
    // near-cache is in use, so wait for it (unless the test expects it never to come up).
    if wait_live {
        let live = eventually(Duration::from_secs(10), || {
            g.proc.log_text().contains("invalidation channel is live")
        });
        assert!(live, "{name}: never subscribed:\n{}", g.proc.log_text());
    }
    g
}

fn restart_killed(dir: &TempDir, g: &mut Gateway) {
    g.proc.signal("KILL");
    g.proc.wait_exit(Duration::from_secs(10)).expect("killed");
    let addrs = Addrs {
        http: g.http,
        https: free_addr(),
        admin: g.admin,
    };
    *g = start_gateway(dir, &g.config.clone(), &addrs, false);
}

/// `DELETE /sessions?user=alice` through `g`'s admin listener.
fn revoke_alice(g: &Gateway) -> Resp {
    request(
        g.admin,
        "DELETE",
        "/sessions?user=alice",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        "",
    )
}

fn login_cookie(h: SocketAddr, user: &str) -> String {
    let r = login(h, user, "alice-pw", "/", &[]);
    assert_eq!(r.status, 303, "login {user}: {r:?}");
    format!("{COOKIE}={}", r.set_cookie_value(COOKIE).unwrap())
}

fn app(h: SocketAddr, cookie: &str) -> Resp {
    get(
        h,
        "/app",
        &[("Cookie", cookie), ("Accept", "application/json")],
    )
}

/// Make sure `g` serves `cookie` from its near-cache, then end the session through
/// `end`, and measure how long `g` keeps accepting it. Returns the propagation time.
fn propagation(g: &Gateway, cookie: &str, end: impl FnOnce()) -> Duration {
    for _ in 0..3 {
        assert_eq!(app(g.http, cookie).status, 200);
    }
    let start = Instant::now();
    end();
    loop {
        let s = app(g.http, cookie).status;
        if s == 401 {
            return start.elapsed();
        }
        assert_eq!(s, 200, "only the old answer or the new one");
        assert!(start.elapsed() < Duration::from_secs(5), "never propagated");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Login on A, use on B; logout on A: B (which holds the session in its near-cache)
/// refuses it within 1 s. Returns the logged-out cookie.
fn login_use_elsewhere_logout(tag: &str, a: &Gateway, b: &Gateway) -> String {
    let c = login_cookie(a.http, "alice");
    let r = app(b.http, &c);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.upstream_header("x-forwarded-user"), ["alice"]);
    let t = propagation(b, &c, || {
        let out = request(a.http, "POST", "/.auth/logout", &[("Cookie", &c)], "");
        assert_eq!(out.status, 303);
    });
    println!("{tag}: logout on A rejected on B after {t:?}");
    assert!(t < Duration::from_secs(1), "{t:?}");
    c
}

fn shared_sessions_across_instances(tag: &str, url: &str, dir: &TempDir, echo: SocketAddr) {
    let mut a = instance(dir, &format!("{tag}-a"), url, echo);
    let b = instance(dir, &format!("{tag}-b"), url, echo);

    let c1 = login_use_elsewhere_logout(tag, &a, &b);
    assert!(metric(&b, "portcullis_session_cache_total{result=\"hit\"}") >= 2.0);
    assert!(metric(&b, "portcullis_session_invalidations_total") >= 1.0);

    // Revoke a user through B's admin: A (near-cached) refuses within 1 s; bob unaffected.
    let c2 = login_cookie(b.http, "alice");
    let c3 = login_cookie(a.http, "alice");
    let bob = login_cookie(a.http, "bob");
    assert_eq!(app(a.http, &c3).status, 200);
    let t_revoke = propagation(&a, &c2, || {
        let r = revoke_alice(&b);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json()["revoked"], 2);
    });
    println!("{tag}: revocation via B rejected on A after {t_revoke:?}");
    assert!(t_revoke < Duration::from_secs(1), "{t_revoke:?}");
    assert_eq!(app(a.http, &c3).status, 401);
    assert_eq!(app(b.http, &c3).status, 401);
    assert_eq!(app(b.http, &bob).status, 200);

    // A gateway killed with SIGKILL and restarted: every session Redis holds is valid.
    let c4 = login_cookie(a.http, "alice");
    restart_killed(dir, &mut a);
    for c in [&c4, &bob] {
        assert_eq!(app(a.http, c).status, 200);
    }
    assert_eq!(
        app(a.http, &c1).status,
        401,
        "a logged-out session stays dead"
    );

    // Metrics keep to fixed labels and pass promtool's format check.
    let m = admin_get(&a, "/metrics").body;
    assert!(m.contains("portcullis_redis_duration_seconds_bucket{op=\"get\""));
    assert!(!m.contains("alice"));
    assert_promtool_accepts(dir, &format!("{tag}-metrics.txt"), &m);
    assert_eq!(admin_get(&a, "/readyz").status, 200);
}

#[test]
fn instances_share_sessions_through_a_single_redis() {
    let dir = TempDir::new("redis-single");
    let (_echo, echo) = echo("app", &dir);
    let (_redis, raddr) = redis_server(&dir);
    write_shared(&dir);
    shared_sessions_across_instances("single", &format!("redis://{raddr}/0"), &dir, echo);
}

#[test]
fn losing_the_invalidation_channel_drops_the_near_cache() {
    let dir = TempDir::new("redis-channel");
    let (_echo, echo) = echo("app", &dir);
    let (_redis, raddr) = redis_server(&dir);
    write_shared(&dir);
    let url = format!("redis://{raddr}/0");
    let a = instance(&dir, "ch-a", &url, echo);
    let b = instance(&dir, "ch-b", &url, echo);
    let c = login_cookie(a.http, "alice");
    for _ in 0..3 {
        assert_eq!(app(b.http, &c).status, 200);
    }
    let miss = "portcullis_session_cache_total{result=\"miss\"}";
    let misses = metric(&b, miss);
    // Cut every subscriber's connection (Redis itself stays up): the instances must stop
    // trusting their caches, so B's next lookup goes to Redis.
    let out = Command::new("redis-cli")
        .args([
            "-p",
            &raddr.port().to_string(),
            "client",
            "kill",
            "type",
            "pubsub",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(eventually(Duration::from_secs(3), || b
        .proc
        .log_text()
        .contains("session invalidation channel lost")));
    assert_eq!(app(b.http, &c).status, 200);
    assert!(
        metric(&b, miss) > misses,
        "served from a cache it could not trust"
    );
    // Once resubscribed, invalidations flow again.
    let live = |g: &Gateway| {
        g.proc
            .log_text()
            .matches("invalidation channel is live")
            .count()
    };
    assert!(
        eventually(Duration::from_secs(5), || live(&b) >= 2),
        "never resubscribed"
    );
    let t = propagation(&b, &c, || {
        let out = request(a.http, "POST", "/.auth/logout", &[("Cookie", &c)], "");
        assert_eq!(out.status, 303);
    });
    assert!(t < Duration::from_secs(1), "{t:?}");
}

/// A 3-master Redis Cluster on loopback (no replicas), created with redis-cli.
fn cluster(dir: &TempDir) -> (Vec<Proc>, Vec<SocketAddr>) {
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let procs: Vec<Proc> = addrs
        .iter()
        .map(|a| {
            let conf = format!("nodes-{}.conf", a.port());
            redis_server_at(
                dir,
                *a,
                &["--cluster-enabled", "yes", "--cluster-config-file", &conf],
            )
        })
        .collect();
    let out = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(addrs.iter().map(|a| a.to_string()))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli (redis-tools) is required");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let ok = eventually(Duration::from_secs(20), || {
        addrs.iter().all(|a| {
            Command::new("redis-cli")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &a.port().to_string(),
                    "cluster",
                    "info",
                ])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
        })
    });
    assert!(ok, "cluster never became ready");
    (procs, addrs)
}

#[test]
fn instances_share_sessions_through_a_redis_cluster() {
    let dir = TempDir::new("redis-cluster");
    let (_echo, echo) = echo("app", &dir);
    let (_nodes, addrs) = cluster(&dir);
    write_shared(&dir);
    let url = format!(
        "redis+cluster://{}",
        addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    shared_sessions_across_instances("cluster", &url, &dir, echo);
    // Sessions spread over the masters' slots.
    let mut keys_per_node = Vec::new();
    for a in &addrs {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &a.port().to_string(), "dbsize"])
            .output()
            .unwrap();
        keys_per_node.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    println!("cluster keys per node: {keys_per_node:?}");
}

#[test]
fn redis_down_means_503_never_a_wrong_identity_and_recovery_is_automatic() {
    let dir = TempDir::new("redis-down");
    let (_echo, echo) = echo("app", &dir);
    let raddr = free_addr();
    // Append-only with fsync on every write: Redis itself keeps sessions over its restart.
    let aof = ["--appendonly", "yes", "--appendfsync", "always"];
    let mut redis = redis_server_at(&dir, raddr, &aof);
    write_shared(&dir);
    let g = instance(&dir, "down", &format!("redis://{raddr}/0"), echo);
    let alice = login_cookie(g.http, "alice");
    let bob = login_cookie(g.http, "bob");

    // Traffic from two users runs while Redis is killed and restarted.
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new([
        AtomicUsize::new(0), // 200
        AtomicUsize::new(0), // 503
    ]);
    let workers: Vec<_> = [("alice", alice.clone()), ("bob", bob.clone())]
        .into_iter()
        .map(|(user, cookie)| {
            let (stop, counts) = (stop.clone(), counts.clone());
            let h = g.http;
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = app(h, &cookie);
                    match r.status {
                        200 => {
                            assert_eq!(r.upstream_header("x-forwarded-user"), [user]);
                            counts[0].fetch_add(1, Ordering::Relaxed);
                        }
                        503 => {
                            assert_eq!(r.json()["error"], "session_store_unavailable");
                            counts[1].fetch_add(1, Ordering::Relaxed);
                        }
                        s => panic!("{user}: unexpected {s}: {r:?}"),
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    redis.signal("KILL");
    redis
        .wait_exit(Duration::from_secs(5))
        .expect("redis killed");
    // Protected routes: 503 (the near-cache is dropped with the invalidation channel).
    assert!(eventually(Duration::from_secs(5), || app(g.http, &alice)
        .status
        == 503));
    // Public routes keep serving; login says 503; /readyz says why.
    assert_eq!(get(g.http, "/public/x", &[("Cookie", &alice)]).status, 200);
    let l = login(g.http, "alice", "alice-pw", "/", &[]);
    assert_eq!(l.status, 503, "{l:?}");
    assert!(l.header("set-cookie").is_none());
    assert!(eventually(Duration::from_secs(3), || admin_get(
        &g, "/readyz"
    )
    .status
        == 503));
    let ready = admin_get(&g, "/readyz");
    assert!(ready.body.contains("session store"), "{}", ready.body);
    assert!(!ready.body.contains("alice"));
    let out = request(g.http, "POST", "/.auth/logout", &[("Cookie", &alice)], "");
    assert_eq!(out.status, 503, "a logout that cannot reach Redis says so");

    // Redis returns (same port, same data): everything recovers without a restart.
    let _redis = redis_server_at(&dir, raddr, &aof);
    assert!(
        eventually(Duration::from_secs(10), || app(g.http, &alice).status
            == 200),
        "no recovery"
    );
    assert!(eventually(Duration::from_secs(5), || admin_get(
        &g, "/readyz"
    )
    .status
        == 200));
    assert_eq!(login(g.http, "alice", "alice-pw", "/", &[]).status, 303);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("no wrong identity, no unexpected status");
    }
    let (ok, unavailable) = (
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
    );
    println!("during the outage test: {ok} x 200, {unavailable} x 503");
    // Both kinds of answer were seen by the traffic threads themselves.
    assert!(unavailable > 0 && ok > 0);
    let log = g.proc.log_text();
    assert!(!log.contains("panicked"), "a panic was logged");
    assert!(metric(&g, "portcullis_redis_errors_total{op=\"get\"}") >= 1.0);
}

#[test]
fn redis_settings_are_checked_at_load() {
    let dir = TempDir::new("redis-config");
    dir.write("session.keys", &gen_key());
    let base = "[listen]\nhttp = [\"127.0.0.1:1\"]\n[[upstream]]\nname = \"a\"\ntargets = [\"127.0.0.1:2\"]\n[[route]]\npath = \"/\"\nupstream = \"a\"\naccess = \"public\"\n";
    let cases = [
        ("[session]\nkeys_file = \"session.keys\"\nstore = \"redis\"\n", "needs a [redis] section"),
        ("[session]\nkeys_file = \"session.keys\"\n[redis]\nurl = \"redis://127.0.0.1:6379\"\n", "only used with"),
        ("[session]\nkeys_file = \"session.keys\"\nstore = \"redis\"\n[redis]\nurl = \"http://x:1\"\n", "unknown redis url scheme"),
        ("[session]\nkeys_file = \"session.keys\"\nstore = \"redis\"\n[redis]\nurl = \"redis+sentinel://127.0.0.1:26379\"\n", "master name"),
        ("[session]\nkeys_file = \"session.keys\"\nstore = \"redis\"\nidle_timeout = \"1m\"\n[redis]\ntouch_interval = \"1m\"\n", "at most half of idle_timeout"),
        ("[session]\nkeys_file = \"session.keys\"\nstore = \"redis\"\n[redis]\ntimeout = \"1m\"\n", "between 10ms and 10s"),
    ];
    for (section, want) in cases {
        let cfg = dir.write("gateway.toml", &format!("{base}{section}"));
        let out = Command::new(BIN)
            .args(["check", "-c", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{section}: {err}");
        assert!(err.contains(want), "{section}: {err}");
    }
    // A password in the url never reaches a message.
    let cfg = dir.write(
        "gateway.toml",
        &format!("{base}[session]\nkeys_file = \"session.keys\"\nstore = \"redis\"\n[redis]\nurl = \"redis://:hunter2@127.0.0.1:6379\"\n"),
    );
    let out = Command::new(BIN)
        .args(["check", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hunter2"));
}

#[test]
fn instances_find_the_master_through_redis_sentinel() {
    let dir = TempDir::new("redis-sentinel");
    let (_echo, echo) = echo("app", &dir);
    let (mut master, maddr) = redis_server(&dir);
    let raddr = free_addr();
    let _replica = redis_server_at(
        &dir,
        raddr,
        &["--replicaof", "127.0.0.1", &maddr.port().to_string()],
    );
    let saddr = free_addr();
    // Sentinel rewrites its config file, so it gets its own writable copy. Short timers so
    // the failover below happens within seconds.
    let conf = dir.write(
        "sentinel.conf",
        &format!(
            "port {}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {} 1\n\
             sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n",
            saddr.port(),
            maddr.port()
        ),
    );
    let log = dir.path("sentinel.log");
    let child = Command::new("redis-server")
        .arg(&conf)
        .arg("--sentinel")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("redis-server");
    let _sentinel = Proc {
        child,
        log,
        term_first: true,
    };
    wait_port(saddr);
    write_shared(&dir);
    let url = format!("redis+sentinel://{saddr}/mymaster/0");
    let a = instance(&dir, "sent-a", &url, echo);
    let b = instance(&dir, "sent-b", &url, echo);
    login_use_elsewhere_logout("sentinel", &a, &b);
    // The session really lives on the master the Sentinel named.
    let out = Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &maddr.port().to_string(),
            "--scan",
            "--pattern",
            "pc-test:u:*",
        ])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty());

    // Failover: the master dies, the Sentinel promotes the replica, and both instances
    // follow it without a restart; a session written before the failover (replicated)
    // is still valid, and logout still propagates.
    let replicas = || {
        Command::new("redis-cli")
            .args(["-p", &maddr.port().to_string(), "info", "replication"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("connected_slaves:1"))
            .unwrap_or(false)
    };
    assert!(
        eventually(Duration::from_secs(10), replicas),
        "replica never attached"
    );
    let c = login_cookie(a.http, "bob");
    let dbsize = |a: SocketAddr| {
        Command::new("redis-cli")
            .args(["-p", &a.port().to_string(), "dbsize"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    assert!(
        eventually(Duration::from_secs(10), || dbsize(raddr) == dbsize(maddr)),
        "replica never caught up"
    );
    master.signal("KILL");
    master
        .wait_exit(Duration::from_secs(5))
        .expect("master killed");
    let start = Instant::now();
    assert!(
        eventually(Duration::from_secs(30), || app(b.http, &c).status == 200
            && app(a.http, &c).status == 200),
        "instances never followed the failover:\n{}",
        b.proc.log_text()
    );
    println!(
        "sentinel: sessions served again {:?} after the master died",
        start.elapsed()
    );
    assert!(eventually(Duration::from_secs(10), || b
        .proc
        .log_text()
        .matches("invalidation channel is live")
        .count()
        >= 2));
    let t = propagation(&b, &c, || {
        let out = request(a.http, "POST", "/.auth/logout", &[("Cookie", &c)], "");
        assert_eq!(out.status, 303);
    });
    assert!(t < Duration::from_secs(1), "{t:?}");
}

#[test]
fn cookie_sessions_share_their_deny_list_through_redis() {
    let dir = TempDir::new("redis-cookie");
    let (_echo, echo) = echo("app", &dir);
    let (_redis, raddr) = redis_server(&dir);
    write_shared(&dir);
    let url = format!("redis://{raddr}/0");
    let mut a = instance_with(&dir, "ck-a", &url, echo, "cookie");
    let b = instance_with(&dir, "ck-b", &url, echo, "cookie");

    // The whole session rides in the cookie: any instance accepts it.
    let c1 = login_cookie(a.http, "alice");
    assert!(c1.starts_with(&format!("{COOKIE}=c1.")));
    assert_eq!(app(b.http, &c1).status, 200);

    // Logout on A: a copy of the cookie is dead on B too, within 1 s.
    let t = propagation(&b, &c1, || {
        let out = request(a.http, "POST", "/.auth/logout", &[("Cookie", &c1)], "");
        assert_eq!(out.status, 303);
    });
    println!("cookie store: logout on A rejected on B after {t:?}");
    assert!(t < Duration::from_secs(1));

    // Revoke through B's admin: every cookie of alice issued so far is dead on A.
    let c2 = login_cookie(a.http, "alice");
    let bob = login_cookie(a.http, "bob");
    let t = propagation(&a, &c2, || {
        let r = revoke_alice(&b);
        assert_eq!(r.status, 200, "{r:?}");
    });
    println!("cookie store: revocation via B rejected on A after {t:?}");
    assert!(t < Duration::from_secs(1));
    assert_eq!(app(a.http, &bob).status, 200);

    // The deny-list lives in Redis, so a restarted instance still refuses both.
    restart_killed(&dir, &mut a);
    assert_eq!(app(a.http, &c1).status, 401);
    assert_eq!(app(a.http, &c2).status, 401);
    assert_eq!(app(a.http, &bob).status, 200);
    // A fresh login after the revocation works.
    std::thread::sleep(Duration::from_millis(5));
    let c3 = login_cookie(a.http, "alice");
    assert_eq!(app(b.http, &c3).status, 200);
}

#[test]
fn rediss_connects_over_tls_and_checks_the_certificate() {
    let dir = TempDir::new("rediss");
    let (_echo, echo) = echo("app", &dir);
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let crt = dir.write("redis.crt", &ck.cert.pem());
    let key = dir.write("redis.key", &ck.key_pair.serialize_pem());
    let taddr = free_addr();
    let (crt, key) = (crt.to_str().unwrap(), key.to_str().unwrap());
    // TLS only: the plain port is off, clients need no certificate of their own.
    let _redis = redis_server_at(
        &dir,
        taddr,
        &[
            "--port",
            "0",
            "--tls-port",
            &taddr.port().to_string(),
            "--tls-cert-file",
            crt,
            "--tls-key-file",
            key,
            "--tls-ca-cert-file",
            crt,
            "--tls-auth-clients",
            "no",
        ],
    );
    write_shared(&dir);
    dir.write("redis-ca.pem", &ck.cert.pem());
    let url = format!("rediss://{taddr}/0");
    // With the server's CA configured: sessions work over TLS.
    let g = instance_full(
        &dir,
        "tls-ca",
        &url,
        echo,
        "redis",
        "tls_ca_file = \"redis-ca.pem\"\n",
        true,
    );
    let c = login_cookie(g.http, "alice");
    assert_eq!(app(g.http, &c).status, 200);
    // Without it, the certificate is not trusted: no connection, so 503, never a session.
    let g2 = instance_full(&dir, "tls-noca", &url, echo, "redis", "", false);
    assert_eq!(app(g2.http, &c).status, 503);
    assert_eq!(login(g2.http, "alice", "alice-pw", "/", &[]).status, 503);
}

#[test]
fn a_frozen_redis_costs_bounded_time_and_then_503() {
    let dir = TempDir::new("redis-frozen");
    let (_echo, echo) = echo("app", &dir);
    let (redis, raddr) = redis_server(&dir);
    write_shared(&dir);
    // timeout = 300ms in these instances' config.
    let g = instance(&dir, "frozen", &format!("redis://{raddr}/0"), echo);
    let c = login_cookie(g.http, "alice");
    assert_eq!(app(g.http, &c).status, 200);

    // SIGSTOP: connections stay open, nothing answers (a hung or overloaded Redis).
    redis.signal("STOP");
    let start = Instant::now();
    let mut saw_503 = false;
    while start.elapsed() < Duration::from_secs(8) {
        let t = Instant::now();
        let r = app(g.http, &c);
        // Never longer than a few command timeouts, never a wrong answer.
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a request took {:?}",
            t.elapsed()
        );
        match r.status {
            // Served from the near-cache until the silent channel is noticed (3 s):
            // nothing can have been revoked meanwhile, Redis accepts no writes.
            200 => assert!(!saw_503, "200 again while Redis is still frozen"),
            503 => saw_503 = true,
            s => panic!("unexpected {s}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(saw_503, "a frozen Redis must end in 503s");
    let ready = admin_get(&g, "/readyz");
    assert_eq!(ready.status, 503, "{}", ready.body);

    redis.signal("CONT");
    assert!(
        eventually(Duration::from_secs(10), || app(g.http, &c).status == 200),
        "no recovery after SIGCONT"
    );
    assert!(eventually(Duration::from_secs(5), || admin_get(
        &g, "/readyz"
    )
    .status
        == 200));
}

/// With `store = "redis"`, enrolled factors live in Redis (sealed) and a TOTP code spent
/// on one instance is refused on the other.
#[test]
fn second_factors_live_in_redis_and_codes_are_spent_across_instances() {
    let dir = TempDir::new("redis-mfa");
    let (_echo, echo) = echo("app", &dir);
    let (_redis, raddr) = redis_server(&dir);
    write_shared(&dir);
    let url = format!("redis://{raddr}/0");
    let mfa = "[mfa]\nrequired_groups = [\"*\"]\n";
    let a = instance_full(&dir, "a", &url, echo, "redis", mfa, true);
    let b = instance_full(&dir, "b", &url, echo, "redis", mfa, true);
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let pending = |gw: SocketAddr| {
        let r = login(gw, "alice", "alice-pw", "/", &[]);
        assert_eq!(r.status, 303);
        assert!(
            r.set_cookie_value(COOKIE).is_none(),
            "no session before the factor"
        );
        format!(
            "portcullis-mfa={}",
            r.set_cookie_value("portcullis-mfa").unwrap()
        )
    };
    let code = |gw: SocketAddr, p: &str, c: &str| {
        request(
            gw,
            "POST",
            "/.auth/mfa",
            &[form, ("Cookie", p)],
            &format!("code={c}"),
        )
    };
    // Enrollment inside the login on A.
    let p = pending(a.http);
    let page = get(a.http, "/.auth/mfa", &[("Cookie", &p)]);
    let secret = page
        .body
        .split("secret=")
        .nth(1)
        .unwrap()
        .split(['&', '<', '"'])
        .next()
        .unwrap()
        .to_string();
    let r = code(a.http, &p, &pyotp(&secret, 0));
    assert_eq!(r.status, 200, "{}", r.body);
    // B reads the factor from Redis; a code spent there is refused on A.
    let next = pyotp(&secret, 30);
    let r = code(b.http, &pending(b.http), &next);
    assert_eq!(r.status, 303, "{}", r.body);
    let s = format!("{COOKIE}={}", r.set_cookie_value(COOKIE).unwrap());
    assert_eq!(
        get(a.http, "/x", &[("Cookie", &s)]).upstream_header("x-forwarded-user"),
        ["alice"]
    );
    assert_eq!(
        code(a.http, &pending(a.http), &next).status,
        401,
        "spent on B"
    );
    // Sealed at rest: the key is a hash, the value is not the secret.
    let out = Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &raddr.port().to_string(),
            "--scan",
            "--pattern",
            "pc-test:f:*",
        ])
        .output()
        .unwrap();
    let keys = String::from_utf8_lossy(&out.stdout);
    assert_eq!(keys.lines().count(), 1, "{keys}");
    assert!(!keys.contains("alice"));
    let out = Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &raddr.port().to_string(),
            "GET",
            keys.trim(),
        ])
        .output()
        .unwrap();
    let value = String::from_utf8_lossy(&out.stdout);
    assert!(
        !value.contains(&secret) && !value.contains("totp"),
        "{value}"
    );
}
