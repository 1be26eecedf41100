#!/usr/bin/env bash
# The main job (README): set up, build, fill a data dir, run a first query.
# Kernel capture (`podtraild run`) is not built yet, so today the history comes
# from podtrail-synth, written through the recorder's own segment store. It goes to
# its own data dir (never /var/lib/podtrail: synthetic rows must not mix with a
# real node's history).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
cargo build --release --workspace
DATA="${PODTRAIL_DEMO_DIR:-$PWD/target/demo-data}"
export PODTRAIL_DATA_DIR="$DATA"
if [ ! -f "$DATA/catalog.db" ]; then
  echo "demo: writing 6 h of synthetic history for 40 pods into $DATA" >&2
  target/release/podtrail-synth --data-dir "$DATA" --hours 6 --pods 40 --events-per-sec 100 --seed 1
fi
target/release/podtrail status
echo
echo '$ podtrail sql "shells started inside pods, first 10"'
target/release/podtrail sql "SELECT time, pod_namespace, pod_name, args FROM process_exec
  WHERE pod_uid IS NOT NULL AND binary = '/bin/sh' ORDER BY time LIMIT 10"
echo
echo "next: export PODTRAIL_DATA_DIR=$DATA; target/release/podtrail sql \"SELECT ...\"   (podtrail schema lists every column)"
