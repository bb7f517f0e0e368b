"""Benchmark the ZK driver's pull against the simulator on loopback, with stock pyzk as baseline.

    .venv/bin/python bench/zk_pull.py                 # 100,000 records, pyzk baseline included
    .venv/bin/python bench/zk_pull.py --skip-pyzk     # the driver only (pyzk takes ~15 s here)

The simulated terminal runs in its own process (as a real terminal is its own device, and so
its work does not share our interpreter lock). Figures:

- full pull: ``ZkDriver.read_new(None)`` of the whole log into ``Punch`` values, hardware
  framing (1504 chunks answered PREPARE_DATA + 1008-byte DATA frames, all frames in one write);
- pyzk: stock pyzk 0.9 ``get_attendance()`` on the same log. It hangs on hardware framing
  (ZK_PROTOCOL.md), so the terminal answers it in the only form it completes: the whole buffer
  as one DATA packet (the simulator's small-buffer form, raised here to any size);
- incremental: ``read_new(watermark)`` after 10 new punches on top of the full log;
- memory: tracemalloc peak during a full pull (a separate run: tracing slows allocation), and
  the process's peak RSS.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TZ = ZoneInfo("Europe/Berlin")
TARGET_FULL_S = 0.5
TARGET_SPEEDUP = 15.0
TARGET_INCREMENTAL_S = 0.050
TARGET_MEMORY_MB = 100.0


# The terminal process.


def serve(records: int, users: int, whole_buffer: bool, stock: bool) -> None:
    """Run a simulator; print its port; on stdin ``punch N`` records N punches, EOF stops."""
    from datetime import datetime

    from drivers.zk.simulator import ZkSimulator, terminal

    quiet()
    if whole_buffer:
        # pyzk's one working form: 1503 answered with one DATA packet holding everything.
        terminal.DIRECT_DATA_MAX = 1 << 30  # type: ignore[misc]
    sim = ZkSimulator(seed=1, record_capacity=max(100_000, records + 1000))
    sim.faults.segmentation = "all"
    sim.generate(users=users, records=records, start=datetime(2024, 1, 8), seed=1)
    if not stock:
        hardware_speed(sim)
    sim.start()
    print(f"port {sim.port}", flush=True)
    staff = [u.user_id for u in sim.users]
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["punch"]:
            for i in range(int(words[1])):
                sim.punch(staff[i % len(staff)], state=i % 2)
            print("ok", flush=True)
    sim.stop()


def quiet() -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def hardware_speed(sim: object) -> None:
    """Let the simulated terminal prepare and frame buffers at hardware speed.

    The simulator is written for clarity: it re-packs the whole log on every 1503 and sums
    checksums 16 bits at a time in Python, which for 100,000 records costs it ~0.3-0.8 s per
    read on this machine, time a real terminal (C on the device) does not spend. Here it keeps
    the packed log and appends new records only, and uses the driver's bit-exact checksum
    (``extra_codec.fast_checksum``, equal to ``protocol.checksum`` by property test). The pyzk
    baseline runs against the same accelerated terminal. ``--stock-terminal`` turns this off.
    """
    import struct

    from drivers.zk import protocol
    from drivers.zk.extra_codec import fast_checksum
    from drivers.zk.records import pack_attendance

    protocol.checksum = fast_checksum  # type: ignore[assignment]
    state = sim._state  # type: ignore[attr-defined]
    stock = state.attendance_buffer
    cache: dict[str, object] = {"n": 0, "first": None, "packed": bytearray()}

    def attendance_buffer(size: int, impossible_at: int | None = None) -> bytes:
        if size != 40 or impossible_at is not None:
            return bytes(stock(size, impossible_at))
        with state.lock:
            log = state.records
            packed = cache["packed"]
            assert isinstance(packed, bytearray)
            if cache["n"] > len(log) or (log and log[0] is not cache["first"]):
                packed.clear()  # cleared or rotated: start over
                cache["n"] = 0
            for record in log[cache["n"] :]:  # type: ignore[misc]
                packed += pack_attendance(record, size)
            cache["n"], cache["first"] = len(log), (log[0] if log else None)
            return struct.pack("<I", len(packed)) + bytes(packed)

    state.attendance_buffer = attendance_buffer


class Terminal:
    """The simulator process, driven over its stdin."""

    def __init__(
        self, records: int, users: int, *, whole_buffer: bool = False, stock: bool = False
    ) -> None:
        args = [sys.executable, __file__, "--serve", "--records", str(records)]
        args += ["--users", str(users)] + (["--whole-buffer"] if whole_buffer else [])
        args += ["--stock-terminal"] if stock else []
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            self.proc.kill()
            raise SystemExit(f"simulator did not start: {line!r}")
        self.port = int(line.split()[1])

    def punch(self, count: int) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"punch {count}\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "ok":
            raise SystemExit("simulator did not confirm the punches")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# The measurements.


def driver_for(port: int):  # type: ignore[no-untyped-def]
    from drivers.zk import ZkDriver, ZkOptions

    return ZkDriver("bench", ZkOptions(host="127.0.0.1", port=port, timeout=30), TZ)


def bench_driver(records: int, users: int, runs: int, stock: bool) -> dict[str, object]:
    term = Terminal(records, users, stock=stock)
    try:
        driver = driver_for(term.port)
        driver.open()
        full: list[float] = []
        cpu: list[float] = []
        punches: list[object] = []
        mark: dict[str, object] = {}
        for _ in range(runs):
            del punches
            gc.collect()
            started, started_cpu = time.perf_counter(), time.process_time()
            punches, mark = driver.read_new(None)
            full.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        assert len(punches) == records, (len(punches), records)
        sample = punches[12345 % records]

        incremental: list[float] = []
        for _ in range(runs):
            term.punch(10)
            started = time.perf_counter()
            tail, mark = driver.read_new(mark)
            incremental.append(time.perf_counter() - started)
            assert len(tail) == 10, len(tail)

        del punches, tail
        gc.collect()
        tracemalloc.start()
        held, _ = driver.read_new(None)  # held while measuring: the punches are the payload
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert len(held) == records + 10 * runs
        driver.close()
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {
            "full_s": full,
            "full_cpu_s": cpu,
            "incremental_s": incremental,
            "traced_peak_mb": peak / 2**20,
            "rss_peak_mb": rss_mb,
            "sample": (sample.employee, sample.device_time),  # type: ignore[attr-defined]
        }
    finally:
        term.close()


def bench_pyzk(records: int, users: int, runs: int, stock: bool) -> dict[str, object]:
    from zk import ZK

    term = Terminal(records, users, whole_buffer=True, stock=stock)
    try:
        zk = ZK("127.0.0.1", port=term.port, timeout=120, ommit_ping=True).connect()
        times: list[float] = []
        got: list[object] = []
        for _ in range(runs):
            del got
            gc.collect()
            started = time.perf_counter()
            got = zk.get_attendance()
            times.append(time.perf_counter() - started)
        zk.disconnect()
        assert len(got) == records, (len(got), records)
        sample = got[12345 % records]
        return {"full_s": times, "sample": (sample.user_id, sample.timestamp)}  # type: ignore[attr-defined]
    finally:
        term.close()


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5, help="driver runs (median reported)")
    parser.add_argument("--pyzk-runs", type=int, default=1)
    parser.add_argument("--skip-pyzk", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    parser.add_argument(
        "--stock-terminal", action="store_true", help="simulator without hardware_speed()"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--whole-buffer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.records, args.users, args.whole_buffer, args.stock_terminal)
        return
    quiet()
    stock = args.stock_terminal
    ours = bench_driver(args.records, args.users, args.runs, stock)
    theirs = None
    if not args.skip_pyzk:
        theirs = bench_pyzk(args.records, args.users, args.pyzk_runs, stock)
    full = statistics.median(ours["full_s"])  # type: ignore[arg-type]
    incremental = statistics.median(ours["incremental_s"])  # type: ignore[arg-type]
    memory = float(ours["traced_peak_mb"])  # type: ignore[arg-type]
    if args.json:
        print(json.dumps({"driver": ours, "pyzk": theirs}, default=str, indent=2))
        return
    n = f"{args.records:,}"
    kind = "stock simulator" if stock else "simulator at hardware speed"
    print(f"ZK pull benchmark: {n} records (40-byte), {args.users:,} users, loopback, {kind}")
    runs = ", ".join(f"{t:.3f}" for t in ours["full_s"])  # type: ignore[attr-defined]
    print(f"  driver full pull      {full:.3f} s median of [{runs}]  target < {TARGET_FULL_S} s  "
          f"{verdict(full < TARGET_FULL_S)}")  # fmt: skip
    cpu = statistics.median(ours["full_cpu_s"])  # type: ignore[arg-type]
    print(f"    (of which driver CPU {cpu:.3f} s; the rest is the terminal preparing and sending)")
    if theirs is not None:
        base = statistics.median(theirs["full_s"])  # type: ignore[arg-type]
        speedup = base / full
        same = theirs["sample"] == ours["sample"]
        print(f"  pyzk get_attendance   {base:.3f} s (whole buffer as one DATA packet)")
        print(f"  speed-up              {speedup:.1f}x  target >= {TARGET_SPEEDUP:g}x  "
              f"{verdict(speedup >= TARGET_SPEEDUP)}  (same record #12345: {same})")  # fmt: skip
    print(f"  incremental poll      {incremental * 1000:.1f} ms median (+10 punches)  "
          f"target < {TARGET_INCREMENTAL_S * 1000:g} ms  "
          f"{verdict(incremental < TARGET_INCREMENTAL_S)}")  # fmt: skip
    print(f"  peak memory           {memory:.1f} MB traced (full pull)  target < "
          f"{TARGET_MEMORY_MB:g} MB  {verdict(memory < TARGET_MEMORY_MB)}; "
          f"process peak RSS {float(ours['rss_peak_mb']):.0f} MB")  # type: ignore[arg-type]  # fmt: skip


if __name__ == "__main__":
    main()
