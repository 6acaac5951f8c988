#!/usr/bin/env bash
# Build the eBPF objects and the native addon (docs/architecture.md#ebpf-programs-and-maps),
# incrementally:
#   1. bpf/.output/vmlinux.h from the running kernel's BTF (bpftool), regenerated when the BTF changes;
#   2. bpf/*.bpf.c -> bpf/.output/*.bpf.o (clang -target bpf -O2 -g, CO-RE), rebuilt when a source,
#      a bpf/*.h header or vmlinux.h is newer than the object;
#   3. native/ -> native/build/Release/ambit_native.node with cmake-js (cmake's own incremental build).
# Fails with a message naming the missing Debian package. AMBIT_SKIP_NATIVE=1 skips it all (the
# capture tests then skip or fail with a named reason).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${AMBIT_SKIP_NATIVE:-0}" == "1" ]]; then
  echo "build-native: skipped (AMBIT_SKIP_NATIVE=1)"
  exit 0
fi

die() { echo "build-native: $*" >&2; exit 1; }

# Tool -> Debian package that provides it.
need() {
  local what=$1 pkg=$2
  if [[ "$what" == /* ]]; then [[ -e "$what" ]] && return 0; else command -v "$what" >/dev/null && return 0; fi
  die "missing $what: install the Debian package '$pkg' (apt-get install -y $pkg), or run scripts/setup.sh as root"
}
BPFTOOL=$(command -v bpftool || echo /usr/sbin/bpftool)
need clang clang
need llvm-strip llvm
need "$BPFTOOL" bpftool
need cmake cmake
need make make
need g++ g++
need pkg-config pkg-config
need /usr/include/bpf/libbpf.h libbpf-dev
need /usr/include/libelf.h libelf-dev
pkg-config --exists libbpf || die "pkg-config cannot find libbpf: install the Debian package 'libbpf-dev'"

BTF=/sys/kernel/btf/vmlinux
[[ -r "$BTF" ]] || die "the running kernel exposes no BTF at $BTF: a kernel built with CONFIG_DEBUG_INFO_BTF=y is required for CO-RE"

OUT=bpf/.output
mkdir -p "$OUT"

# 1. vmlinux.h, keyed by a hash of the kernel's BTF so a kernel upgrade regenerates it.
btf_id="$(uname -r) $(stat -c %s "$BTF")"
if [[ ! -s "$OUT/vmlinux.h" || "$(cat "$OUT/vmlinux.h.id" 2>/dev/null)" != "$btf_id" ]]; then
  echo "build-native: generating $OUT/vmlinux.h from $BTF"
  "$BPFTOOL" btf dump file "$BTF" format c > "$OUT/vmlinux.h.tmp"
  mv "$OUT/vmlinux.h.tmp" "$OUT/vmlinux.h"
  echo "$btf_id" > "$OUT/vmlinux.h.id"
fi

# 2. BPF objects.
arch=$(uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/' -e 's/ppc64le/powerpc/' -e 's/s390x/s390/')
shopt -s nullglob
for src in bpf/*.bpf.c; do
  obj="$OUT/$(basename "${src%.c}").o"
  stale=0
  [[ -f "$obj" ]] || stale=1
  for dep in "$src" bpf/*.h "$OUT/vmlinux.h"; do
    [[ "$dep" -nt "$obj" ]] && stale=1
  done
  if ((stale)); then
    echo "build-native: clang $src -> $obj"
    clang -g -O2 -target bpf -D__TARGET_ARCH_"$arch" -Wall -Werror \
      -I"$OUT" -Ibpf -c "$src" -o "$obj.tmp"
    mv "$obj.tmp" "$obj"
  fi
done

# 3. The addon. cmake-js treats native/ as a Node-API project (native/package.json), so it needs
# no Node headers download; cmake only rebuilds what changed.
if [[ ! -f native/build/Release/ambit_native.node ]] || [[ -n "$(find native/src native/CMakeLists.txt -newer native/build/Release/ambit_native.node -print -quit)" ]]; then
  echo "build-native: cmake-js compile (native/)"
  npx --no-install cmake-js compile -d native -O native/build --log-level warn || \
    die "compiling the native addon failed (see the compiler output above)"
fi
