"""Faults: every failure is classified, named and actionable; nothing read is lost or mixed."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from config.errors import DeviceAuthError, DeviceIdentityError, DeviceUnavailable, ProtocolError
from drivers.base import Suspect
from drivers.zk import ZkDriver, ZkOptions
from drivers.zk import protocol as p
from drivers.zk.simulator import ZkSimulator
from tests.drivers.zk.driver_support import TZ, driver_for, expected, simulator, summary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_nothing_listening_is_unavailable_with_the_address_in_the_message() -> None:
    port = free_port()
    driver = ZkDriver("lobby-1", ZkOptions(host="127.0.0.1", port=port, timeout=1.0), TZ)
    with pytest.raises(DeviceUnavailable, match=rf"lobby-1 \(127.0.0.1:{port}\) refused"):
        driver.open()


def test_unresolvable_host_names_the_config_key() -> None:
    driver = ZkDriver("lobby-1", ZkOptions(host="no-such-host.invalid", timeout=1.0), TZ)
    with pytest.raises(DeviceUnavailable, match=r"cannot be resolved.*check host"):
        driver.open()


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_silent_terminal_times_out_within_the_configured_timeout(transport: str) -> None:
    with simulator() as sim:
        sim.faults.silent = True
        driver = driver_for(sim, transport, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(DeviceUnavailable, match=r"did not answer CONNECT within 0\.3s"):
            driver.open()
        assert time.monotonic() - started < 1.0


def test_terminal_going_silent_mid_session_times_out_and_reconnects_later() -> None:
    with simulator(users=3, records=20) as sim:
        driver = driver_for(sim, timeout=0.3)
        driver.open()
        _, mark = driver.read_new(None)
        sim.faults.silent = True
        started = time.monotonic()
        with pytest.raises(DeviceUnavailable, match="did not answer"):
            driver.read_new(mark)
        assert time.monotonic() - started < 1.0 and not driver.conn.connected
        sim.faults.silent = False
        sim.punch(sim.users[0].user_id)
        tail, _ = driver.read_new(mark)  # reconnects on its own
        driver.close()
    assert len(tail) == 1


def test_refused_tcp_connection_is_unavailable() -> None:
    with simulator() as sim:
        sim.faults.refuse = True
        with pytest.raises(DeviceUnavailable, match=r"lobby-1 .*(reset|closed)"):
            driver_for(sim).open()


def test_single_session_terminal_turns_a_second_client_away_clearly() -> None:
    with simulator() as sim:
        sim.faults.single_session = True
        first = driver_for(sim)
        first.open()
        try:
            with pytest.raises(DeviceUnavailable, match=r"(reset|closed).*session"):
                driver_for(sim, device_id="second").open()
        finally:
            first.close()


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_drop_mid_read_is_unavailable_and_the_next_read_gets_everything(transport: str) -> None:
    with simulator(users=5, records=400) as sim:
        driver = driver_for(sim, transport, timeout=0.5)
        sim.faults.drop_after_bytes = 5_000
        driver.open()
        with pytest.raises(DeviceUnavailable):
            driver.read_new(None)
        assert driver.last_watermark is None  # nothing half-read is reported as read
        sim.faults.drop_after_bytes = None
        punches, mark = driver.read_new(None)
        driver.close()
    assert [summary(p) for p in punches] == expected(sim.records) and mark["count"] == 400


def test_one_damaged_packet_is_read_again() -> None:
    with simulator(users=5, records=400) as sim:
        driver = driver_for(sim)
        driver.open()
        sim.faults.corrupt_checksum = "next"
        punches, _ = driver.read_new(None)
        driver.close()
    assert [summary(p) for p in punches] == expected(sim.records)


def test_a_damaged_data_frame_is_read_again() -> None:
    with simulator(users=5, records=400) as sim:
        driver = driver_for(sim)
        driver.open()
        original = sim.faults.take_corruption
        sent = {"n": 0}

        # Replies of a read: GET_TIME, GET_FREE_SIZES, 1503, then PREPARE_DATA and DATA frames.
        def corrupt_the_second_data_frame() -> bool:
            sent["n"] += 1
            return sent["n"] == 6 or original()

        sim.faults.take_corruption = corrupt_the_second_data_frame  # type: ignore[method-assign]
        with capture_logs() as logs:
            punches, _ = driver.read_new(None)
        driver.close()
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["zk_chunk_corrupt"]
    assert [summary(p) for p in punches] == expected(sim.records)


def test_persistently_damaged_packets_are_a_protocol_error() -> None:
    with simulator(users=5, records=50) as sim:
        driver = driver_for(sim)
        driver.open()
        sim.faults.corrupt_checksum = "all"
        with pytest.raises(ProtocolError, match=r"damaged.*check the network"):
            driver.read_new(None)
        driver.close()


def test_unknown_record_size_is_refused_never_misparsed() -> None:
    with simulator(users=5, records=30) as sim:
        sim.faults.record_size_override = 49  # seen in the field (pyzk PR #166)
        driver = driver_for(sim)
        driver.open()
        with pytest.raises(ProtocolError, match=r"1470 bytes for 30 records \(49 bytes each\)"):
            driver.read_new(None)
        assert driver.last_watermark is None  # nothing was parsed, so nothing counts as read
        sim.faults.record_size_override = None
        punches, _ = driver.read_new(None)
        driver.close()
    assert [summary(punch) for punch in punches] == expected(sim.records)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_right_comm_key_connects_and_reads(transport: str) -> None:
    with simulator(users=3, records=10, comm_key=123456) as sim:
        driver = driver_for(sim, transport, comm_key=123456)
        driver.open()
        punches, _ = driver.read_new(None)
        driver.close()
    assert len(punches) == 10


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_wrong_comm_key_is_an_auth_error_naming_the_password(transport: str) -> None:
    with simulator(comm_key=123456) as sim:
        driver = driver_for(sim, transport, comm_key=654321)
        with pytest.raises(
            DeviceAuthError, match=r"lobby-1 \(127.0.0.1:\d+\) refused the comm key"
        ):
            driver.open()


def test_missing_comm_key_says_to_set_it() -> None:
    with simulator(comm_key=99) as sim:
        with pytest.raises(DeviceAuthError, match="requires a comm key: set comm_key"):
            driver_for(sim).open()


def test_swapped_terminal_is_refused_with_the_serials_and_what_to_do() -> None:
    with simulator(users=2, records=5, serial="NEW123") as sim:
        driver = driver_for(sim)
        with pytest.raises(DeviceIdentityError) as caught:
            driver.open(expected_serial="OLD999")
        message = str(caught.value)
        assert "reports serial NEW123 but was OLD999" in message
        assert "swapped or re-addressed" in message and "--accept-serial NEW123" in message
        assert not driver.conn.connected


def test_serial_changing_between_reconnects_raises_before_any_punch_is_read() -> None:
    with simulator(users=2, records=5) as sim:
        driver = driver_for(sim)
        driver.open()
        _, mark = driver.read_new(None)
        driver.conn.close()  # connection lost
        sim.set_serial("SWAPPED1")
        sim.punch(sim.users[0].user_id)
        with pytest.raises(DeviceIdentityError, match="SWAPPED1 but was SIM0001"):
            driver.read_new(mark)


def test_check_identity_accepts_the_same_serial() -> None:
    with simulator() as sim:
        driver = driver_for(sim)
        driver.open(expected_serial="SIM0001")
        driver.check_identity("SIM0001")
        with pytest.raises(DeviceIdentityError):
            driver.check_identity("OTHER")
        driver.close()


def test_clock_jump_is_reported_and_flags_new_punches() -> None:
    with simulator(users=2, records=5) as sim:
        driver = driver_for(sim, max_drift=60)
        driver.open()
        _, mark = driver.read_new(None)
        assert driver.last_clock is not None and abs(driver.last_clock.drift_seconds or 0) <= 2
        sim.jump_clock(timedelta(hours=2))
        sim.punch(sim.users[0].user_id)
        tail, mark = driver.read_new(mark)
        assert driver.last_clock is not None
        assert 7190 <= (driver.last_clock.drift_seconds or 0) <= 7210
        assert tail[0].suspect == {Suspect.CLOCK_DRIFT}
        assert abs((sim.clock - driver.last_clock.gateway_time).total_seconds() - 7200) < 5
        driver.close()


def test_clock_sync_sets_the_terminal_when_drift_exceeds_max() -> None:
    with simulator(users=2, records=5) as sim:
        sim.jump_clock(timedelta(minutes=-5))
        driver = driver_for(sim, clock_sync=True, max_drift=60)
        driver.open()
        driver.read_new(None)
        driver.close()
        clock = driver.clock()
        driver.close()
    assert clock.drift_seconds is not None and abs(clock.drift_seconds) <= 2


def test_small_drift_is_left_alone() -> None:
    with simulator() as sim:
        sim.jump_clock(timedelta(seconds=30))
        driver = driver_for(sim, clock_sync=True, max_drift=60)
        driver.open()
        driver.read_new(None)
        drift = driver.clock().drift_seconds
        driver.close()
    assert drift is not None and 28 <= drift <= 32


def test_set_time_with_an_explicit_local_time() -> None:
    with simulator() as sim:
        driver = driver_for(sim)
        driver.open()
        target = sim.clock.replace(year=2030)
        reading = driver.set_time(target)
        driver.close()
    assert reading.device_time is not None and abs(reading.device_time - target) < timedelta(
        seconds=3
    )


def test_live_registration_refused_is_a_protocol_error_naming_polling(sim: ZkSimulator) -> None:
    driver = driver_for(sim)
    driver.open()
    sim.faults.unknown_commands = frozenset({p.CMD_REG_EVENT})  # firmware without live events
    with pytest.raises(ProtocolError, match="live = false"):
        driver.register_events(True)
    driver.close()


@pytest.fixture
def sim() -> Iterator[ZkSimulator]:
    with simulator() as running:
        yield running


def test_a_swapped_terminals_serial_is_quoted_in_the_command_to_paste() -> None:
    """The serial is what a device on the network says; the line goes into a root shell."""
    with simulator(users=2, records=5, serial="X; touch pwned") as sim:
        driver = driver_for(sim)
        with pytest.raises(DeviceIdentityError) as caught:
            driver.open(expected_serial="OLD999")
        assert "--accept-serial 'X; touch pwned'`" in str(caught.value)
