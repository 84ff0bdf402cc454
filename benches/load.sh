#!/usr/bin/env bash
# Load benchmark: portcullis beside nginx, Apache httpd + mod_auth_openidc, Caddy and a
# bare pingora proxy on this machine, same load generator, same connections, same number
# of workers, same upstream, interleaved rounds.
#
#   bash benches/load.sh            # defaults: 3 rounds x 5 s, wrk -t1 -c32, 1 worker each
#   ROUNDS=5 DURATION=10s CONNS=64 WORKERS=2 bash benches/load.sh
#   PHASES="http https" bash benches/load.sh    # only some tables (default: all, ~13 min)
#
# Everything it needs is installed when missing (Debian packages: wrk nginx redis-server
# memcached caddy apache2 libapache2-mod-auth-openidc nghttp2-client nodejs npm; oha
# through cargo; the node oidc-provider through npm ci; python requests through pip).
#
# Table 1, plain HTTP keep-alive, wrk: requests/s and p50/p99 latency (medians over
# rounds) for:
#   0. upstream direct            (the physical limit)
#   1. nginx reverse proxy        (keep-alive to the upstream, no sessions): the bar
#   2. portcullis, public route
#   3. portcullis, authenticated route with a valid session cookie
#   4. nginx auth_request -> portcullis /.auth/verify -> upstream
#   5. a bare pingora proxy (reference: what pingora itself costs)
#   6. portcullis, authenticated route, store = "redis" (a local redis-server; the
#      near-cache serves the session, Redis sees touches and heartbeats)
#   7. portcullis, authenticated route, store = "memcached" (a local memcached, no
#      near-cache: every request is one round trip to memcached)
#   8. Caddy (Debian package) forward_auth -> portcullis /.auth/verify -> upstream
#   9. portcullis, authenticated route, on a session from signing in through a real
#      OpenID Provider (node oidc-provider, benches/oidc.sh; provider tokens kept)
#  10. Apache httpd 2.4 + mod_auth_openidc signed in through the same provider
#      (server-side sessions in its shm cache; mod_proxy_http with pooled keep-alive to
#      the upstream; one event-MPM child with APACHE_THREADS threads; benches/apache.sh)
# and the ratios to 1, to 5 and to 10. For every subject also the CPU time its own
# processes (every thread; for 4 and 8 the front proxy and portcullis together; Apache's
# parent and child) spent per request, read from /proc/PID/task/*/schedstat around each
# wrk run: on two cores throughput also measures who takes the load generator's core, CPU
# per request does not.
# Table 2, the same over HTTPS keep-alive (TLS 1.3 negotiated, ECDSA P-256 certificate
# from a test CA): nginx terminating TLS and proxying to the plain upstream, bare pingora
# with a rustls listener, portcullis public and authenticated on its [tls] listener,
# Apache + mod_auth_openidc with mod_ssl. The negotiated protocol, cipher and group are
# printed once per subject.
# Table 3, HTTP/2 over TLS with h2load (-c CONNS -m H2_STREAMS): nginx, bare pingora,
# portcullis public and authenticated; h2 must have been negotiated.
# Table 4, new TLS connections per second with openssl s_time (one connection at a time,
# each with a GET): full handshakes (-new) and resumed ones (-reuse), with the server CPU
# per connection; whether the server resumed at all (s_client -sess_out/-sess_in).
# Table 5, IDLE_CONNS idle keep-alive connections (benches/idle_conns.py: each sent one
# request and read its answer): the server's resident memory before and while they are
# held, nginx vs portcullis (memory store, authenticated) vs bare pingora.
# Table 6, latency at a fixed rate (oha -q RATE, coordinated-omission corrected).
# Results also go to target/load-bench.txt.
# Numbers are measurements, not assertions: nothing here passes or fails. Each subject is
# checked for its expected status codes first, so a broken one stops the run instead of
# being measured.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}      # wrk threads
WORKERS=${WORKERS:-1}      # nginx worker_processes = portcullis threads
OUT=${OUT:-target/load-bench.txt}
RATE=${RATE:-5000}         # fixed request rate for the latency phase (oha -q)
RATE_DURATION=${RATE_DURATION:-10s}
H2_STREAMS=${H2_STREAMS:-4}        # h2load -m: concurrent streams per connection
HS_SECONDS=${HS_SECONDS:-5}        # openssl s_time -time, per run
IDLE_CONNS=${IDLE_CONNS:-10000}    # idle keep-alive connections held open
APACHE_THREADS=${APACHE_THREADS:-64}   # ThreadsPerChild of Apache's one child (>= CONNS)
PHASES=${PHASES:-"http https h2 handshake idle fixed"}
phase() { [[ " $PHASES " == *" $1 "* ]]; }

source benches/common.sh
source benches/oidc.sh
source benches/apache.sh
install_missing wrk=wrk nginx=nginx cmake=cmake curl=curl python3=python3 redis-server=redis-server \
  memcached=memcached caddy=caddy openssl=openssl apache2=apache2 h2load=nghttp2-client ss=iproute2 \
  /usr/lib/apache2/modules/mod_auth_openidc.so=libapache2-mod-auth-openidc
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
APACHE=$(command -v apache2 || echo /usr/sbin/apache2)
ensure_oha
# Every server started below inherits this: IDLE_CONNS connections need as many
# descriptors in the client and in the server.
ulimit -n "$(ulimit -Hn)"
if phase idle && [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_CONNS + 500)) ]; then
  echo "open-file limit $(ulimit -n) is too low for IDLE_CONNS=$IDLE_CONNS (raise the hard limit or lower IDLE_CONNS)" >&2
  exit 1
fi

