"""``config check --json`` (the field guide: every command it names but three has --json)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

PUNCHGATE = [sys.executable, "-m", "agent.cli"]


def config_check_json(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PUNCHGATE, "config", "check", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_config_check_json_on_a_good_file_says_ok_with_what_it_found(
    make_config: Callable[..., Path],
) -> None:
    config = make_config(
        devices=[{"id": "lobby-1", "kind": "zk", "host": "127.0.0.1"}],
        mqtt={"url": "mqtt://127.0.0.1:1883"},
    )
    done = config_check_json(config)
    assert done.returncode == 0, done
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert report["gateway_id"] == "gw-test"
    assert report["devices"] == {"zk": 1}
    assert report["brokers"] == ["mqtt://127.0.0.1:1883"]


def test_config_check_json_on_a_bad_file_lists_every_problem_and_exits_2(
    tmp_path: Path,
) -> None:
    config = tmp_path / "punchgate.toml"
    config.write_text(
        '[agent]\ngateway_id = "gw"\ncolour = "red"\n[mqtt]\nkeepalive = "soon"\n',
        encoding="utf-8",
    )
    done = config_check_json(config)
    assert done.returncode == 2, done
    report = json.loads(done.stdout)
    assert report["ok"] is False and report["error"]["exit_code"] == 2
    problems = " ".join(report["error"]["problems"])
    assert "agent.colour" in problems and "mqtt.keepalive" in problems, report
    assert "agent.colour" in done.stderr  # the technician's view is unchanged
