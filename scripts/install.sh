#!/usr/bin/env bash
# Install everything rca, its lab and its tests need, on Debian 12 as root.
# Idempotent. Debian's services are installed but never started (policy-rc.d):
# the lab starts its own instances. Prints the Python to use on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'install: %s\n' "$*" >&2; }

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  mapfile -t pkgs < <(grep -v '^\s*#' scripts/debian-packages.txt | grep -v '^\s*$')
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    echo "postfix postfix/mailname string lab.invalid" | debconf-set-selections
    # Forbid the packages' postinst scripts from starting services on this host.
    restore=""
    if [ -e /usr/sbin/policy-rc.d ]; then
      cp -p /usr/sbin/policy-rc.d /usr/sbin/policy-rc.d.rca-saved; restore=1
    fi
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
    trap 'if [ -n "$restore" ]; then mv /usr/sbin/policy-rc.d.rca-saved /usr/sbin/policy-rc.d; else rm -f /usr/sbin/policy-rc.d; fi' EXIT
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  fi
else
  log "not root (or no apt-get): skipping Debian packages; the lab needs: $(grep -v '^\s*#' scripts/debian-packages.txt | tr '\n' ' ')"
fi

# Python packages: exactly the versions in requirements/dev.lock (hashes checked), in a virtual
# environment of the project's own (.venv; or the one already active), so nothing else that
# happens to be installed on the machine takes part. Refresh the lock with scripts/lock.sh.
PY=${PYTHON:-python3}
LOCK=${RCA_LOCK:-requirements/dev.lock}
if [ -n "${VIRTUAL_ENV:-}" ]; then
  PY=$VIRTUAL_ENV/bin/python
else
  VENV=${RCA_VENV:-.venv}
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$PY" -m venv "$VENV"
  fi
  PY=$VENV/bin/python
fi
log "Python packages from $LOCK into $("$PY" -c 'import sys; print(sys.prefix)')"
pipq=(-m pip --disable-pip-version-check -q)
"$PY" "${pipq[@]}" install --require-hashes --no-deps -r "$LOCK" >&2
# rca itself, editable, built with the locked setuptools (no unpinned build environment).
"$PY" "${pipq[@]}" install --no-deps --no-build-isolation -e . >&2
# Exactly the lock: remove what an older lock installed and this one no longer has.
stale=$("$PY" scripts/lockdiff.py --extra "$LOCK")
if [ -n "$stale" ]; then
  log "removing packages the lock no longer has: $stale"
  # shellcheck disable=SC2086
  "$PY" "${pipq[@]}" uninstall -y $stale >&2
fi
"$PY" scripts/lockdiff.py --check "$LOCK" >&2
echo "$PY"
