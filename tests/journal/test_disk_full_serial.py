"""A serial clock's punches while the outbox's disk is full: kept, delivered when space is back.

A serial line has no memory: a punch the outbox refuses exists only in the daemon. The disk
is made full for the running daemon with ``RLIMIT_FSIZE`` 0 (no file may grow, as on a full
disk); its log goes through a pipe, which the limit does not touch.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

from agent.localbroker import LocalMosquitto
from tests.daemon.harness import GATEWAY, PREFIX, write_config
from tests.drivers.serial.helpers import PtyLine
from tests.journal.bad_day import start_daemon, stop_daemon
from tests.support.mqtt import Collector, Message


def _employees(messages: list[Message]) -> set[str]:
    return {
        p["employee"]
        for m in messages
        if m.topic == f"{PREFIX}/{GATEWAY}/punches"
        for p in m.json()["punches"]
    }


def _line(employee: str) -> bytes:
    return f"{employee};{time.strftime('%Y-%m-%d %H:%M:%S')}\r\n".encode()


def test_serial_punches_refused_by_a_full_disk_are_delivered_when_space_is_back(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    pty = PtyLine(tmp_path / "ttyCLOCK")
    device = {
        "id": "dock-3",
        "kind": "serial",
        "url": str(pty.link),
        "format": "lines",
        "pattern": r"^(?P<employee>\d+);(?P<time>[0-9: -]+)$",
    }
    config = write_config(tmp_path / "pg.toml", tmp_path / "state", broker.url, [device])
    collector = Collector(broker.url, [f"{PREFIX}/{GATEWAY}/punches"]).start()
    proc, log = start_daemon(config)
    try:
        log.wait(lambda t: any("connected to broker" in x for x in t), "broker connected")
        log.wait(lambda t: any('"device_online"' in x for x in t), "dock-3 online")
        pty.write(_line("2001"))
        collector.wait(lambda ms: "2001" in _employees(ms), timeout=15, what="2001 delivered")
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
        for employee in ("3001", "3002", "3003"):
            pty.write(_line(employee))
        log.wait(lambda t: any("device_store_error" in x for x in t), "the outbox refusing")
        pty.write(_line("3004"))  # while the worker waits to retry
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
        pty.write(_line("3005"))
        collector.wait(
            lambda ms: {"3001", "3002", "3003", "3004", "3005"} <= _employees(ms),
            timeout=30,
            what="every punch read while the disk was full",
        )
        store_errors = [x for x in log.text() if "device_store_error" in x]
        assert len(store_errors) == 1, store_errors  # one state change, not a line per retry
        assert "stay on the terminal" not in store_errors[0], store_errors[0]
        reopened = [x for x in log.text() if "serial port opened" in x]
        assert len(reopened) == 1, reopened  # the port stays open: the line's bytes wait there
        assert any("device_recovered" in x for x in log.text()), log.tail()
    finally:
        stop_daemon(proc, log)
        collector.stop()
        pty.close()
