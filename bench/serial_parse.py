"""Serial parsing cost: can one gateway core sustain 1,000 frames/s at under 5% CPU?

Two measurements, one command (``.venv/bin/python bench/serial_parse.py``):

1. CPU time (``time.process_time``) per frame for each format, fed one frame per chunk as a
   paced line delivers them: the parser alone, and parser + punch building (card table, time
   parsing, timezone conversion, de-duplication), i.e. everything the reader does per frame
   except the port I/O.
2. A paced 1,000 frames/s run over a real pty: a child process writes one frame every
   millisecond, this process runs ``SerialDriver.live()`` on the slave side; the reader's CPU
   time over wall time is its share of one core (the writer's CPU is in the other process).
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.logs import configure as configure_logs
from drivers.serial import SerialOptions, build_serial_driver
from drivers.serial.cards import CardTable, em4100_aliases
from drivers.serial.dedup import Deduplicator
from drivers.serial.parsers import em4100_frame, make_parser
from drivers.serial.punches import PunchBuilder

TZ = ZoneInfo("Europe/Berlin")
CLOCK_PATTERN = r"^(?P<employee>\d+),(?P<time>[0-9: -]+),(?P<state>IN|OUT)$"
OPTIONS = {
    "lines": {"format": "lines", "pattern": CLOCK_PATTERN},
    "em4100": {"format": "em4100"},
    "wiegand-ascii": {"format": "wiegand-ascii"},
}
BUDGET = 0.05  # of one core at 1,000 frames/s
RATE = 1000.0
CARDS = 100_000

WRITER = """
import os, pickle, sys, time
fd = int(sys.argv[1]); rate = float(sys.argv[2])
frames = pickle.load(sys.stdin.buffer)
step = 1.0 / rate
next_at = time.monotonic()
for frame in frames:
    now = time.monotonic()
    if next_at > now:
        time.sleep(next_at - now)
    os.write(fd, frame)
    next_at += step
