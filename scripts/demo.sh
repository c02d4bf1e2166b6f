#!/usr/bin/env bash
# Seeds a demo: uploads a firmware image and walks a campaign through its life.
set -euo pipefail
base=$1 token=$2
auth=(-H "Authorization: Bearer $token")
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

image=$(mktemp); trap 'rm -f "$image"' EXIT
head -c 262144 /dev/urandom > "$image"
version="1.$(date +%s)"
firmware=$(curl -fsS "${auth[@]}" \
  -F "metadata={\"name\":\"demo-os\",\"version\":\"$version\",\"device_model\":\"demo-gw\",\"release_notes\":\"demo\"};type=application/json" \
  -F "file=@$image;filename=demo-os-$version.swu" "$base/api/v1/firmware" | json '["id"]')
echo "[demo] uploaded firmware demo-os $version: $firmware"

devices=$(python3 -c 'import json; print(json.dumps(["demo-dev-%03d" % i for i in range(1, 51)]))')
campaign=$(curl -fsS "${auth[@]}" -H 'content-type: application/json' \
  -d "{\"name\":\"demo rollout $version\",\"firmware_id\":\"$firmware\",\"target\":{\"device_ids\":$devices}}" \
  "$base/api/v1/campaigns" | json '["id"]')
echo "[demo] created campaign $campaign for 50 devices"
for action in start pause resume; do
  status=$(curl -fsS "${auth[@]}" -X POST "$base/api/v1/campaigns/$campaign/$action" | json '["status"]')
  echo "[demo] $action -> $status"
done
