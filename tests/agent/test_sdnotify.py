"""sd_notify over a real AF_UNIX datagram socket, as systemd provides it."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.sdnotify import Notifier


@contextmanager
def notify_socket(tmp_path: Path, timeout: float) -> Iterator[tuple[socket.socket, Notifier]]:
    """A datagram socket where systemd would listen, and a Notifier pointed at it."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(timeout)
        yield server, Notifier({"NOTIFY_SOCKET": str(path)})


def test_messages_reach_the_notify_socket(tmp_path: Path) -> None:
    with notify_socket(tmp_path, timeout=2) as (server, notifier):
        assert notifier.ready("2 devices online, backlog 0")
        assert server.recv(4096) == b"READY=1\nSTATUS=2 devices online, backlog 0"
        assert notifier.watchdog()
        assert server.recv(4096) == b"WATCHDOG=1"


def test_abstract_namespace_socket_is_supported() -> None:
    name = f"punchgate-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(2)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).stopping()
        assert server.recv(4096) == b"STOPPING=1\nSTATUS=stopping"


def test_without_systemd_it_is_a_quiet_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    assert notifier.ready("x") is False


def test_watchdog_interval_comes_from_the_environment() -> None:
    env = {
        "NOTIFY_SOCKET": "/nonexistent",
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": str(os.getpid()),
    }
    assert Notifier(env).watchdog_interval == 30.0
    assert Notifier({**env, "WATCHDOG_PID": "1"}).watchdog_interval is None


def test_a_vanished_socket_does_not_raise(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.status("x") is False
    assert notifier.status("y") is False


def test_long_start_up_work_keeps_extending_the_start_timeout(tmp_path: Path) -> None:
    with notify_socket(tmp_path, timeout=5) as (server, notifier):
        with notifier.extending(step=0.05):
            # The "work": waiting for two extensions proves they repeat while it lasts.
            first, second = server.recv(4096), server.recv(4096)
        assert first == second == b"EXTEND_TIMEOUT_USEC=100000"
        notifier.status("after")
        # Once the block has ended nothing more is extended (one may have been in flight).
        late = server.recv(4096)
        if late != b"STATUS=after":
            assert late == b"EXTEND_TIMEOUT_USEC=100000"
            assert server.recv(4096) == b"STATUS=after"


def test_extending_without_systemd_just_runs_the_block() -> None:
    ran = []
    with Notifier({}).extending(step=0.01):
        ran.append(True)
    assert ran == [True]
