#!/usr/bin/env bash
# The live demo: uploads a firmware image for the simulated fleet and rolls it out
# in waves, printing the campaign's progress until it ends.
set -euo pipefail
base=$1 token=$2
auth=(-H "Authorization: Bearer $token")
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

image=$(mktemp); trap 'rm -f "$image"' EXIT
head -c 262144 /dev/urandom > "$image"
version="2.$(date +%s)"
firmware=$(curl -fsS "${auth[@]}" \
  -F "metadata={\"name\":\"demo-os\",\"version\":\"$version\",\"device_model\":\"demo-gw\",\"release_notes\":\"demo\"};type=application/json" \
  -F "file=@$image;filename=demo-os-$version.swu" "$base/api/v1/firmware" | json 'd["id"]')
echo "[demo] uploaded firmware demo-os $version: $firmware"

# Give the fleet's registrations a moment to reach the inventory.
sleep 2
campaign=$(curl -fsS "${auth[@]}" -H 'content-type: application/json' -d "{
  \"name\": \"demo rollout $version\", \"firmware_id\": \"$firmware\",
  \"target\": {\"filter\": {\"device_model\": \"demo-gw\"}},
  \"rollout\": {\"waves\": [{\"percent\": 10}, {\"percent\": 50}, {\"percent\": 100}],
                \"success_threshold_percent\": 80, \"failure_threshold_percent\": 20, \"min_finished\": 3,
                \"max_per_minute\": 600, \"device_timeout_secs\": 120, \"max_retries\": 1}}" \
  "$base/api/v1/campaigns" | json 'd["id"]')
echo "[demo] created campaign $campaign"
curl -fsS "${auth[@]}" -X POST "$base/api/v1/campaigns/$campaign/start" \
  | json '"[demo] started: waves of " + str([w["size"] for w in d["waves"]]) + " devices"'
for _ in $(seq 1 120); do
  line=$(curl -fsS "${auth[@]}" "$base/api/v1/campaigns/$campaign" | json '
d["status"] + " | " + "  ".join("wave %d: %d/%d ok, %d failed, %d in flight" % (w["wave"], w["succeeded"], w["size"], w["failed"] + w["timed_out"], w["in_progress"]) for w in d["waves"])')
  echo "[demo] $line"
  case "$line" in completed*|aborted*|cancelled*|paused*) break ;; esac
  sleep 2
done
