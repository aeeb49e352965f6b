#!/usr/bin/env bash
# The one test command (npm test, .ci/run): installs what the integration tests need, builds,
# lints, and runs every test. Meant for a fresh Debian machine as root.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'lvssync tests: %s\n' "$*" >&2; exit 1; }

if [ "${LVSSYNC_SKIP_SETUP:-0}" != 1 ]; then
  bash scripts/setup-host.sh
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

say "typecheck and build"
npx tsc -p tsconfig.json
npx tsc -p test/tsconfig.json
say "lint (biome)"
npx biome check src test bench scripts
say "unit and integration tests"
npx vitest run "$@"
