#!/usr/bin/env bash
# Set up a development/demo machine: Mosquitto and PostgreSQL server binaries (apt), a venv in
# .venv, punchgate with its test and receiver-pg extras.
# Idempotent; safe to run again. Needs root or sudo for apt-get when a package is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
# A C compiler and the Python headers build the outbox's compiled encoder (buffer/_encode.c);
# without them punchgate still installs and runs, storing punches more slowly.
PY=${PYTHON:-python3}
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
"$PY" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    2>/dev/null || need_apt+=(python3-dev)
# initdb/pg_ctl for the receiver's PostgreSQL tests, which start a private cluster of their own.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "== installing ${need_apt[*]} (apt-get)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
# The packaged broker and database services are not needed (tests and the demo start their own);
# nothing here enables or starts them, and a cluster the package itself started is left alone.

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,receiver-pg]'
mosq=$( (command -v mosquitto || echo /usr/sbin/mosquitto) )
initdb=$( (compgen -G '/usr/lib/postgresql/*/bin/initdb' || true) | sort -V | tail -n 1)
encoder=$(.venv/bin/python -c 'import buffer.ingest as i; print("compiled" if i.COMPILED else "Python")')
echo "== set up: $(.venv/bin/punchgate --version) ($encoder encoder)," \
    "$("$mosq" -h 2>/dev/null | head -n 1 || true), $("${initdb:-initdb}" --version 2>/dev/null || true)"
