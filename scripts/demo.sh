#!/usr/bin/env bash
# Install everything, start the bundled lab and run a full check of its scenarios.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(scripts/install.sh | tail -n 1)
exec "$PY" -m analyzer demo "$@"
