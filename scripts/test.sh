#!/usr/bin/env bash
# Install what the tests need (exactly requirements/dev.lock), then run the whole suite (lab
# tests included when root). Arguments go to pytest.
#
#   scripts/test.sh --latest [pytest args]
#     The early warning: the newest releases pyproject.toml allows, in a separate environment
#     (.venv-latest), then the suite. Not part of CI (the registry moves under us); run it
#     before refreshing the lock with scripts/lock.sh. It names the packages that differ
#     from the lock, so a failure points at its cause.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--latest" ]; then
  shift
  scripts/install.sh >/dev/null  # Debian packages; the locked environment stays as it is
  [ -x .venv-latest/bin/python ] || python3 -m venv .venv-latest
  PY=.venv-latest/bin/python
  "$PY" -m pip install -q --disable-pip-version-check --upgrade pip >&2
  "$PY" -m pip install -q --disable-pip-version-check --upgrade --upgrade-strategy eager \
    -e '.[test]' >&2
  echo "test.sh --latest: releases newer than requirements/dev.lock:" >&2
  "$PY" scripts/lockdiff.py --newer requirements/dev.lock | sed 's/^/  /' >&2
else
  PY=$(scripts/install.sh | tail -n 1)
fi
set +e
"$PY" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test.sh: no test ran: that is a failure" >&2
  exit 1
fi
exit "$rc"
