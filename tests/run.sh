#!/usr/bin/env bash
# The test command (README; .ci/run calls exactly this): set up what is missing,
# build every binary once in the release profile, then run the whole suite against
# those binaries. One profile, built once: DataFusion is heavy on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
# ip, iptables and bpftool live in /usr/sbin, which a minimal root environment may lack.
export PATH="$PATH:/usr/sbin:/sbin"
bash tests/setup.sh
cargo build --release --workspace --all-targets
cargo test --release --workspace --no-fail-fast "$@"
