#!/usr/bin/env bash
# The whole test suite: services, formatting, lints, unit and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
