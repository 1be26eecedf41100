#!/usr/bin/env bash
# The kernel matrix: boot Debian's cloud kernels under QEMU (software emulation,
# never KVM) and run `podtrail-vmtest` -- the privileged capture checks against
# the real podtraild -- inside each guest, and on the host kernel. Prints one
# line per kernel, then "N passed, N failed" over kernels x cases. Exit status 0
# only when every case passed on every kernel.
#
#   tests/vmtest.sh [--kernels "bullseye bookworm trixie sid"] [--no-host]
#                   [--break-core]   # see below
#
# Kernels: for each Debian suite, the version its `linux-image-cloud-amd64` points
# to, fetched with `apt-get download` through a private apt configuration under
# target/vmtest/apt (its own sources list, lists and cache; the system's apt
# sources are never touched). Only vmlinuz, config and the few modules the
# guest loads (netfilter for the DNAT case, dummy for the module-load case) are
# kept, cached under target/vmtest/kernels/<version>/. When the mirror cannot be
# reached, the cached kernels are used and the script says so.
#
# Guest: an uncompressed initramfs with static busybox, the release binaries
# (podtraild, podtrail-vmtest, podtrail-sysprobe, stripped), the host's
# /bin/true and nft, and the shared libraries they need (the same binaries the
# suite tests on the host; a static build for an explicit target would compile
# every dependency a second time), then that kernel's modules. /init mounts
# proc, sysfs, devtmpfs, bpffs, tracefs and cgroup2, brings up lo, loads the
# modules, runs the cases, prints a marker with the exit code and powers off.
# At most two VMs at once (2 cores).
#
# --break-core: build the guests with a deliberately broken CO-RE read (the
# exec program reads task_struct.__state, called `state` before Linux 5.14) to
# show how a kernel-specific failure is reported: the run must fail on 5.10 and
# name the kernel and the program.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
W=$ROOT/target/vmtest
SUITES="bullseye bookworm trixie sid"
HOST=1
BREAK=0
while [ $# -gt 0 ]; do
  case $1 in
    --kernels) SUITES=$2; shift 2 ;;
    --no-host) HOST=0; shift ;;
    --break-core) BREAK=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "vmtest: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "vmtest: run as root (the host case loads eBPF programs; CI runs as root)" >&2; exit 1; }
export PATH="$PATH:/usr/sbin:/sbin"

# QEMU, cpio, static busybox, nftables, xz and zstd (kernel modules) are in the set-up.
bash tests/setup.sh

BIN=$ROOT/target/release
for b in podtraild podtrail-vmtest podtrail-sysprobe; do
  [ -x "$BIN/$b" ] || { echo "vmtest: $BIN/$b not built: run \`cargo build --release --workspace --all-targets\` (tests/run.sh does)" >&2; exit 1; }
done
mkdir -p "$W/apt/lists/partial" "$W/apt/cache/archives/partial" "$W/kernels" "$W/logs"

# ---- kernels ---------------------------------------------------------------
APT=(-o Dir::Etc::SourceList="$W/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o Dir::State::Lists="$W/apt/lists" -o Dir::Cache="$W/apt/cache"
     -o Dir::State::Status="$W/apt/status" -o APT::Architecture=amd64
     -o Acquire::Languages=none -o Debug::NoLocking=1)
: > "$W/apt/status"
key=/usr/share/keyrings/debian-archive-keyring.gpg
{
  for s in $SUITES; do
    echo "deb [signed-by=$key] http://deb.debian.org/debian $s main"
  done
} > "$W/apt/sources.list"
online=1
if ! apt-get "${APT[@]}" -qq update >"$W/logs/apt-update.log" 2>&1; then
  online=0
  echo "vmtest: the Debian mirror is unreachable ($(tail -1 "$W/logs/apt-update.log")); using cached kernels" >&2
fi

# The conntrack case DNATs with nftables: these modules (and what they depend on)
# are taken from the kernel's package and loaded by /init.
NF_MODULES="nf_conntrack nf_nat nf_tables nft_chain_nat nft_nat"

