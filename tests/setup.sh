#!/usr/bin/env bash
# Install what podtrail's build, tests and benchmarks need, only when missing.
# Idempotent; safe to run on every invocation. Needs root for apt (CI runs as root).
set -euo pipefail

need_apt=()
command -v cc >/dev/null || need_apt+=(gcc)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
# Kernel programs: clang-19 compiles the C CO-RE objects, libbpf-dev gives the BPF
# helper headers, bpftool reads BTF (the mirror-layout test).
command -v clang-19 >/dev/null || need_apt+=(clang-19)
[ -f /usr/include/bpf/bpf_helpers.h ] || need_apt+=(libbpf-dev)
command -v bpftool >/dev/null || [ -x /usr/sbin/bpftool ] || need_apt+=(bpftool)
command -v setpriv >/dev/null || need_apt+=(util-linux)
# Privileged network tests: namespaces, veths and a kube-proxy-like DNAT.
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || need_apt+=(iproute2)
command -v iptables >/dev/null || [ -x /usr/sbin/iptables ] || need_apt+=(iptables)
# The CRI client is generated from the CRI protos at build time (protoc).
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
# Real pods for the identity tests: containerd (started by the test with its own
# config in a temp dir), runc, the CNI plugins, and static busybox for the
# locally built images (nothing is pulled from a registry).
command -v containerd >/dev/null || need_apt+=(containerd)
command -v runc >/dev/null || [ -x /usr/sbin/runc ] || need_apt+=(runc)
[ -x /usr/lib/cni/bridge ] || need_apt+=(containernetworking-plugins)
if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then need_apt+=(busybox-static); fi
command -v nsenter >/dev/null || need_apt+=(util-linux)
# The kernel matrix (tests/vmtest.sh): QEMU (software emulation), cpio for the
# guests' initramfs, nft for the DNAT case, xz/zstd for compressed kernel modules.
command -v qemu-system-x86_64 >/dev/null || need_apt+=(qemu-system-x86)
command -v cpio >/dev/null || need_apt+=(cpio)
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || need_apt+=(nftables)
command -v xz >/dev/null || need_apt+=(xz-utils)
# The DNS tests: a real resolver in a test pod (dnsmasq-base: the binary, no
# system service), and openssl for the TLS server-name case.
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || need_apt+=(dnsmasq-base)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v zstd >/dev/null || need_apt+=(zstd)
# The file tests: setcap (a file capability, as an attacker grants one) and curl
# (the download of a dropped binary, from a server on 127.0.0.1).
command -v setcap >/dev/null || [ -x /usr/sbin/setcap ] || need_apt+=(libcap2-bin)
command -v curl >/dev/null || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} (apt)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo (Rust 1.95+) is required and not found on PATH" >&2
  exit 1
fi

# DuckDB (PyPI) reads our segments in the test suite: an independent Parquet reader.
# The DuckDB CLI (PyPI duckdb-cli) is the benchmark's comparison point.
# PyYAML parses `podtrail profile` output the way Kubernetes client tooling does.
pip_need=()
python3 -c 'import duckdb' 2>/dev/null || pip_need+=(duckdb)
python3 -c 'import yaml' 2>/dev/null || pip_need+=(pyyaml)
command -v duckdb >/dev/null || pip_need+=(duckdb-cli)
# The lake tests: an S3-compatible server on 127.0.0.1 (moto) and boto3 to look
# into it, as an independent client.
python3 -c 'import moto.server, flask' 2>/dev/null || pip_need+=('moto[server]')
python3 -c 'import boto3' 2>/dev/null || pip_need+=(boto3)
# The Kubernetes API metadata source's tests: kmock's KubernetesEmulator.
python3 -c 'import kmock' 2>/dev/null || pip_need+=(kmock)
# The OCSF conformance check (tests/ocsf_validate.py): the OCSF schemas as the
# PyPI package embeds them (offline), and a JSON Schema validator. Pinned: a
# new release may change what the generated schemas accept.
python3 -c 'import ocsf_json_schema' 2>/dev/null || pip_need+=(ocsf-json-schema==1.2.0)
python3 -c 'import jsonschema' 2>/dev/null || pip_need+=(jsonschema==4.26.0)
if [ ${#pip_need[@]} -gt 0 ]; then
  echo "setup: installing ${pip_need[*]} (pip)" >&2
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "${pip_need[@]}"
fi
