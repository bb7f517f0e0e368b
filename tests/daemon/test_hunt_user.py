"""``punchgate run`` started by hand as root on the service's state directory."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

from agent.localbroker import LocalMosquitto
from tests.daemon.harness import write_config
from tests.daemon.process import AgentProcess

SERVICE_UID = 65534  # stands for the punchgate account; any owner that is not root


def test_run_as_root_on_a_state_dir_owned_by_the_service_account_refuses_and_creates_nothing(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    assert os.geteuid() == 0, "this test plays a technician with sudo; the suite runs as root"
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, SERVICE_UID, SERVICE_UID)
    config = write_config(tmp_path / "pg.toml", state, broker.url, [])
    agent = AgentProcess(config, tmp_path).start()
    try:
        code = agent.wait(15)
    except subprocess.TimeoutExpired:
        agent.kill()
        raise AssertionError(
            "root started a daemon in the service's state dir; it left "
            f"{sorted(p.name for p in state.iterdir() if p.stat().st_uid == 0)} owned by root, "
            "which the service account cannot write"
        ) from None
    assert code == 2
    assert f"sudo -u {pwd.getpwuid(SERVICE_UID).pw_name} punchgate run" in agent.tail()
    assert list(state.iterdir()) == []