# extract_modules TREE DEST NAMES...: the named modules of the unpacked kernel
# package TREE and their dependencies, uncompressed, into DEST, with DEST/order
# listing them dependencies first. Built-in ones are skipped.
extract_modules() {
  local tree=$1 dest=$2 kdir
  shift 2
  kdir=$(find "$tree" -type d -path "*/modules/*" -name kernel | head -1)
  [ -n "$kdir" ] || { echo "vmtest: no modules in the kernel package" >&2; return 1; }
  mkdir -p "$dest"
  : > "$dest/order"
  basename "$(dirname "$kdir")" > "$dest/release"
  visit() {
    local m=$1 f d
    grep -qx "$m" "$dest/order" && return 0
    f=$(find "$kdir" \( -name "$m.ko*" -o -name "${m//_/-}.ko*" \) | head -1)
    if [ -z "$f" ]; then
      grep -qE "/(${m}|${m//_/-})\.ko\$" "$(dirname "$kdir")/modules.builtin" 2>/dev/null && return 0
      echo "vmtest: module $m is neither in the kernel package nor built in" >&2
      return 1
    fi
    case $f in
      *.xz) xz -dc "$f" > "$dest/$m.ko" ;;
      *.zst) zstd -qdc "$f" > "$dest/$m.ko" ;;
      *) cp "$f" "$dest/$m.ko" ;;
    esac
    for d in $(tr '\0' '\n' < "$dest/$m.ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
      visit "$d" || return 1
    done
    echo "$m" >> "$dest/order"
  }
  for m in "$@"; do visit "$m" || return 1; done
}

