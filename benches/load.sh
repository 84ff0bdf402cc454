#!/usr/bin/env bash
# Load benchmark: portcullis beside nginx on this machine, same load generator, same
# connections, same number of workers, same upstream, interleaved rounds.
#
#   bash benches/load.sh            # defaults: 3 rounds x 5 s, wrk -t1 -c32, 1 worker each
#   ROUNDS=5 DURATION=10s CONNS=64 WORKERS=2 bash benches/load.sh
#
# Prints requests/s and p50/p99 latency (medians over rounds) for:
#   1. upstream direct            (the physical limit)
#   2. nginx reverse proxy        (keep-alive to the upstream, no sessions): the bar
#   3. portcullis, public route
#   4. portcullis, authenticated route with a valid session cookie
#   5. nginx auth_request -> portcullis /.auth/verify -> upstream
#   6. a bare pingora proxy (reference: what pingora itself costs)
#   7. portcullis, authenticated route, store = "redis" (a local redis-server; the
#      near-cache serves the session, Redis sees touches and heartbeats)
#   8. portcullis, authenticated route, store = "memcached" (a local memcached, no
#      near-cache: every request is one round trip to memcached)
#   9. Caddy (Debian package) forward_auth -> portcullis /.auth/verify -> upstream
# and the ratios to 2 and to 6. For every subject also the CPU time its own processes
# (every thread; for 5 and 9 the front proxy and portcullis together) spent per request,
# read from /proc/PID/task/*/schedstat around each wrk run: on two cores throughput also
# measures who takes the load generator's core, CPU per request does not.
# Results also go to target/load-bench.txt.
# Numbers are measurements, not assertions: nothing here passes or fails.
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

source benches/common.sh
install_missing wrk=wrk nginx=nginx cmake=cmake curl=curl python3=python3 redis-server=redis-server memcached=memcached caddy=caddy
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
ensure_oha

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

nginx_conf() { # name, body
  mkdir -p "$WORK/$1"
  cat > "$WORK/$1/nginx.conf" <<NGINX
daemon off;
worker_processes $WORKERS;
pid $WORK/$1/nginx.pid;
error_log $WORK/$1/error.log error;
events { worker_connections 4096; }
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
# The bar: nginx as a plain reverse proxy with upstream keep-alive.
nginx_conf proxy "upstream app { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$NGX; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
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
# Reference: a bare pingora proxy with nothing of ours in it.
RUST_LOG=warn "$BARE" "127.0.0.1:$BP" "127.0.0.1:$UP" "$WORKERS" 2>"$WORK/bare.log" &
PIDS+=($!)
PROC[bare]=$!
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
for p in $UP $NGX $NGXA $PC $ADM $BP $PCR $ADMR $PCM $ADMM $CADDY_PORT; do wait_port "$p"; done

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
# Sanity: each path answers 200 before it is measured.
for url in "http://127.0.0.1:$UP/" "http://127.0.0.1:$NGX/" "http://127.0.0.1:$PC/public/x"; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = 200 ] || { echo "$url did not answer 200" >&2; exit 1; }
done
for url in "http://127.0.0.1:$PC/x" "http://127.0.0.1:$NGXA/x" "http://127.0.0.1:$CADDY_PORT/x"; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $COOKIE" "$url")" = 200 ] || { echo "$url did not answer 200 with a session" >&2; exit 1; }
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = 401 ] || { echo "$url did not answer 401 without a session" >&2; exit 1; }
done

NAMES=("upstream direct" "nginx proxy" "portcullis public" "portcullis authenticated" "nginx auth_request+verify" "bare pingora (reference)" "portcullis auth (redis)" "portcullis auth (memcached)" "caddy forward_auth+verify")
URLS=("http://127.0.0.1:$UP/" "http://127.0.0.1:$NGX/" "http://127.0.0.1:$PC/public/x" "http://127.0.0.1:$PC/x" "http://127.0.0.1:$NGXA/x" "http://127.0.0.1:$BP/" "http://127.0.0.1:$PCR/x" "http://127.0.0.1:$PCM/x" "http://127.0.0.1:$CADDY_PORT/x")
HDRS=("" "" "" "Cookie: $COOKIE" "Cookie: $COOKIE" "" "Cookie: $COOKIE_R" "Cookie: $COOKIE_M" "Cookie: $COOKIE")
# The servers whose CPU each subject is charged with (the upstream's is the same for all).
SERVERS=("upstream" "proxy" "portcullis" "portcullis" "authreq portcullis" "bare" "portcullis-redis" "portcullis-memcached" "caddy portcullis")

