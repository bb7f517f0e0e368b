#!/usr/bin/env bash
# Install punchgate as a systemd service on a site gateway (run as root from a checkout):
#   venv in /opt/punchgate, config in /etc/punchgate, state in /var/lib/punchgate.
# Re-running upgrades the code and keeps the config and state.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root (sudo bash scripts/install.sh)" >&2; exit 1; }
PREFIX=${PREFIX:-/opt/punchgate}
PY=${PYTHON:-python3}  # e.g. PYTHON=python3.11 where python3 is older (Ubuntu 22.04)

"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "punchgate needs Python >= 3.11 (found $("$PY" --version)); set PYTHON=python3.11" >&2
    exit 1
}
"$PY" -m venv "$PREFIX"
"$PREFIX/bin/pip" install -q --upgrade pip
# setuptools reuses build/lib and never deletes from it: files removed since the last
# install (git pull) would be built into the wheel again.
rm -rf build
"$PREFIX/bin/pip" install -q .
(cd / && "$PREFIX/bin/python" -c 'import buffer.ingest as i; raise SystemExit(not i.COMPILED)') || echo \
    "note: the outbox's compiled encoder was not built (no C compiler or Python headers): punches" \
    "are stored about twice as slowly; apt-get install gcc python3-dev, then run this again" >&2
install -d -m 0755 "$PREFIX/share"
# The README's and docs' commands ('punchgate status') run it by name.
ln -sfn "$PREFIX/bin/punchgate" /usr/local/bin/punchgate
install -m 0644 README.md "$PREFIX/share/README.md"
# Config error messages point at it ("see /opt/punchgate/share/punchgate.example.toml").
install -m 0644 config/punchgate.example.toml "$PREFIX/share/punchgate.example.toml"

install -d -m 0755 /etc/sysusers.d  # Debian's systemd ships /usr/lib/sysusers.d only
install -m 0644 systemd/punchgate.sysusers /etc/sysusers.d/punchgate.conf
systemd-sysusers /etc/sysusers.d/punchgate.conf
# The service runs the venv's interpreter as punchgate: one under /root (pyenv) it cannot run.
(cd / && runuser -u punchgate -- "$PREFIX/bin/punchgate" --version >/dev/null) || {
    echo "the punchgate user cannot run $PREFIX/bin/punchgate (its Python:" \
        "$(readlink -f "$PREFIX/bin/python3")): remove $PREFIX and run again with a system" \
        "Python, e.g. PYTHON=/usr/bin/python3 bash scripts/install.sh" >&2
    exit 1
}
install -d -m 0750 -o root -g punchgate /etc/punchgate
install -d -m 0750 -o punchgate -g punchgate /var/lib/punchgate
# Files left by a run as root too: systemd's StateDirectory= fix-up skips the tree once the
# directory itself is punchgate's, and the service could not write a root-owned outbox.db.
chown -R punchgate:punchgate /var/lib/punchgate
if [ ! -e /etc/punchgate/punchgate.toml ]; then
    install -m 0640 -o root -g punchgate config/punchgate.example.toml /etc/punchgate/punchgate.toml
    echo "edit /etc/punchgate/punchgate.toml, then: systemctl enable --now punchgate"
fi
# The unit names the venv: point it at this PREFIX (ExecStart, ExecStartPre, Documentation).
unit=$(mktemp)
sed "s|/opt/punchgate/|$PREFIX/|g" systemd/punchgate.service >"$unit"
install -m 0644 "$unit" /etc/systemd/system/punchgate.service
rm -f "$unit"
systemctl daemon-reload
# As the unit's ExecStartPre does: as punchgate, who (unlike root) cannot read a root-only file.
checked=0
if (cd / && runuser -u punchgate -- "$PREFIX/bin/punchgate" config check --config /etc/punchgate/punchgate.toml); then
    systemctl try-restart punchgate.service
else
    checked=1
    echo "punchgate.service was NOT restarted (a running one keeps the old code): fix" \
        "/etc/punchgate/punchgate.toml as listed above, then: systemctl restart punchgate" >&2
fi
echo "installed $("$PREFIX/bin/punchgate" --version) in $PREFIX"
[ "$checked" -eq 0 ] || exit 1
