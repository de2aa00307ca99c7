#!/bin/sh
# Checks this message-log bundle (报文日志证据包) with standard tools only: a POSIX shell,
# sha256sum and openssl. Run it from anywhere: sh verify.sh
#
# It checks, entry by entry in position order:
#   - the positions follow one another (an entry deleted or moved leaves a gap);
#   - each entry's "prev" is the SHA-256 of the entry before it (the hash chain);
#   - each body exported is the one the entry names (body-sha256);
#   - each body's signature verifies with the signer's certificate in certs/;
# and then that the hub signed where the bundle starts (export.meta) and the hash of its last
# entry (checkpoint.meta: a checkpoint the hub made and signed when it sealed that entry).
# It stops at the first broken link, names the entry and exits 1; 0 means all of it holds.
set -u
cd "$(dirname "$0")" || exit 2
for tool in sha256sum openssl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "verify.sh: $tool is needed" >&2; exit 2; }
done
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
broken() { echo "BROKEN at $*"; exit 1; }
field() { sed -n "s/^$1: //p" "$2"; }
sha() { sha256sum | cut -d' ' -f1; }

# Checks the signature $2 (a file) over $1 (a file) with the certificate $3.
signed() {
  openssl x509 -in "$3" -pubkey -noout >"$tmp/pub.pem" 2>/dev/null || return 1
  case $(openssl pkey -pubin -in "$tmp/pub.pem" -noout -text 2>/dev/null | head -n 1) in
    *ED25519*) openssl pkeyutl -verify -pubin -inkey "$tmp/pub.pem" -rawin -in "$1" -sigfile "$2" >/dev/null 2>&1 ;;
    *"(384 bit)"*) openssl dgst -sha384 -verify "$tmp/pub.pem" -signature "$2" "$1" >/dev/null 2>&1 ;;
    *) openssl dgst -sha256 -verify "$tmp/pub.pem" -signature "$2" "$1" >/dev/null 2>&1 ;;
  esac
}

[ -f export.meta ] && [ -f certs/hub.pem ] || broken "the bundle: export.meta or certs/hub.pem missing"
signed export.meta export.sig certs/hub.pem || broken "the bundle's start: the hub's signature on export.meta does not verify"
prev=$(field prev export.meta)
position=$(field position export.meta)
entries=0
signatures=0
: >"$tmp/hashes"
for meta in entries/*.meta; do
  [ -f "$meta" ] || break
  name=${meta%.meta}
  at=$(field position "$meta")
  [ "$at" = "$position" ] || broken "entry $position: missing (found entry $at in its place, file $meta)"
  [ "$(field prev "$meta")" = "$prev" ] || broken "entry $position: its prev is not the hash of entry $((position - 1))"
  if [ -f "$name.body" ]; then
    [ "$(sha <"$name.body")" = "$(field body-sha256 "$meta")" ] || broken "entry $position: its body is not the one logged"
    signer=$(field signer "$meta")
    if [ "$signer" != "-" ]; then
      [ -f "$name.sig" ] || broken "entry $position: its signature is missing"
      [ -f "certs/$signer.pem" ] || broken "entry $position: the signer's certificate certs/$signer.pem is missing"
      [ "$(openssl x509 -in "certs/$signer.pem" -outform DER 2>/dev/null | sha)" = "$signer" ] ||
        broken "entry $position: certs/$signer.pem is not the certificate the entry names"
      signed "$name.body" "$name.sig" "certs/$signer.pem" || broken "entry $position: its signature does not verify"
      signatures=$((signatures + 1))
    fi
  fi
  prev=$(sha <"$meta")
  echo "$position $prev" >>"$tmp/hashes"
  entries=$((entries + 1))
  position=$((position + 1))
done
[ "$entries" -gt 0 ] || broken "the bundle: no entries"
checkpoint=checkpoint.meta
[ -f "$checkpoint" ] || broken "the bundle: no checkpoint"
signed "$checkpoint" checkpoint.sig certs/hub.pem || broken "the checkpoint: the hub's signature does not verify"
sealed=$(field position "$checkpoint")
[ "$sealed" = "$((position - 1))" ] || broken "entry $sealed: the checkpoint seals it, but the bundle ends at entry $((position - 1))"
[ "$(grep "^$sealed " "$tmp/hashes" | cut -d' ' -f2)" = "$(field hash "$checkpoint")" ] ||
  broken "entry $sealed: its hash is not the one the hub's checkpoint sealed"
echo "OK: $entries entries chained, $signatures signatures verified, sealed by the hub's checkpoint at entry $sealed"
