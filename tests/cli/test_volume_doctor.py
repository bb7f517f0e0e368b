"""The doctor's outbox checks on a big outbox: a month-long outage, millions of punches.

Opening the outbox runs ``quick_check``, and the integrity check reads every page and audits
every marked row: work proportional to the file, at ~60 MB/s here (a 1 GB outbox of 4,000,000
punches took 16.5 s) and slower on a gateway's SD card. The ``--timeout`` is the bound of one
network step (5 s by default); the outbox is no network step.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agent.doctor import run_doctor
from agent.doctor.result import Verdict
from buffer.outbox import Outbox
from tests.buffer.factory import punches
from tests.cli.conftest import GATEWAY

ROWS = 60_000
BATCH = 10_000


def never_builds(*_args: object) -> object:
    raise AssertionError("no terminal should be contacted")


def test_doctor_checks_a_big_outbox_whose_scan_outlasts_the_network_timeout(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    # 60,000 rows (~15 MB) stand for the field's 4,000,000 (1 GB): both take longer to scan
    # than the network timeout (here 0.02 s, there the default 5 s). The old doctor gave the
    # outbox job that network timeout and reported "no answer": a false "the outbox stayed
    # locked or the disk is very slow", and no word on the backlog or the free disk.
    path = tmp_path / "state" / "outbox.db"
    with Outbox.open(path, GATEWAY, disk_reserve_bytes=0) as outbox:
        for start in range(0, ROWS, BATCH):
            device = f"dev-{start // BATCH}"
            outbox.add_punches(punches(start, BATCH, device=device, serial=f"S-{device}"))
    report = run_doctor(make_config(), build=never_builds, only=["outbox"], timeout=0.02)  # type: ignore[arg-type]
    results = {r.name: r for r in report.results if r.family == "outbox"}
    assert set(results) == {"integrity", "free disk", "pending punches"}, results
    assert results["integrity"].verdict == Verdict.OK, results["integrity"]
    assert results["free disk"].verdict == Verdict.OK, results["free disk"]
    assert f"{ROWS} waiting for delivery" in results["pending punches"].detail
