#!/usr/bin/env bash
# Run the whole test suite on a fresh Debian machine: installs the build and test
# dependencies it lacks (cmake for pingora's zlib-ng, promtool, nginx, openssl,
# redis-server + redis-cli for the Redis store, memcached for the memcached store,
# libssl-dev + pkg-config for webauthn-rs (passkeys), and chromium for the real-browser
# login and passkey tests, node oidc-provider for the OpenID Connect tests), then
# `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v promtool >/dev/null || need+=(prometheus)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v openssl >/dev/null || need+=(openssl)
command -v chromium >/dev/null || need+=(chromium)
command -v python3 >/dev/null || need+=(python3)
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v memcached >/dev/null || [ -x /usr/bin/memcached ] || need+=(memcached)
# webauthn-rs (passkeys) links OpenSSL: its headers and pkg-config to find them.
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# PyJWT verifies the identity assertion in tests/assertion.rs and signs bearer tokens in
# tests/jwt.rs (an independent JWT stack beside the jsonwebtoken crate).
if ! python3 -c 'import jwt, cryptography' 2>/dev/null; then
  python3 -m pip install --quiet 'pyjwt[crypto]' 2>/dev/null \
    || { SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
         DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-jwt python3-cryptography >/dev/null; }
fi
# pyotp computes the TOTP codes of tests/mfa.rs: an implementation independent of totp-rs.
if ! python3 -c 'import pyotp' 2>/dev/null; then
  python3 -m pip install --quiet pyotp 2>/dev/null \
    || { SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
         DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-pyotp >/dev/null; }
fi
# The OpenID Provider of tests/oidc.rs: node oidc-provider, pinned by the committed lockfile.
if [ ! -d tests/oidc-provider/node_modules/oidc-provider ]; then
  command -v npm >/dev/null || { SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
  (cd tests/oidc-provider && npm ci --no-audit --no-fund --loglevel=error)
fi
exec cargo test --all-targets "$@"
