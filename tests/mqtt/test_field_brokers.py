"""Brokers configured the way IT configures Mosquitto 2.0: no retained messages, QoS 0 only.

The gateway registers its last will at QoS 1, retained, and publishes its status retained. A
broker with ``retain_available false`` refuses such a CONNECT (MQTT 5: CONNACK 0x9A), so the
gateway never connected and not one punch was delivered, though punches need no retain at all.
A broker with ``max_qos 0`` cannot take punches at least once; the technician must be told which
broker setting to change, by the daemon and by ``punchgate doctor``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import structlog

from agent.doctor.broker_checks import check_broker
from agent.doctor.result import Verdict
from agent.localbroker import LocalMosquitto
from agent.mqtt import DeliveryWorker
from buffer.outbox import Outbox
from tests.mqtt.conftest import GATEWAY, PREFIX, fast_options, make_punches, punches_in
from tests.mqtt.test_commands import Backend
from tests.support.mqtt import Collector
from tests.support.wait import wait_for

Workers = Callable[..., DeliveryWorker]


class _ConfiguredMosquitto(LocalMosquitto):
    """The harness broker plus some lines of a site's mosquitto.conf."""

    def __init__(self, workdir: Path, *lines: str) -> None:
        super().__init__(workdir)
        self.lines = lines

    def _write_config(self) -> None:
        super()._write_config()
        with self.config_path.open("a", encoding="utf-8") as config:
            config.write("\n" + "\n".join(self.lines) + "\n")


def test_a_broker_without_retained_messages_still_gets_every_punch_in_order_over_mqtt5(
    tmp_path: Path, outbox: Outbox, workers: Workers
) -> None:
    broker = _ConfiguredMosquitto(tmp_path / "broker", "retain_available false").start()
    try:
        collector = Collector(broker.url, [f"{PREFIX}/{GATEWAY}/#"]).start()
        try:
            outbox.add_punches(make_punches(50))
            with structlog.testing.capture_logs() as logs:
                worker = workers(fast_options(broker.url, batch_size=10), outbox)
                assert worker.flush(8), worker.status()
            messages = collector.wait(
                lambda ms: len(punches_in(ms)) >= 50 and collector.on("/status"),
                what="50 punches and the gateway status",
            )
            assert [p["seq"] for p in punches_in(messages)] == list(range(1, 51))
            assert collector.on("/status")[0].json()["state"] == "online"
            assert worker.status().connects == 1, "a retained publish would cost the connection"
            said = " ".join(str(e) for e in logs)
            assert "retain_available" in said, "the technician is not told what the broker lacks"
        finally:
            collector.stop()
    finally:
        broker.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_broker_that_allows_only_qos_0_is_named_with_the_setting_to_change(
    tmp_path: Path, outbox: Outbox, workers: Workers, protocol: str
) -> None:
    broker = _ConfiguredMosquitto(tmp_path / "broker", "max_qos 0").start()
    try:
        outbox.add_punches(make_punches(3))
        worker = workers(fast_options(broker.url, protocol=protocol), outbox)
        error = wait_for(
            lambda: worker.status().last_error, timeout=5, what="the refusal to be reported"
        )
        assert "max_qos" in error, error
        assert outbox.stats().pending == 3, "QoS 0 would lose punches: none may be marked"
    finally:
        broker.stop()


@pytest.mark.parametrize(
    ("line", "verdict", "setting"),
    [("max_qos 0", Verdict.FAIL, "max_qos"), ("retain_available false", Verdict.WARN, "retain")],
)
def test_doctor_login_reports_a_broker_limit_the_daemon_trips_over_on_mqtt5(
    tmp_path: Path, line: str, verdict: Verdict, setting: str
) -> None:
    broker = _ConfiguredMosquitto(tmp_path / "broker", line).start()
    try:
        options = fast_options(broker.url, client_id="punchgate-gw-1-doctor")
        results = {r.name: r for r in check_broker(broker.url, options, 3.0)}
        login = results["MQTT login"]
        assert login.verdict == verdict, login
        assert setting in login.detail + login.next_step, login
    finally:
        broker.stop()


PER_GATEWAY_ACL = f"""topic readwrite #
pattern write {PREFIX}/%u/#
pattern read {PREFIX}/%u/cmd/#
pattern read {PREFIX}/%u/ack
"""


def test_a_reply_the_acl_refuses_on_the_response_topic_arrives_on_the_gateways_reply_topic(
    tmp_path: Path, outbox: Outbox, workers: Workers
) -> None:
    # IT's per-gateway ACL lets a gateway write only under its own topics; a backend's MQTT 5
    # response topic lies elsewhere. The broker refused the reply (PUBACK 0x87) and the
    # backend's command timed out with nothing said anywhere.
    (tmp_path / "acl").write_text(PER_GATEWAY_ACL, encoding="utf-8")
    broker = _ConfiguredMosquitto(tmp_path / "broker", f"acl_file {tmp_path / 'acl'}").start()
    try:
        backend = Backend(broker.port)
        try:
            with structlog.testing.capture_logs() as logs:
                worker = workers(fast_options(broker.url, username=GATEWAY), outbox)
                wait_for(lambda: worker.connection.subscribed, timeout=5, what="subscribed")
                backend.send("ping", {"request_id": "r-1"}, correlation=b"c-1")
                topic, body, correlation = backend.reply_to("r-1")
            assert topic == f"{PREFIX}/{GATEWAY}/reply/ping"
            assert body["ok"] is True and correlation == b"c-1"
            said = [e for e in logs if backend.response_topic in str(e)]
            assert said and said[0]["log_level"] == "warning", logs
        finally:
            backend.client.disconnect()
            backend.client.loop_stop()
    finally:
        broker.stop()


def test_once_the_broker_keeps_retained_messages_again_the_gateway_status_is_retained_again(
    tmp_path: Path, outbox: Outbox, workers: Workers
) -> None:
    broker = _ConfiguredMosquitto(tmp_path / "broker", "retain_available false").start()
    try:
        worker = workers(fast_options(broker.url), outbox)
        wait_for(lambda: worker.status().connected, timeout=5, what="connected unretained")
        broker.lines = ("retain_available true",)
        broker.restart()
        wait_for(lambda: worker.status().connects >= 2, timeout=5, what="reconnected")
        now = Collector(broker.url, [f"{PREFIX}/{GATEWAY}/status"]).start()
        try:
            now.wait(lambda ms: ms, what="the status published after the reconnect")
        finally:
            now.stop()
        late = Collector(broker.url, [f"{PREFIX}/{GATEWAY}/status"]).start()
        try:
            retained = late.wait(lambda ms: ms, what="the retained status for a late subscriber")
            assert retained[0].retain and retained[0].json()["state"] == "online"
        finally:
            late.stop()
    finally:
        broker.stop()
