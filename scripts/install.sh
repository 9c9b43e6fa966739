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

PY=${PYTHON:-python3}
# Debian's own Python refuses pip installs (PEP 668): use a virtual environment there.
if "$PY" -c 'import sys, sysconfig, os; sys.exit(0 if sys.prefix == sys.base_prefix and os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
  if [ ! -x .venv/bin/python ]; then
    log "creating .venv (the system Python is externally managed)"
    "$PY" -m venv .venv
  fi
  PY=.venv/bin/python
fi
log "Python packages into $("$PY" -c 'import sys; print(sys.prefix)')"
"$PY" -m pip install -q --disable-pip-version-check -e '.[test]' >&2
echo "$PY"
