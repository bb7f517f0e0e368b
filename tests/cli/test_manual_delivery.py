"""Manual punches and voids entered with the CLI reach the backend with their audit fields."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.localbroker import LocalMosquitto, free_port
from agent.mqtt import Contract, DeliveryWorker
from buffer.outbox import Outbox
from tests.cli.conftest import GATEWAY, cli
from tests.mqtt.conftest import PREFIX, assert_contract, fast_options, punches_in
from tests.support.mqtt import Collector

BERLIN = ZoneInfo("Europe/Berlin")


def test_manual_punch_import_and_void_are_delivered_within_the_contract(
    tmp_path: Path, broker: LocalMosquitto, make_config: Callable[..., Path]
) -> None:
    config = make_config(
        devices=[{"id": "lobby-1", "kind": "zk", "host": "127.0.0.1", "port": free_port()}],
    )
    at = (datetime.now(BERLIN) - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M")
    added = cli(
        "punch", "add", "-e", "1042", "-d", "lobby-1", "--at", at, "-s", "in",
        "-r", "terminal dead", "--by", "alice", "-c", str(config), "--json",
    )  # fmt: skip
    assert added.code == 0, added
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(f"employee,device,at,state,reason\n1043,lobby-1,{at},out,paper sheet\n")
    assert cli("punch", "import", str(sheet), "--by", "bob", "-c", str(config)).code == 0
    with Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY) as outbox:
        first = outbox.list()[0]
    assert cli("punch", "void", first.id, "-r", "wrong person", "-c", str(config)).code == 0

    collector = Collector(broker.url, [f"{PREFIX}/#"]).start()
    try:
        with Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY) as outbox:
            worker = DeliveryWorker(fast_options(broker.url), outbox, GATEWAY, site="test").start()
            try:
                assert worker.flush(10), "the manual punches were not delivered within 10 s"
            finally:
                worker.stop(timeout=1)
        messages = collector.wait(lambda m: len(punches_in(m)) >= 3, what="3 punches")
    finally:
        collector.stop()
    assert assert_contract(Contract.load(), messages) >= 1
    delivered = {p["seq"]: p for p in punches_in(messages)}
    assert delivered[1]["source"] == "manual" and delivered[1]["operator"] == "alice"
    assert delivered[1]["reason"] == "terminal dead" and delivered[1]["entered_at"]
    assert delivered[1]["verify"] == "manual" and delivered[1]["state"] == "in"
    assert delivered[2]["operator"] == "bob" and delivered[2]["employee"] == "1043"
    assert delivered[3]["kind"] == "void" and delivered[3]["void_of"] == first.id
    assert delivered[3]["reason"] == "wrong person"
