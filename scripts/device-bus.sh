#!/usr/bin/env bash
# The device bus: a nats-server in which devices and the server share nothing
# (docs/devices.md#the-device-bus). Keys, certificates and the configuration
# live in $OTA_BUS_DIR (data/bus); secrets are readable by their owner only.
#
#   scripts/device-bus.sh              make what is missing, write nats.conf, run nats-server
#   scripts/device-bus.sh enrol ID...  give devices keys; a running nats-server reloads
#
# The server then connects with NATS_URL=nats://$OTA_BUS_LISTEN,
# NATS_NKEY_SEED=$(cat $OTA_BUS_DIR/keys/server.nk), NATS_CA_FILE=$OTA_BUS_DIR/tls/ca.pem.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
OTA=${OTA:-./target/release/ota}
[ -x "$OTA" ] || cargo build --release --locked -p ota
dir=${OTA_BUS_DIR:-data/bus}
listen=${OTA_BUS_LISTEN:-127.0.0.1:4223}
mkdir -p "$dir/keys/devices" "$dir/js" "$dir/tls"
nats_server=$(command -v nats-server || echo /usr/sbin/nats-server)
if ! [ -x "$nats_server" ]; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq nats-server >/dev/null; else
    echo "nats-server is missing: apt-get install nats-server" >&2; exit 1; fi
fi
command -v openssl >/dev/null || { echo "openssl is missing: apt-get install openssl" >&2; exit 1; }
chmod 700 "$dir/keys" "$dir/keys/devices"

# A member's key: its seed in a 0600 file, its public key on a line of $list.
member() {
  local list=$1 name=$2 seed=$3
  [ -f "$seed" ] && return
  echo "$name $("$OTA" bus key "$seed")" >> "$list"
}

certificates() {
  local tls=$dir/tls
  [ -f "$tls/server.pem" ] && return
  (
    umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj /CN=ota-device-bus-ca -keyout "$tls/ca-key.pem" -out "$tls/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj /CN=localhost -keyout "$tls/server-key.pem" -out "$tls/server.csr" 2>/dev/null
    openssl x509 -req -days 825 -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca-key.pem" \
      -CAcreateserial -out "$tls/server.pem" 2>/dev/null -extfile <(printf '%s\n' \
        "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
        "keyUsage=digitalSignature" "extendedKeyUsage=serverAuth")
  )
  chmod 644 "$tls/ca.pem" "$tls/server.pem"
}

configure() {
  touch "$dir/servers" "$dir/devices" "$dir/observers"
  member "$dir/servers" ota "$dir/keys/server.nk"
  member "$dir/observers" observer "$dir/keys/observer.nk"
  certificates
  "$OTA" bus config --listen "$listen" --jetstream-dir "$dir/js" \
    --tls-cert "${OTA_BUS_TLS_CERT:-$dir/tls/server.pem}" --tls-key "${OTA_BUS_TLS_KEY:-$dir/tls/server-key.pem}" \
    --servers "$dir/servers" --devices "$dir/devices" --observers "$dir/observers" > "$dir/nats.conf.new"
  mv "$dir/nats.conf.new" "$dir/nats.conf"
}

case "${1:-start}" in
  enrol)
    shift
    for id in "$@"; do
      # The id names the seed file; others are enrolled with `ota bus key` by hand.
      [[ $id =~ ^[A-Za-z0-9_-]+$ ]] || { echo "device id $id: use A-Z a-z 0-9 _ - here" >&2; exit 2; }
      member "$dir/devices" "$id" "$dir/keys/devices/$id.nk"
      echo "$dir/keys/devices/$id.nk"
    done
    configure
    if [ -f "$dir/nats.pid" ] && kill -0 "$(cat "$dir/nats.pid")" 2>/dev/null; then
      "$nats_server" --signal "reload=$(cat "$dir/nats.pid")"
    fi
    ;;
  start)
    configure
    exec "$nats_server" -c "$dir/nats.conf" -P "$dir/nats.pid"
    ;;
  *)
    echo "usage: $0 [start | enrol ID...]" >&2
    exit 2
    ;;
esac
