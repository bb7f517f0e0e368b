"""``outbox show`` on a busy card reader: a voided punch stays voided, however many came after.

A card reader's unknown cards have no employee id, so their punches share no employee column;
``show`` found a punch's void among the device's newest 100,000 rows, and a reader that logged
more than that after the void (a month's outage at a plant gate) showed the punch as not voided.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from buffer.outbox import Outbox
from drivers.base import Punch, Suspect
from tests.buffer.factory import punches
from tests.cli.conftest import GATEWAY, cli

LATER = 100_001  # one past the rows ``show`` looked through
BATCH = 10_000


def test_show_finds_the_void_of_an_unknown_card_punch_after_a_month_of_punches(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    unknown_card = Punch(
        device_id="gate-reader",
        device_serial="SER-GATE",
        employee=None,
        card="0004521837",
        device_time=datetime(2026, 3, 1, 6, 58),
        time_utc=datetime(2026, 3, 1, 5, 58, tzinfo=UTC),
        utc_offset_minutes=60,
        suspect=frozenset({Suspect.UNKNOWN_CARD}),
    )
    with Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY, disk_reserve_bytes=0) as box:
        target = box.add_punches([unknown_card]).ids[0]
        void = box.add_void(target, operator="tech", reason="test badge, not a person")
        for start in range(0, LATER, BATCH):
            count = min(BATCH, LATER - start)
            box.add_punches(punches(start, count, device="gate-reader", serial="SER-GATE"))
    shown = cli("outbox", "show", target, "--json", "-c", str(make_config()))
    assert shown.code == 0, shown.stderr
    assert json.loads(shown.stdout)["voided_by"] == void.id
