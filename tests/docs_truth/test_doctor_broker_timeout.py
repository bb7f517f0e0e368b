"""The doctor's broker steps wait as long as the daemon would (``mqtt.connect_timeout``)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.cli.conftest import cli


@contextmanager
def syn_dropping_port() -> Iterator[int]:
    """A loopback port whose accept queue is full: the kernel drops further SYNs (no answer)."""
    listener = socket.socket()
    filler = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler.connect(("127.0.0.1", port))  # fills the one-slot queue; nobody accepts
        yield port
    finally:
        filler.close()
        listener.close()


def broker_checks_timed(
    make_config: Callable[..., Path], port: int, connect_timeout: float
) -> tuple[dict[str, dict[str, str]], float]:
    """The doctor's broker checks (as JSON) on a loopback port, and how long they took."""
    config = make_config(
        mqtt={"url": f"mqtt://127.0.0.1:{port}", "connect_timeout": connect_timeout}
    )
    started = time.monotonic()
    outcome = cli("doctor", "--only", "broker", "--json", "--config", str(config))
    took = time.monotonic() - started
    assert outcome.code == 6, outcome
    return {c["check"]: c for c in json.loads(outcome.stdout)["checks"]}, took


def test_doctor_tcp_check_waits_only_the_configured_connect_timeout(
    make_config: Callable[..., Path],
) -> None:
    with syn_dropping_port() as port:
        checks, took = broker_checks_timed(make_config, port, 1)
    tcp = checks["TCP connect"]
    assert tcp["verdict"] == "fail", tcp
    assert "within 1s" in tcp["detail"], tcp
    assert "mqtt.connect_timeout" in tcp["detail"], tcp
    assert took < 4.5, f"the doctor waited {took:.1f}s, the daemon gives up after 1s"


def test_doctor_login_check_waits_only_the_configured_connect_timeout(
    make_config: Callable[..., Path],
) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # handshakes complete; nobody ever answers CONNECT
        checks, took = broker_checks_timed(make_config, silent.getsockname()[1], 1)
    login = checks["MQTT login"]
    assert login["verdict"] == "fail", login
    assert "no CONNACK within 1s" in login["detail"], login
    assert took < 4.5, f"the doctor waited {took:.1f}s, the daemon gives up after 1s"


def test_doctor_timeout_below_connect_timeout_still_bounds_the_broker_steps(
    make_config: Callable[..., Path],
) -> None:
    with syn_dropping_port() as port:
        config = make_config(mqtt={"url": f"mqtt://127.0.0.1:{port}", "connect_timeout": 30})
        outcome = cli(
            "doctor", "--only", "broker", "--json", "--timeout", "1", "--config", str(config)
        )
    tcp = {c["check"]: c for c in json.loads(outcome.stdout)["checks"]}["TCP connect"]
    assert tcp["verdict"] == "fail" and "within 1s" in tcp["detail"], tcp
