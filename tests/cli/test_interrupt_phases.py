"""Ctrl-C at each phase of a command whose terminal hangs right there: "interrupted", exit 130.

A real ``python -m agent.cli`` process talks to the ZK simulator on 127.0.0.1. The simulator
goes silent when the phase's request arrives (it answers nothing more, not even EXIT: a hung
terminal), and SIGINT is sent then. The device timeout is 20 s: a cleanup that waits on the
terminal for it (FREE_DATA after a cut read, ENABLE_DEVICE after a cut clear) shows as a run far
longer than the interrupt itself.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.zk import protocol as p
from drivers.zk.simulator import ZkSimulator
from drivers.zk.simulator.terminal import Handler, Reply
from tests.drivers.zk.driver_support import simulator
from tests.silent.peers import SilentListener
from tests.support.wait import wait_for

TIMEOUT = 20  # the device's; every case must end far sooner
QUICK = 5  # seconds from SIGINT to exit: a brief goodbye, the interpreter's shutdown, a busy CI


def _hang_at(sim: ZkSimulator, command: int) -> threading.Event:
    """From the first ``command`` on, the terminal answers nothing; the event says it arrived."""
    reached = threading.Event()

    def hang(_usual: Handler) -> Handler:
        def answer(_session: object, _request: p.Packet) -> Reply:
            sim.faults.silent = True
            reached.set()
            return Reply([])

        return answer

    sim.intercept(command, hang)
    return reached


def _config(path: Path, port: int, **device: object) -> Path:
    lines = [
        "[agent]",
        'gateway_id = "gw-test"',
        f'state_dir = "{path.parent / "state"}"',
        'timezone = "Europe/Berlin"',
        "",
        "[outbox]",
        "disk_reserve_mb = 0",
        "",
        "[[devices]]",
        'id = "lobby-1"',
        'kind = "zk"',
        'host = "127.0.0.1"',
        f"port = {port}",
        f"timeout = {TIMEOUT}",
    ]
    lines += [f"{k} = {str(v).lower() if isinstance(v, bool) else v}" for k, v in device.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


Process = subprocess.Popen[str]


def _ctrl_c_when(
    argv: list[str], reached: Callable[[Process], None], ctrl_c: Callable[[Process], None]
) -> tuple[int, str, float]:
    """Run ``argv``; ``ctrl_c`` once ``reached`` returned; (code, stderr, seconds after it)."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        reached(proc)
        ctrl_c(proc)
        sent = time.monotonic()
        try:
            _, err = proc.communicate(timeout=TIMEOUT + 5)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate(timeout=5)
        return proc.returncode, err, time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)


def _sigint(proc: Process) -> None:
    proc.send_signal(signal.SIGINT)