# kernel_for SUITE -> prints the cache dir of its kernel (vmlinuz, config and
# the netfilter modules)
kernel_for() {
  local suite=$1 pkg ver dir tmp
  if [ $online = 1 ]; then
    pkg=$(apt-cache "${APT[@]}" show "linux-image-cloud-amd64/$suite" 2>/dev/null | sed -n 's/^Depends: //p' | head -1 | tr ',' '\n' | sed -n 's/^ *\(linux-image-[^ ]*\).*/\1/p' | head -1)
    [ -n "$pkg" ] || { echo "vmtest: no linux-image-cloud-amd64 in $suite" >&2; return 1; }
    ver=${pkg#linux-image-}
    echo "$ver" > "$W/kernels/.latest-$suite"
  else
    ver=$(cat "$W/kernels/.latest-$suite" 2>/dev/null) || { echo "vmtest: no cached kernel for $suite" >&2; return 1; }
  fi
  dir=$W/kernels/$ver
  if [ ! -f "$dir/vmlinuz" ] || [ ! -f "$dir/config" ] || [ ! -f "$dir/modules/extra/dummy.ko" ]; then
    [ $online = 1 ] || { echo "vmtest: kernel $ver not cached" >&2; return 1; }
    tmp=$(mktemp -d "$W/apt/dl.XXXXXX")
    # Newer kernels split the image: vmlinuz in linux-binary-*, config in linux-base-*.
    local pkgs=("linux-image-$ver")
    if apt-cache "${APT[@]}" show "linux-binary-$ver" >/dev/null 2>&1; then pkgs+=("linux-binary-$ver" "linux-base-$ver" "linux-modules-$ver"); fi
    (cd "$tmp" && apt-get "${APT[@]}" -qq download "${pkgs[@]}" >/dev/null 2>&1) || { echo "vmtest: apt-get download ${pkgs[*]} failed" >&2; rm -rf "$tmp"; return 1; }
    for d in "$tmp"/*.deb; do dpkg-deb -x "$d" "$tmp/x"; done
    local image config
    image=$(find "$tmp/x" \( -path "*/boot/vmlinuz-*" -o -path "*/modules/*/vmlinuz" \) | head -1)
    config=$(find "$tmp/x" \( -path "*/boot/config-*" -o -path "*/modules/*/config" \) | head -1)
    if [ -z "$image" ] || [ -z "$config" ]; then
      echo "vmtest: no vmlinuz or config in ${pkgs[*]}" >&2; rm -rf "$tmp"; return 1
    fi
    rm -rf "$dir" "$dir.tmp"
    mkdir -p "$dir.tmp" && cp "$image" "$dir.tmp/vmlinuz" && cp "$config" "$dir.tmp/config"
    extract_modules "$tmp/x" "$dir.tmp/modules" $NF_MODULES || { rm -rf "$tmp" "$dir.tmp"; return 1; }
    # Loaded by the modules case while podtraild records (a dummy network driver).
    extract_modules "$tmp/x" "$dir.tmp/modules/extra" dummy || { rm -rf "$tmp" "$dir.tmp"; return 1; }
    mv "$dir.tmp" "$dir"
    rm -rf "$tmp"
  fi
  echo "$dir"
}

# ---- the guest -------------------------------------------------------------
build_initramfs() {
  local out=$1 stage
  stage=$(mktemp -d "$W/stage.XXXXXX")
  mkdir -p "$stage"/{bin,proc,sys,dev,tmp,etc}
  cp /bin/busybox "$stage/bin/busybox"
  for b in podtraild podtrail-vmtest podtrail-sysprobe; do
    strip --strip-debug -o "$stage/bin/$b" "$BIN/$b"
  done
  # The host's /bin/true (a real program, not a busybox applet): the cases copy
  # it under unique names and exec it from a memfd.
  cp /bin/true "$stage/bin/true"
  for a in $(/bin/busybox --list); do [ -e "$stage/bin/$a" ] || ln -s busybox "$stage/bin/$a"; done
  # nft: the conntrack case's DNAT rules.
  cp "$(command -v nft)" "$stage/bin/nft"
  for f in "$stage"/bin/podtraild "$stage"/bin/podtrail-vmtest "$stage"/bin/podtrail-sysprobe "$stage/bin/true" "$stage/bin/nft"; do
    ldd "$f" | grep -o '/[^ ]*' | while read -r lib; do
      mkdir -p "$stage$(dirname "$lib")" && cp -L "$lib" "$stage$lib"
    done
  done
  if [ $BREAK = 1 ]; then
    mkdir -p "$stage/bpf" && cp "$W/break/process.bpf.o" "$stage/bpf/"
  fi
  cat > "$stage/init" <<EOF
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mkdir -p /sys/fs/cgroup /sys/fs/bpf /sys/kernel/tracing
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
ip link set lo up
mods=/lib/modules/\$(uname -r)
for m in \$(cat \$mods/order 2>/dev/null); do insmod \$mods/\$m.ko || echo "init: insmod \$m failed"; done
$( [ $BREAK = 1 ] && echo "export PODTRAIL_BPF_OVERRIDE_DIR=/bpf" )
echo "PODTRAIL-VMTEST-KERNEL \$(uname -r)"
cd /tmp && /bin/podtrail-vmtest
echo "PODTRAIL-VMTEST-EXIT \$?"
poweroff -f
EOF
  chmod +x "$stage/init"
  (cd "$stage" && find . | cpio -o -H newc --quiet) > "$out"
  rm -rf "$stage"
}

# summarize NAME LOG -> one line; adds to the totals file
summarize() {
  local name=$1 log=$2 closing passed failed reasons
  closing=$(grep -a '^podtrail-vmtest: ' "$log" | tail -1 || true)
  if [ -z "$closing" ]; then
    reasons=$(grep -a -E 'Kernel panic|timed out|not syncing|PODTRAIL-VMTEST-EXIT|Oops' "$log" | head -3 | tr '\n' ' ')
    [ -n "$reasons" ] || reasons="no result: last console line: $(grep -a -v '^\s*$' "$log" | tail -1)"
    printf '%-40s FAILED before any case: %s (log: %s)\n' "$name" "$reasons" "${log#$ROOT/}"
    echo "0 1" >> "$W/logs/totals"
    return
  fi
  passed=$(echo "$closing" | sed -n 's/.*: \([0-9]*\) passed.*/\1/p')
  failed=$(echo "$closing" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
  echo "$passed $failed" >> "$W/logs/totals"
  printf '%-40s %s passed, %s failed\n' "$name" "$passed" "$failed"
  grep -a '^case .*FAILED' "$log" | cut -c1-400 | sed 's/^/    /' || true
  # Degraded, by design: what the recorder reported it cannot record here.
  grep -a -e '^unavailable: ' -e '^privilege syscalls: ' "$log" | cut -c1-200 | sed 's/^/    /' || true
}

run_vm() {
  local name=$1 dir=$2 log=$3 initrd
  # The common guest, then this kernel's modules (the kernel unpacks both).
  initrd=$W/initramfs-$name.cpio
  local stage
  stage=$(mktemp -d "$W/stage.XXXXXX")
  mkdir -p "$stage/lib/modules/$(cat "$dir/modules/release")"
  cp -r "$dir"/modules/. "$stage/lib/modules/$(cat "$dir/modules/release")/"
  (cd "$stage" && find . | cpio -o -H newc --quiet) | cat "$W/initramfs.cpio" - > "$initrd"
  rm -rf "$stage"
  # -accel tcg: software emulation (KVM is present here but does not work).
  timeout 600 qemu-system-x86_64 -accel tcg -cpu max -smp 1 -m 1G -nographic -no-reboot \
    -monitor none -serial "file:$log" -kernel "$dir/vmlinuz" -initrd "$initrd" \
    -append "console=ttyS0 panic=-1 rdinit=/init quiet loglevel=3" >/dev/null 2>&1 \
    || echo "vmtest: qemu for $name ended with status $? (timed out at 600 s if 124)" >> "$log"
  rm -f "$initrd"
}

: > "$W/logs/totals"
rm -f "$W"/logs/*.line
started=$(date +%s)
if [ $BREAK = 1 ]; then
  mkdir -p "$W/break"
  clang-19 -O2 -g -target bpf -Wall -Werror -D__TARGET_ARCH_x86 -DPODTRAIL_BREAK_CORE \
    -I ebpf/include -I ebpf/include/x86_64 -c ebpf/src/process.bpf.c -o "$W/break/process.bpf.o"
fi
build_initramfs "$W/initramfs.cpio"
echo "vmtest: guest initramfs $(du -m "$W/initramfs.cpio" | cut -f1) MiB" >&2

if [ $HOST = 1 ]; then
  hlog=$W/logs/host.log
  if [ $BREAK = 1 ]; then
    PODTRAIL_BPF_OVERRIDE_DIR=$W/break "$BIN/podtrail-vmtest" > "$hlog" 2>&1 || true
  else
    "$BIN/podtrail-vmtest" > "$hlog" 2>&1 || true
  fi
  summarize "$(uname -r) (host)" "$hlog" | tee "$W/logs/host.line"
fi

declare -A names
pids=()
for s in $SUITES; do
  dir=$(kernel_for "$s") || { printf '%-40s FAILED before any case: kernel unavailable\n' "$s"; echo "0 1" >> "$W/logs/totals"; continue; }
  v=$(basename "$dir")
  log=$W/logs/$v.log
  : > "$log"
  names[$v]="$v ($s)"
  # At most two VMs at once on this 2-core machine.
  while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n || true; done
  run_vm "$v" "$dir" "$log" &
done
wait
for v in "${!names[@]}"; do
  summarize "${names[$v]}" "$W/logs/$v.log" > "$W/logs/$v.line"
done
for v in $(printf '%s\n' "${!names[@]}" | sort -V); do cat "$W/logs/$v.line"; done

read -r P F < <(awk '{p+=$1; f+=$2} END {print p+0, f+0}' "$W/logs/totals")
echo "$P passed, $F failed (kernels x cases; $(( $(date +%s) - started )) s)"
if [ $BREAK = 0 ]; then
  [ "$F" = 0 ]
  exit
fi
# --break-core: kernels before 5.14 must fail, naming the kernel and the program
# (handle_exec); every other kernel must pass.
bad=0
for f in "$W"/logs/*.line; do
  line=$(cat "$f")
  ver=$(head -1 "$f" | awk '{print $1}')
  if printf '%s\n%s\n' "$ver" 5.14 | sort -V -C && [ "$ver" != 5.14 ]; then
    if ! grep -q "FAILED" "$f" || ! grep -q "handle_exec" "$f"; then
      echo "vmtest --break-core: expected $ver to fail naming handle_exec: $line" >&2; bad=1
    fi
  elif grep -q "FAILED\| [1-9][0-9]* failed" "$f"; then
    echo "vmtest --break-core: expected $ver to load the read of __state: $line" >&2; bad=1
  fi
done
[ $bad = 0 ] && echo "vmtest --break-core: the broken read failed exactly on the kernels without task_struct.__state, naming the kernel and program"
exit $bad
