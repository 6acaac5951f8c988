#!/usr/bin/env bash
# Build everything: TypeScript to dist/, and (when present) the BPF objects and the native addon.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -x scripts/build-native.sh ]]; then
  bash scripts/build-native.sh
fi
bash scripts/gen-proto.sh
npx --no-install tsc -p tsconfig.json
chmod +x dist/cli/main.js 2>/dev/null || true
