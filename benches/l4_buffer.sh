#!/usr/bin/env bash
# What pingora's per-connection read buffer (ListenerConfig::l4_buffer, 64 KiB by default)
# costs: the bare pingora proxy (benches/bare_pingora.rs) with the default and with
# smaller read buffers (BARE_L4_READ_BUFFER), side by side: throughput and CPU per request
# under wrk (interleaved rounds, medians), then resident memory per idle keep-alive
# connection (benches/idle_conns.py).
#
#   bash benches/l4_buffer.sh        # SIZES="default 16384 4096" ROUNDS=3 DURATION=5s IDLE_CONNS=5000
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"default 16384 4096"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-32}
IDLE_CONNS=${IDLE_CONNS:-5000}
source benches/common.sh
install_missing wrk=wrk nginx=nginx cmake=cmake python3=python3
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release -q --example bare_pingora
BARE=target/release/examples/bare_pingora
ulimit -n "$(ulimit -Hn)"
WORK=$(mktemp -d)
PIDS=()
trap bench_cleanup EXIT

UP=$(free_port)
cat > "$WORK/upstream.conf" <<NGINX
daemon off;
worker_processes 1;
pid $WORK/upstream.pid;
error_log $WORK/upstream.err error;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK; proxy_temp_path $WORK; fastcgi_temp_path $WORK;
  uwsgi_temp_path $WORK; scgi_temp_path $WORK;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { return 200 'hello from upstream\n'; } }
}
NGINX
"$NGINX" -c "$WORK/upstream.conf" -p "$WORK" &
PIDS+=($!)

read -ra sizes <<< "$SIZES"
declare -A PORT PID
for s in "${sizes[@]}"; do
  PORT[$s]=$(free_port)
  if [ "$s" = default ]; then
    RUST_LOG=warn "$BARE" "127.0.0.1:${PORT[$s]}" "127.0.0.1:$UP" 1 2>/dev/null &
  else
    BARE_L4_READ_BUFFER=$s RUST_LOG=warn "$BARE" "127.0.0.1:${PORT[$s]}" "127.0.0.1:$UP" 1 2>/dev/null &
  fi
  PIDS+=($!)
  PID[$s]=$!
done
for s in "${sizes[@]}"; do
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:${PORT[$s]}/" && break; sleep 0.1; done
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORT[$s]}/")" = 200 ] || { echo "$s: no 200" >&2; exit 1; }
done

cpu_ns() { local t=0 run f; for f in /proc/"$1"/task/*/schedstat; do read -r run _ < "$f" && t=$((t + run)); done; echo "$t"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' /proc/"$1"/status; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

RES="$WORK/res"; : > "$RES"
for _ in $(seq 1 "$ROUNDS"); do
  for s in "${sizes[@]}"; do
    a=$(cpu_ns "${PID[$s]}")
    out=$(wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:${PORT[$s]}/")
    b=$(cpu_ns "${PID[$s]}")
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    echo "$s $rps $(awk -v a="$a" -v b="$b" -v n="$n" 'BEGIN {printf "%.2f", (b - a) / 1000 / n}')" | tee -a "$RES" >&2
  done
done
IDLE="$WORK/idle"; : > "$IDLE"
for s in "${sizes[@]}"; do
  before=$(rss_kib "${PID[$s]}")
  rm -f "$WORK/hold"; mkfifo "$WORK/hold"
  python3 benches/idle_conns.py "${PORT[$s]}" "$IDLE_CONNS" / < "$WORK/hold" > "$WORK/idle.out" 2>&1 &
  ipid=$!
  exec 7>"$WORK/hold"
  for _ in $(seq 1 1200); do grep -q '^held' "$WORK/idle.out" && break; kill -0 "$ipid" 2>/dev/null || break; sleep 0.1; done
  grep -q '^held' "$WORK/idle.out" || { echo "$s: idle client failed" >&2; cat "$WORK/idle.out" >&2; exit 1; }
  sleep 2
  held=$(ss -Htn state established "( sport = :${PORT[$s]} )" | wc -l)
  during=$(rss_kib "${PID[$s]}")
  exec 7>&-
  wait "$ipid" || true
  echo "$s $before $during $held" >> "$IDLE"
done
{
  echo "pingora L4 read buffer — $(date -u +%Y-%m-%dT%H:%M:%SZ); bare pingora, 1 thread; wrk -t1 -c$CONNS -d$DURATION, $ROUNDS rounds, medians; $IDLE_CONNS idle connections"
  printf '%-10s %9s %8s %11s %9s\n' "read buf" "req/s" "cpu us" "idle held" "KiB/conn"
  for s in "${sizes[@]}"; do
    read -r _ before during held < <(awk -v s="$s" '$1==s' "$IDLE")
    printf '%-10s %9.0f %8.2f %11d %9.2f\n' "$s" "$(awk -v s="$s" '$1==s {print $2}' "$RES" | median)" \
      "$(awk -v s="$s" '$1==s {print $3}' "$RES" | median)" "$held" \
      "$(awk -v a="$before" -v b="$during" -v n="$held" 'BEGIN {print (n > 0 ? (b - a) / n : 0)}')"
  done
}
