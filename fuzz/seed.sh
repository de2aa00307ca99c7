#!/usr/bin/env bash
# Seeds each fuzz target's corpus from schemas/examples/ (the XML sample of every message
# type) and, for the JSON target, the same samples' JSON forms. The corpus
# directories are not committed: `cargo fuzz run` grows them.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/envelope_xml corpus/envelope_json corpus/archive_manifest
cp ../schemas/examples/*.xml corpus/envelope_xml/
cp ../schemas/examples/archive.*.xml corpus/archive_manifest/
cargo run -q --release --bin seed_json
echo "seeded: $(ls corpus/envelope_xml | wc -l) XML, $(ls corpus/envelope_json | wc -l) JSON, $(ls corpus/archive_manifest | wc -l) archive"
