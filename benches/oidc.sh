# shellcheck shell=bash
# Sourced by benchmarks that need a real OpenID Provider (node oidc-provider from
# tests/oidc-provider, over HTTPS on loopback with a self-signed certificate).
#
# start_oidc_provider WORK GATEWAY_PORT [ACCESS_TTL]: sets OIDC_ISSUER, OIDC_CA; the
# provider's client is "gw-bench" with secret file $WORK/bench.secret, redirecting to
# http://127.0.0.1:GATEWAY_PORT/.auth/oidc/callback; OIDC_EXTRA_CLIENTS, when set, is
# appended to the provider's client list (",{...}" JSON objects). Appends its pid to PIDS.
# oidc_section: the [[oidc]] section for gateway.toml.
# make_test_ca WORK: $WORK/ca.crt + ca.key (ECDSA P-256), once per WORK.
# issue_leaf WORK NAME: $WORK/NAME.crt + NAME.key, a P-256 server certificate for
# 127.0.0.1 signed by that CA.

make_test_ca() {
  [ -f "$1/ca.crt" ] && return 0
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=portcullis bench CA" -keyout "$1/ca.key" -out "$1/ca.crt" 2>/dev/null
}

issue_leaf() {
  local work=$1 name=$2
  make_test_ca "$work"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
    -keyout "$work/$name.key" -out "$work/$name.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$work/$name.ext"
  openssl x509 -req -in "$work/$name.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
    -CAcreateserial -days 2 -extfile "$work/$name.ext" -out "$work/$name.crt" 2>/dev/null
}

start_oidc_provider() {
  local work=$1 gwport=$2 ttl=${3:-3600} port
  command -v node >/dev/null || install_missing node=nodejs npm=npm
  if [ ! -d tests/oidc-provider/node_modules/oidc-provider ]; then
    (cd tests/oidc-provider && npm ci --no-audit --no-fund --loglevel=error)
  fi
  if ! python3 -c 'import requests' 2>/dev/null; then
    # Debian's package first (its pip refuses system-wide installs, PEP 668), pip otherwise.
    install_missing /usr/lib/python3/dist-packages/requests/__init__.py=python3-requests
    python3 -c 'import requests' 2>/dev/null || python3 -m pip install --quiet requests
  fi
  # A test CA and a leaf for 127.0.0.1 signed by it: the gateway (ca_file) and the
  # stand-in browser both trust the CA.
  make_test_ca "$work"
  issue_leaf "$work" idp
  port=$(free_port)
  printf 'secret-of-bench-0123456789\n' > "$work/bench.secret"
  node tests/oidc-provider/provider.mjs "$(printf '{"port":%s,"cert":"%s","key":"%s","access_ttl":%s,"clients":[{"client_id":"gw-bench","client_secret":"secret-of-bench-0123456789","token_endpoint_auth_method":"client_secret_basic","redirect_uris":["http://127.0.0.1:%s/.auth/oidc/callback"],"grant_types":["authorization_code","refresh_token"]}%s]}' \
    "$port" "$work/idp.crt" "$work/idp.key" "$ttl" "$gwport" "${OIDC_EXTRA_CLIENTS:-}")" >"$work/idp.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
  OIDC_ISSUER="https://127.0.0.1:$port"
  OIDC_CA="$work/ca.crt"
}

oidc_section() {
  printf '[[oidc]]\nname = "bench"\nissuer = "%s"\nclient_id = "gw-bench"\nclient_secret_file = "bench.secret"\nca_file = "%s"\ntimeout = "30s"\nscopes = ["openid", "email", "profile", "offline_access"]\n' \
    "$OIDC_ISSUER" "$OIDC_CA"
}
