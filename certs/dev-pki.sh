#!/usr/bin/env bash
# Creates a DEVELOPMENT exchange PKI in DIR (default certs/dev, git-ignored) with the hub CLI
# (`hub certs`, rcgen): the exchange CA, the broker's server certificate (localhost, rabbitmq,
# 127.0.0.1) and the hub's client certificate (CN=hub). Reuses what is there and still valid
# for 30 days. Never use these in production: there, every key is made where it is used and
# the CA signs its request (certs/README.md).
# Usage: bash certs/dev-pki.sh [DIR]      (HUB=path/to/hub to use a built binary)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
PKI=${1:-"$here/dev"}
say() { printf 'pki: %s\n' "$*"; }
die() { printf 'pki: FAILED: %s\n' "$*" >&2; exit 1; }

if [ -z "${HUB:-}" ]; then
  # All the workspace's binaries at once: the same feature set as tests/run.sh's build, so
  # the dependencies are compiled once, not once per package.
  (cd "$here/.." && cargo build -q --workspace --bins) || die "building the hub CLI"
  HUB="$here/../target/debug/hub"
fi

valid_for_a_month() { # file
  [ -f "$1" ] && "$HUB" certs inspect --json "$1" 2>/dev/null \
    | grep -q '"state": "valid"'
}

mkdir -p "$PKI"
chmod 700 "$PKI"
if [ ! -f "$PKI/ca.key" ]; then
  say "creating the development exchange CA in $PKI"
  "$HUB" certs init-ca --out "$PKI" --cn "Xueji Exchange Development CA" --days 3650 >/dev/null || die "init-ca"
  rm -f "$PKI/server.pem" "$PKI/hub.pem"
fi
if ! valid_for_a_month "$PKI/server.pem"; then
  say "issuing the broker server certificate"
  rm -f "$PKI/server.pem" "$PKI/server.key" # expiring: replaced (issuing never overwrites)
  "$HUB" certs issue --ca "$PKI" --role server --name localhost --alt localhost --alt rabbitmq --alt 127.0.0.1 \
    --days 825 --out "$PKI" --stem server >/dev/null || die "server certificate"
fi
if ! valid_for_a_month "$PKI/hub.pem"; then
  say "issuing the hub's client certificate (CN=hub)"
  rm -f "$PKI/hub.pem" "$PKI/hub.key"
  "$HUB" certs issue --ca "$PKI" --role hub --days 825 --out "$PKI" --stem hub >/dev/null || die "hub certificate"
fi
# Left by an earlier set-up, in which the broker trusted a CA that issues nothing.
rm -f "$PKI/anchor.pem"