# cpu_ns NAME...: CPU time in ns of these servers' processes, every thread, nginx's workers
# included (the scheduler's run time from schedstat: nanoseconds, not clock ticks).
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

RES="$WORK/results"; : > "$RES"
for r in $(seq 1 "$ROUNDS"); do
  for i in "${!NAMES[@]}"; do
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

# Latency at a fixed, moderate rate: nginx proxy, portcullis (public, authenticated on
# memory, Redis and memcached) and the bare pingora reference.
FIXED=(1 2 3 5 6 7)
LAT="$WORK/latency"; : > "$LAT"
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
{
  echo "portcullis load benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(uname -sr)"
  echo "wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS interleaved rounds, medians; $WORKERS nginx worker(s) / portcullis thread(s); upstream: 1-worker nginx static body"
  echo "cpu us/req: CPU time of the subject's own processes (all threads) per request; 5 and 9 include portcullis' verify"
  printf '%-28s %10s %8s %8s %10s %9s %9s %11s %11s\n' "" "req/s" "p50 ms" "p99 ms" "cpu us/req" "vs nginx" "vs bare" "cpu/nginx" "cpu/bare"
  base=$(awk '$1==1 {print $2}' "$RES" | median)
  bare=$(awk '$1==5 {print $2}' "$RES" | median)
  base_cpu=$(awk '$1==1 {print $5}' "$RES" | median)
  bare_cpu=$(awk '$1==5 {print $5}' "$RES" | median)
  for i in "${!NAMES[@]}"; do
    rps=$(awk -v i="$i" '$1==i {print $2}' "$RES" | median)
    p50=$(awk -v i="$i" '$1==i {print $3}' "$RES" | median)
    p99=$(awk -v i="$i" '$1==i {print $4}' "$RES" | median)
    cpu=$(awk -v i="$i" '$1==i {print $5}' "$RES" | median)
    printf '%-28s %10.0f %8.3f %8.3f %10.2f %9s %9s %11s %11s\n' "${NAMES[$i]}" "$rps" "$p50" "$p99" "$cpu" \
      "$(awk -v a="$rps" -v b="$base" 'BEGIN {printf "%.2fx", a/b}')" \
      "$(awk -v a="$rps" -v b="$bare" 'BEGIN {printf "%.2fx", a/b}')" \
      "$(awk -v a="$cpu" -v b="$base_cpu" 'BEGIN {printf "%.2fx", a/b}')" \
      "$(awk -v a="$cpu" -v b="$bare_cpu" 'BEGIN {printf "%.2fx", a/b}')"
  done
  mem=$(awk '$1==3 {print $2}' "$RES" | median)
  red=$(awk '$1==6 {print $2}' "$RES" | median)
  mc=$(awk '$1==7 {print $2}' "$RES" | median)
  echo "redis store / memory store (authenticated): $(awk -v a="$red" -v b="$mem" 'BEGIN {printf "%.2fx", a/b}')"
  echo "memcached store / memory store (authenticated): $(awk -v a="$mc" -v b="$mem" 'BEGIN {printf "%.2fx", a/b}')"
  echo
  echo "fixed rate: oha -q $RATE -c $CONNS -z $RATE_DURATION --latency-correction, medians over $ROUNDS rounds"
  printf '%-28s %10s %10s %16s\n' "" "p50 ms" "p99 ms" "p99 - nginx ms"
  nginx99=$(awk '$1==1 {print $3}' "$LAT" | median)
  for i in "${FIXED[@]}"; do
    p50=$(awk -v i="$i" '$1==i {print $2}' "$LAT" | median)
    p99=$(awk -v i="$i" '$1==i {print $3}' "$LAT" | median)
    printf '%-28s %10.3f %10.3f %+16.3f\n' "${NAMES[$i]}" "$p50" "$p99" "$(awk -v a="$p99" -v b="$nginx99" 'BEGIN {print a-b}')"
  done
} | tee "$OUT"
