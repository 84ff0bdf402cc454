#!/usr/bin/env bash
# A/B of two portcullis builds on a response larger than pingora's default 1 460-byte
# client write buffer (the public route, a BODY_LEN-byte upstream body, default 4 000):
# requests/s and CPU per request under wrk (3 interleaved rounds), then the system calls
# each build makes for 2 000 requests (strace -c). Used for the 8 KiB write buffer
# (src/server.rs): build the commit before and after it, save both binaries, then
#
#   bash benches/write_buffer.sh OLD_BINARY NEW_BINARY
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY" >&2; exit 2; }
A=$(realpath "$1"); B=$(realpath "$2")
source benches/common.sh
export PATH="$HOME/.cargo/bin:$PATH"
WORK=$(mktemp -d); PIDS=(); trap bench_cleanup EXIT
UP=$(free_port)
BODY=$(head -c "${BODY_LEN:-4000}" /dev/zero | tr '\0' 'x')
cat > "$WORK"/up.conf <<NG
daemon off; worker_processes 1; pid $WORK/up.pid; error_log $WORK/up.err error;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $WORK; proxy_temp_path $WORK; fastcgi_temp_path $WORK; uwsgi_temp_path $WORK; scgi_temp_path $WORK;
 keepalive_requests 1000000; server { listen 127.0.0.1:$UP; location / { return 200 '$BODY'; } } }
NG
"$(command -v nginx || echo /usr/sbin/nginx)" -c "$WORK"/up.conf -p "$WORK" & PIDS+=($!)
install_missing wrk=wrk nginx=nginx strace=strace
ensure_oha
bench_users "$WORK" "$A" bench-password
cpu() { local t=0 r; for f in /proc/"$1"/task/*/schedstat; do read -r r _ < "$f"; t=$((t+r)); done; echo $t; }
declare -A PORT PID BIN=([old]="$A" [new]="$B")
for w in old new; do
  PORT[$w]=$(free_port); adm=$(free_port)
  bench_gateway_toml "${PORT[$w]}" "$adm" "$UP" 1 > "$WORK"/g$w.toml
  RUST_LOG=warn "${BIN[$w]}" run -c "$WORK"/g$w.toml 2>"$WORK"/log$w &
  PID[$w]=$!; PIDS+=($!)
done
sleep 2
for w in old new; do curl -s -o /dev/null -w "%{http_code} %{size_download}\n" http://127.0.0.1:"${PORT[$w]}"/public/x; done
for r in 1 2 3; do for w in old new; do
  c0=$(cpu "${PID[$w]}")
  out=$(wrk -t1 -c32 -d5s http://127.0.0.1:"${PORT[$w]}"/public/x)
  c1=$(cpu "${PID[$w]}")
  n=$(echo "$out" | awk '/requests in/ {print $1}'); rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  echo "round $r $w build: $rps req/s, $(awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN{printf "%.2f", (b-a)/1000/n}') cpu us/req"
done; done
for w in old new; do
  strace -f -c -o "$WORK"/st$w -p "${PID[$w]}" & sp=$!
  sleep 1
  oha -n 2000 -c 8 --no-tui http://127.0.0.1:"${PORT[$w]}"/public/x >/dev/null
  kill -INT $sp; wait $sp || true
  echo "== $w build (2000 requests, body ${BODY_LEN:-4000} B)"
  grep -E " (sendto|writev|write|recvfrom)$" "$WORK"/st$w
done
