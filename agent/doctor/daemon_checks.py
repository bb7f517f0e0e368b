"""Doctor check on the daemon itself, from its live status file (with or without systemd).

Under systemd the service state says whether the unit runs; run by hand or in a container the
status file is the only witness: running and healthy, stopped, crashed (pid gone) or hung
(the file stopped being refreshed).
"""

from __future__ import annotations

from agent.daemon.status_file import read_status, status_path
from agent.doctor.result import CheckResult, fail, ok, warn
from config import Settings

FAMILY = "systemd"
TARGET = "punchgate"
NAME = "live status"
_START = "start it (sudo systemctl start punchgate, or punchgate run --config ... by hand)"


def check_live_status(settings: Settings) -> list[CheckResult]:
    """One verdict on the daemon from ``status.json`` in the state directory."""
    path = status_path(settings.agent.state_dir)
    try:
        live = read_status(settings.agent.state_dir)
    except PermissionError:
        return [
            fail(
                FAMILY,
                TARGET,
                NAME,
                f"cannot read {path}: permission denied",
                "run the doctor as root or as the service user: sudo /opt/punchgate/bin/"
                "punchgate doctor",
            )
        ]
    if live is None:
        return [
            warn(
                FAMILY,
                TARGET,
                NAME,
                f"no live status in {path}: the daemon has not run with this state_dir",
                _START,
            )
        ]
    pid, at = live.get("pid"), live.get("updated_at")
    if live["running"]:
        if live.get("healthy") is False:
            stuck = ", ".join(str(w) for w in live.get("unhealthy") or []) or "a worker"
            return [
                fail(
                    FAMILY,
                    TARGET,
                    NAME,
                    f"the daemon (pid {pid}) runs but is UNHEALTHY: {stuck} stuck",
                    "see 'punchgate status' and the log (daemon_unhealthy); systemd's watchdog "
                    "restarts it, by hand: restart it",
                )
            ]
        return [
            ok(FAMILY, TARGET, NAME, f"the daemon (pid {pid}) runs, status {live['age_s']}s old")
        ]
    if live.get("state") == "stopped":
        return [warn(FAMILY, TARGET, NAME, f"the daemon stopped cleanly at {at}", _START)]
    if not live["pid_alive"]:
        return [
            fail(
                FAMILY,
                TARGET,
                NAME,
                f"the daemon's pid {pid} is gone (crashed or killed); its last status at {at}",
                "read its last log lines (journalctl -u punchgate -n 50), then " + _START,
            )
        ]
    return [
        fail(
            FAMILY,
            TARGET,
            NAME,
            f"the live status is {live['age_s']}s old although pid {pid} lives: the daemon may "
            "be hung",
            "restart it (sudo systemctl restart punchgate) and report its last log lines",
        )
    ]
