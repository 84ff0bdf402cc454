#!/usr/bin/env bash
# Run the demo gateway on a fresh Debian machine: installs cmake (needed to build
# pingora's zlib-ng) if missing, then builds and starts `portcullis demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends cmake >/dev/null
fi
exec cargo run --release -- demo "$@"
