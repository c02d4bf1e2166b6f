#!/usr/bin/env bash
# Builds the operator console: its locked npm packages, type-checked and bundled
# to ui/dist, which `ota serve` embeds (release) or reads (debug) at /ui.
set -euo pipefail
cd "$(dirname "$0")/../ui"
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
