#!/usr/bin/env bash
# The demo (main job), from a fresh clone: provisions the services (tests/services.sh), builds,
# and runs the exchange with simulated provinces, printing what happens.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "demo.sh: cargo not found: install Rust 1.94 or newer (https://rustup.rs)" >&2; exit 1; }

cargo build --release --quiet --workspace --bins
# The development PKI is made with the hub binary just built.
HUB="$PWD/target/release/hub" bash tests/services.sh up
exec ./target/release/demo "$@"