cargo build --release -q --bin portcullis --example bare_pingora
BIN=target/release/portcullis
BARE=target/release/examples/bare_pingora

WORK=$(mktemp -d)
PIDS=()
declare -A PROC   # process (nginx: master) of each server, by name
trap bench_cleanup EXIT

wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

UP=$(free_port); NGX=$(free_port); NGXA=$(free_port); PC=$(free_port); ADM=$(free_port); BP=$(free_port)
CADDY_PORT=$(free_port)
RP=$(free_port); PCR=$(free_port); ADMR=$(free_port)
MP=$(free_port); PCM=$(free_port); ADMM=$(free_port)
PCO=$(free_port); ADMO=$(free_port)                       # portcullis with [[oidc]]
AP=$(free_port); APS=$(free_port)                         # Apache: http, https
NGXS=$(free_port); BPS=$(free_port)                       # nginx and bare pingora over TLS
BPL=$(free_port)                                          # bare pingora, 16 KiB read buffer
PCS=$(free_port); PCH=$(free_port); ADMS=$(free_port)     # portcullis [tls]: https, http

# The OpenID Provider (node oidc-provider over HTTPS, test CA) with two clients: the
# portcullis instance on PCO and Apache (both its ports). Then one certificate for every
# TLS subject: ECDSA P-256, for 127.0.0.1, from the same test CA.
OIDC_EXTRA_CLIENTS=$(apache_oidc_client "$AP" "$APS")
start_oidc_provider "$WORK" "$PCO"
issue_leaf "$WORK" srv
CA=$WORK/ca.crt

nginx_conf() { # name, body[, worker_connections]
  mkdir -p "$WORK/$1"
  cat > "$WORK/$1/nginx.conf" <<NGINX
daemon off;
worker_processes $WORKERS;
pid $WORK/$1/nginx.pid;
error_log $WORK/$1/error.log error;
events { worker_connections ${3:-4096}; }
http {
  access_log off;
  client_body_temp_path $WORK/$1; proxy_temp_path $WORK/$1; fastcgi_temp_path $WORK/$1;
  uwsgi_temp_path $WORK/$1; scgi_temp_path $WORK/$1;
  keepalive_requests 1000000;
  $2
}
NGINX
  "$NGINX" -c "$WORK/$1/nginx.conf" -p "$WORK/$1" &
  PIDS+=($!)
  PROC[$1]=$!
}

# The upstream: a separate nginx returning a small static body.
nginx_conf upstream "server { listen 127.0.0.1:$UP; location / { return 200 'hello from upstream\n'; } }"
# The bar: nginx as a plain reverse proxy with upstream keep-alive (room for the idle
# connections of table 5).
nginx_conf proxy "upstream app { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$NGX; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" \
  $((IDLE_CONNS + 1000))
