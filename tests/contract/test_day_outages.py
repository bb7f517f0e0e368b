"""Outages through the real daemon: broker restart mid-batch, a killed daemon, redeliver, acks."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.localbroker import LocalMosquitto
from tests.contract.conftest import Site, make_site
from tests.contract.consumer import ContractConsumer


def _statuses(consumer: ContractConsumer, gw: str, state: str) -> list[dict[str, object]]:
    return [
        m.json() for m in consumer.on(f"punchgate/v1/{gw}/status") if m.json()["state"] == state
    ]


@pytest.mark.slow  # a whole day: a 1,800-record log, a broker restart, two daemon starts
def test_a_broker_restart_mid_batch_a_killed_daemon_and_redeliver_keep_seq_ids_and_replayed(
    site: Site, consumer: ContractConsumer, broker: LocalMosquitto
) -> None:
    gw = site.gateway
    lobby = site.terminals["term-1"]
    lobby.generate(records=1500, seed=7)
    site.agent.start()
    consumer.wait(lambda: len(consumer.punch_ids(gw)) > 100, 20, "the first batches")
    broker.restart()  # mid-backlog: batches in flight are lost or re-sent
    consumer.wait(
        lambda: len(consumer.punch_ids(gw)) == 1500, 30, "the whole log after the restart"
    )

    # The daemon is killed (power cut of the process, not of the disk) and started again.
    boot = consumer.boots(gw)[-1]
    lobby.generate(records=300, seed=8)
    consumer.wait(lambda: len(consumer.punch_ids(gw)) > 1500, 15, "the new records start")
    site.agent.kill()
    consumer.wait(lambda: _statuses(consumer, gw, "offline"), 15, "the will (offline)")
    site.agent.start()
    try:
        consumer.wait(lambda: consumer.boots(gw)[-1] > boot, 30, "a birth with a new boot")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{site.agent.tail(60)}") from None
    consumer.wait(lambda: len(consumer.punch_ids(gw)) == 1800, 30, "every record after the kill")

    # The backend lost data: a technician redelivers from seq 1700.
    site.cli("outbox", "redeliver", "--from-seq", "1700")
    consumer.wait(
        lambda: sum(1 for p in consumer.arrivals(gw) if p["seq"] >= 1700 and p["replayed"]) >= 101,
        20,
        "the redelivered punches",
    )
    site.agent.stop()
    consumer.wait(lambda: len(_statuses(consumer, gw, "offline")) >= 2, 10, "the clean offline")
    will, clean = _statuses(consumer, gw, "offline")[:2]
    assert set(will) == set(clean), (will, clean)
    assert consumer.final_violations() == [], "\n".join(consumer.final_violations())


def test_backend_acks_and_a_second_gateway_on_mqtt_311_keep_their_own_topics_and_seqs(
    tmp_path: Path, broker: LocalMosquitto, consumer: ContractConsumer
) -> None:
    acked = make_site(tmp_path, broker, "gw-acked", mqtt={"ack": "backend", "ack_timeout": 2})
    old = make_site(tmp_path, broker, "gw-old", mqtt={"protocol": "3.1.1"})
    try:
        consumer.auto_ack.add("gw-acked")
        # A retained command waits on the broker for the 3.1.1 gateway: handed over at its
        # connect, it is not run and gets an invalid reply; the empty message clearing it is
        # forwarded to the gateway and is not run either.
        consumer.command(
            "gw-old",
            "resend",
            {"request_id": "stale", "from_seq": 1},
            expect_code="invalid",
            retain=True,
        )
        acked.agent.start()
        old.agent.start()
        consumer.wait(lambda: consumer.boots("gw-acked") and consumer.boots("gw-old"), 20, "births")
        consumer.wait(consumer.all_replied, 15, "the stale reply")
        consumer.command("gw-old", "resend", b"", expect_code="malformed", retain=True)
        for n in range(1, 6):
            acked.terminals["term-1"].punch(f"100{n}")
            old.terminals["term-1"].punch(f"100{n}")
        consumer.wait(
            lambda: (
                len(consumer.punch_ids("gw-acked")) == 5 and len(consumer.punch_ids("gw-old")) == 5
            ),
            15,
            "five punches from each gateway",
        )
        # Both gateways: every command answered by the gateway addressed, on its own topic.
        for gw in ("gw-acked", "gw-old"):
            consumer.command(gw, "ping", {"request_id": f"p-{gw}"})
            consumer.command(gw, "resend", {"request_id": f"r-{gw}", "from_seq": 3})
        consumer.wait(consumer.all_replied, 15, "every reply")
        # Acked rows are delivered: nothing is pending at the acked gateway.
        consumer.wait(
            lambda: not acked.cli_json("outbox", "list", "--pending"), 15, "an empty backlog"
        )
        # Silence: the backend stops acking; the gateway re-sends, replayed, after its timeout.
        consumer.auto_ack.discard("gw-acked")
        acked.terminals["term-1"].punch("1001", state=1)
        consumer.wait(
            lambda: any(
                p["replayed"] and p["state"] == "out" for p in consumer.arrivals("gw-acked")
            ),
            15,
            "a re-send of the unacknowledged punch",
        )
        late = next(p for p in consumer.arrivals("gw-acked") if p["state"] == "out")
        consumer.ack("gw-acked", [late["id"]])
    finally:
        for site in (acked, old):
            site.agent.stop()
            for sim in site.terminals.values():
                sim.stop()
    assert consumer.final_violations() == [], "\n".join(consumer.final_violations())
