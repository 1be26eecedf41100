#!/usr/bin/env bash
# The main job (README): set up, build, start recording into the data dir, make a
# little activity, run a first query. The recorder keeps running afterwards.
#
#   tests/demo.sh               live: podtraild run (root) into $PODTRAIL_DATA_DIR or /var/lib/podtrail
#   tests/demo.sh --synthetic   6 h of synthetic history into target/demo-data (no root needed);
#                               never mixed into a real node's data dir
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
cargo build --release --workspace
BIN="$PWD/target/release"

if [ "${1:-}" = "--synthetic" ]; then
  DATA="${PODTRAIL_DEMO_DIR:-$PWD/target/demo-data}"
  export PODTRAIL_DATA_DIR="$DATA"
  if [ ! -f "$DATA/catalog.db" ]; then
    echo "demo: writing 6 h of synthetic history for 40 pods into $DATA" >&2
    "$BIN/podtrail-synth" --data-dir "$DATA" --hours 6 --pods 40 --events-per-sec 100 --seed 1
  fi
  "$BIN/podtrail" status
  echo '$ podtrail sql "shells started inside pods, first 10"'
  "$BIN/podtrail" sql "SELECT time, pod_namespace, pod_name, args FROM process_exec
    WHERE pod_uid IS NOT NULL AND binary = '/bin/sh' ORDER BY time LIMIT 10"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "demo: podtraild loads eBPF programs and needs root; run as root, or try: tests/demo.sh --synthetic" >&2
  exit 2
fi
DATA="${PODTRAIL_DATA_DIR:-/var/lib/podtrail}"
export PODTRAIL_DATA_DIR="$DATA"
LOG="$(mktemp /tmp/podtraild.XXXXXX.log)"
NO_COLOR=1 "$BIN/podtraild" --data-dir "$DATA" run >"$LOG" 2>&1 &
PID=$!
for _ in $(seq 100); do
  grep -q "run: recording" "$LOG" && break
  kill -0 "$PID" 2>/dev/null || { echo "demo: podtraild exited:" >&2; cat "$LOG" >&2; exit 1; }
  sleep 0.1
done
grep -q "run: recording" "$LOG" || { echo "demo: podtraild did not start recording in 10 s; log: $LOG" >&2; exit 1; }
echo "demo: podtraild (pid $PID) is recording into $DATA; log: $LOG" >&2

# A little activity: a shell running a command, and a TCP connection on 127.0.0.1.
sh -c 'uname -a > /dev/null; exit 3' || true
python3 -c '
import socket, threading
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
threading.Thread(target=lambda: s.accept()[0].close()).start()
socket.create_connection(s.getsockname()).close()'
# A stand-in pod: a kubelet-named cgroup and its own network namespace holding
# 10.244.77.2, a process in it talking to itself over that address. Removed below.
CG2="$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)"
POD_UID="d3a0d3a0-0000-4000-8000-$(printf '%012x' $$)"
POD_CG="$CG2/podtrail-demo-$$.slice/kubepods-besteffort-pod${POD_UID//-/_}.slice"
NS="ptdemo$$"
cleanup_pod() {
  ip netns del "$NS" 2>/dev/null || true
  rmdir "$POD_CG" "$(dirname "$POD_CG")" 2>/dev/null || true
}
trap cleanup_pod EXIT
mkdir -p "$POD_CG"
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" addr add 10.244.77.2/32 dev lo
sh -c 'echo $$ > "$1/cgroup.procs"; exec ip netns exec "$2" python3 -c "
import socket, threading
s = socket.socket(); s.bind((\"10.244.77.2\", 8080)); s.listen(1)
threading.Thread(target=lambda: s.accept()[0].close()).start()
socket.create_connection((\"10.244.77.2\", 8080)).close()"' demo-pod "$POD_CG" "$NS"
sleep 1.5   # the recorder flushes about once a second

echo '$ podtrail sql "the last 10 programs executed on this node"'
"$BIN/podtrail" sql "SELECT time, pid, ppid, uid, binary, args FROM process_exec ORDER BY time DESC LIMIT 10"
echo '$ podtrail sql "TCP connections on 127.0.0.1"'
"$BIN/podtrail" sql "SELECT time, event, pid, comm, src_ip, src_port, dst_ip, dst_port, bytes_sent, bytes_received
  FROM net_conn WHERE dst_ip = '127.0.0.1' ORDER BY time DESC LIMIT 10"
echo '$ podtrail who-owned 10.244.77.2    (the stand-in pod, identified by the UID in its cgroup path)'
"$BIN/podtrail" who-owned 10.244.77.2
echo "\$ podtrail timeline --pod $POD_UID"
"$BIN/podtrail" timeline --pod "$POD_UID"
echo "\$ podtrail profile --pod $POD_UID    (what \`ip netns exec\` in the stand-in pod needed: setns, a mount namespace, remounts)"
"$BIN/podtrail" profile --pod "$POD_UID"
echo
echo "podtraild keeps recording (pid $PID). Stop it with: kill -TERM $PID   (it drains, seals and exits 0)"
echo "Query any time: export PODTRAIL_DATA_DIR=$DATA; $BIN/podtrail sql \"SELECT ...\"   (podtrail schema lists every column)"