"""


def frames_for(fmt: str, count: int) -> list[bytes]:
    """``count`` distinct valid frames (distinct cards, so none is a double read)."""
    if fmt == "lines":
        start = datetime(2024, 5, 1, 6, 0)
        return [
            b"%d,%s,%s\r\n"
            % (
                1000 + i % 500,
                (start + timedelta(seconds=i)).isoformat(" ").encode(),
                (b"IN", b"OUT")[i % 2],
            )
            for i in range(count)
        ]
    if fmt == "em4100":
        return [em4100_frame(f"{0x0100000000 + i:010X}") for i in range(count)]
    return [b"%010d\r\n" % (4_000_000 + i) for i in range(count)]


def cards_for(fmt: str) -> dict[str, str]:
    """A site-sized card table that knows every card the bench presents."""
    if fmt == "em4100":
        return {f"{0x0100000000 + i:010X}": str(1000 + i) for i in range(CARDS)}
    if fmt == "wiegand-ascii":
        return {f"{4_000_000 + i:010d}": str(1000 + i) for i in range(CARDS)}
    return {}


def cpu_per_frame(fmt: str, count: int) -> tuple[float, float]:
    """(parser only, parser + punches) CPU seconds per frame, one frame per chunk."""
    chunks = frames_for(fmt, count)
    options = OPTIONS[fmt]
    parser = make_parser(fmt, options.get("pattern"))
    start = time.process_time()
    parsed = 0
    for chunk in chunks:
        parsed += len(parser.feed(chunk).frames)
    parse_only = (time.process_time() - start) / count
    assert parsed == count, f"{fmt}: parsed {parsed} of {count} frames"

    parser = make_parser(fmt, options.get("pattern"))
    builder = PunchBuilder(
        "bench",
        "serial:bench",
        TZ,
        "%Y-%m-%d %H:%M:%S",
        CardTable(cards_for(fmt)),
        em4100_aliases if fmt == "em4100" else None,
    )
    dedup = Deduplicator(3.0)
    received = datetime(2024, 5, 1, 6, 0, tzinfo=UTC)
    start = time.process_time()
    built = 0
    for i, chunk in enumerate(chunks):
        for frame in parser.feed(chunk).frames:
            if frame.card is not None and dedup.is_duplicate(frame.card, i / RATE):
                continue
            builder.build(frame, received)
            built += 1
    full = (time.process_time() - start) / count
    assert built == count, f"{fmt}: built {built} of {count} punches"
    return parse_only, full


def paced_pty_run(fmt: str, seconds: float) -> dict[str, float]:
    """Reader CPU share while a child writes ``RATE`` frames/s into a real pty for ``seconds``."""
    count = int(RATE * seconds)
    frames = frames_for(fmt, count)
    master, slave = os.openpty()
    with TemporaryDirectory() as tmp:
        link = Path(tmp) / "ttyBENCH"
        link.symlink_to(os.ttyname(slave))
        os.close(slave)
        options = SerialOptions(url=str(link), cards=cards_for(fmt), **OPTIONS[fmt])  # type: ignore[arg-type]
        driver = build_serial_driver("bench", options, TZ)
        driver.open()
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(master), str(RATE)],
            stdin=subprocess.PIPE,
            pass_fds=(master,),
        )
        assert writer.stdin is not None
        writer.stdin.write(pickle.dumps(frames))
        writer.stdin.close()
        received = 0
        wall0 = cpu0 = 0.0
        live = driver.live(seconds * 2 + 5)  # bounded even if frames go missing
        for _punch in live:
            if received == 0:
                wall0, cpu0 = time.monotonic(), time.process_time()
            received += 1
            if received == count:
                break
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        live.close()
        writer.wait(timeout=30)
        driver.close()
        os.close(master)
    return {
        "frames": count,
        "received": received,
        "rejected": driver.stats.rejected_total,
        "rate": (received - 1) / wall if wall else 0.0,
        "cpu_share": cpu / wall if wall else 0.0,
        "cpu_per_frame": cpu / max(1, received - 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50_000, help="frames per CPU measurement")
    parser.add_argument("--seconds", type=float, default=5.0, help="paced pty run length")
    parser.add_argument("--formats", nargs="*", default=list(OPTIONS), choices=list(OPTIONS))
    args = parser.parse_args()
    # Log as the daemon does (info, JSON) but to /dev/null: the cost stays in the figures.
    configure_logs(level="info", stream=open(os.devnull, "w"), json=True)

    ok = True
    print(
        f"CPU per frame, one frame per chunk ({args.frames:,} frames; budget 50 us = 5% at 1,000/s)"
    )
    print(f"{'format':<15}{'parse us':>10}{'+punch us':>11}{'CPU% @1k/s':>12}")
    for fmt in args.formats:
        parse_only, full = cpu_per_frame(fmt, args.frames)
        share = full * RATE
        ok &= share < BUDGET
        print(f"{fmt:<15}{parse_only * 1e6:>10.1f}{full * 1e6:>11.1f}{share * 100:>11.2f}%")

    print(
        f"\nPaced {RATE:,.0f} frames/s over a real pty for {args.seconds:g} s (SerialDriver.live)"
    )
    header = ("format", "received", "rejected", "frames/s", "reader CPU%", "us/frame")
    print(f"{header[0]:<15}" + "".join(f"{h:>12}" for h in header[1:]))
    for fmt in args.formats:
        result = paced_pty_run(fmt, args.seconds)
        ok &= result["received"] == result["frames"] and result["cpu_share"] < BUDGET
        print(
            f"{fmt:<15}{result['received']:>12,.0f}{result['rejected']:>12,.0f}"
            f"{result['rate']:>12,.0f}{result['cpu_share'] * 100:>11.2f}%"
            f"{result['cpu_per_frame'] * 1e6:>12.1f}"
        )
    print("\nverdict:", "PASS (< 5% of one core at 1,000 frames/s)" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
