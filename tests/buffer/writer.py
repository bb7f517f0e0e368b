"""A child process that writes to an outbox, for crash, concurrency and disk-full tests.

Run as ``python -m tests.buffer.writer COMMAND PATH ...`` from the repository root. Every line
it prints on stdout is written only AFTER the transaction it reports has committed, so the
parent knows exactly which rows must survive a SIGKILL.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from buffer import Outbox
from config.errors import PunchgateError
from tests.buffer.factory import punch, punches

GATEWAY = "gw-test"


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def insert_batches(
    path: Path, start: int, batches: int, size: int, seed: int | None, say: Callable[[str], None]
) -> Outbox:
    """Add ``batches`` batches (random sizes up to ``size`` when seeded), reporting each commit."""
    rng = random.Random(seed)
    outbox = Outbox.open(path, GATEWAY, disk_reserve_bytes=0)
    say("open")
    n = start
    for _ in range(batches):
        count = size if seed is None else rng.randint(1, size)
        outbox.add_punches(punches(n, count), watermark={"next": n + count})
        say(f"committed {n} {count}")
        n += count
    return outbox


def insert(args: argparse.Namespace) -> None:
    """Batches of punches, each with the device watermark in the same transaction."""
    rng = random.Random(args.seed)
    outbox = Outbox.open(args.path, GATEWAY, disk_reserve_bytes=0)
    _say("open")
    n = args.start
    for index in range(args.batches):
        size = rng.randint(1, args.size) if args.random_size else args.size
        outbox.add_punches(punches(n, size, device=args.device), watermark={"next": n + size})
        _say(f"committed {n} {size}")
        n += size
        if args.backup_dir and index + 1 == args.backup_after:
            done = outbox.backup_rotating(Path(args.backup_dir), keep=3)
            _say(f"backup {done}")
    if args.exit_without_close:
        os._exit(0)  # like a crash: no checkpoint, the WAL and its index stay behind
    outbox.close()


def manual(args: argparse.Namespace) -> None:
    """Manual punches one by one, as technicians' CLI commands would."""
    outbox = Outbox.open(args.path, GATEWAY, disk_reserve_bytes=0)
    for i in range(args.count):
        stored = outbox.add_manual(
            punch(args.start + i, device=args.device), operator="tech", reason="test"
        )
        _say(f"manual {stored.id}")
    outbox.close()


def fill_disk(args: argparse.Namespace) -> None:
    """Commit a few batches, then cap the file size and write until the outbox refuses."""
    outbox = Outbox.open(args.path, GATEWAY, disk_reserve_bytes=0)
    n = 0
    for _ in range(3):
        outbox.add_punches(punches(n, 200), watermark={"next": n + 200})
        _say(f"committed {n} 200")
        n += 200
    sizes = [p.stat().st_size for p in args.path.parent.iterdir() if p.is_file()]
    limit = max(sizes) + args.headroom
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    for _ in range(500):
        try:
            outbox.add_punches(punches(n, 500), watermark={"next": n + 500})
        except PunchgateError as exc:
            _say(f"error {type(exc).__name__} {exc}")
            break
        _say(f"committed {n} 500")
        n += 500
    os._exit(0)


def hold_lock(args: argparse.Namespace) -> None:
    """Hold SQLite's write lock for a while, as a long daemon transaction would."""
    conn = sqlite3.connect(str(args.path), isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE counters SET value = value WHERE name = 'seq'")
    _say("locked")
    time.sleep(args.seconds)
    conn.execute("COMMIT")
    _say("released")
    conn.close()


def main() -> None:
    # stdout is the report channel: logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("insert")
    p.add_argument("path", type=Path)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--random-size", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="lobby-1")
    p.add_argument("--backup-dir", default=None)
    p.add_argument("--backup-after", type=int, default=1)
    p.add_argument("--exit-without-close", action="store_true")
    p.set_defaults(run=insert)
    p = sub.add_parser("manual")
    p.add_argument("path", type=Path)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--device", default="front-desk")
    p.set_defaults(run=manual)
    p = sub.add_parser("fill-disk")
    p.add_argument("path", type=Path)
    p.add_argument("--headroom", type=int, default=256 * 1024)
    p.set_defaults(run=fill_disk)
    p = sub.add_parser("hold-lock")
    p.add_argument("path", type=Path)
    p.add_argument("--seconds", type=float, default=1.0)
    p.set_defaults(run=hold_lock)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
