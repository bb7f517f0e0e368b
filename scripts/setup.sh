#!/usr/bin/env bash
# Set up a development/demo machine: Mosquitto (apt), a venv in .venv, punchgate with test extras.
# Idempotent; safe to run again. Needs root or sudo for apt-get when mosquitto is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "== installing ${need_apt[*]} (apt-get)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
# The packaged broker service is not needed (tests and the demo start their own); do not let it
# hold port 1883 on a developer machine unless it was already running.

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
mosq=$( (command -v mosquitto || echo /usr/sbin/mosquitto) )
echo "== set up: $(.venv/bin/punchgate --version), $("$mosq" -h 2>/dev/null | head -n 1 || true)"
