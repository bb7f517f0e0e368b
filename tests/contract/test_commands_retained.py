"""Retained commands and their clearing, through the real daemon, as a backend operator does it."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.contract.conftest import ZONE, Site
from tests.contract.consumer import ContractConsumer


def test_clearing_a_retained_time_sync_with_an_empty_message_sets_no_terminal_clock(
    site: Site, consumer: ContractConsumer
) -> None:
    # The gateway's own advice for a retained command is "clear the retained one": in MQTT that
    # is an empty retained message, which the broker also forwards to the subscribed gateway.
    gw = site.gateway
    lobby = site.terminals["term-1"]
    site.start(consumer)
    lobby.jump_clock(timedelta(minutes=-10))
    consumer.command(gw, "time-sync", b"", expect_code="malformed", retain=True)
    consumer.wait(consumer.all_replied, 15, "the reply")
    drift = (datetime.now(ZONE).replace(tzinfo=None) - lobby.clock).total_seconds()
    site.agent.stop()
    assert consumer.final_violations() == [], "\n".join(consumer.final_violations())
    assert drift > 500, f"an empty message set the terminal's clock (drift now {drift} s)"
