#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: a measure of CPU work
# that does not move with the machine's noise (throughput on a shared 2-core VM swings by
# 10-40% between rounds; instruction counts repeat to within 0.5%).
#
#   bash benches/instructions.sh          # N_LOW=500 N_HIGH=2500 requests per subject
#
# Each subject runs under callgrind twice, once serving N_LOW and once N_HIGH requests
# (oha -c 8, keep-alive, against the same 1-worker nginx upstream as benches/load.sh);
# (total_high - total_low) / (N_HIGH - N_LOW) cancels start-up, login and warm-up, and
# leaves the user-space instructions one request costs (all threads, libc included;
# the kernel's share is not counted — see docs/performance.md for that part).
# Subjects: nginx reverse proxy, bare pingora 0.9 proxy, portcullis public route,
# portcullis authenticated route with sessions in memory, in Redis (near-cache serving)
# and in memcached (one round trip per request), and on a session from a real OpenID
# Provider (node oidc-provider, signed in through it, provider tokens kept for renewal);
# the Redis and memcached servers and the provider run
# outside valgrind and are not counted. Results also go to target/instructions.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

N_LOW=${N_LOW:-500}
N_HIGH=${N_HIGH:-2500}
OUT=${OUT:-target/instructions.txt}

source benches/common.sh
source benches/oidc.sh
install_missing valgrind=valgrind nginx=nginx cmake=cmake curl=curl python3=python3 redis-server=redis-server memcached=memcached
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
ensure_oha

# The same build as benches/load.sh. PORTCULLIS_BIN=path counts another build of
# portcullis instead (an A/B against a saved binary; bare pingora is still built here).
cargo build --release -q --bin portcullis --example bare_pingora
BIN=${PORTCULLIS_BIN:-$PWD/target/release/portcullis}
BARE=$PWD/target/release/examples/bare_pingora

WORK=$(mktemp -d)
PIDS=()
trap bench_cleanup EXIT

wait_url() { for _ in $(seq 1 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "$1 never answered" >&2; exit 1; }

nginx_conf() { # file, port line
  cat > "$1" <<NGINX
daemon off;
worker_processes 1;
pid $1.pid;
error_log $1.err error;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK; proxy_temp_path $WORK; fastcgi_temp_path $WORK;
  uwsgi_temp_path $WORK; scgi_temp_path $WORK;
  keepalive_requests 1000000;
  $2
}
NGINX
}

UP=$(free_port)
nginx_conf "$WORK/upstream.conf" "server { listen 127.0.0.1:$UP; location / { return 200 'hello from upstream\n'; } }"
"$NGINX" -c "$WORK/upstream.conf" -p "$WORK" &
PIDS+=($!)
wait_url "http://127.0.0.1:$UP/"

PW=bench-password
bench_users "$WORK" "$BIN" "$PW"

# The shared stores, outside valgrind.
RP=$(free_port); MP=$(free_port)
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
memcached -l 127.0.0.1 -p "$MP" -U 0 -m 64 -u nobody >"$WORK/memcached.log" 2>&1 &
PIDS+=($!)
for p in "$RP" "$MP"; do
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$p") 2>/dev/null && break; sleep 0.1; done
done

