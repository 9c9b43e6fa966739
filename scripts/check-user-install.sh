#!/usr/bin/env bash
# Install rca as a user would (README "Install"): a wheel of this checkout plus
# requirements/runtime.lock, in a fresh virtual environment with nothing else: no test
# packages, no lab. Then use it: --version, the findings catalogue, and a check that writes
# every report format (to a closed port on loopback, so no packet leaves the machine).
# Run by .ci/run; needs scripts/install.sh to have run (it builds the wheel with .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
PY=${1:-.venv/bin/python}

"$PY" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation -w "$work/dist" . >&2
python3 -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --require-hashes --no-deps -r requirements/runtime.lock >&2
"${pip[@]}" install --no-deps "$work"/dist/rca-*.whl >&2
rca=$work/venv/bin/rca
fail() { echo "user install: $*" >&2; exit 1; }

"$work/venv/bin/python" -c 'import pytest' 2>/dev/null && fail "pytest is installed: not a clean environment"
"$work/venv/bin/python" "scripts/lockdiff.py" --check requirements/runtime.lock >&2 \
  || fail "the environment is not requirements/runtime.lock"
version=$("$rca" --version)
"$rca" findings --format markdown > "$work/findings.md"
grep -q 'tls.cert.expired' "$work/findings.md" || fail "the findings catalogue lacks tls.cert.expired"
# Port 9 (discard) on loopback: nothing listens there, so the check fails, exit 2 by contract.
set +e
(cd "$work" && "$rca" check 127.0.0.1:9 --tests ports --timeout 10 --report r.html --json r.json \
   --junit r.xml --prometheus r.prom --quiet) > "$work/out.txt" 2> "$work/err.txt"
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "rca check of a closed port exited $rc, expected 2: $(cat "$work/out.txt" "$work/err.txt")"
[ ! -s "$work/err.txt" ] || fail "rca check wrote on stderr: $(cat "$work/err.txt")"
for f in r.html r.json r.xml r.prom; do [ -s "$work/$f" ] || fail "no $f written"; done
grep -q '"schema_version"' "$work/r.json" || fail "r.json has no schema_version"
grep -q 'Content-Security-Policy' "$work/r.html" || fail "r.html is not the self-contained report"
echo "user install: $version from a wheel + runtime.lock works (check, findings, 4 report formats)"
