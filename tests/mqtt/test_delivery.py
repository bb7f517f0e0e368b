"""The delivery worker against a real Mosquitto: order, completeness, outages, acks, window."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion

from agent.localbroker import LocalMosquitto
from agent.mqtt import Contract, DeliveryWorker, MqttOptions
from buffer.outbox import Outbox
from tests.mqtt.clock import DrivenClock
from tests.mqtt.conftest import (
    GATEWAY,
    PREFIX,
    assert_contract,
    fast_options,
    make_punches,
    punches_in,
)
from tests.support.mqtt import Collector
from tests.support.slowlink import SlowLink, largest_send_buffer
from tests.support.wait import wait_for

Workers = Callable[..., DeliveryWorker]
Collectors = Callable[..., Collector]


def _seqs_complete(count: int) -> Callable[[list], bool]:
    return lambda ms: {p["seq"] for p in punches_in(ms)} >= set(range(1, count + 1))


def _first_arrivals(messages: list) -> dict[int, str]:
    """seq -> id in order of first arrival; a punch that arrives again carries the same id."""
    first: dict[int, str] = {}
    for punch in punches_in(messages):
        assert first.setdefault(punch["seq"], punch["id"]) == punch["id"], punch["seq"]
    return first


def _publish_ack(port: int, payload: dict) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        info = client.publish(f"{PREFIX}/{GATEWAY}/ack", json.dumps(payload), qos=1)
        info.wait_for_publish(timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_backlog_is_delivered_in_sequence_order_and_every_message_fits_the_contract(
    broker: LocalMosquitto,
    outbox: Outbox,
    workers: Workers,
    collectors: Collectors,
    contract: Contract,
) -> None:
    outbox.add_punches(make_punches(950))
    collector = collectors()
    worker = workers(fast_options(broker.url, batch_size=100), outbox, boot=7)
    assert worker.flush(10), "the worker did not drain 950 punches within 10 s"
    messages = collector.wait(_seqs_complete(950), what="950 punches")
    punches = punches_in(messages)
    assert [p["seq"] for p in punches] == list(range(1, 951))
    assert all(len(m.json()["punches"]) <= 100 for m in messages if m.topic.endswith("/punches"))
    assert all(p["replayed"] is False and p["site"] == "Berlin HQ" for p in punches)
    assert punches[0]["time"] == "2024-05-01T08:00:00+02:00"
    assert punches[0]["time_utc"] == "2024-05-01T06:00:00+00:00"
    assert assert_contract(contract, messages) >= 11
    assert outbox.stats().pending == 0
    assert worker.status().delivered == 950


def test_batches_respect_batch_bytes(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, collectors: Collectors
) -> None:
    outbox.add_punches(make_punches(60))
    collector = collectors()
    workers(fast_options(broker.url, batch_size=1000, batch_bytes=4096), outbox)
    messages = collector.wait(_seqs_complete(60), what="60 punches")
    batches = [m for m in messages if m.topic.endswith("/punches")]
    assert len(batches) > 1
    assert all(len(m.payload) <= 4096 for m in batches)


def test_broker_down_for_a_while_then_everything_arrives_in_order_without_gaps(
    broker: LocalMosquitto,
    outbox: Outbox,
    workers: Workers,
    collectors: Collectors,
    contract: Contract,
) -> None:
    collector = collectors()
    outbox.add_punches(make_punches(200))
    worker = workers(fast_options(broker.url, batch_size=50), outbox)
    assert worker.flush(10)
    broker.stop()
    wait_for(lambda: not worker.status().connected, timeout=5, what="worker notices the outage")
    outbox.add_punches(make_punches(500, start=200))
    # While the broker is down the punches wait in the outbox, and the worker says why.
    wait_for(lambda: worker.status().last_error, timeout=5, what="a last_error")
    # ... and how long it has been retrying, as `punchgate status` shows it.
    wait_for(lambda: worker.status().reconnect_attempts >= 3, timeout=5, what="retries counted")
    assert worker.status().as_dict()["reconnect_attempts"] >= 3
    assert outbox.stats().pending == 500
    broker.start()
    worker.wake()
    messages = collector.wait(_seqs_complete(700), timeout=15, what="all 700 punches")
    # QoS 1 between broker and subscriber may repeat a message caught by the broker stop;
    # first arrivals must be in order, and a repeat must be the very same punch.
    first = _first_arrivals(messages)
    assert list(first) == list(range(1, 701)), "punches arrived out of order or with gaps"
    assert worker.flush(10)
    assert assert_contract(contract, messages) > 0


def test_broker_restarted_mid_batch_duplicates_carry_the_same_id(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, collectors: Collectors
) -> None:
    collector = collectors()
    outbox.add_punches(make_punches(20_000))
    worker = workers(fast_options(broker.url, batch_size=20, inflight=16), outbox)
    wait_for(lambda: worker.status().delivered >= 2000, timeout=10, what="delivery under way")
    broker.restart()
    assert worker.flush(30), "the backlog did not drain after the broker restart"
    messages = collector.wait(_seqs_complete(20_000), timeout=15, what="every punch")
    first_id = _first_arrivals(messages)
    assert first_id == {row.seq: row.id for row in outbox.list(limit=20_000)}
    assert worker.status().connects >= 2


def test_a_slow_uplink_with_partial_socket_writes_keeps_one_clean_connection(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, collectors: Collectors
) -> None:
    """More in flight than the kernel's send buffer holds, on a congested link.

    Publishing then writes part of a message and leaves the rest to the network thread. Two
    threads writing to one socket interleaved their packets' bytes: the broker dropped the
    corrupt stream 15-21 times per 60,000 punches, and every drop re-sent the whole window.
    """
    backlog = 2 * largest_send_buffer()  # bytes: twice what the kernel can hold for us
    count = backlog // 500 + 1  # a punch's JSON is over 500 bytes
    collector = collectors([f"{PREFIX}/{GATEWAY}/punches"])
    outbox.add_punches(make_punches(count))
    link = SlowLink(broker.port)
    try:
        options = fast_options(link.url, batch_size=1000, batch_bytes=262_144, ack_timeout=30)
        worker = workers(options, outbox)
        assert worker.flush(60), worker.status().last_error
        status = worker.status()
        assert (status.connects, link.connections) == (1, 1), status.last_error
    finally:
        link.stop()
    messages = collector.wait(_seqs_complete(count), timeout=15, what="every punch")
    seqs = [p["seq"] for p in punches_in(messages)]
    assert seqs == list(range(1, count + 1)), "sent once each, in order, on one connection"


def test_a_link_that_goes_silent_is_noticed_and_everything_arrives_after_it_returns(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, collectors: Collectors
) -> None:
    """No reset, no FIN: the link just stops carrying packets (a dead router, no coverage).

    The worker must not wait on the dead connection forever: keepalive gives it up, the status
    says so, reconnect attempts time out with a reason, and once the link carries packets again
    everything pending arrives in order.
    """
    collector = collectors([f"{PREFIX}/{GATEWAY}/punches"])
    outbox.add_punches(make_punches(500))
    link = SlowLink(broker.port, stall=0.0, chunk=65_536, pause=0.0)
    try:
        worker = workers(fast_options(link.url, batch_size=50, inflight=4), outbox)
        assert worker.flush(10), worker.status().last_error
        link.freeze()
        outbox.add_punches(make_punches(500, start=500))
        worker.wake()
        # keepalive is 5 s: paho gives the connection up within two keepalive periods.
        wait_for(lambda: not worker.status().connected, timeout=20, what="the dead link noticed")
        wait_for(lambda: worker.status().last_error, timeout=10, what="a reason in the status")
        assert outbox.stats().pending > 0
        link.thaw()
        assert worker.flush(30), worker.status().last_error
    finally:
        link.stop()
    messages = collector.wait(_seqs_complete(1000), timeout=15, what="every punch")
    first = _first_arrivals(messages)
    assert list(first) == list(range(1, 1001)), "in order, without gaps"
    assert worker.status().connects >= 2


def test_backend_ack_mode_marks_delivered_only_on_the_backend_ack(
    broker: LocalMosquitto,
    outbox: Outbox,
    workers: Workers,
    collectors: Collectors,
    contract: Contract,
) -> None:
    collector = collectors([f"{PREFIX}/{GATEWAY}/punches"])
    outbox.add_punches(make_punches(30))
    worker = workers(fast_options(broker.url, ack="backend", batch_size=10), outbox)
    messages = collector.wait(_seqs_complete(30), what="30 punches")
    # PUBACKs arrived, but the backend has not confirmed: nothing is delivered yet.
    assert outbox.stats().pending == 30
    ids = [p["id"] for p in punches_in(messages)[:10]]
    ack = {"gateway_id": GATEWAY, "ids": ids}
    assert not contract.errors("ack", ack)
    _publish_ack(broker.port, ack)
    wait_for(lambda: outbox.stats().pending == 20, timeout=5, what="10 rows delivered by id")
    ack = {"contiguous_seq": 30}
    assert not contract.errors("ack", ack)
    _publish_ack(broker.port, ack)
    assert worker.flush(5)
    assert worker.status().delivered == 30


def _no_backend_yet(
    broker: LocalMosquitto,
    outbox: Outbox,
    workers: Workers,
    collectors: Collectors,
    timeout: float,
    **kwargs: Any,
) -> tuple[Collector, DeliveryWorker]:
    """Five punches, a worker in backend-ack mode, and no backend acking (yet)."""
    collector = collectors([f"{PREFIX}/{GATEWAY}/punches"])
    outbox.add_punches(make_punches(5))
    worker = workers(fast_options(broker.url, ack="backend", ack_timeout=timeout), outbox, **kwargs)
    return collector, worker


def _sent(collector: Collector, worker: DeliveryWorker, count: int, what: str) -> None:
    """Wait for the ``count``-th send of the five punches, and for the worker to count it.

    The worker counts a window in flight (and stamps its send time on its clock) just after
    publish(), so the broker may deliver it to the collector first: advancing the clock before
    the worker counted it would start the ack timeout late.
    """
    collector.wait(lambda ms: len(ms) >= count, what=what)
    wait_for(lambda: worker.status().in_flight == 5, timeout=5, what=f"{what}, counted")


def test_unacknowledged_batches_are_resent_after_ack_timeout_with_same_ids_and_replayed(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, collectors: Collectors
) -> None:
    clock = DrivenClock()
    collector, worker = _no_backend_yet(broker, outbox, workers, collectors, 10, clock=clock)
    _sent(collector, worker, 1, "the send")
    clock.advance(10)  # ack_timeout without an ack
    messages = collector.wait(lambda ms: len(punches_in(ms)) >= 10, what="a re-send")
    punches = punches_in(messages)
    first, again = punches[:5], punches[5:10]
    assert [p["id"] for p in first] == [p["id"] for p in again]
    assert all(p["replayed"] is False for p in first)
    assert all(p["replayed"] is True for p in again)
    # The timed-out attempt is counted on each row, with the reason, for `outbox show`.
    rows = outbox.list(limit=10)
    assert all(r.attempts >= 1 and r.last_error == "ack timeout" for r in rows)
    assert all(r.delivery == "pending" for r in rows)


def test_re_sends_to_a_silent_backend_back_off_and_an_ack_ends_the_silence(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, collectors: Collectors
) -> None:
    """A backend down for hours must not get the same window every ack_timeout, forever.

    The worker's clock is the test's: the waits are checked at their bounds, whatever the load.
    """
    clock = DrivenClock()
    collector, worker = _no_backend_yet(broker, outbox, workers, collectors, 10, clock=clock)
    _sent(collector, worker, 1, "the first send")
    clock.advance(10)  # the first timeout: re-sent at once
    _sent(collector, worker, 2, "the first re-send, at once")
    # After each further timeout in a row the re-send waits between half the cap and the cap,
    # the cap doubling from 2 x ack_timeout: 10-20 s, then 20-40 s, then 40-80 s.
    for sends, cap in ((2, 20.0), (3, 40.0), (4, 80.0)):
        clock.advance(10)
        wait_for(lambda: worker.status().in_flight == 0, timeout=5, what=f"timeout {sends}")
        clock.advance(cap / 2 - 0.5)
        clock.settle()
        assert worker.status().in_flight == 0, f"re-sent before {cap / 2:g} s of silence"
        assert "no acknowledgement from the backend" in (worker.status().last_error or "")
        clock.advance(cap / 2 + 0.5)
        _sent(collector, worker, sends + 1, f"the re-send within {cap:g} s")
    clock.advance(10)  # one more timeout: the re-send now waits 80-160 s
    wait_for(lambda: worker.status().in_flight == 0, timeout=5, what="timeout 5")
    # The backend answers: the punches are delivered, and the worker is back to normal.
    _publish_ack(broker.port, {"contiguous_seq": 5})
    wait_for(lambda: outbox.stats().pending == 0, timeout=10, what="delivered after the ack")
    assert worker.status().last_error is None
    outbox.add_punches(make_punches(5, start=5))
    worker.wake()
    messages = collector.wait(_seqs_complete(10), what="new punches sent without waiting")
    assert len(messages) == 6, "five sends of the silent window, then the new punches"


def test_a_late_ack_while_the_worker_waits_to_re_send_still_counts(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, collectors: Collectors
) -> None:
    """The backend acks by contiguous_seq after the gateway gave up on the window.

    The worker's clock is the test's, so the ack always lands while the re-send waits.
    """
    clock = DrivenClock()
    collector, worker = _no_backend_yet(broker, outbox, workers, collectors, 10, clock=clock)
    _sent(collector, worker, 1, "the send")
    clock.advance(10)  # the first timeout: re-sent at once
    _sent(collector, worker, 2, "the first re-send")
    clock.advance(10)  # the second timeout in a row: the window is given up for 10-20 s
    wait_for(lambda: worker.status().in_flight == 0, timeout=5, what="the second timeout")
    _publish_ack(broker.port, {"contiguous_seq": 5})
    wait_for(lambda: outbox.stats().pending == 0, timeout=5, what="delivered by the late ack")
    assert worker.status().delivered == 5
    clock.advance(20)  # past the longest wait: had the ack not counted, the window goes again
    outbox.add_punches(make_punches(1, start=5))
    worker.wake()
    messages = collector.wait(_seqs_complete(6), what="a later punch")
    seqs = [p["seq"] for p in punches_in(messages)]
    assert seqs == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 6], "nothing was sent again"


def test_in_flight_window_is_bounded_while_the_backend_does_not_ack(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, collectors: Collectors
) -> None:
    """A silent backend holds at most ``inflight`` batches in memory, not the backlog."""
    collector = collectors([f"{PREFIX}/{GATEWAY}/punches"])
    outbox.add_punches(make_punches(2000))
    worker = workers(
        fast_options(broker.url, ack="backend", batch_size=25, inflight=4, ack_timeout=60),
        outbox,
    )
    collector.wait(lambda ms: len(ms) >= 4, what="a full window")
    # The worker keeps polling; a fifth batch never goes out while four are unacknowledged.
    worker.wake()
    wait_for(lambda: worker.status().in_flight == 100, timeout=5, what="window of 100 punches")
    # Acks free two slots (half the window): the worker refills exactly those two.
    _publish_ack(broker.port, {"contiguous_seq": 50})
    collector.wait(lambda ms: len(ms) >= 6, what="the window to move by two batches")
    wait_for(lambda: worker.status().in_flight == 100, timeout=5, what="window full again")
    assert len(collector.on("/punches")) == 6
    # Acks are recorded in the outbox a little later, gathered (agent/mqtt/acks.py).
    wait_for(lambda: outbox.stats().pending == 1950, timeout=5, what="the two acks recorded")


def test_rows_in_flight_when_the_connection_drops_are_resent_after_reconnect(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, collectors: Collectors
) -> None:
    collector = collectors([f"{PREFIX}/{GATEWAY}/punches"])
    outbox.add_punches(make_punches(40))
    # No ack timeout can interfere (the re-sends must be the lost connection's, however slow).
    options = fast_options(broker.url, ack="backend", batch_size=20, ack_timeout=60)
    worker = workers(options, outbox)
    first = {p["seq"]: p["id"] for p in punches_in(collector.wait(_seqs_complete(40)))}
    broker.restart()

    def replayed(ms: list) -> list:
        return [p for p in punches_in(ms) if p["replayed"]]

    messages = collector.wait(
        lambda ms: {p["seq"] for p in replayed(ms)} == set(range(1, 41)),
        timeout=10,
        what="every unacknowledged punch re-sent with replayed: true",
    )
    assert all(first[p["seq"]] == p["id"] for p in replayed(messages))
    rows = outbox.list(limit=40)
    assert all(r.attempts >= 1 for r in rows)
    assert all((r.last_error or "").startswith("connection lost") for r in rows)
    _publish_ack(broker.port, {"contiguous_seq": 40})
    assert worker.flush(5)
    assert outbox.stats().pending == 0


class _AclMosquitto(LocalMosquitto):
    """The fixture broker plus an ACL file, to make it refuse publishes with a reason code."""

    def __init__(self, workdir: Path, acl: str) -> None:
        super().__init__(workdir)
        self.acl_path = workdir / "acl"
        self.acl = acl

    def _write_config(self) -> None:
        super()._write_config()
        self.acl_path.write_text(self.acl, encoding="utf-8")
        with self.config_path.open("a", encoding="utf-8") as f:
            f.write(f"acl_file {self.acl_path}\n")


def test_puback_with_failure_reason_code_keeps_rows_pending_until_the_broker_accepts(
    tmp_path: Path, outbox: Outbox, workers: Workers
) -> None:
    deny = f"topic readwrite {PREFIX}/{GATEWAY}/status\ntopic read #\n"
    broker = _AclMosquitto(tmp_path / "acl-broker", deny).start()
    try:
        outbox.add_punches(make_punches(10))
        with structlog.testing.capture_logs() as logs:
            worker = workers(fast_options(broker.url), outbox)
            wait_for(
                lambda: "refused" in (worker.status().last_error or ""),
                timeout=5,
                what="the refusal to be reported",
            )
            refused = outbox.list(limit=1)[0]
            wait_for(
                lambda: (outbox.get(refused.id) or refused).attempts >= 3,
                timeout=10,
                what="three refused attempts",
            )
        assert outbox.stats().pending == 10
        # What to change on the broker, said once (not at every re-send).
        assert f"allow write on {PREFIX}/{GATEWAY}/#" in (worker.status().last_error or "")
        warnings = [e for e in logs if e["event"] == "broker refused a batch; will re-send"]
        assert len(warnings) == 1, warnings
        broker.acl = f"topic readwrite {PREFIX}/#\n"
        broker.restart()
        assert worker.flush(10), "rows were not delivered once the broker accepted them"
        assert worker.status().delivered == 10
    finally:
        broker.stop()


class _SmallPacketMosquitto(LocalMosquitto):
    """A broker that announces (MQTT 5) and enforces a small Maximum Packet Size."""

    def _write_config(self) -> None:
        super()._write_config()
        text = self.config_path.read_text(encoding="utf-8")
        self.config_path.write_text(
            text.replace("max_packet_size 16777216", "max_packet_size 8192"), encoding="utf-8"
        )


def test_batches_shrink_to_the_brokers_maximum_packet_size(
    tmp_path: Path, outbox: Outbox, workers: Workers
) -> None:
    broker = _SmallPacketMosquitto(tmp_path / "small-broker").start()
    try:
        collector = Collector(broker.url, [f"{PREFIX}/{GATEWAY}/punches"]).start()
        try:
            outbox.add_punches(make_punches(200))
            worker = workers(fast_options(broker.url, batch_bytes=65_536), outbox)
            assert worker.flush(10), worker.status()
            messages = collector.wait(_seqs_complete(200), what="200 punches in small packets")
            assert max(len(m.payload) for m in messages) <= 8192 - 512
            assert worker.status().connects == 1, "a too-large packet would have cost a reconnect"
        finally:
            collector.stop()
    finally:
        broker.stop()


def test_mqtt_311_delivers_too(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, collectors: Collectors
) -> None:
    collector = collectors()
    outbox.add_punches(make_punches(30))
    worker = workers(fast_options(broker.url, protocol="3.1.1"), outbox)
    assert worker.flush(5)
    collector.wait(_seqs_complete(30), what="30 punches over MQTT 3.1.1")


def test_flush_tells_whether_anything_is_left_even_without_a_broker(
    outbox: Outbox, workers: Workers
) -> None:
    from agent.localbroker import free_port

    worker = workers(fast_options(f"mqtt://127.0.0.1:{free_port()}"), outbox)
    assert worker.flush(2), "an empty outbox counts as flushed while the broker is down"
    outbox.add_punches(make_punches(1))
    worker.wake()
    assert not worker.flush(0.3)
    # The refused connect may come after the flush's 0.3 s on a loaded machine: wait for it.
    wait_for(lambda: "refused" in (worker.status().last_error or ""), timeout=5, what="the refusal")


def test_options_come_from_settings_without_leaking_the_password() -> None:
    from config.settings import MqttSettings

    settings = MqttSettings(
        url=["mqtts://a.example:8883", "mqtt://b.example"], username="gw", password="s3cret"
    )
    options = MqttOptions.from_settings(settings, client_id="punchgate-gw-1")
    assert options.urls == ("mqtts://a.example:8883", "mqtt://b.example")
    assert options.password == "s3cret"
    assert "s3cret" not in repr(options)
    assert [(b.host, b.port, b.tls) for b in options.brokers] == [
        ("a.example", 8883, True),
        ("b.example", 1883, False),
    ]


def test_a_punch_that_cannot_be_encoded_is_skipped_and_kept_with_its_error(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, collectors: Collectors
) -> None:
    """One page per punch (batch_size 1, inflight 2): a page of only the bad row moves on."""
    collector = collectors([f"{PREFIX}/{GATEWAY}/punches"])
    outbox.add_punches(make_punches(5))
    conn = outbox._db()
    # A damaged stored time the encoder cannot parse; "suspect" sends the row to Python.
    conn.execute(
        "UPDATE punches SET received_at = 'not a time', suspect = 'clock_skew' WHERE seq = 3"
    )
    worker = workers(fast_options(broker.url, batch_size=1, inflight=2), outbox)
    messages = collector.wait(_seqs_complete_except(5, {3}), what="every other punch")
    assert 3 not in {p["seq"] for p in punches_in(messages)}
    wait_for(lambda: outbox.stats().pending == 1, timeout=5, what="the others delivered")
    # Read raw: the damaged row cannot become a StoredPunch either.
    attempts, error = conn.execute(
        "SELECT attempts, last_error FROM punches WHERE seq = 3"
    ).fetchone()
    assert attempts >= 1 and "cannot encode punch seq 3" in error
    assert outbox.stats().oldest_pending_seq == 3
    # The worker keeps going: a punch added now is delivered too.
    outbox.add_punches(make_punches(6)[5:])
    worker.wake()
    collector.wait(lambda ms: 6 in {p["seq"] for p in punches_in(ms)}, what="a later punch")


def _seqs_complete_except(count: int, missing: set[int]) -> Callable[[list], bool]:
    wanted = set(range(1, count + 1)) - missing
    return lambda ms: {p["seq"] for p in punches_in(ms)} >= wanted


def test_first_sends_are_not_replayed_though_the_stored_sent_mark_runs_ahead(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, collectors: Collectors
) -> None:
    """The stored mark is raised pages ahead; what is sent the first time says so all the same."""
    collector = collectors([f"{PREFIX}/{GATEWAY}/punches"])
    outbox.add_punches(make_punches(300))
    worker = workers(fast_options(broker.url, batch_size=10, inflight=2), outbox)
    assert worker.flush(10)
    messages = collector.wait(_seqs_complete(300), what="the backlog")
    assert not any(p["replayed"] for p in punches_in(messages))
    assert outbox.sent_mark() == 300  # ran ahead, capped at the newest row
    outbox.add_punches(make_punches(310)[300:])  # seqs 301-310: above the mark
    worker.wake()
    more = collector.wait(_seqs_complete(310), what="the new punches")
    assert not any(p["replayed"] for p in punches_in(more) if p["seq"] > 300)


def test_every_batch_and_status_name_the_outbox_numbering_their_seqs_belong_to(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, collectors: Collectors
) -> None:
    collector = collectors([f"{PREFIX}/{GATEWAY}/punches", f"{PREFIX}/{GATEWAY}/status"])
    outbox.add_punches(make_punches(25))
    worker = workers(fast_options(broker.url, batch_size=10), outbox)
    messages = collector.wait(_seqs_complete(25), what="25 punches")
    numbering = outbox.outbox_id()
    batches = [m.json() for m in messages if m.topic.endswith("/punches")]
    assert len(batches) == 3 and {b["outbox_id"] for b in batches} == {numbering}
    births = collector.wait(lambda ms: any(m.topic.endswith("/status") for m in ms), what="birth")
    status = next(m.json() for m in births if m.topic.endswith("/status"))
    assert status["state"] == "online" and status["outbox_id"] == numbering
    assert worker.identity.offline()["outbox_id"] == numbering  # the will and clean shutdown


def test_an_ack_counting_in_another_outbox_numbering_marks_nothing_by_seq(
    broker: LocalMosquitto, outbox: Outbox, workers: Workers, collectors: Collectors
) -> None:
    """A backend still counting this gateway's previous outbox (it was re-installed) would
    acknowledge by contiguous_seq punches it never had; its ids are the backend's word."""
    collector, _worker = _no_backend_yet(broker, outbox, workers, collectors, timeout=60)
    sent = punches_in(collector.wait(lambda ms: len(ms) >= 1, what="the send"))
    other = f"{int(outbox.outbox_id(), 16) ^ 1:016x}"
    _publish_ack(
        broker.port,
        {"ids": [p["id"] for p in sent[:2]], "contiguous_seq": 5, "outbox_id": other},
    )
    # One ack, one commit: had contiguous_seq counted, pending would go straight to 0.
    wait_for(lambda: outbox.stats().pending in (0, 3), timeout=5, what="the ack's ids")
    assert outbox.stats().pending == 3
    _publish_ack(broker.port, {"contiguous_seq": 5, "outbox_id": outbox.outbox_id()})
    wait_for(lambda: outbox.stats().pending == 0, timeout=5, what="this numbering's count")
