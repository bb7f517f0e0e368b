"""Chaos: nothing recorded by a terminal is lost or duplicated, whatever happens around the agent.

Several simulated terminals record punches while the agent process is SIGKILLed at random
moments and restarted, the broker is stopped or killed and restarted, and terminals go silent,
refuse connections, drop connections mid-read, dribble their replies and jump their clocks.
At the end every punch the terminals recorded is in the receiver exactly once by id, in
per-device order, and the outbox agrees.

CI runs a short version (``PUNCHGATE_CHAOS_SECONDS``, default 60 s of chaos). The soak runs
only when asked for: ``pytest tests/chaos -m soak`` (``PUNCHGATE_SOAK_SECONDS``, default 1800).
Set ``PUNCHGATE_CHAOS_SEED`` to replay a run.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest

from buffer.outbox import Outbox
from tests.chaos.harness import GATEWAY, ChaosRig
from tests.support.wait import wait_for

SETTLE_TIMEOUT = 120.0  # after the chaos: retries back off to at most ~10 s, acks time out in 4 s


def _run_chaos(
    workdir: Path, *, seconds: float, terminals: int, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = int(os.environ.get("PUNCHGATE_CHAOS_SEED") or random.randrange(1_000_000))
    users = int(seconds * 2) + 50  # each punch uses a fresh user: ids never collide by design
    rig = ChaosRig(workdir, terminals=terminals, users=users, seed=seed, punch_gap=0.5)
    actions: list[str] = []
    try:
        rig.start()
        pace = threading.Event()  # the chaos timeline; never set, only waited on
        begin = time.monotonic()
        end = begin + seconds
        next_action = begin + rig.rng.uniform(1.0, 3.0)
        while (now := time.monotonic()) < end:
            rig.run_due(now)
            if now >= next_action:
                # Every run kills the agent and takes the broker down at least once.
                force = None
                if not rig.counts.agent_kills and now > begin + seconds / 3:
                    force = "kill"
                elif not rig.broker_down_count and now > begin + seconds * 2 / 3:
                    force = "broker"
                actions.append(rig.random_action(force))
                next_action = now + rig.rng.uniform(1.0, 3.5)
            pace.wait(0.05)
        rig.stop_producing()
        rig.settle()
        expected = {t.device_id: t.recorded() for t in rig.terminals}
        produced = sum(len(v) for v in expected.values())

        def all_received() -> bool:
            return rig.store.count() >= produced

        try:
            wait_for(all_received, timeout=SETTLE_TIMEOUT, what=f"{produced} punches received")
        except AssertionError:
            have = {(p["device_id"], p["employee"]) for p in rig.received()}
            missing = [
                (d, e, t) for d, recs in expected.items() for e, t in recs if (d, e) not in have
            ]
            raise AssertionError(
                f"seed {seed}: {len(missing)} of {produced} punches never arrived, e.g. "
                f"{missing[:5]}; actions {actions}\nagent log tail:\n{rig.agent.tail(60)}"
            ) from None
        assert rig.stop_agent() == 0, rig.agent.tail(40)

        received = rig.received()
        # Exactly once by id, and nothing that no terminal recorded.
        ids = [p["id"] for p in received]
        assert len(ids) == len(set(ids)) == produced, f"seed {seed}"
        got = {
            device: [
                (p["employee"], p["device_time"]) for p in received if p["device_id"] == device
            ]
            for device in expected
        }
        for device, records in expected.items():
            # In seq order the backend sees each terminal's punches in the order it recorded them.
            assert got[device] == records, f"seed {seed}: {device} out of order or altered"
        # The outbox agrees: everything delivered, the same ids, a clean integrity check.
        with Outbox.open(rig.state / "outbox.db", GATEWAY) as box:
            stats = box.stats()
            stored = [row.id for row in box.iter_rows()]
            problems = box.check()
        assert stats.pending == 0 and problems == []
        assert sorted(stored) == sorted(ids)
        counts = rig.counts
        faults = ", ".join(f"{k} {v}" for k, v in sorted(counts.terminal_faults.items()))
        with capsys.disabled():
            print(
                f"\nchaos (seed {seed}, {seconds:.0f}s, {terminals} terminals): "
                f"produced {produced}, delivered {len(ids)} exactly once, "
                f"duplicates suppressed by the receiver {rig.receiver.stats.duplicates}; "
                f"survived {counts.agent_kills} agent SIGKILLs ({counts.agent_starts} starts), "
                f"{counts.broker_restarts} broker restarts and {counts.broker_kills} broker kills, "
                f"terminal faults: {faults or 'none'}"
            )
    finally:
        rig.close()


@pytest.mark.slow
def test_every_recorded_punch_arrives_exactly_once_in_order_through_chaos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seconds = float(os.environ.get("PUNCHGATE_CHAOS_SECONDS") or 60)
    _run_chaos(tmp_path, seconds=seconds, terminals=4, capsys=capsys)


@pytest.mark.soak
@pytest.mark.slow
def test_soak_nothing_is_lost_over_a_long_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seconds = float(os.environ.get("PUNCHGATE_SOAK_SECONDS") or 1800)
    _run_chaos(tmp_path, seconds=seconds, terminals=8, capsys=capsys)
