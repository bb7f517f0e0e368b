#!/usr/bin/env bash
# Install punchgate as a systemd service on a site gateway (run as root from a checkout):
#   venv in /opt/punchgate, config in /etc/punchgate, state in /var/lib/punchgate.
# Re-running upgrades the code and keeps the config and state.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root (sudo bash scripts/install.sh)" >&2; exit 1; }
PREFIX=${PREFIX:-/opt/punchgate}

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "punchgate needs Python >= 3.11 (found $(python3 --version))" >&2; exit 1; }
python3 -m venv "$PREFIX"
"$PREFIX/bin/pip" install -q --upgrade pip
"$PREFIX/bin/pip" install -q .
install -d -m 0755 "$PREFIX/share"
install -m 0644 README.md "$PREFIX/share/README.md"

install -m 0644 systemd/punchgate.sysusers /etc/sysusers.d/punchgate.conf
systemd-sysusers /etc/sysusers.d/punchgate.conf
install -d -m 0750 -o root -g punchgate /etc/punchgate
install -d -m 0750 -o punchgate -g punchgate /var/lib/punchgate
if [ ! -e /etc/punchgate/punchgate.toml ]; then
    install -m 0640 -o root -g punchgate config/punchgate.example.toml /etc/punchgate/punchgate.toml
    echo "edit /etc/punchgate/punchgate.toml, then: systemctl enable --now punchgate"
fi
install -m 0644 systemd/punchgate.service /etc/systemd/system/punchgate.service
systemctl daemon-reload
if "$PREFIX/bin/punchgate" config check --config /etc/punchgate/punchgate.toml; then
    systemctl try-restart punchgate.service
fi
echo "installed $("$PREFIX/bin/punchgate" --version) in $PREFIX"