# run_subject NAME N: start the subject under callgrind, send N requests, print its
# instruction total. Each subject writes its own file; nginx's worker is the child.
run_subject() {
  local name=$1 n=$2 port adm url pid target cookie=() total
  port=$(free_port); adm=$(free_port)
  rm -f "$WORK"/cg.*
  case $name in
    nginx)
      nginx_conf "$WORK/proxy.conf" "upstream app { server 127.0.0.1:$UP; keepalive 64; }
        server { listen 127.0.0.1:$port; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
      valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$WORK/cg.%p" \
        "$NGINX" -c "$WORK/proxy.conf" -p "$WORK" 2>"$WORK/vg.log" &
      url="http://127.0.0.1:$port/" ;;
    bare)
      RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p" \
        "$BARE" "127.0.0.1:$port" "127.0.0.1:$UP" 1 2>"$WORK/vg.log" &
      url="http://127.0.0.1:$port/" ;;
    public|authenticated|redis|memcached|oidc)
      bench_gateway_toml "$port" "$adm" "$UP" 1 > "$WORK/gateway.toml"
      case $name in
        oidc)
          # A real provider (outside valgrind) for this gateway's port; the session comes
          # from signing in through it, with the default refresh = true (tokens kept).
          start_oidc_provider "$WORK" "$port"
          oidc_section >> "$WORK/gateway.toml" ;;
        redis)
          sed -i -e 's/^secure = false/secure = false\nstore = "redis"/' "$WORK/gateway.toml"
          printf '[redis]\nurl = "redis://127.0.0.1:%s/0"\n' "$RP" >> "$WORK/gateway.toml" ;;
        memcached)
          sed -i -e 's/^secure = false/secure = false\nstore = "memcached"/' "$WORK/gateway.toml"
          printf '[memcached]\nservers = ["127.0.0.1:%s"]\n' "$MP" >> "$WORK/gateway.toml" ;;
      esac
      RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p" \
        "$BIN" run -c "$WORK/gateway.toml" 2>"$WORK/vg.log" &
      wait_url "http://127.0.0.1:$adm/healthz"
      url="http://127.0.0.1:$port/public/x"
      if [ "$name" = oidc ]; then
        url="http://127.0.0.1:$port/x"
        cookie=(-H "Cookie: $(python3 benches/oidc_login.py cookie "http://127.0.0.1:$port" bench "$OIDC_CA")")
      elif [ "$name" != public ]; then
        url="http://127.0.0.1:$port/x"
        cookie=(-H "Cookie: $(login_cookie "$port" "$PW")")
      fi ;;
  esac
  pid=$!
  wait_url "$url"
  local codes
  codes=$(oha -n "$n" -c 8 --no-tui --output-format json "${cookie[@]}" "$url" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["statusCodeDistribution"])')
  [ "$codes" = "{'200': $n}" ] || { echo "$name: expected $n x 200, got $codes" >&2; exit 1; }
  if [ "$name" = nginx ]; then
    target=$(pgrep -P "$pid" | head -1)
    kill -QUIT "$pid"
  else
    target=$pid
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill "$pid"
  fi
  wait "$pid" 2>/dev/null || true
  # The provider started for an OIDC subject lives in this subshell only.
  [ "$name" != oidc ] || kill "${PIDS[-1]}" 2>/dev/null || true
  # nginx's worker writes its file at exit; a pingora process's totals are in the dump
  # made on request ('.1'; the file written at exit holds only what came after it).
  local f="$WORK/cg.$target"
  [ "$name" = nginx ] || f="$WORK/cg.$target.1"
  total=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}')
  echo "$total"
}

NAMES=(nginx bare public authenticated redis memcached oidc)
LABELS=("nginx proxy" "bare pingora 0.9" "portcullis public route" "portcullis authenticated" "portcullis auth (redis)" "portcullis auth (memcached)" "portcullis auth (OIDC session)")
declare -A PER
for i in "${!NAMES[@]}"; do
  lo=$(run_subject "${NAMES[$i]}" "$N_LOW")
  hi=$(run_subject "${NAMES[$i]}" "$N_HIGH")
  PER[$i]=$(( (hi - lo) / (N_HIGH - N_LOW) ))
  printf '  %-32s %12s -> %12s instructions (%d -> %d requests)\n' "${LABELS[$i]}" "$lo" "$hi" "$N_LOW" "$N_HIGH" >&2
done
{
  echo "portcullis instruction count — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "callgrind, user space, all threads; (total at $N_HIGH requests - total at $N_LOW) / $((N_HIGH - N_LOW)); oha -c 8 keep-alive"
  printf '%-32s %16s %10s %10s\n' "" "instr/request" "vs nginx" "vs bare"
  for i in "${!NAMES[@]}"; do
    printf '%-32s %16d %9.2fx %9.2fx\n' "${LABELS[$i]}" "${PER[$i]}" \
      "$(awk -v a="${PER[$i]}" -v b="${PER[0]}" 'BEGIN {print a/b}')" \
      "$(awk -v a="${PER[$i]}" -v b="${PER[1]}" 'BEGIN {print a/b}')"
  done
} | tee "$OUT"
