#!/usr/bin/env bash
# The main job: services, a release build, the server, and a live demo.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
build_console
cargo build --release --locked -p ota
OTA=./target/release/ota

mkdir -p data
# Secrets are readable by their owner only; one shorter than the server's
# minimum (32 bytes; earlier versions made a shorter gateway token) is replaced.
secret_file() {
  local file=$1 bytes=$2
  if [ ! -f "$file" ] || [ "$(wc -c < "$file")" -lt 32 ]; then
    (umask 077; head -c "$bytes" /dev/urandom | base64 | tr -d '\n/+=' > "$file")
  fi
  chmod 600 "$file"
}
if [ -z "${OTA_JWT_SECRET:-}" ]; then
  secret_file data/jwt-secret 48
  OTA_JWT_SECRET=$(cat data/jwt-secret)
fi
export OTA_JWT_SECRET
if [ -z "${OTA_DDI_GATEWAY_TOKEN:-}" ]; then
  secret_file data/gateway-token 36
  OTA_DDI_GATEWAY_TOKEN=$(cat data/gateway-token)
fi
export OTA_DDI_GATEWAY_TOKEN
# Demo devices poll every few seconds; real fleets use minutes (the default is 5).
export OTA_DDI_POLL_SECS="${OTA_DDI_POLL_SECS:-5}"
export OTA_LISTEN="${OTA_LISTEN:-127.0.0.1:8080}"

if [ -z "${OTA_AUDIT_SIGNING_KEY:-}" ]; then
  [ -s data/audit-key ] || (umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > data/audit-key)
  chmod 600 data/audit-key
  OTA_AUDIT_SIGNING_KEY=$(cat data/audit-key)
fi
export OTA_AUDIT_SIGNING_KEY
# Signed chain heads, each a new file; on a real host make the directory
# append-only (chattr +a) and copy it away (docs/audit.md).
export OTA_AUDIT_CHECKPOINT_URL="${OTA_AUDIT_CHECKPOINT_URL:-data/audit-checkpoints}"

# The owner migrates and grants the server's role; the server runs as that
# role, which can read and append events but never change them (docs/operations.md).
owner_url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ota}"
server_role="${OTA_SERVER_ROLE:-ota_server}"
server_url="${OTA_SERVER_DATABASE_URL:-$(sed -E "s#^(postgres(ql)?://)([^@/]*@)?#\1${server_role}@#" <<<"$owner_url")}"
DATABASE_URL="$owner_url" "$OTA" migrate --server-role "$server_role"
export DATABASE_URL="$server_url"
"$OTA" serve &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT INT TERM
base="http://$OTA_LISTEN"
for _ in $(seq 1 100); do curl -fsS "$base/health" >/dev/null 2>&1 && break; sleep 0.1; done

token=$("$OTA" token --role operator --subject demo --ttl 12h)
"$OTA" simulate --devices "${OTA_DEMO_DEVICES:-60}" --fail-percent "${OTA_DEMO_FAIL_PERCENT:-3}" &
fleet=$!
trap 'kill $fleet $server 2>/dev/null; wait $server 2>/dev/null' EXIT INT TERM
scripts/demo.sh "$base" "$token" || echo "the demo rollout failed; the server keeps running" >&2

cat <<INFO

  ota is running on $base  (Ctrl-C stops it)
  console:         $base/ui  (sign in with the operator token below; the demo campaign is live there)
  operator token:  export TOKEN=$token
  DDI devices:     server $base, tenant default, Authorization: GatewayToken $OTA_DDI_GATEWAY_TOKEN
  try:             curl -s -H "Authorization: Bearer \$TOKEN" $base/api/v1/campaigns | python3 -m json.tool
                   curl -s $base/health/detailed | python3 -m json.tool
INFO
wait $server
