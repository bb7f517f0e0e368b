"""A whole site at once: device workers, a technician, the delivery loop and maintenance all
write one outbox from separate processes, one writer is SIGKILLed half-way, and afterwards
every punch is there exactly once (or was delivered and pruned), seqs are never shared, the
counters match a recount and each device's watermark covers exactly its stored punches."""

from __future__ import annotations

import multiprocessing
import os
import queue
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from buffer import Outbox, inspect_backup
from buffer.identity import punch_id
from tests.buffer.conftest import GATEWAY
from tests.buffer.factory import punches

ROOT = Path(__file__).resolve().parents[2]
DEVICES = ("gate-1", "gate-2", "gate-3")
VICTIM = "gate-kill"
BATCHES = 15
MANUAL = 12
ROUNDS = 3
DEADLINE_S = 90.0

_FORK = multiprocessing.get_context("fork")


def _open(db: Path) -> Outbox:
    return Outbox.open(db, GATEWAY, disk_reserve_bytes=0, busy_timeout=10.0)


def _reporting(name: str, out: Queue, body: Callable[[], None]) -> None:
    """Run ``body`` in a child, then say "done" (or why it failed) on ``out``."""
    try:
        body()
        out.put(("done", name, ""))
    except BaseException as exc:  # the parent fails the test with this text
        out.put(("done", name, f"{type(exc).__name__}: {exc}"))


def _device(db: Path, device: str, batches: int, reread: bool, out: Queue) -> None:
    """A device worker: batches with their watermark; with ``reread`` some read twice."""
    rng = random.Random(device)
    with _open(db) as box:
        n = 0
        for index in range(batches):
            size = rng.randint(1, 40)
            batch = punches(n, size, device=device, serial=f"SER-{device}")
            box.add_punches(batch, watermark={"next": n + size})
            out.put(("committed", device, n, size))
            n += size
            if reread and index % 4 == 3:  # the newest records read again after a reconnect
                # Ids dedupe against the rows kept: one already delivered and pruned comes back.
                out.put(("reinserted", box.add_punches(batch, watermark={"next": n}).inserted))


def _technician(db: Path, out: Queue) -> None:
    """Manual punches one by one, voiding every third, as ``punchgate punch`` commands would."""
    with _open(db) as box:
        for n in range(MANUAL):
            stored = box.add_manual(
                punches(n, 1, device="front-desk")[0], operator="tech", reason="forgot badge"
            )
            out.put(("manual", stored.id, stored.seq))
            if n % 3 == 2:
                void = box.add_void(stored.id, operator="tech", reason="typo")
                out.put(("manual", void.id, void.seq))


def _delivery(db: Path, stop: Event, out: Queue) -> None:
    """The MQTT worker: take, fail some, mark delivered; until told to stop and nothing is left."""
    with _open(db) as box:
        for turn in range(100_000):
            batch = box.next_batch(37)
            if not batch:
                if stop.is_set():
                    return
                stop.wait(0.005)  # nothing pending yet: wait for writers (or the stop)
                continue
            ids = [r.id for r in batch]
            box.mark_sent(ids)
            if turn % 5 == 0:
                box.mark_failed(ids, "broker went away")
                continue
            if box.mark_delivered(ids) != len(ids):
                raise AssertionError("rows taken as pending were already delivered")
            out.put(("delivered", [(r.id, r.seq) for r in batch]))
        raise AssertionError("delivery loop did not finish")


def _maintenance(db: Path, work: Path, out: Queue) -> None:
    """The daemon's housekeeping: rotating and fixed backups, stats, checks, pruning."""
    with _open(db) as box:
        for round_ in range(ROUNDS):
            copies = [
                box.backup_rotating(work / "backups", keep=2),
                box.backup(work / "usb" / "outbox.db"),
            ]
            for copy in copies:
                inspect_backup(copy)
                with _open(copy) as restored:  # a copy taken mid-write is consistent
                    problems = restored.check()
                if problems:
                    raise AssertionError(f"backup {copy} inconsistent: {problems}")
            if box.stats().pending < 0:
                raise AssertionError("negative pending count")
            problems = box.check(full=round_ % 2 == 0)
            if problems:
                raise AssertionError(f"check during writes: {problems}")
            out.put(("pruned", box.prune(0.0, batch=50)))


