#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432, user postgres, trust) and NATS with
# JetStream (127.0.0.1:4222) are running. As root it installs the Debian
# packages when they are missing and starts them; otherwise it says what to do.
set -euo pipefail

log() { echo "[services] $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
is_root() { [ "$(id -u)" = 0 ]; }

apt_install() {
  if ! is_root; then
    log "missing package(s) $*; run as root or: sudo apt-get install -y $*"; exit 1
  fi
  if [ -z "${APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq; APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_port() {
  for _ in $(seq 1 100); do port_open "$1" && return 0; sleep 0.1; done
  log "nothing answers on 127.0.0.1:$1"; return 1
}

ensure_postgres() {
  if port_open 5432 && psql_ok; then return 0; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing postgresql"; apt_install postgresql postgresql-client
  fi
  local version; version=$(ls /etc/postgresql | sort -V | tail -n 1)
  if ! port_open 5432; then
    log "starting PostgreSQL $version"
    if is_root; then pg_ctlcluster --skip-systemctl-redirect "$version" main start
    else pg_ctlcluster "$version" main start; fi
    wait_port 5432
  fi
  if ! psql_ok; then
    # A fresh Debian cluster asks for passwords on TCP; the tests use trust on loopback.
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    if is_root && [ -w "$hba" ] && ! grep -q '^# ota: trust loopback' "$hba"; then
      log "allowing trust authentication for postgres on 127.0.0.1 ($hba)"
      sed -i '1i # ota: trust loopback\nhost all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
      pg_ctlcluster --skip-systemctl-redirect "$version" main reload
      sleep 0.5
    fi
    psql_ok || { log "cannot connect as postgres@127.0.0.1 without a password"; exit 1; }
  fi
}

psql_ok() {
  if have psql; then psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1
  else port_open 5432; fi
}

ensure_nats() {
  if port_open 4222; then return 0; fi
  if ! [ -x /usr/sbin/nats-server ] && ! have nats-server; then
    log "installing nats-server"; apt_install nats-server
  fi
  local bin; bin=$(command -v nats-server || echo /usr/sbin/nats-server)
  local dir=/var/lib/nats-server logfile=/var/log/nats-server.log
  if ! is_root; then dir="${TMPDIR:-/tmp}/ota-nats"; logfile="$dir.log"; fi
  mkdir -p "$dir"
  log "starting nats-server with JetStream"
  if have start-stop-daemon; then
    start-stop-daemon --start --oknodo --background --exec "$bin" -- -a 127.0.0.1 -p 4222 -js -sd "$dir" -l "$logfile"
  else
    nohup "$bin" -a 127.0.0.1 -p 4222 -js -sd "$dir" -l "$logfile" >/dev/null 2>&1 &
  fi
  wait_port 4222
}

# What only the tests need: SWUpdate (a real hawkBit DDI client) with the tools to
# build a signed .swu (tests/e2e/swupdate.rs), and an S3-compatible server on
# loopback, moto (tests/s3), and promtool to check the metrics exposition.
ensure_test_clients() {
  local missing=()
  { have swupdate && have swupdate-ipc; } || missing+=(swupdate)
  have cpio || missing+=(cpio)
  have openssl || missing+=(openssl)
  have promtool || missing+=(prometheus)   # promtool checks the /metrics exposition
  have chromium || missing+=(chromium)     # the console's browser tests: playwright-core drives chromium,
  have firefox-esr || missing+=(firefox-esr)   # and puppeteer-core firefox-esr (WebDriver BiDi)
  have pip3 || have pip || missing+=(python3-pip)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"; apt_install "${missing[@]}"
  fi
  # PyPI tools the tests drive: an S3-compatible server, the OpenAPI 3.1 validator and
  # schemathesis (property-based requests generated from the API's own document).
  pip_tool moto_server "moto[server]>=5,<6"
  pip_tool openapi-spec-validator "openapi-spec-validator>=0.7,<1"
  pip_tool schemathesis "schemathesis>=4.32,<5"
}

# Installs a PyPI package when its command is missing.
pip_tool() {
  local command=$1 package=$2
  have "$command" && return 0
  log "installing $package (PyPI)"
  local pip; pip=$(command -v pip3 || command -v pip)
  "$pip" install -q "$package" || "$pip" install -q --break-system-packages "$package"
  hash -r
  have "$command" || { log "$command is not on PATH after installing $package"; exit 1; }
}

# Node.js and npm build the console (ui/) and run its browser test.
ensure_node() {
  { have node && have npm; } || { log "installing nodejs and npm"; apt_install nodejs npm; }
}

# The operator console: its locked npm packages, type-checked and bundled to ui/dist,
# which `ota serve` embeds (release) or reads (debug) and serves at /ui.
build_console() {
  ensure_node
  log "building the console (ui/)"
  scripts/ui.sh
}

ensure_toolchain() {
  if ! have cargo; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  have cargo || { log "cargo is missing: install Rust (https://rustup.rs) first"; exit 1; }
  have cc || apt_install gcc libc6-dev
}

ensure_toolchain
ensure_postgres
ensure_nats
log "PostgreSQL and NATS are up"
