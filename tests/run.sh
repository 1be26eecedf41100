#!/usr/bin/env bash
# The test command (README; .ci/run calls exactly this): set up what is missing,
# build every binary once in the release profile, then run the whole suite against
# those binaries. One profile, built once: DataFusion is heavy on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
# ip, iptables and bpftool live in /usr/sbin, which a minimal root environment may lack.
export PATH="$PATH:/usr/sbin:/sbin"
bash tests/setup.sh
if ! cargo build --release --workspace --all-targets; then
  # A linker that crashed (SIGBUS, out of memory) may be transient; a real build
  # error fails the same way again and stops the run here.
  echo "tests/run.sh: the build failed; building once more to tell a transient crash from a real error" >&2
  cargo build --release --workspace --all-targets
fi
rc=0
if [ $# -eq 0 ]; then
  # Lints (type checks only, no code generation: about 2 minutes cold here). A
  # warning fails the run but does not stop the tests below.
  if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy --release --workspace --all-targets -- -D warnings || { echo "tests/run.sh: clippy found warnings (above)" >&2; rc=1; }
  else
    echo "tests/run.sh: cargo clippy is not installed (rustup component add clippy): lints skipped" >&2
  fi
fi
cargo test --release --workspace --no-fail-fast "$@" || rc=1
if [ $# -eq 0 ]; then
  # The kernel matrix: the capture cases on this kernel and on Debian's 5.10, 6.1,
  # 6.12 and newest kernels under QEMU; then proof that a broken CO-RE read is
  # reported with the kernel and the program.
  bash tests/vmtest.sh || rc=1
  bash tests/vmtest.sh --break-core --kernels bullseye || rc=1
fi
exit $rc