def _cli(config: Path, out: Queue) -> None:
    """A technician's ``punchgate outbox stats|check|backup`` while everything else runs."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for args in (
        ["stats", "--json"],
        ["backup", str(config.parent / "tech-copy.db")],
        ["check"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "agent.cli", "outbox", *args, "--config", str(config)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        out.put(("cli", " ".join(args), proc.returncode, proc.stdout + proc.stderr))


@dataclass
class Reports:
    """What the children said."""

    committed: dict[str, int] = field(default_factory=dict)  # device -> end of its last batch
    manual: dict[str, int] = field(default_factory=dict)  # id -> seq
    delivered: dict[int, str] = field(default_factory=dict)  # seq -> id
    pruned: int = 0
    reinserted: int = 0
    cli: list[tuple[str, int, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def take(self, message: tuple[Any, ...]) -> str | None:
        """Record one message; the name of a child that finished, if it was that."""
        kind = message[0]
        if kind == "committed":
            _, device, first, count = message
            self.committed[device] = max(self.committed.get(device, 0), first + count)
        elif kind == "manual":
            self.manual[message[1]] = message[2]
        elif kind == "delivered":
            for punch, seq in message[1]:
                if seq in self.delivered:
                    self.failures.append(f"seq {seq} delivered twice")
                self.delivered[seq] = punch
        elif kind == "pruned":
            self.pruned += message[1]
        elif kind == "reinserted":
            self.reinserted += message[1]
        elif kind == "cli":
            self.cli.append(message[1:])
        elif kind == "done":
            if message[2]:
                self.failures.append(f"{message[1]}: {message[2]}")
            return str(message[1])
        return None


def _drain(out: Queue, reports: Reports, names: set[str], deadline: float) -> None:
    """Collect messages until every child in ``names`` has said it is done."""
    while names:
        assert time.monotonic() < deadline, f"children still running: {sorted(names)}"
        try:
            finished = reports.take(out.get(timeout=0.2))
        except queue.Empty:
            continue
        names.discard(finished or "")


def _kill_after_commits(db: Path, commits: int, deadline: float) -> int:
    """Start a writer, SIGKILL it after ``commits`` reported commits; the end it reported."""
    own: Queue = _FORK.Queue()  # its own queue: a kill mid-put must not wedge the shared one
    proc = _FORK.Process(target=_device, args=(db, VICTIM, 100_000, False, own), daemon=True)
    proc.start()
    end = 0
    try:
        for _ in range(commits):
            message = own.get(timeout=max(0.1, deadline - time.monotonic()))
            end = message[2] + message[3]
    finally:
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=30)
    assert proc.exitcode == -signal.SIGKILL
    return end


def test_a_whole_site_writing_at_once_loses_nothing_and_keeps_its_books(tmp_path: Path) -> None:
    db = tmp_path / "state" / "outbox.db"
    config = tmp_path / "punchgate.toml"
    config.write_text(
        f'[agent]\ngateway_id = "{GATEWAY}"\nstate_dir = "{db.parent}"\n\n'
        "[outbox]\nbackup_keep = 2\ndisk_reserve_mb = 0\n"
    )
    _open(db).close()
    deadline = time.monotonic() + DEADLINE_S
    out: Queue = _FORK.Queue()
    stop = _FORK.Event()
    writers: dict[str, Callable[[], None]] = {
        device: partial(_device, db, device, BATCHES, True, out) for device in DEVICES
    }
    writers["technician"] = lambda: _technician(db, out)
    others: dict[str, Callable[[], None]] = {
        "delivery": lambda: _delivery(db, stop, out),
        "maintenance": lambda: _maintenance(db, tmp_path, out),
        "cli": lambda: _cli(config, out),
    }
    procs = [
        _FORK.Process(target=_reporting, args=(name, out, body), daemon=True)
        for name, body in {**writers, **others}.items()
    ]
    for proc in procs:
        proc.start()
    reports = Reports()
    try:
        killed_end = _kill_after_commits(db, 5, deadline)
        _drain(out, reports, set(writers) | {"maintenance", "cli"}, deadline)
        stop.set()
        _drain(out, reports, {"delivery"}, deadline)
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=max(0.1, deadline - time.monotonic()))
            if proc.is_alive():  # a failed assertion above: do not leave it running
                proc.kill()
                proc.join(timeout=30)
    assert reports.failures == []
    assert len(reports.cli) == 3
    for command, code, output in reports.cli:
        assert code == 0, f"punchgate outbox {command} exited {code}: {output}"
        assert "locked" not in output

    with _open(db) as box:
        assert box.recovery is None and box.check() == []
        rows = {r.id: r for r in box.list(limit=1_000_000)}
        stats = box.stats()
        # Every row ever stored: still here, or delivered (and maybe pruned). A seq names one row.
        id_of = dict(reports.delivered)  # seq -> id
        for row in rows.values():
            assert id_of.setdefault(row.seq, row.id) == row.id, f"seq {row.seq} given twice"
        assert stats.last_seq == len(id_of) == max(id_of)  # no gap, no reuse
        assert len(rows) == len(id_of) - reports.pruned
        # A punch stored twice: only a re-read of rows already delivered and pruned.
        assert len(id_of) - len(set(id_of.values())) == reports.reinserted
        first_seq: dict[str, int] = {}
        for seq in sorted(id_of):
            first_seq.setdefault(id_of[seq], seq)
        # Counters against a recount.
        pending = [r for r in rows.values() if r.delivered_at is None]
        assert stats.pending == len(pending) == len(box.list(pending_only=True, limit=10**6))
        assert stats.delivered == len(rows) - len(pending)
        assert not set(reports.delivered) & {r.seq for r in pending}
        assert stats.pending == 0  # the delivery loop emptied the outbox before stopping
        # Manual punches and voids: each once, with the seq its command was told.
        assert all(id_of[seq] == punch for punch, seq in reports.manual.items())
        # Devices: the watermark covers exactly the punches stored for it, in seq order.
        by_device = {d.device_id: d for d in stats.devices}
        for device in (*DEVICES, VICTIM):
            end = box.watermark(device)["next"]  # type: ignore[index]
            assert end >= (killed_end if device == VICTIM else reports.committed[device])
            stored = punches(0, end, device=device, serial=f"SER-{device}")
            expected = [punch_id(GATEWAY, p) for p in stored]
            wanted = set(expected)
            mine = sorted((i for i in first_seq if i in wanted), key=first_seq.__getitem__)
            assert mine == expected, f"{device}: stored punches differ from its watermark"
            newest = max(seq for seq, punch in id_of.items() if punch in wanted)
            assert by_device[device].last_seq == newest


def _rewinder(db: Path, rounds: int, out: Queue) -> None:
    """A technician's ``outbox redeliver`` and the daemon's pruning, again and again."""
    rng = random.Random(7)
    with _open(db) as box:
        done = 0
        for _ in range(10_000):
            top = box.stats().last_delivered_seq
            if not top:
                time.sleep(0.002)  # nothing delivered yet: wait for the delivery loop
                continue
            out.put(("redelivered", box.redeliver_from(rng.randint(1, top))))
            out.put(("pruned", box.prune(0.0, batch=rng.randint(1, 60))))
            done += 1
            if done == rounds:
                return
        raise AssertionError("the delivery loop delivered nothing")


def test_redelivery_and_pruning_racing_the_delivery_loop_keep_the_counters_true(
    tmp_path: Path,
) -> None:
    db = tmp_path / "outbox.db"
    _open(db).close()
    deadline = time.monotonic() + DEADLINE_S
    out: Queue = _FORK.Queue()
    stop = _FORK.Event()
    bodies: dict[str, Callable[[], None]] = {
        device: partial(_device, db, device, BATCHES, False, out) for device in DEVICES[:2]
    }
    bodies["rewinder"] = partial(_rewinder, db, 30, out)
    bodies["delivery"] = partial(_delivery, db, stop, out)
    procs = [
        _FORK.Process(target=_reporting, args=(name, out, body), daemon=True)
        for name, body in bodies.items()
    ]
    for proc in procs:
        proc.start()
    counts: dict[str, int] = {"redelivered": 0, "pruned": 0}
    failures: list[str] = []
    waiting = set(bodies) - {"delivery"}
    try:
        while waiting or "delivery" in bodies:
            assert time.monotonic() < deadline, f"children still running: {sorted(waiting)}"
            if not waiting:
                stop.set()
                waiting = {"delivery"}
                bodies.pop("delivery")
            try:
                message = out.get(timeout=0.2)
            except queue.Empty:
                continue
            if message[0] in counts:
                counts[message[0]] += message[1]
            elif message[0] == "done":
                waiting.discard(message[1])
                failures += [f"{message[1]}: {message[2]}"] if message[2] else []
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=30)
    assert failures == []
    assert counts["redelivered"] > 0 and counts["pruned"] > 0
    with _open(db) as box:
        assert box.check() == []  # the counters and delivered ranges audited against the rows
        stats = box.stats()
        rows = box.list(limit=1_000_000)
        assert stats.pending == sum(r.delivered_at is None for r in rows) == 0
        assert stats.delivered == len(rows)
