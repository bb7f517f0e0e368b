"""Field inputs that once got past the driver: each test pins one bug found by a hunt."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from config.errors import DeviceError, ProtocolError
from drivers.zk import protocol as p
from drivers.zk.reader import read_range
from drivers.zk.simulator.terminal import Handler, Reply
from drivers.zk.transport import Endpoint, ZkConnection
from tests.drivers.zk.driver_support import driver_for, expected, simulator, summary
from tests.drivers.zk.rawclient import RawClient


@pytest.mark.parametrize(
    ("variant", "served"),
    [("tcp-fw-40", 80), ("old-fw-16", 48), ("old-fw-8", 24)],
)
def test_records_of_a_multiple_of_the_known_size_are_refused_not_split_into_garbage_punches(
    variant: str, served: int
) -> None:
    # A firmware update that changes the record layout to a multiple of the old size: the
    # buffer still divides by the watermark's record size, but GET_FREE_SIZES counts half (or a
    # third) as many records. Reading it as old-size records invents punches from padding.
    with simulator(users=5, records=31, variant=variant) as sim:
        driver = driver_for(sim)
        driver.open()
        first, mark = driver.read_new(None)
        assert [summary(p) for p in first] == expected(sim.records)
        sim.faults.record_size_override = served
        with pytest.raises(ProtocolError, match=rf"{31 * served} bytes for 31 records"):
            driver.read_new(mark)
        assert driver.last_watermark == mark  # nothing was parsed, so nothing counts as read
        sim.faults.record_size_override = None
        again, _ = driver.read_new(mark)
        driver.close()
    assert again == []  # the layout is back: the tail read finds nothing new


def test_punches_landing_around_both_record_counts_are_read_with_the_known_record_size() -> None:
    # A busy terminal: a punch lands before and after each GET_FREE_SIZES answer, so neither
    # count matches the prepared buffer. The buffer's count lies between the two answers: the
    # watermark's record size reads it (the refusal above must not break this).
    with simulator(users=5, records=28) as sim:
        driver = driver_for(sim)
        driver.open()
        _, mark = driver.read_new(None)
        user = sim.users[0].user_id

        def busy(answer: Handler) -> Handler:
            def punching_around(session: Any, request: p.Packet) -> Any:
                sim.punch(user)
                reply = answer(session, request)
                sim.punch(user, state=1)
                return reply

            return punching_around

        restore = sim.intercept(p.CMD_GET_FREE_SIZES, busy)
        new, after = driver.read_new(mark)  # counts 29 and 31 around a buffer of 30 records
        restore()
        driver.close()
    assert after["count"] == 30
    assert [summary(punch) for punch in new] == expected(sim.records[28:30])


def test_log_is_not_cleared_when_the_terminal_cannot_be_disabled_for_the_clear() -> None:
    # Disabling the terminal is what stops a punch landing between the last check and
    # CLEAR_ATTLOG; a firmware that does not do it would lose such a punch: nothing is cleared.
    with simulator(users=2, records=46, record_capacity=50) as sim:
        sim.faults.unknown_commands = frozenset({p.CMD_DISABLEDEVICE})
        driver = driver_for(sim, clear_after_read=True, clear_threshold=0.9)
        driver.open()
        _, mark = driver.read_new(None)
        with capture_logs() as logs:
            assert driver.clear_log_if_due(int(mark["count"])) is False  # type: ignore[call-overload]
        assert len(sim.records) == 46
        sim.faults.unknown_commands = frozenset()
        assert driver.clear_log_if_due(int(mark["count"])) is True  # type: ignore[call-overload]
        driver.close()
        assert sim.records == []
    skipped = [e for e in logs if e["event"] == "zk_clear_skipped"]
    assert skipped and "DISABLE_DEVICE" in skipped[0]["reason"]


class _EndlessChunkTerminal:
    """A hostile terminal: CONNECT is accepted, then a 1504 is answered with PREPARE_DATA
    announcing ``announced`` bytes followed by ``frame``-byte DATA frames that never stop
    (until the client goes away or ``limit`` seconds pass: the test itself stays bounded)."""

    def __init__(self, announced: int, frame: int, limit: float = 3.0) -> None:
        self.announced, self.frame, self.limit = announced, frame, limit
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(limit)
        self.port = int(self.listener.getsockname()[1])
        self.frames_sent = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        end = time.monotonic() + self.limit
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(self.limit)
            deframer = p.TcpDeframer()
            try:
                while time.monotonic() < end:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    for raw in deframer.feed(chunk):
                        request = p.Packet.unpack(raw)
                        if request.command != p.CMD_READ_BUFFER:
                            conn.sendall(p.tcp_frame(p.Packet(p.ACK_OK, 7, request.reply).pack()))
                            continue
                        head = p.Packet(
                            p.CMD_PREPARE_DATA, 7, request.reply, p.prepare_data(self.announced)
                        )
                        conn.sendall(p.tcp_frame(head.pack()))
                        data = p.Packet(p.CMD_DATA, 7, request.reply, b"\x00" * self.frame)
                        framed = p.tcp_frame(data.pack())
                        while time.monotonic() < end:
                            conn.sendall(framed)
                            self.frames_sent += 1
            except OSError:
                return  # the client gave up and closed: what the test wants

    def close(self) -> None:
        self.listener.close()
        self.thread.join(self.limit + 1)


@pytest.mark.parametrize(
    ("announced", "frame", "message"),
    [
        (1008, 0, r"empty DATA frame"),
        (0xFFFFFFF0, 1008, r"announced 4294967280 bytes for a 1504 chunk of 1008"),
    ],
    ids=["empty-frames", "announced-beyond-the-chunk"],
)
def test_data_frames_that_never_add_up_to_the_chunk_are_a_protocol_error_not_a_hang(
    announced: int, frame: int, message: str
) -> None:
    terminal = _EndlessChunkTerminal(announced, frame)
    conn = ZkConnection(Endpoint("lobby-1", "127.0.0.1", terminal.port), timeout=1.0)
    try:
        conn.connect()
        started = time.monotonic()
        with pytest.raises(ProtocolError, match=message):
            read_range(conn, 0, 1008)
        assert time.monotonic() - started < 2.0  # refused at once, not after the stream stops
    finally:
        conn.close()
        terminal.close()


def test_full_read_after_an_empty_or_cleared_log_says_so_not_another_terminal() -> None:
    # The reason reaches `devices pull` and the logs: "another terminal" sends a technician
    # looking for a swapped terminal that does not exist.
    with simulator(users=2) as sim:
        driver = driver_for(sim)
        driver.open()
        _, mark = driver.read_new(None)
        assert mark["count"] == 0 and driver.last_read is not None
        assert driver.last_read.reason == "empty log"
        sim.punch(sim.users[0].user_id)
        punches, _ = driver.read_new(mark)
        driver.close()
    assert len(punches) == 1
    assert driver.last_read.full and "another terminal" not in driver.last_read.reason
    assert driver.last_read.reason == "log was empty when last read"


def test_a_udp_datagram_shorter_than_a_header_names_the_terminal_and_what_to_do() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(3.0)
    port = int(server.getsockname()[1])

    def answer_short() -> None:
        try:
            _request, peer = server.recvfrom(65535)
            server.sendto(b"\xd0\x07\x00", peer)  # three bytes: half an ACK_OK header
        except OSError:
            return

    thread = threading.Thread(target=answer_short, daemon=True)
    thread.start()
    conn = ZkConnection(Endpoint("lobby-1", "127.0.0.1", port, "udp"), timeout=2.0)
    try:
        with pytest.raises(ProtocolError, match=r"lobby-1 \(127\.0\.0\.1:\d+\).*3 bytes.*check"):
            conn.connect()
        assert not conn.connected and conn._link.sock is None  # closed: the next call reconnects
    finally:
        conn.close()
        thread.join(3.0)
        server.close()


def test_a_terminal_left_disabled_by_a_clear_cut_short_is_enabled_at_the_next_open() -> None:
    """A disabled terminal records no punch at all. If the connection drops between
    DISABLEDEVICE and ENABLEDEVICE (here: while it answers CLEAR_ATTLOG), the next open
    enables it again."""
    with simulator(users=2, records=46, record_capacity=50) as sim:
        driver = driver_for(sim, clear_after_read=True, clear_threshold=0.9)
        driver.open()
        _, mark = driver.read_new(None)

        def drop_instead(answer: Handler) -> Handler:
            return lambda session, request: Reply([], end_session=True)

        restore = sim.intercept(p.CMD_CLEAR_ATTLOG, drop_instead)
        with pytest.raises(DeviceError):
            driver.clear_log_if_due(int(mark["count"]))  # type: ignore[call-overload]
        restore()
        assert sim.disabled and sim.punch(sim.users[0].user_id) is None  # punches refused
        driver.open()
        assert not sim.disabled and sim.punch(sim.users[0].user_id) is not None
        driver.close()


def test_a_fresh_driver_enables_a_terminal_a_previous_process_left_disabled() -> None:
    """The process itself may die between DISABLEDEVICE and ENABLEDEVICE: with clear_after_read
    on, the first open enables the terminal. With it off we never disable, so we leave the
    terminal as other tools set it."""
    with simulator(users=1) as sim:
        with RawClient(sim.address) as c:  # the previous process, killed mid-clear
            c.connect()
            assert c.request(p.CMD_DISABLEDEVICE).command == p.ACK_OK
        assert sim.disabled
        untouched = driver_for(sim)
        untouched.open()
        untouched.close()
        assert sim.disabled
        driver = driver_for(sim, clear_after_read=True)
        driver.open()
        driver.close()
        assert not sim.disabled
