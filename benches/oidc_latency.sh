#!/usr/bin/env bash
# Login latency through a real OpenID Provider: start -> provider pages -> callback ->
# first proxied request, N sign-ins one at a time, medians per phase (benches/oidc_login.py).
#
#   bash benches/oidc_latency.sh            # N=50
#
# The gateway (release build, 1 worker thread), node oidc-provider over HTTPS and the echo
# upstream all run on this machine; the provider's own page time is reported apart from
# the gateway's. Wall-clock figures on a shared 2-core VM: quote medians from one run.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-50}
OUT=${OUT:-target/oidc-latency.txt}
source benches/common.sh
source benches/oidc.sh
install_missing cmake=cmake curl=curl python3=python3 openssl=openssl
cargo build --release -q --bin portcullis
BIN=$PWD/target/release/portcullis
WORK=$(mktemp -d)
PIDS=()
trap bench_cleanup EXIT

UP=$(free_port); GW=$(free_port); ADM=$(free_port)
"$BIN" echo --listen "127.0.0.1:$UP" >/dev/null 2>&1 &
PIDS+=($!)
bench_users "$WORK" "$BIN" unused-password
start_oidc_provider "$WORK" "$GW"
{ bench_gateway_toml "$GW" "$ADM" "$UP" 1; oidc_section; } > "$WORK/gateway.toml"
RUST_LOG=warn "$BIN" run -c "$WORK/gateway.toml" 2>"$WORK/gateway.log" &
PIDS+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$ADM/healthz" && break; sleep 0.1; done
{
  echo "portcullis OIDC login latency — $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD)"
  python3 benches/oidc_login.py latency "http://127.0.0.1:$GW" bench "$OIDC_CA" "$N"
} | tee "$OUT"
