"""A day of punches through the real daemon, judged by a consumer written from the contract."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.contract.conftest import ZONE, Site
from tests.contract.consumer import ContractConsumer


def _employees(consumer: ContractConsumer, gateway: str) -> list[str | None]:
    return [p["employee"] for p in consumer.punches(gateway) if p["kind"] == "punch"]


@pytest.mark.slow  # a whole day of punches through a real daemon
def test_live_punches_an_outage_a_full_read_corrections_and_suspects_keep_the_contract(
    site: Site, consumer: ContractConsumer
) -> None:
    gw = site.gateway
    lobby, gate = site.terminals["term-1"], site.terminals["term-2"]
    consumer.fresh_only = True
    site.start(consumer)

    # Live punches on both terminals.
    lobby.punch("1001")
    gate.punch("2001", state=1)
    consumer.wait(lambda: len(consumer.punch_ids(gw)) == 2, 15, "two live punches")

    # An outage of the lobby terminal: punches pile up in its log and come by the next poll.
    lobby.faults.silent = True
    consumer.wait(
        lambda: any(
            m.json()["state"] == "offline"
            for m in consumer.on(f"punchgate/v1/{gw}/devices/term-1/status")
        ),
        15,
        "term-1 reported offline",
    )
    for user in ("1002", "1003", "1004"):
        lobby.punch(user)
    lobby.faults.silent = False
    consumer.wait(lambda: len(consumer.punch_ids(gw)) == 5, 20, "the outage's punches")

    # A technician reads the whole log: nothing new, nothing under a second id.
    site.cli("devices", "pull", "term-1", "--full")

    # Suspects: an impossible date and an unknown state code.
    lobby.faults.impossible_date_at = len(lobby.records)
    lobby.punch("1005")
    gate.punch("2002", state=77)
    # The simulator pushes 1005 live with the real time and logs it with an impossible date:
    # two records, two punches.
    consumer.wait(lambda: len(consumer.punch_ids(gw)) == 8, 20, "the suspect punches")

    # Punches the terminal dated in this year's DST gap and fold (Europe/Berlin).
    gate.punch("2004", when=datetime(2026, 3, 29, 2, 30))
    gate.punch("2005", when=datetime(2026, 10, 25, 2, 30))
    consumer.wait(lambda: len(consumer.punch_ids(gw)) == 10, 20, "the DST punches")

    # Manual correction and a void of a live punch.
    when = (datetime.now(ZONE) - timedelta(hours=3)).strftime("%Y-%m-%d %H:%M")
    site.cli(
        "punch", "add", "-e", "2003", "-d", "term-2", "--at", when, "-s", "out",
        "-r", "paper sheet", "--by", "hr-clerk", "--force",
    )  # fmt: skip
    first = consumer.punches(gw)[0]
    site.cli("punch", "void", first["id"], "--reason", "entered twice", "--by", "hr-clerk")
    consumer.wait(lambda: len(consumer.punch_ids(gw)) == 12, 20, "the manual punch and the void")

    site.agent.stop()
    consumer.wait(
        lambda: any(
            m.json()["state"] == "offline" for m in consumer.on(f"punchgate/v1/{gw}/status")
        ),
        10,
        "the clean-shutdown offline status",
    )
    kinds = sorted((p["source"], p["kind"]) for p in consumer.punches(gw))
    assert kinds.count(("manual", "punch")) == 1 and kinds.count(("manual", "void")) == 1, kinds
    suspects = [p["suspect"] for p in consumer.punches(gw) if p["suspect"]]
    for flag in ("time_invalid", "unknown_state", "time_nonexistent", "time_ambiguous"):
        assert [flag] in suspects, suspects
    assert consumer.final_violations() == [], "\n".join(consumer.final_violations())
