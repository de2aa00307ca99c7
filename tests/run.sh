#!/usr/bin/env bash
# The whole test suite, from a fresh clone: provisions the services it needs (tests/services.sh),
# checks formatting and lints, then runs every test of the workspace, integration and
# end-to-end tests included, against a real RabbitMQ (mutual TLS) and a real PostgreSQL.
# Usage: bash tests/run.sh [extra arguments for the test runner]
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "run.sh: cargo not found: install Rust 1.94 or newer (https://rustup.rs)" >&2; exit 1; }

bash tests/services.sh up
bash tests/services.sh purge
echo "run.sh: cargo fmt --check"
cargo fmt --all -- --check
echo "run.sh: cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "run.sh: building the binaries the end-to-end tests start"
cargo build --workspace --bins --quiet
if cargo nextest --version >/dev/null 2>&1; then
  echo "run.sh: cargo nextest run"
  cargo nextest run --workspace --no-fail-fast "$@"
else
  echo "run.sh: cargo test"
  cargo test --workspace --no-fail-fast "$@"
fi
