#!/usr/bin/env bash
# Refresh the committed locks (requirements/*.lock) from pyproject.toml.
#
#   scripts/lock.sh                  keep every pin, add what pyproject.toml gained, drop what it lost
#   scripts/lock.sh --upgrade        move every pin to the newest release pyproject.toml allows
#   scripts/lock.sh --upgrade-package httpx   move one
#
# Run `scripts/test.sh --latest` first to see whether the newest releases pass, then lock, then
# run `scripts/test.sh` on the new lock before committing it.
#
# The locks are made by uv (`uv pip compile`): it resolves in a second, writes pip's own
# requirements format with every file's hash, so installing needs nothing but pip
# (`pip install --require-hashes`). uv itself is pinned here and lives in a cache venv; it is a
# tool of this script, not a dependency of rca.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
tools=${XDG_CACHE_HOME:-$HOME/.cache}/rca-lock
if [ ! -x "$tools/bin/uv" ] || [ "$("$tools/bin/uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  python3 -m venv "$tools" >&2
  "$tools/bin/pip" install -q --disable-pip-version-check "uv==$UV_VERSION" >&2
fi

compile() {
  # The supported platform: CPython 3.11 on Linux (Debian 12), the one CI runs.
  "$tools/bin/uv" pip compile --quiet --generate-hashes --python-version 3.11 \
    --python-platform x86_64-unknown-linux-gnu \
    --custom-compile-command "scripts/lock.sh" "$@"
}

# Everything CI, scripts/install.sh and the tests install: rca's dependencies, the test
# extra, and what building rca itself needs (installed with --no-build-isolation).
compile pyproject.toml requirements/build.in --extra test -o requirements/dev.lock "$@"
# What a user needs to run rca, at exactly the versions of dev.lock.
compile pyproject.toml -c requirements/dev.lock -o requirements/runtime.lock
echo "lock: requirements/dev.lock and requirements/runtime.lock written" >&2
