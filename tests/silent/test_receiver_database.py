"""The receiver's PostgreSQL goes silent: the server (or a proxy, a NAT on the way) keeps the
connection open and never answers. The store must fail within its deadline and say so, and the
receiver must still stop on SIGTERM in bounded time."""

from __future__ import annotations

import fcntl
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from agent.localbroker import LocalMosquitto
from agent.mqtt.contract import encode_batch
from agent.receiver.store import PostgresStore, StoreError
from config.errors import PunchgateError
from tests.receiver.conftest import publish
from tests.silent.peers import SilentListener
from tests.support.slowlink import SlowLink
from tests.support.wait import wait_for

PREFIX = "punchgate/v1"


def _punch(seq: int) -> dict[str, Any]:
    return {"id": f"gw-a-{seq}", "gateway_id": "gw-a", "seq": seq, "replayed": False}


@pytest.fixture
def relay(pg_url: str) -> Iterator[tuple[SlowLink, str]]:
    """A TCP relay in front of the test cluster (its ``freeze()`` makes the server silent)."""
    port = int(re.search(r"@127\.0\.0\.1:(\d+)/", pg_url).group(1))  # type: ignore[union-attr]
    link = SlowLink(port, stall=0, pause=0, chunk=65_536)
    try:
        yield link, pg_url.replace(f"127.0.0.1:{port}/", f"127.0.0.1:{link.port}/", 1)
    finally:
        link.stop()


def _held_back(link: SlowLink) -> int:
    """Bytes the frozen relay holds unread: sent by a client, never answered."""
    held = 0
    for sock in list(link._sockets):
        try:
            held += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0]
        except OSError:
            pass
    return held


@contextmanager
def _receiving(broker_url: str, db: str, *extra: str) -> Iterator[subprocess.Popen[str]]:
    """``punchgate receive`` in a subprocess, past its banner; killed if a test leaves it."""
    argv = [sys.executable, "-m", "agent.cli", "receive", "--url", broker_url, "--db", db, *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert "receiving" in proc.stdout.readline()
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)


def _in_thread(func: Any) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            result["value"] = func()
        except PunchgateError as exc:
            result["error"] = exc
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def test_a_store_to_a_postgresql_that_stops_answering_fails_within_its_deadline_and_says_so(
    relay: tuple[SlowLink, str],
) -> None:
    link, url = relay
    store = PostgresStore(url, answer_timeout=1.0)
    try:
        assert store.store([_punch(1)]) == 1
        link.freeze()
        thread, result = _in_thread(lambda: store.store([_punch(2)]))
        thread.join(8)
        assert not thread.is_alive(), "store() waited on a silent PostgreSQL without end"
        error = result["error"]
        assert isinstance(error, StoreError)
        assert "did not answer within 1s" in str(error)
        assert "check" in str(error)
        link.thaw()
        assert store.store([_punch(2)]) == 1  # a new connection once the server answers again
        assert store.count() == 2
    finally:
        link.thaw()
        store.close()


def test_closing_the_store_while_postgresql_is_silent_returns_in_bounded_time(
    relay: tuple[SlowLink, str],
) -> None:
    link, url = relay
    store = PostgresStore(url, answer_timeout=60.0)  # the statement alone would wait a minute
    link.freeze()
    busy, _result = _in_thread(store.count)
    wait_for(lambda: store._lock.locked(), timeout=5, what="the count under way")
    closing, _closed = _in_thread(store.close)
    closing.join(8)
    assert not closing.is_alive(), "close() waited on a statement a silent server never answers"
    busy.join(5)
    assert not busy.is_alive(), "the statement under way did not end when the store closed"


def _stop_in_time(proc: subprocess.Popen[str], within: float) -> tuple[str, str]:
    """SIGTERM; the output, failing the test unless it ended ``within`` seconds."""
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=25)
    except subprocess.TimeoutExpired:
        pytest.fail("the receiver was still running 25 s after SIGTERM (systemd kills at 30)")
    assert time.monotonic() - began < within
    return out, err


@pytest.mark.slow  # about 9 s: the receiver gives its store 5 s to finish before cutting it
def test_sigterm_stops_the_receiver_in_time_while_its_postgresql_is_silent(
    broker: LocalMosquitto, relay: tuple[SlowLink, str]
) -> None:
    """systemd waits TimeoutStopSec (30 s in our unit) and then kills: the receiver must end
    by itself well before, with the batch it could not store left unacknowledged."""
    link, url = relay
    with _receiving(broker.url, url) as proc:
        wait_for(lambda: link.connections >= 1, timeout=5, what="the receiver's connection")
        link.freeze()
        batch = (f"{PREFIX}/gw-a/punches", encode_batch("gw-a", [_punch(1)]))

        def held() -> int:  # published again until the receiver has subscribed and took one
            publish(broker.port, [batch])
            return _held_back(link)

        wait_for(held, timeout=8, interval=0.2, what="the insert held by the silent server")
        out, err = _stop_in_time(proc, 15)
    assert "did not answer" in err + out


def test_opening_a_postgresql_that_accepts_and_never_answers_says_what_to_check() -> None:
    """libpq's own words were all: "connection timeout expired"."""
    with SilentListener() as silent:
        url = f"postgresql://hr@127.0.0.1:{silent.port}/hr"
        began = time.monotonic()
        with pytest.raises(StoreError) as raised:
            PostgresStore(url, connect_timeout=2)
        assert time.monotonic() - began < 2 + 3
    message = str(raised.value)
    assert "did not complete the connection within 2s" in message, message
    assert f"127.0.0.1:{silent.port}" in message, message
    assert "check that the server is up" in message, message


def test_the_receiver_outlives_a_database_outage_that_breaks_its_periodic_report(
    broker: LocalMosquitto, relay: tuple[SlowLink, str]
) -> None:
    """The store thread holds batches through an outage and retries; the periodic report,
    run on the main thread, raised the same outage's StoreError out of the command: the
    receiver exited mid-outage, leaving every gateway's punches unreceived until restarted."""
    link, url = relay
    with _receiving(broker.url, url, "--report-interval", "0.2") as proc:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]  # stats, a report on a sound database
        assert any("no punches stored yet" in line for line in lines), lines
        link.stop()  # the database goes away: connections reset, new ones refused
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and proc.poll() is None:
            proc.stdout.readline()  # reports (or what it says instead) keep coming
        assert proc.poll() is None, f"the receiver exited: {proc.communicate(timeout=5)[1]}"
        _stop_in_time(proc, 20)
        assert proc.returncode == 0


@pytest.mark.slow  # about 15 s: the receiver waits 10 s before it cuts a silent database off
def test_sigterm_during_a_report_on_a_silent_postgresql_ends_the_receiver_in_time(
    broker: LocalMosquitto, relay: tuple[SlowLink, str]
) -> None:
    """The report runs on the main thread: stuck on a silent server it did not see the signal
    until the statement's deadline (30 s, and as long again for the next query)."""
    link, url = relay
    with _receiving(broker.url, url, "--report-interval", "0.5") as proc:
        link.freeze()
        wait_for(lambda: _held_back(link), timeout=5, what="a report query held by the server")
        _stop_in_time(proc, 20)
        assert proc.returncode == 0
