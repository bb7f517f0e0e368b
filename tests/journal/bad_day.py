"""A gateway's bad day, compressed: ``punchgate run`` in a subprocess, what it logs captured.

Real ZK simulators (one flapping, one never there), a pty serial clock, a real Mosquitto with a
password (first the wrong one), the broker stopped and back, the outbox's disk full and back
(``RLIMIT_FSIZE`` 0 set on the running daemon: no file may grow), a bad reload then a good one,
a time-sync command and SIGTERM. The log goes through a pipe (a pty for the console format),
which the file size limit does not touch.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.localbroker import LocalMosquitto, free_port
from drivers.zk.simulator.server import ZkSimulator
from tests.daemon.harness import GATEWAY, PREFIX, write_config, zk_device
from tests.drivers.serial.helpers import PtyLine
from tests.support.mqtt import Collector
from tests.support.wait import wait_for

USER = "gw-journal"
PASSWORD = "right horse battery staple"
WRONG_PASSWORD = "Wr0ng-Pa55-Typo"
COMM_KEY = 90817263
SECRETS = (PASSWORD, WRONG_PASSWORD, str(COMM_KEY))
STEADY_S = 8.0  # how long the steady failure (gate-2 gone, broker refusing) is watched


@dataclass
class LogCapture:
    """Every line the daemon wrote, read from a pipe or a pty master by a thread."""

    fd: int
    lines: list[tuple[float, str]] = field(default_factory=list)
    _buffer: bytes = b""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread = field(init=False)

    def start(self) -> LogCapture:
        self._thread = threading.Thread(target=self._read, name="log-capture", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        """Wait until the writer's end is closed and everything is read."""
        self._thread.join(timeout)

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # a pty master reads EIO once the child's side is closed
                chunk = b""
            if not chunk:
                break
            self._buffer += chunk
            *done, self._buffer = self._buffer.split(b"\n")
            now = time.monotonic()
            with self._lock:
                self.lines.extend((now, d.decode("utf-8", "replace").rstrip("\r")) for d in done)
        with self._lock:
            if self._buffer:
                self.lines.append((time.monotonic(), self._buffer.decode("utf-8", "replace")))

    def text(self) -> list[str]:
        with self._lock:
            return [line for _, line in self.lines]

    def between(self, start: float, end: float) -> list[str]:
        with self._lock:
            return [line for when, line in self.lines if start <= when < end]

    def events(self) -> list[dict[str, Any]]:
        """The JSON lines, parsed (other lines skipped)."""
        parsed = (_json(line) for line in self.text() if line.startswith("{"))
        return [event for event in parsed if event is not None]

    def count(self, text: str) -> int:
        return sum(text in line for line in self.text())

    def wait(self, predicate: Callable[[list[str]], bool], what: str, timeout: float = 20) -> None:
        try:
            wait_for(lambda: predicate(self.text()) or None, timeout=timeout, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the log ends with:\n{self.tail(30)}") from None

    def wait_more(self, text: str, than: int, what: str, timeout: float = 20) -> None:
        """Wait until more than ``than`` lines contain ``text``."""
        self.wait(lambda lines: sum(text in x for x in lines) > than, what, timeout)

    def tail(self, count: int = 40) -> str:
        return "\n".join(self.text()[-count:])


def _json(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def start_daemon(
    config: Path, *, console: bool = False, debug: bool = False
) -> tuple[subprocess.Popen[bytes], LogCapture]:
    """``punchgate run`` with its output captured (a pty for the console format)."""
    master, slave = os.openpty() if console else os.pipe()
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("NOTIFY_SOCKET", None)
    argv = [sys.executable, "-m", "agent.cli", *(["--debug"] if debug else [])]
    proc = subprocess.Popen(
        [*argv, "run", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    return proc, LogCapture(master).start()


def stop_daemon(proc: subprocess.Popen[bytes], log: LogCapture) -> int | None:
    """SIGTERM (SIGKILL after 30 s), then wait for the last log line; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code: int | None = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait(10)
    log.join(10)
    os.close(log.fd)
    return code


@dataclass
class Day:
    """What the bad day left: the captured log, the phases' monotonic times, the exit code."""

    log: LogCapture
    phases: dict[str, float]
    returncode: int | None = None


def _line(employee: str) -> bytes:
    return f"{employee};{time.strftime('%Y-%m-%d %H:%M:%S')}\r\n".encode()


@contextmanager
def _site(tmp_path: Path) -> Iterator[tuple[Path, LocalMosquitto, ZkSimulator, PtyLine, Path]]:
    """The broker (password), lobby-1 (comm key), the pty clock and a config (wrong password)."""
    passwords = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), USER, PASSWORD],
        check=True,
        capture_output=True,
        timeout=30,
    )
    broker = LocalMosquitto(tmp_path / "broker", password_file=passwords).start()
    lobby = ZkSimulator(port=free_port(), serial="JOURNAL1", comm_key=COMM_KEY).start()
    lobby.add_user("1001", "Ann")
    pty = PtyLine(tmp_path / "ttyCLOCK")
    secret = tmp_path / "mqtt.pass"
    secret.write_text(WRONG_PASSWORD + "\n", encoding="utf-8")
    secret.chmod(0o600)
    devices: list[dict[str, Any]] = [
        zk_device("lobby-1", lobby.port, poll_interval=1, timeout=1, comm_key=COMM_KEY),
        zk_device("gate-2", free_port(), poll_interval=1, timeout=1),  # nothing listens there
        {
            "id": "dock-3",
            "kind": "serial",
            "url": str(pty.link),
            "format": "lines",
            "pattern": r"^(?P<employee>\d+);(?P<time>[0-9: -]+)$",
        },
    ]
    config = write_config(
        tmp_path / "pg.toml",
        tmp_path / "state",
        broker.url,
        devices,
        agent={"status_interval": 1},
        mqtt={"username": USER, "password_file": str(secret)},
    )
    try:
        yield config, broker, lobby, pty, secret
    finally:
        lobby.stop()
        broker.stop()
        pty.close()


def run_short_day(tmp_path: Path, *, console: bool, debug: bool = False) -> Day:
    """The wrong password, a terminal gone, a bad reload, SIGTERM: a few seconds."""
    with _site(tmp_path) as (config, _broker, _lobby, _pty, _secret):
        proc, log = start_daemon(config, console=console, debug=debug)
        day = Day(log, {"start": time.monotonic()})
        try:
            log.wait(lambda t: any("Not authorized" in x for x in t), "the broker refusing")
            log.wait(lambda t: any("gate-2" in x and "refused" in x for x in t), "gate-2 down")
            good = config.read_text(encoding="utf-8")
            config.write_text(good.replace("[mqtt]", "[mqtt\n"), encoding="utf-8")
            proc.send_signal(signal.SIGHUP)
            log.wait(lambda t: any("config_reload_rejected" in x for x in t), "the bad reload")
        finally:
            day.returncode = stop_daemon(proc, log)
    return day


def run_bad_day(tmp_path: Path) -> Day:
    """The whole bad day (about a minute), JSON logs."""
    with _site(tmp_path) as (config, broker, lobby, pty, secret):
        proc, log = start_daemon(config)
        day = Day(log, {"start": time.monotonic()})
        try:
            _live_through(day, proc, config, broker, lobby, pty, secret)
        finally:
            day.phases["sigterm"] = time.monotonic()
            day.returncode = stop_daemon(proc, log)
    return day


def _live_through(
    day: Day,
    proc: subprocess.Popen[bytes],
    config: Path,
    broker: LocalMosquitto,
    lobby: ZkSimulator,
    pty: PtyLine,
    secret: Path,
) -> None:
    log, phases = day.log, day.phases
    log.wait(lambda t: any("Not authorized" in x for x in t), "the broker refusing")
    log.wait(lambda t: any('"device_online"' in x and "lobby-1" in x for x in t), "lobby-1")
    log.wait(lambda t: any("device_unreachable" in x and "gate-2" in x for x in t), "gate-2")
    # Steady failure: the broker refuses the password, gate-2 is gone. Volume is measured.
    phases["steady"] = time.monotonic()
    time.sleep(STEADY_S)
    phases["steady_end"] = time.monotonic()
    # A reload with a bad config, then one with the right password.
    good = config.read_text(encoding="utf-8")
    config.write_text(good.replace("[mqtt]", "[mqtt\n"), encoding="utf-8")
    proc.send_signal(signal.SIGHUP)
    log.wait(lambda t: any("config_reload_rejected" in x for x in t), "the bad reload")
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    config.write_text(good, encoding="utf-8")
    proc.send_signal(signal.SIGHUP)
    log.wait(lambda t: any("connected to broker" in x for x in t), "the broker", timeout=30)
    backend = Collector(broker.url, [f"{PREFIX}/{GATEWAY}/#"], client_id="journal-backend")
    backend.client.username_pw_set(USER, PASSWORD)
    backend.start()
    try:
        lobby.punch("1001")
        pty.write(_line("2002"))
        # The terminal that reboots in a loop.
        phases["flap"] = time.monotonic()
        for _ in range(3):
            down, back = log.count("device_unreachable"), log.count("device_recovered")
            lobby.stop()
            log.wait_more("device_unreachable", down, "lobby-1 down")
            lobby.start()
            log.wait_more("device_recovered", back, "lobby-1 back")
        phases["flap_end"] = time.monotonic()
        # The broker away and back.
        lost, connected = log.count("broker connection lost"), log.count("connected to broker")
        broker.stop()
        log.wait_more("broker connection lost", lost, "the broker lost")
        phases["broker_down"] = time.monotonic()
        time.sleep(4)
        phases["broker_down_end"] = time.monotonic()
        broker.start()
        log.wait_more("connected to broker", connected, "the broker back", timeout=30)
        # The outbox's disk full while punches arrive, then space back.
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
        phases["disk_full"] = time.monotonic()
        lobby.punch("1001")
        # Writes inside a file's present size still succeed (a checkpointed WAL is reused):
        # punches keep coming until one needs the file to grow.
        deadline = time.monotonic() + 20
        n = 0
        while log.count("device_store_error") == 0 and time.monotonic() < deadline:
            pty.write(_line(f"3{n:03d}"))
            n += 1
            time.sleep(0.05)  # the pace of a busy clock, not a wait for a condition
        log.wait(lambda t: any("device_store_error" in x for x in t), "the outbox refusing")
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
        phases["disk_back"] = time.monotonic()
        log.wait(lambda t: any('"was": "store_error"' in x for x in t), "storing again")
        # A time-sync command from the backend (reconnected after the broker's outage).
        wait_for(backend.client.is_connected, timeout=20, what="the backend reconnected")
        backend.client.publish(
            f"{PREFIX}/{GATEWAY}/cmd/time-sync", '{"request_id": "r-1"}', qos=1
        ).wait_for_publish(10)
        backend.wait(lambda ms: backend.on("/reply/time-sync"), timeout=20, what="the reply")
        phases["end"] = time.monotonic()
    finally:
        backend.stop()