# The same terminating TLS (1.2 and 1.3, like portcullis; h2 offered through ALPN).
# Session resumption as nginx ships it: stateless tickets on, no server-side cache.
nginx_conf tls "upstream app { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$NGXS ssl http2; ssl_certificate $WORK/srv.crt; ssl_certificate_key $WORK/srv.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
# What people build by hand today: nginx auth_request against portcullis' verify endpoint.
nginx_conf authreq "upstream app { server 127.0.0.1:$UP; keepalive 64; }
  upstream gate { server 127.0.0.1:$PC; keepalive 64; }
  server { listen 127.0.0.1:$NGXA;
    location = /_auth { internal; proxy_pass http://gate/.auth/verify; proxy_http_version 1.1;
      proxy_set_header Connection \"\"; proxy_pass_request_body off; proxy_set_header Content-Length \"\"; }
    location / { auth_request /_auth; auth_request_set \$user \$upstream_http_x_forwarded_user;
      proxy_set_header X-Forwarded-User \$user; proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"

# portcullis with one public and one authenticated route.
PW=bench-password
bench_users "$WORK" "$BIN" "$PW"
bench_gateway_toml "$PC" "$ADM" "$UP" "$WORKERS" > "$WORK/gateway.toml"
RUST_LOG=${PORTCULLIS_LOG:-warn} "$BIN" run -c "$WORK/gateway.toml" 2>"$WORK/portcullis.log" &
PIDS+=($!)
PROC[portcullis]=$!
# The same gateway with its sessions in Redis.
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
sed -e "s/127.0.0.1:$PC/127.0.0.1:$PCR/" -e "s/127.0.0.1:$ADM/127.0.0.1:$ADMR/" \
    -e "s/^secure = false/secure = false\nstore = \"redis\"/" "$WORK/gateway.toml" > "$WORK/gateway-redis.toml"
printf '[redis]\nurl = "redis://127.0.0.1:%s/0"\n' "$RP" >> "$WORK/gateway-redis.toml"
wait_port "$RP"
RUST_LOG=${PORTCULLIS_LOG:-warn} "$BIN" run -c "$WORK/gateway-redis.toml" 2>"$WORK/portcullis-redis.log" &
PIDS+=($!)
PROC[portcullis-redis]=$!
# And with its sessions in memcached.
memcached -l 127.0.0.1 -p "$MP" -U 0 -m 64 -u nobody >"$WORK/memcached.log" 2>&1 &
PIDS+=($!)
sed -e "s/127.0.0.1:$PC/127.0.0.1:$PCM/" -e "s/127.0.0.1:$ADM/127.0.0.1:$ADMM/" \
    -e "s/^secure = false/secure = false\nstore = \"memcached\"/" "$WORK/gateway.toml" > "$WORK/gateway-memcached.toml"
printf '[memcached]\nservers = ["127.0.0.1:%s"]\n' "$MP" >> "$WORK/gateway-memcached.toml"
wait_port "$MP"
RUST_LOG=${PORTCULLIS_LOG:-warn} "$BIN" run -c "$WORK/gateway-memcached.toml" 2>"$WORK/portcullis-memcached.log" &
PIDS+=($!)
PROC[portcullis-memcached]=$!
# And signed in through the OpenID Provider (the users file stays; the session is OIDC).
{ bench_gateway_toml "$PCO" "$ADMO" "$UP" "$WORKERS"; oidc_section; } > "$WORK/gateway-oidc.toml"
RUST_LOG=${PORTCULLIS_LOG:-warn} "$BIN" run -c "$WORK/gateway-oidc.toml" 2>"$WORK/portcullis-oidc.log" &
PIDS+=($!)
PROC[portcullis-oidc]=$!
# And with TLS: [tls] on PCS, the plain listener (PCH) only redirects; the cookie is
# __Host-session, Secure.
bench_gateway_toml "$PCH" "$ADMS" "$UP" "$WORKERS" | sed -e '/^secure = false$/d' \
  -e "s|^\[admin\]|[tls]\nhttps = [\"127.0.0.1:$PCS\"]\ncert = \"$WORK/srv.crt\"\nkey = \"$WORK/srv.key\"\n[admin]|" \
  > "$WORK/gateway-tls.toml"
RUST_LOG=${PORTCULLIS_LOG:-warn} "$BIN" run -c "$WORK/gateway-tls.toml" 2>"$WORK/portcullis-tls.log" &
PIDS+=($!)
PROC[portcullis-tls]=$!
# Reference: a bare pingora proxy with nothing of ours in it, plain and with a rustls
# listener set up like portcullis' (its own process, for the CPU figures).
RUST_LOG=warn "$BARE" "127.0.0.1:$BP" "127.0.0.1:$UP" "$WORKERS" 2>"$WORK/bare.log" &
PIDS+=($!)
PROC[bare]=$!
RUST_LOG=warn "$BARE" "127.0.0.1:$BPS" "127.0.0.1:$UP" "$WORKERS" "$WORK/srv.crt" "$WORK/srv.key" 2>"$WORK/bare-tls.log" &
PIDS+=($!)
PROC[bare-tls]=$!
# For table 5 only: bare pingora with a 16 KiB per-connection read buffer instead of 64 KiB.
BARE_L4_READ_BUFFER=16384 RUST_LOG=warn "$BARE" "127.0.0.1:$BPL" "127.0.0.1:$UP" "$WORKERS" 2>"$WORK/bare-l4.log" &
PIDS+=($!)
PROC[bare-l4]=$!
# Apache httpd + mod_auth_openidc, foreground, its own config; parent + one child.
apache_oidc_conf "$WORK/apache" "$AP" "$APS" "$UP" "$OIDC_ISSUER" "$CA" "$WORK/srv.crt" "$WORK/srv.key" "$APACHE_THREADS"
"$APACHE" -f "$WORK/apache/httpd.conf" -DFOREGROUND >"$WORK/apache.log" 2>&1 &
PIDS+=($!)
PROC[apache]=$!
# Caddy's forward_auth against the same verify endpoint (GOMAXPROCS: Caddy's knob for
# the worker count), with its admin API and automatic HTTPS off (Caddy keeps no access
# log unless told to).
cat > "$WORK/Caddyfile" <<CADDY
{
  admin off
  auto_https off
  skip_install_trust
}
http://127.0.0.1:$CADDY_PORT {
  forward_auth 127.0.0.1:$PC {
    uri /.auth/verify
    copy_headers X-Forwarded-User X-Forwarded-Email X-Forwarded-Groups
  }
  reverse_proxy 127.0.0.1:$UP
}
CADDY
GOMAXPROCS=$WORKERS XDG_DATA_HOME="$WORK" XDG_CONFIG_HOME="$WORK" \
  caddy run --config "$WORK/Caddyfile" --adapter caddyfile >"$WORK/caddy.log" 2>&1 &
PIDS+=($!)
PROC[caddy]=$!
for p in $UP $NGX $NGXA $PC $ADM $BP $PCR $ADMR $PCM $ADMM $CADDY_PORT $PCO $ADMO $AP $APS $NGXS $BPS $BPL $PCS $PCH $ADMS; do
  wait_port "$p"
done

COOKIE=$(login_cookie "$PC" "$PW")
[ -n "$COOKIE" ] || { echo "login failed" >&2; cat "$WORK/portcullis.log" >&2; exit 1; }
COOKIE_R=$(login_cookie "$PCR" "$PW")
[ -n "$COOKIE_R" ] || { echo "login (redis) failed" >&2; cat "$WORK/portcullis-redis.log" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $COOKIE_R" "http://127.0.0.1:$PCR/x")" = 200 ] \
  || { echo "redis-mode gateway did not answer 200 with a session" >&2; exit 1; }
COOKIE_M=$(login_cookie "$PCM" "$PW")
[ -n "$COOKIE_M" ] || { echo "login (memcached) failed" >&2; cat "$WORK/portcullis-memcached.log" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $COOKIE_M" "http://127.0.0.1:$PCM/x")" = 200 ] \
  || { echo "memcached-mode gateway did not answer 200 with a session" >&2; exit 1; }
COOKIE_O=$(python3 benches/oidc_login.py cookie "http://127.0.0.1:$PCO" bench "$CA") \
  || { echo "sign-in through the provider (portcullis) failed" >&2; cat "$WORK/portcullis-oidc.log" >&2; exit 1; }
COOKIE_S=$(login_cookie_at "https://127.0.0.1:$PCS" "$PW" --cacert "$CA")
[ -n "$COOKIE_S" ] || { echo "login over TLS failed" >&2; cat "$WORK/portcullis-tls.log" >&2; exit 1; }
COOKIE_A=$(python3 benches/oidc_login.py mod-auth-openidc "http://127.0.0.1:$AP" "$CA") \
  || { echo "sign-in through the provider (Apache) failed" >&2; cat "$WORK/apache/error.log" >&2; exit 1; }
COOKIE_AS=$(python3 benches/oidc_login.py mod-auth-openidc "https://127.0.0.1:$APS" "$CA") \
  || { echo "sign-in through the provider (Apache, https) failed" >&2; cat "$WORK/apache/error.log" >&2; exit 1; }

# expect CODE URL [CURL_ARGS...]: the URL answers CODE, or the run stops here.
expect() {
  local want=$1 url=$2 got
  shift 2
  got=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$CA" "$@" "$url")
  [ "$got" = "$want" ] || { echo "$url answered $got, expected $want ($*)" >&2; exit 1; }
}
# Sanity: each path answers 200 before it is measured, and 401 (portcullis) or 302 to the
# provider (mod_auth_openidc) without a session.
for url in "http://127.0.0.1:$UP/" "http://127.0.0.1:$NGX/" "http://127.0.0.1:$PC/public/x" "http://127.0.0.1:$BP/" \
           "http://127.0.0.1:$BPL/" "https://127.0.0.1:$NGXS/" "https://127.0.0.1:$BPS/" "https://127.0.0.1:$PCS/public/x"; do
  expect 200 "$url"
done
for pair in "$PC $COOKIE" "$NGXA $COOKIE" "$CADDY_PORT $COOKIE" "$PCR $COOKIE_R" "$PCM $COOKIE_M" "$PCO $COOKIE_O"; do
  expect 200 "http://127.0.0.1:${pair%% *}/x" -H "Cookie: ${pair#* }"
  expect 401 "http://127.0.0.1:${pair%% *}/x"
done
expect 200 "https://127.0.0.1:$PCS/x" -H "Cookie: $COOKIE_S"
expect 401 "https://127.0.0.1:$PCS/x"
expect 308 "http://127.0.0.1:$PCH/x"
expect 200 "http://127.0.0.1:$AP/x" -H "Cookie: $COOKIE_A"
expect 302 "http://127.0.0.1:$AP/x"
expect 200 "https://127.0.0.1:$APS/x" -H "Cookie: $COOKIE_AS"
expect 302 "https://127.0.0.1:$APS/x"
[ "$(pgrep -c -P "${PROC[apache]}")" = 1 ] || { echo "Apache has $(pgrep -c -P "${PROC[apache]}") children, expected 1" >&2; exit 1; }

# Subjects 0-10 are table 1 (plain HTTP), 11-15 table 2 (HTTPS), in one round loop.
NAMES=("upstream direct" "nginx proxy" "portcullis public" "portcullis authenticated" "nginx auth_request+verify"
       "bare pingora (reference)" "portcullis auth (redis)" "portcullis auth (memcached)" "caddy forward_auth+verify"
       "portcullis auth (OIDC)" "apache mod_auth_openidc"
       "nginx TLS proxy" "bare pingora TLS" "portcullis TLS public" "portcullis TLS auth" "apache TLS mod_auth_openidc")
URLS=("http://127.0.0.1:$UP/" "http://127.0.0.1:$NGX/" "http://127.0.0.1:$PC/public/x" "http://127.0.0.1:$PC/x"
      "http://127.0.0.1:$NGXA/x" "http://127.0.0.1:$BP/" "http://127.0.0.1:$PCR/x" "http://127.0.0.1:$PCM/x"
      "http://127.0.0.1:$CADDY_PORT/x" "http://127.0.0.1:$PCO/x" "http://127.0.0.1:$AP/x"
      "https://127.0.0.1:$NGXS/" "https://127.0.0.1:$BPS/" "https://127.0.0.1:$PCS/public/x" "https://127.0.0.1:$PCS/x"
      "https://127.0.0.1:$APS/x")
HDRS=("" "" "" "Cookie: $COOKIE" "Cookie: $COOKIE" "" "Cookie: $COOKIE_R" "Cookie: $COOKIE_M" "Cookie: $COOKIE"
      "Cookie: $COOKIE_O" "Cookie: $COOKIE_A" "" "" "" "Cookie: $COOKIE_S" "Cookie: $COOKIE_AS")
# The servers whose CPU each subject is charged with (the upstream's is the same for all).
SERVERS=("upstream" "proxy" "portcullis" "portcullis" "authreq portcullis" "bare" "portcullis-redis" "portcullis-memcached"
         "caddy portcullis" "portcullis-oidc" "apache" "tls" "bare-tls" "portcullis-tls" "portcullis-tls" "apache")
HTTP_SUBJECTS=(0 1 2 3 4 5 6 7 8 9 10)
HTTPS_SUBJECTS=(11 12 13 14 15)
WRK_SUBJECTS=()
phase http && WRK_SUBJECTS+=("${HTTP_SUBJECTS[@]}")
phase https && WRK_SUBJECTS+=("${HTTPS_SUBJECTS[@]}")

# cpu_ns NAME...: CPU time in ns of these servers' processes, every thread, nginx's and
# Apache's children included (the scheduler's run time from schedstat: nanoseconds, not
# clock ticks).
cpu_ns() {
  local total=0 name pid task run
  for name in "$@"; do
    for pid in "${PROC[$name]}" $(pgrep -P "${PROC[$name]}" || true); do
      for task in /proc/"$pid"/task/*/schedstat; do
        read -r run _ < "$task" 2>/dev/null && total=$((total + run))
      done
    done
  done
  echo "$total"
}

# wrk latency in ms from "50%    1.23ms" style lines.
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f\n", v}'; }

# tls_check PORT LABEL: one handshake with openssl s_client (trusting the test CA,
# offering h2 and http/1.1); prints what was negotiated, stops the run unless TLS 1.3
# with a verified certificate.
TLS_INFO="$WORK/tls-info"; : > "$TLS_INFO"
tls_check() {
  local out line
  # tr: the h2 server preface that s_client prints holds NUL bytes.
  out=$(openssl s_client -connect "127.0.0.1:$1" -CAfile "$CA" -alpn h2,http/1.1 </dev/null 2>&1 | tr -d '\000' || true)
  line=$(echo "$out" | awk -F': ' '/^New, / {split($0, f, ", "); p=f[2]; c=f[3]; sub(/^Cipher is /, "", c)}
    /^Server Temp Key/ {k=$2} /^Peer signature type/ {s=$2} /^ALPN protocol/ {a=$2} /^Verify return code/ {v=$2}
    END {printf "%s %s, key exchange %s, signature %s, ALPN %s, verify %s", p, c, k, s, (a ? a : "none"), v}')
  printf '%-28s %s\n' "$2" "$line" | tee -a "$TLS_INFO" >&2
  [[ $line == "TLSv1.3 "*"verify 0 (ok)" ]] || { echo "$2: not TLS 1.3 with a verified certificate" >&2; echo "$out" >&2; exit 1; }
}
if phase https || phase h2 || phase handshake; then
  tls_check "$NGXS" "nginx TLS"
  tls_check "$BPS" "bare pingora TLS"
  tls_check "$PCS" "portcullis TLS"
  tls_check "$APS" "apache TLS"
fi

RES="$WORK/results"; : > "$RES"
for r in $(seq 1 "$ROUNDS"); do
  for i in "${WRK_SUBJECTS[@]}"; do
    args=(-t"$THREADS" -c"$CONNS" -d"$DURATION" --latency)
    [ -n "${HDRS[$i]}" ] && args+=(-H "${HDRS[$i]}")
    read -ra servers <<< "${SERVERS[$i]}"
    before=$(cpu_ns "${servers[@]}")
    out=$(wrk "${args[@]}" "${URLS[$i]}")
    after=$(cpu_ns "${servers[@]}")
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    cpu_us=$(awk -v a="$before" -v b="$after" -v n="$reqs" 'BEGIN {printf "%.2f", (b - a) / 1000 / (n > 0 ? n : 1)}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}' | to_ms)
    p99=$(echo "$out" | awk '$1=="99%" {print $2}' | to_ms)
    errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
    [ -n "$errs" ] && echo "warning: ${NAMES[$i]} round $r: $errs" >&2
    echo "$i $rps $p50 $p99 $cpu_us" >> "$RES"
    printf '  round %d  %-28s %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  cpu %6.2f us/req\n' "$r" "${NAMES[$i]}" "$rps" "$p50" "$p99" "$cpu_us" >&2
  done
done

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
# med FILE KEY COLUMN: median of COLUMN over the rows of FILE whose first field is KEY.
med() { awk -v k="$2" -v c="$3" '$1==k {print $c}' "$1" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2fx", a/b; else print "-"}'; }

# HTTP/2: h2load over TLS (ALPN h2), CONNS connections x H2_STREAMS streams, one thread.
H2_NAMES=("nginx h2" "bare pingora h2" "portcullis h2 public" "portcullis h2 auth")
H2_URLS=("https://127.0.0.1:$NGXS/" "https://127.0.0.1:$BPS/" "https://127.0.0.1:$PCS/public/x" "https://127.0.0.1:$PCS/x")
H2_HDRS=("" "" "" "cookie: $COOKIE_S")
H2_SERVERS=("tls" "bare-tls" "portcullis-tls" "portcullis-tls")
H2="$WORK/h2"; : > "$H2"
# h2load time "123.45us" / "1.23ms" / "1.2s" -> ms
h2_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f\n", v}'; }
if phase h2; then
  for r in $(seq 1 "$ROUNDS"); do
    for i in "${!H2_NAMES[@]}"; do
      args=(-c "$CONNS" -m "$H2_STREAMS" -t 1 -D "${DURATION%s}")
      [ -n "${H2_HDRS[$i]}" ] && args+=(-H "${H2_HDRS[$i]}")
      read -ra servers <<< "${H2_SERVERS[$i]}"
      before=$(cpu_ns "${servers[@]}")
      out=$(h2load "${args[@]}" "${H2_URLS[$i]}" 2>&1)
      after=$(cpu_ns "${servers[@]}")
      echo "$out" | grep -q '^Application protocol: h2$' \
        || { echo "${H2_NAMES[$i]}: h2 was not negotiated" >&2; echo "$out" >&2; exit 1; }
      done_n=$(echo "$out" | awk '/^requests:/ {print $8}')
      ok2xx=$(echo "$out" | awk '/^status codes:/ {print $3}')
      [ "$done_n" = "$ok2xx" ] || echo "warning: ${H2_NAMES[$i]} round $r: $ok2xx of $done_n requests 2xx" >&2
      rps=$(echo "$out" | awk '/^finished in/ {print $4}')
      mean=$(echo "$out" | awk '/^time for request:/ {print $6}' | h2_ms)
      cpu_us=$(awk -v a="$before" -v b="$after" -v n="$ok2xx" 'BEGIN {printf "%.2f", (b - a) / 1000 / (n > 0 ? n : 1)}')
      echo "$i $rps $mean $cpu_us" >> "$H2"
      printf '  round %d  %-28s %10.0f req/s  mean %7.3f ms  cpu %6.2f us/req\n' "$r" "${H2_NAMES[$i]}" "$rps" "$mean" "$cpu_us" >&2
    done
  done
fi

# New TLS connections per second: openssl s_time, one connection at a time, each with one
# request that every server answers 200 through the upstream, read to the end (which is
# also when a TLS 1.3 client receives the server's session tickets). s_time itself sends
# "GET <path> HTTP/1.0" and no Host; the path below carries an HTTP/1.1 request line's
# rest, a Host and "Connection: close", and the trailing " HTTP/1.0" lands in a dummy
# header. -new: every handshake full; -reuse: each offers the session (ticket) the
# previous connection left.
HS_NAMES=("nginx TLS" "bare pingora TLS" "portcullis TLS")
HS_PORTS=("$NGXS" "$BPS" "$PCS")
HS_PATHS=("/" "/" "/public/x")
HS_SERVERS=("tls" "bare-tls" "portcullis-tls")
hs_path() { printf '%s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Bench: s_time' "$1"; }
HS="$WORK/handshakes"; : > "$HS"
RESUME="$WORK/resume"; : > "$RESUME"
if phase handshake; then
  # Does the server resume at all? Save the session of one connection, offer it on the next.
  for i in "${!HS_NAMES[@]}"; do
    req="GET $(hs_path "${HS_PATHS[$i]}") HTTP/1.0"$'\r\n\r\n'
    printf '%s' "$req" | openssl s_client -connect "127.0.0.1:${HS_PORTS[$i]}" -CAfile "$CA" \
      -sess_out "$WORK/sess.pem" -ign_eof >/dev/null 2>&1 || true
    out=$(printf '%s' "$req" | openssl s_client -connect "127.0.0.1:${HS_PORTS[$i]}" -CAfile "$CA" \
      -sess_in "$WORK/sess.pem" -sess_out "$WORK/sess2.pem" -ign_eof 2>/dev/null || true)
    first=$(echo "$out" | awk '/^(New|Reused),/ {print $1; exit}')
    answer=$(echo "$out" | tr -d '\r' | awk '/^HTTP\// {print $2; exit}')
    # The ticket of a resumed connection, offered again (single-use tickets show here).
    second=$(printf '%s' "$req" | openssl s_client -connect "127.0.0.1:${HS_PORTS[$i]}" -CAfile "$CA" \
      -sess_in "$WORK/sess2.pem" -ign_eof 2>/dev/null | awk '/^(New|Reused),/ {print $1; exit}')
    # The first session offered a second time.
    again=$(printf '%s' "$req" | openssl s_client -connect "127.0.0.1:${HS_PORTS[$i]}" -CAfile "$CA" \
      -sess_in "$WORK/sess.pem" -ign_eof 2>/dev/null | awk '/^(New|Reused),/ {print $1; exit}')
    printf '%-28s saved session offered: %s; its successor: %s; the saved one again: %s (request answered %s)\n' \
      "${HS_NAMES[$i]}" "${first%,}" "${second%,}" "${again%,}" "${answer:-nothing}" | tee -a "$RESUME" >&2
  done
  for r in $(seq 1 "$ROUNDS"); do
    for i in "${!HS_NAMES[@]}"; do
      for mode in new reuse; do
        read -ra servers <<< "${HS_SERVERS[$i]}"
        before=$(cpu_ns "${servers[@]}")
        t0=$(date +%s.%N)
        out=$(openssl s_time -connect "127.0.0.1:${HS_PORTS[$i]}" -CAfile "$CA" -"$mode" -time "$HS_SECONDS" \
          -www "$(hs_path "${HS_PATHS[$i]}")" 2>&1)
        t1=$(date +%s.%N)
        after=$(cpu_ns "${servers[@]}")
        # s_time prints one character per connection: "r" resumed, "*" (or a version
        # letter) full; -reuse first makes one full connection to get a session.
        marks=$(echo "$out" | grep -E '^[*rt3]+$' | tr -d '\n')
        n=${#marks}
        reused=$(echo -n "$marks" | tr -cd r | wc -c)
        [ "$n" -gt 0 ] || { echo "${HS_NAMES[$i]}: s_time made no connection" >&2; echo "$out" >&2; exit 1; }
        awk -v i="$i" -v m="$mode" -v n="$n" -v u="$reused" -v t0="$t0" -v t1="$t1" -v a="$before" -v b="$after" \
          'BEGIN {printf "%s-%s %.1f %.2f %.3f\n", i, m, n / (t1 - t0), (b - a) / 1000 / n, u / n}' >> "$HS"
        tail -1 "$HS" | awk -v nm="${HS_NAMES[$i]}" -v r="$r" \
          '{printf "  round %d  %-20s %-12s %8.0f conn/s  server cpu %7.1f us/conn  resumed %5.1f%%\n", r, nm, $1, $2, $3, $4 * 100}' >&2
      done
    done
  done
fi

# IDLE_CONNS idle keep-alive connections: each sent one request and read its answer;
# resident memory (VmRSS, all the subject's processes) before they were opened and while
# they are held, and how many of them the server really held (ESTABLISHED on its port).
IDLE_NAMES=("nginx proxy" "portcullis auth (memory)" "bare pingora" "bare pingora, 16 KiB rbuf")
IDLE_PORTS=("$NGX" "$PC" "$BP" "$BPL")
IDLE_PATHS=("/" "/x" "/" "/")
IDLE_COOKIES=("" "$COOKIE" "" "")
IDLE_SERVERS=("proxy" "portcullis" "bare" "bare-l4")
IDLE="$WORK/idle"; : > "$IDLE"
rss_kib() {
  local total=0 pid kb
  for pid in "${PROC[$1]}" $(pgrep -P "${PROC[$1]}" || true); do
    kb=$(awk '/^VmRSS:/ {print $2}' /proc/"$pid"/status 2>/dev/null || echo 0)
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}
established() { ss -Htn state established "( sport = :$1 )" | wc -l; }
if phase idle; then
  for i in "${!IDLE_NAMES[@]}"; do
    # Connections already there (nginx auth_request's and Caddy's pools to portcullis).
    others=$(established "${IDLE_PORTS[$i]}")
    before=$(rss_kib "${IDLE_SERVERS[$i]}")
    rm -f "$WORK/hold"; mkfifo "$WORK/hold"
    python3 benches/idle_conns.py "${IDLE_PORTS[$i]}" "$IDLE_CONNS" "${IDLE_PATHS[$i]}" "${IDLE_COOKIES[$i]}" \
      < "$WORK/hold" > "$WORK/idle.out" 2>&1 &
    ipid=$!
    exec 7>"$WORK/hold"   # the client holds its connections until this closes
    for _ in $(seq 1 1200); do grep -q '^held' "$WORK/idle.out" && break; kill -0 "$ipid" 2>/dev/null || break; sleep 0.1; done
    grep -q '^held' "$WORK/idle.out" || { echo "${IDLE_NAMES[$i]}: idle client failed" >&2; cat "$WORK/idle.out" >&2; exit 1; }
    sleep 2   # let the server settle
    held=$(( $(established "${IDLE_PORTS[$i]}") - others ))
    during=$(rss_kib "${IDLE_SERVERS[$i]}")
    client=$(cat "$WORK/idle.out")
    exec 7>&-
    wait "$ipid" || true
    for _ in $(seq 1 100); do [ "$(established "${IDLE_PORTS[$i]}")" -le "$others" ] && break; sleep 0.1; done
    sleep 1
    afterwards=$(rss_kib "${IDLE_SERVERS[$i]}")
    echo "$i $before $during $held $afterwards" >> "$IDLE"
    printf '  idle  %-26s %s; server holds %d; RSS %d -> %d KiB (%d KiB after they closed)\n' \
      "${IDLE_NAMES[$i]}" "$client" "$held" "$before" "$during" "$afterwards" >&2
    case $client in *" ok=$IDLE_CONNS "*) ;; *) echo "warning: ${IDLE_NAMES[$i]}: not every connection got a 200: $client" >&2 ;; esac
  done
fi

# Latency at a fixed, moderate rate: nginx proxy, portcullis (public, authenticated on
# memory, Redis and memcached) and the bare pingora reference.
FIXED=(1 2 3 5 6 7)
LAT="$WORK/latency"; : > "$LAT"
if phase fixed; then
  for r in $(seq 1 "$ROUNDS"); do
    for i in "${FIXED[@]}"; do
      args=(-z "$RATE_DURATION" -q "$RATE" -c "$CONNS" --latency-correction --no-tui --output-format json)
      [ -n "${HDRS[$i]}" ] && args+=(-H "${HDRS[$i]}")
      oha "${args[@]}" "${URLS[$i]}" | python3 -c '
import json, sys
d = json.load(sys.stdin)
p = d["latencyPercentiles"]
ok = d["statusCodeDistribution"].get("200", 0)
total = sum(d["statusCodeDistribution"].values()) or 1
print(sys.argv[1], p["p50"] * 1000, p["p99"] * 1000, d["summary"]["requestsPerSec"], ok / total)' "$i" >> "$LAT"
      tail -1 "$LAT" | awk -v n="${NAMES[$i]}" -v r="$r" '{printf "  fixed %s  round %d  %-26s p50 %7.3f ms  p99 %7.3f ms  (%.0f req/s, %.1f%% 200)\n", "'"$RATE"'/s", r, n, $2, $3, $4, $5*100}' >&2
    done
  done
fi

# wrk_table BASE BARE MOD SUBJECT...: rows of the wrk results with ratios to three of them.
wrk_table() {
  local base=$1 bare=$2 mod=$3 i rps p50 p99 cpu
  shift 3
  local b_rps b_cpu r_rps r_cpu m_rps m_cpu
  b_rps=$(med "$RES" "$base" 2); b_cpu=$(med "$RES" "$base" 5)
  r_rps=$(med "$RES" "$bare" 2); r_cpu=$(med "$RES" "$bare" 5)
  m_rps=$(med "$RES" "$mod" 2); m_cpu=$(med "$RES" "$mod" 5)
  printf '%-28s %8s %7s %7s %7s | %6s %6s %6s | %6s %6s %6s\n' "" "req/s" "p50 ms" "p99 ms" "cpu us" \
    "nginx" "bare" "mod_oi" "nginx" "bare" "mod_oi"
  for i in "$@"; do
    rps=$(med "$RES" "$i" 2); p50=$(med "$RES" "$i" 3); p99=$(med "$RES" "$i" 4); cpu=$(med "$RES" "$i" 5)
    printf '%-28s %8.0f %7.3f %7.3f %7.2f | %6s %6s %6s | %6s %6s %6s\n' "${NAMES[$i]}" "$rps" "$p50" "$p99" "$cpu" \
      "$(ratio "$rps" "$b_rps")" "$(ratio "$rps" "$r_rps")" "$(ratio "$rps" "$m_rps")" \
      "$(ratio "$cpu" "$b_cpu")" "$(ratio "$cpu" "$r_cpu")" "$(ratio "$cpu" "$m_cpu")"
  done
}

{
  echo "portcullis load benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(uname -sr)"
  echo "$ROUNDS interleaved rounds, medians; $WORKERS nginx worker(s) / portcullis thread(s) / GOMAXPROCS; Apache: 1 event-MPM child x $APACHE_THREADS threads; upstream: 1-worker nginx static body"
  echo "cpu us: CPU time of the subject's own processes (all threads) per request; nginx auth_request and caddy include portcullis' verify"
  echo "ratios: requests/s (left block) and cpu us (right block) relative to nginx, bare pingora and Apache + mod_auth_openidc of the same table"
  if phase http; then
    echo
    echo "1. plain HTTP keep-alive: wrk -t$THREADS -c$CONNS -d$DURATION"
    wrk_table 1 5 10 "${HTTP_SUBJECTS[@]}"
    mem=$(med "$RES" 3 2)
    echo "redis store / memory store (authenticated): $(ratio "$(med "$RES" 6 2)" "$mem")"
    echo "memcached store / memory store (authenticated): $(ratio "$(med "$RES" 7 2)" "$mem")"
    echo "OIDC session / password session (authenticated, memory): $(ratio "$(med "$RES" 9 2)" "$mem")"
  fi
  if phase https; then
    echo
    echo "2. HTTPS keep-alive (TLS 1.3, ECDSA P-256 certificate): wrk -t$THREADS -c$CONNS -d$DURATION"
    wrk_table 11 12 15 "${HTTPS_SUBJECTS[@]}"
  fi
  if phase https || phase h2 || phase handshake; then
    echo "negotiated (openssl s_client, once per server):"
    sed 's/^/  /' "$TLS_INFO"
  fi
  if phase h2; then
    echo
    echo "3. HTTP/2 over TLS: h2load -c$CONNS -m$H2_STREAMS -t1 -D${DURATION%s} (h2 negotiated by ALPN); mean = h2load's mean request time"
    printf '%-28s %8s %8s %7s | %7s %7s | %7s %7s\n' "" "req/s" "mean ms" "cpu us" "nginx" "bare" "c/nginx" "c/bare"
    for i in "${!H2_NAMES[@]}"; do
      rps=$(med "$H2" "$i" 2); mean=$(med "$H2" "$i" 3); cpu=$(med "$H2" "$i" 4)
      printf '%-28s %8.0f %8.3f %7.2f | %7s %7s | %7s %7s\n' "${H2_NAMES[$i]}" "$rps" "$mean" "$cpu" \
        "$(ratio "$rps" "$(med "$H2" 0 2)")" "$(ratio "$rps" "$(med "$H2" 1 2)")" \
        "$(ratio "$cpu" "$(med "$H2" 0 4)")" "$(ratio "$cpu" "$(med "$H2" 1 4)")"
    done
  fi
  if phase handshake; then
    echo
    echo "4. new TLS connections: openssl s_time -new / -reuse -time $HS_SECONDS (one connection at a time, TLS 1.3, one proxied GET each)"
    printf '%-28s %9s %9s %9s %9s %9s\n' "" "full/s" "cpu us" "resumed/s" "cpu us" "resumed"
    for i in "${!HS_NAMES[@]}"; do
      printf '%-28s %9.0f %9.1f %9.0f %9.1f %8.1f%%\n' "${HS_NAMES[$i]}" \
        "$(med "$HS" "$i-new" 2)" "$(med "$HS" "$i-new" 3)" "$(med "$HS" "$i-reuse" 2)" "$(med "$HS" "$i-reuse" 3)" \
        "$(awk -v v="$(med "$HS" "$i-reuse" 4)" 'BEGIN {print v * 100}')"
    done
    echo "cpu us: the server's CPU per connection (handshake + one request); resumed: share of -reuse connections the server resumed"
    echo "resumption check (openssl s_client -sess_out / -sess_in):"
    sed 's/^/  /' "$RESUME"
  fi
  if phase idle; then
    echo
    echo "5. $IDLE_CONNS idle keep-alive connections (plain HTTP; each sent one request and read its answer)"
    printf '%-28s %10s %10s %8s %11s %11s\n' "" "RSS before" "RSS held" "held" "added MiB" "KiB/conn"
    while read -r i before during held afterwards; do
      printf '%-28s %7.1f MiB %6.1f MiB %8d %11.1f %11.2f\n' "${IDLE_NAMES[$i]}" "$(awk -v k="$before" 'BEGIN {print k/1024}')" \
        "$(awk -v k="$during" 'BEGIN {print k/1024}')" "$held" "$(awk -v a="$before" -v b="$during" 'BEGIN {print (b-a)/1024}')" \
        "$(awk -v a="$before" -v b="$during" -v n="$held" 'BEGIN {print (n > 0 ? (b-a)/n : 0)}')"
    done < "$IDLE"
    echo "held: ESTABLISHED connections on the server's port when RSS was read (minus those there before); RSS: VmRSS summed"
    echo "over the server's processes; 16 KiB rbuf: BARE_L4_READ_BUFFER=16384 (pingora's per-connection read buffer, default 64 KiB)"
  fi
  if phase fixed; then
    echo
    echo "6. fixed rate: oha -q $RATE -c $CONNS -z $RATE_DURATION --latency-correction, medians over $ROUNDS rounds"
    printf '%-28s %10s %10s %16s %16s\n' "" "p50 ms" "p99 ms" "p99 - nginx ms" "p99 - bare ms"
    nginx99=$(med "$LAT" 1 3)
    bare99=$(med "$LAT" 5 3)
    for i in "${FIXED[@]}"; do
      p50=$(med "$LAT" "$i" 2); p99=$(med "$LAT" "$i" 3)
      printf '%-28s %10.3f %10.3f %+16.3f %+16.3f\n' "${NAMES[$i]}" "$p50" "$p99" \
        "$(awk -v a="$p99" -v b="$nginx99" 'BEGIN {print a-b}')" "$(awk -v a="$p99" -v b="$bare99" 'BEGIN {print a-b}')"
    done
  fi
} | tee "$OUT"
