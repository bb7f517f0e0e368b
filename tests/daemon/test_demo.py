"""``punchgate demo``: punches appear at the subscriber, and nothing is left behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agent import localbroker
from agent.demo import Demo
from agent.localbroker import INSTALL_HINT
from config.errors import BrokerError
from tests.support.wait import wait_for

DEMO = [sys.executable, "-m", "agent.cli", "demo"]


class Lines:
    """Collects a child's stdout lines on a thread (so waiting has a deadline)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.items: list[str] = []
        self._proc = proc
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self.items.append(line.rstrip("\n"))

    def join(self) -> None:
        self._thread.join(10)

    @property
    def text(self) -> str:
        return "\n".join(self.items)


def _assert_cleaned_up(output: str) -> None:
    workdir = re.search(r"punchgate demo in (\S+)", output)
    broker = re.search(r"Mosquitto on mqtt://127\.0\.0\.1:(\d+)", output)
    agent = re.search(r"\(pid (\d+), log", output)
    assert workdir and broker and agent, output
    assert not Path(workdir.group(1)).exists(), "the temp dir was not removed"
    try:
        os.kill(int(agent.group(1)), 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError("the agent process is still alive")
    with socket.socket() as probe:
        probe.settimeout(2)
        assert probe.connect_ex(("127.0.0.1", int(broker.group(1)))) != 0, "broker still up"
    assert "everything cleaned up" in output


def test_demo_shows_punches_arriving_and_cleans_up_after_seconds() -> None:
    done = subprocess.run(
        [*DEMO, "--seconds", "8", "--punch-every", "0.5"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    punches = [line for line in done.stdout.splitlines() if line.startswith("  punch  ")]
    assert len(punches) >= 3, done.stdout
    assert re.search(r"employee \d+ .* (in|out) +at lobby-1 +id …[0-9a-f]{12} +seq 1$", punches[0])
    summary = re.search(r"(\d+) punch\(es\) recorded by the terminal, (\d+) arrived", done.stdout)
    assert summary is not None and int(summary.group(2)) == len(punches)
    _assert_cleaned_up(done.stdout)


def test_ctrl_c_stops_the_demo_and_cleans_up() -> None:
    proc = subprocess.Popen(
        [*DEMO, "--punch-every", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = Lines(proc)
    try:
        wait_for(
            lambda: any(line.startswith("  punch  ") for line in lines.items),
            timeout=45,
            what="the first punch at the subscriber",
        )
        proc.send_signal(signal.SIGINT)
        assert proc.wait(45) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    lines.join()
    assert "Ctrl-C: stopping the demo" in lines.text
    _assert_cleaned_up(lines.text)


def test_without_mosquitto_the_demo_says_how_to_install_it_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The one thing that cannot be produced here is a machine without the broker binary.
    def missing() -> str:
        raise BrokerError(INSTALL_HINT)

    monkeypatch.setattr(localbroker, "find_mosquitto", missing)
    printed: list[str] = []
    demo = Demo(seconds=5, echo=printed.append)
    with pytest.raises(BrokerError, match="apt-get install -y mosquitto"):
        demo.run()
    assert demo.result.workdir and not Path(demo.result.workdir).exists()
    assert "everything cleaned up" in printed[-1]
