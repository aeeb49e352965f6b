#!/usr/bin/env bash
# npm run demo: on a fresh Debian machine as root, installs what the lab needs, builds lvssync and
# runs the demo in the built-in two-director lab (scripts/demo.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npx tsc -p tsconfig.json
exec node dist/scripts/demo.js "$@"
