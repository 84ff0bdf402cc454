# shellcheck shell=bash
# Shared by benches/load.sh and benches/instructions.sh (sourced, not run).

# install_missing CMD=PACKAGE...: apt-get install the packages whose command is missing.
# A CMD that starts with "/" is a file the package provides (e.g. an Apache module).
install_missing() {
  local need=() pair
  for pair in "$@"; do
    case ${pair%%=*} in
      /*) [ -e "${pair%%=*}" ] || need+=("${pair#*=}") ;;
      *) command -v "${pair%%=*}" >/dev/null || [ -x "/usr/sbin/${pair%%=*}" ] || need+=("${pair#*=}") ;;
    esac
  done
  if [ ${#need[@]} -gt 0 ]; then
    local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}

# oha measures latency at a fixed rate (wrk cannot) and counts requests exactly.
ensure_oha() {
  export PATH="$HOME/.cargo/bin:$PATH"
  command -v oha >/dev/null || { echo "installing oha (cargo install, a few minutes, once)" >&2; cargo install oha --locked -q; }
}

# Stop what a benchmark started (PIDS) and remove its scratch directory (WORK).
bench_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# bench_users DIR BIN PASSWORD: session keys and a users file with the one bench user.
bench_users() {
  "$2" gen-key > "$1/session.keys"
  local hash
  hash=$(echo "$3" | "$2" hash-password)
  printf '[[user]]\nname = "bench"\npassword = "%s"\nemail = "bench@example.com"\ngroups = ["bench"]\n' "$hash" > "$1/users.toml"
}

# bench_gateway_toml LISTEN_PORT ADMIN_PORT UPSTREAM_PORT THREADS: the gateway every
# benchmark measures — "/" authenticated, "/public" public, both to the one upstream.
bench_gateway_toml() {
  cat <<TOML
[listen]
http = ["127.0.0.1:$1"]
threads = $4
[admin]
listen = "127.0.0.1:$2"
[session]
keys_file = "session.keys"
secure = false
[auth]
users_file = "users.toml"
[[upstream]]
name = "app"
targets = ["127.0.0.1:$3"]
[[route]]
path = "/"
upstream = "app"
[[route]]
path = "/public"
upstream = "app"
access = "public"
TOML
}

# login_cookie PORT PASSWORD: log the bench user in, print "name=value" of the session cookie.
login_cookie() { login_cookie_at "http://127.0.0.1:$1" "$2"; }

# login_cookie_at BASE_URL PASSWORD [CURL_ARGS...]: the same against any origin, e.g.
# https://127.0.0.1:PORT with --cacert CA (the cookie is then __Host-session).
login_cookie_at() {
  local base=$1 pw=$2
  shift 2
  curl -s "$@" -o /dev/null -D - "$base/.auth/login" \
    --data-urlencode "username=bench" --data-urlencode "password=$pw" --data-urlencode "rd=/" \
    | tr -d '\r' | awk -F'[ ;]' 'tolower($1)=="set-cookie:" {print $2}'
}