# (command line after the config, request at which the terminal hangs, simulator and device
# settings). Each is a phase where a cleanup might talk to the terminal on the way out.
PHASES: dict[str, tuple[list[str], int, dict[str, Any], dict[str, object]]] = {
    "ping, a round trip": (["devices", "ping", "lobby-1"], p.CMD_GET_TIME, {}, {}),
    "info, the counts": (["devices", "info", "lobby-1"], p.CMD_GET_FREE_SIZES, {}, {}),
    "pull, a chunk of the log": (["devices", "pull", "lobby-1"], p.CMD_READ_BUFFER, {}, {}),
    "pull, clearing the log": (
        ["devices", "pull", "lobby-1"],
        p.CMD_CLEAR_ATTLOG,
        {"record_capacity": 100},
        {"clear_after_read": True, "clear_threshold": 0.5},
    ),
    "time --set, the setting": (["devices", "time", "lobby-1", "--set"], p.CMD_SET_TIME, {}, {}),
    "doctor, the device check": (
        ["doctor", "--only", "devices", "--timeout", str(TIMEOUT)],
        p.CMD_GET_TIME,
        {},
        {},
    ),
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_ctrl_c_while_the_terminal_hangs_mid_command_exits_130_without_waiting_on_it(
    tmp_path: Path, phase: str
) -> None:
    args, command, sim_options, device = PHASES[phase]
    with simulator(users=3, records=90, **sim_options) as sim:
        reached = _hang_at(sim, command)
        config = _config(tmp_path / "punchgate.toml", sim.port, **device)

        def hung(_proc: Process) -> None:
            assert reached.wait(30), "the command never reached the phase under test"

        argv = [sys.executable, "-m", "agent.cli", *args, "--config", str(config)]
        code, err, took = _ctrl_c_when(argv, hung, _sigint)
    assert code == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "interrupted", err
    assert took < QUICK, f"{took:.1f}s after Ctrl-C: a cleanup waited on the hung terminal"


# Python runs a signal's C handler at once but raises KeyboardInterrupt only when the main
# thread next runs bytecode. A SIGINT that lands between the last such check and the start of a
# blocking call (a preempted process on a loaded machine) does not interrupt that call: it is
# seen only when the call returns. Delivering the signal to another thread of the process
# reproduces that state deterministically: handler run, main thread still blocked.
_LATE_SIGNAL = """
import signal, sys, threading
from agent.cli import main

def ctrl_c_missed_by_the_main_thread():
    sys.stdin.readline()  # the test says when
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)

threading.Thread(target=ctrl_c_missed_by_the_main_thread, daemon=True).start()
sys.argv = ["punchgate", *sys.argv[1:]]
main()
"""


def _blocked_in_poll(pid: int) -> bool:
    """Whether the process's main thread sleeps in poll() (Linux: /proc/PID/wchan)."""
    try:
        return "poll" in Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False


@pytest.fixture
def silent_udp() -> Iterator[socket.socket]:
    """A UDP port that takes datagrams and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture
def no_handshake() -> Iterator[socket.socket]:
    """A TCP port whose handshakes never complete (a full accept queue: SYNs are dropped)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    filler = socket.create_connection(server.getsockname(), timeout=5)  # fills the queue
    try:
        yield server
    finally:
        filler.close()
        server.close()


@pytest.mark.parametrize("wait", ["tcp handshake", "tcp reply", "udp reply"])
def test_a_ctrl_c_landing_just_before_a_wait_on_the_terminal_still_ends_it_at_once(
    tmp_path: Path, silent_udp: socket.socket, no_handshake: socket.socket, wait: str
) -> None:
    with SilentListener() as silent:
        port = {
            "tcp handshake": no_handshake.getsockname()[1],
            "tcp reply": silent.port,
            "udp reply": silent_udp.getsockname()[1],
        }[wait]
        transport = wait.split()[0]
        config = _config(tmp_path / "punchgate.toml", port, transport=f'"{transport}"')
        argv = [sys.executable, "-c", _LATE_SIGNAL, "devices", "ping", "lobby-1"]

        def waiting(proc: Process) -> None:
            if wait == "tcp reply":
                wait_for(lambda: silent.accepted, timeout=30, what="the TCP connection")
            elif wait == "udp reply":
                silent_udp.settimeout(30)
                silent_udp.recv(1024)  # CONNECT arrived: the command waits for its answer
            # (the handshake's wait is the first poll() of the process)
            wait_for(lambda: _blocked_in_poll(proc.pid), timeout=30, what=f"the {wait} wait")

        def ctrl_c(proc: Process) -> None:
            assert proc.stdin is not None
            proc.stdin.write("now\n")
            proc.stdin.flush()

        code, err, took = _ctrl_c_when([*argv, "--config", str(config)], waiting, ctrl_c)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "interrupted", err
    assert took < QUICK, f"{took:.1f}s after Ctrl-C: the wait on the terminal hid it"


def _blocked_in_futex(pid: int) -> bool:
    """Whether the process's main thread sleeps on a lock or event (Linux: /proc/PID/wchan)."""
    try:
        return "futex" in Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False


def test_a_ctrl_c_landing_just_before_the_doctor_waits_for_its_checks_ends_it_at_once(
    tmp_path: Path,
) -> None:
    """The doctor's main thread waits for its check threads; that wait is sliced too."""
    with SilentListener() as silent:
        config = _config(tmp_path / "punchgate.toml", silent.port)
        argv = [sys.executable, "-c", _LATE_SIGNAL, "doctor", "--only", "devices"]
        argv += ["--timeout", str(TIMEOUT), "--config", str(config)]

        def waiting(proc: Process) -> None:
            wait_for(lambda: silent.accepted, timeout=30, what="the device check's connection")
            wait_for(lambda: _blocked_in_futex(proc.pid), timeout=30, what="the doctor's wait")

        def ctrl_c(proc: Process) -> None:
            assert proc.stdin is not None
            proc.stdin.write("now\n")
            proc.stdin.flush()

        code, err, took = _ctrl_c_when(argv, waiting, ctrl_c)
    assert code == 130, err
    assert "interrupted" in err
    assert took < QUICK, f"{took:.1f}s after Ctrl-C: the doctor's wait for its checks hid it"
