"""Ctrl-C while a command waits on a terminal that never answers: a clean line and exit 130.

Real processes (``python -m agent.cli``) and a real listening socket on 127.0.0.1 that accepts
connections and never answers; SIGINT is sent once the command's connection has arrived.
"""

from __future__ import annotations

import json
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from buffer.outbox import Outbox
from tests.cli.conftest import GATEWAY
from tests.cli.test_outbox_inspect import punch
from tests.support.wait import wait_for


@pytest.fixture
def silent() -> Iterator[socket.socket]:
    """A listening socket that accepts and never answers (a hung terminal)."""
    server = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        yield server
    finally:
        server.close()


def interrupted(args: list[str], server: socket.socket) -> tuple[int, str, str, float]:
    """Run ``punchgate ARGS``; Ctrl-C once it has connected to ``server``; (code, out, err, s)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    accepted: list[socket.socket] = []

    def connected() -> bool:
        if select.select([server], [], [], 0.05)[0]:
            accepted.append(server.accept()[0])
        return bool(accepted)

    try:
        # The process has imported everything and waits on the terminal once it connected.
        wait_for(connected, timeout=30, what="the command's connection to the silent terminal")
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=15)
        return proc.returncode, out, err, time.monotonic() - sent
    finally:
        for sock in accepted:
            sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)


def zk(device_id: str, port: int) -> dict[str, object]:
    return {"id": device_id, "kind": "zk", "host": "127.0.0.1", "port": port, "timeout": 20}


@pytest.mark.parametrize("command", ["ping", "pull"])
def test_ctrl_c_while_a_terminal_hangs_says_interrupted_and_exits_130(
    make_config: Callable[..., Path], silent: socket.socket, command: str
) -> None:
    config = make_config(devices=[zk("lobby-1", silent.getsockname()[1])])
    code, out, err, took = interrupted(
        ["devices", command, "lobby-1", "--config", str(config)], silent
    )
    assert code == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "interrupted"
    assert out == ""
    assert took < 10  # not the terminal's 20 s timeout


def test_ctrl_c_during_the_doctor_with_json_prints_json_and_exits_130(
    make_config: Callable[..., Path], silent: socket.socket
) -> None:
    config = make_config(devices=[zk("lobby-1", silent.getsockname()[1])])
    code, out, err, _ = interrupted(
        ["doctor", "--only", "devices", "--json", "--timeout", "20", "--config", str(config)],
        silent,
    )
    assert code == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert json.loads(out)["error"]["exit_code"] == 130


def test_ctrl_c_during_an_export_keeps_the_previous_file_and_leaves_no_partial_one(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """A half-written punches.csv looks complete to HR; the earlier export must survive."""
    config = make_config()
    with Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY) as outbox:
        outbox.add_punches([punch("lobby-1", str(i % 300), 900 - i / 30) for i in range(20000)])
    exports = tmp_path / "exports"
    exports.mkdir()
    target = exports / "punches.csv"
    target.write_text("the export HR already has\n", encoding="utf-8")
    previous = target.read_bytes()
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "outbox", "export", "--output", str(target),
         "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip

    def writing() -> bool:
        others = [p for p in exports.iterdir() if p != target and p.stat().st_size > 0]
        return bool(others) or target.read_bytes() != previous

    try:
        wait_for(writing, timeout=30, interval=0.005, what="the export to start writing")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().endswith("interrupted")
    assert target.read_bytes() == previous
    assert sorted(p.name for p in exports.iterdir()) == ["punches.csv"]


def test_ctrl_c_while_the_command_is_still_loading_says_interrupted_not_a_traceback() -> None:
    """Loading takes seconds on a Raspberry Pi: Ctrl-C then (a typo seen) printed 30 lines.

    The interrupt is made to land inside the imports by a finder that raises it when the
    devices command module is loaded; the rest is the entry script's own code.
    """
    script = (
        "import sys\n"
        "class CtrlC:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'agent.cli.devices':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, CtrlC())\n"
        "sys.argv = ['punchgate', '--version']\n"
        "from agent.cli import main\n"
        "sys.exit(main())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "interrupted"
