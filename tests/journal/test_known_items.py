"""What a technician reads when things go wrong: messages and the status's recent errors."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.daemon.live_status import LAST_ERRORS, ErrorLog
from agent.daemon.status_file import remove_stale_temp_files, write_status
from agent.mqtt.diagnose import build_ssl_context
from agent.mqtt.options import MqttOptions
from config.errors import BrokerError, ProtocolError, UsageError
from drivers.zk.simulator.server import ZkSimulator
from drivers.zk.transport import Endpoint, ZkConnection


def test_a_flapping_terminal_does_not_push_the_other_terminals_errors_out() -> None:
    errors = ErrorLog()
    errors.add("device gate-2", "gate-2 (10.0.0.21:4370): connection refused")
    errors.add("broker", "connection to mqtt://hr:1883 refused")
    for flap in range(200):
        reason = "timed out" if flap % 2 else "connection reset"
        errors.add("device lobby-1", f"lobby-1 (10.0.0.20:4370): {reason}")
    sources = [e["source"] for e in errors.items()]
    assert "device gate-2" in sources and "broker" in sources, sources
    assert len(errors.items()) <= LAST_ERRORS
    lobby = [e for e in errors.items() if e["source"] == "device lobby-1"]
    assert {e["error"] for e in lobby} == {
        "lobby-1 (10.0.0.20:4370): timed out",
        "lobby-1 (10.0.0.20:4370): connection reset",
    }
    assert sum(int(e.get("count", 1)) for e in lobby) == 200, lobby
    assert errors.items()[-1]["source"] == "device lobby-1"  # still newest last


def test_temp_status_files_left_by_a_power_cut_are_removed(tmp_path: Path) -> None:
    left = tmp_path / ".status-abc123.tmp"
    left.write_bytes(b'{"state": "runn')
    other = tmp_path / "outbox.sqlite3"
    other.write_bytes(b"keep")
    write_status(tmp_path, {"state": "running"})
    assert remove_stale_temp_files(tmp_path) == [left]
    assert not left.exists() and other.exists()
    assert (tmp_path / "status.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_missing_ca_file_is_named_without_python_errno_text(tmp_path: Path) -> None:
    missing = tmp_path / "ca.pem"
    options = MqttOptions(urls=("mqtts://127.0.0.1:8883",), ca_file=missing)
    with pytest.raises(BrokerError) as caught:
        build_ssl_context(options)
    text = str(caught.value)
    assert "[Errno" not in text, text
    assert str(missing) in text and "No such file or directory" in text, text


def test_simulator_port_taken_message_has_no_errno_and_a_bad_host_points_at_host() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        with pytest.raises(UsageError) as taken:
            ZkSimulator(port=port).start()
    finally:
        holder.close()
    assert "[Errno" not in str(taken.value) and "--port" in str(taken.value), taken.value
    with pytest.raises(UsageError) as foreign:
        ZkSimulator(host="192.0.2.77", port=0).start()  # TEST-NET: not an address of ours
    text = str(foreign.value)
    assert "[Errno" not in text and "--host" in text and "--port" not in text, text


@pytest.fixture
def web_server() -> Iterator[int]:
    """A loopback port that answers like a web server, whatever it is sent."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(1024)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    deadline = time.monotonic() + 2
                    while time.monotonic() < deadline and conn.recv(1024):
                        pass
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        try:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() does not
        except OSError:
            pass
        listener.close()
        thread.join(5)


def test_a_terminal_address_that_is_a_web_server_says_wrong_port(web_server: int) -> None:
    conn = ZkConnection(Endpoint("lobby-1", "127.0.0.1", web_server), timeout=3)
    with pytest.raises(ProtocolError) as caught:
        conn.connect()
    text = str(caught.value)
    assert "web server" in text and "port" in text, text
    assert f"127.0.0.1:{web_server}" in text, text
    assert "48545450" not in text, text


def test_writing_the_status_leaves_no_temp_file_when_the_disk_is_full(tmp_path: Path) -> None:
    # Sanity of the helper the daemon calls at start: nothing else is touched.
    (tmp_path / ".status-x.tmp").write_text("", encoding="utf-8")
    os.mkdir(tmp_path / ".status-dir.tmp")  # not ours to remove: a directory
    assert remove_stale_temp_files(tmp_path) == [tmp_path / ".status-x.tmp"]
    assert (tmp_path / ".status-dir.tmp").is_dir()
