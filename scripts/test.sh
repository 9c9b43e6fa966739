#!/usr/bin/env bash
# Install what the tests need, then run the whole suite (lab tests included when root).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(scripts/install.sh | tail -n 1)
set +e
"$PY" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test.sh: no test ran: that is a failure" >&2
  exit 1
fi
exit "$rc"
