"""Benchmark the ZK driver's pull against the simulator on loopback, with stock pyzk as baseline.

    .venv/bin/python bench/zk_pull.py                 # 100,000 records, pyzk baseline included
    .venv/bin/python bench/zk_pull.py --skip-pyzk     # the driver only (pyzk takes ~20 s here)

The simulated terminal runs in its own process (as a real terminal is its own device, and so
its work does not share our interpreter lock). Figures:

- full pull: ``ZkDriver.read_new(None)`` of the whole log into ``Punch`` values, hardware
  framing (1504 chunks answered PREPARE_DATA + 1008-byte DATA frames, all frames in one write);
- pyzk: stock pyzk 0.9 ``get_attendance()`` on the same log. It hangs on hardware framing
  (ZK_PROTOCOL.md), so the terminal answers it in the only form it completes: the whole buffer
  as one DATA packet (the simulator's small-buffer form, raised here to any size);
- incremental: ``read_new(watermark)`` after 10 new punches on top of the full log;
- memory: tracemalloc peak during a full pull, and peak RSS of an untraced full pull, each in a
  fresh process so earlier runs do not count.

The machine is shared: wall times vary with other load, so the driver's own CPU time is
printed too.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if TYPE_CHECKING:
    from drivers.base import Punch

TZ = ZoneInfo("Europe/Berlin")
TARGET_FULL_S = 0.5
TARGET_SPEEDUP = 15.0
TARGET_INCREMENTAL_S = 0.050
TARGET_MEMORY_MB = 100.0


# The terminal process.


def serve(records: int, users: int, whole_buffer: bool) -> None:
    """Run a simulator; print its port; on stdin ``punch N`` records N punches, EOF stops."""
    import inspect
    from datetime import datetime

    from drivers.zk.simulator import ZkSimulator, terminal

    quiet()
    options: dict[str, Any] = {}
    if whole_buffer:
        # pyzk's one working form: 1503 answered with one DATA packet holding everything.
        if "direct_data_max" in inspect.signature(ZkSimulator).parameters:
            options["direct_data_max"] = 1 << 30
        else:  # a simulator from before that option: raise its module-wide limit instead
            terminal.DIRECT_DATA_MAX = 1 << 30
    sim = ZkSimulator(seed=1, record_capacity=max(100_000, records + 1000), **options)
    sim.faults.segmentation = "all"  # hardware framing: every frame of a reply in one write
    sim.generate(users=users, records=records, start=datetime(2024, 1, 8), seed=1)
    sim.set_clock(datetime.now(TZ).replace(tzinfo=None))  # a correct clock in the device's zone
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


class Terminal:
    """The simulator process, driven over its stdin."""

    def __init__(self, records: int, users: int, *, whole_buffer: bool = False) -> None:
        args = [sys.executable, __file__, "--serve", "--records", str(records)]
        args += ["--users", str(users)] + (["--whole-buffer"] if whole_buffer else [])
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


@dataclass
class DriverFigures:
    full_s: list[float]
    full_cpu_s: list[float]
    incremental_s: list[float]
    traced_peak_mb: float
    rss_peak_mb: float
    rss_before_mb: float
    sample: tuple[object, object]


def probe_memory(port: int, traced: bool) -> None:
    """One full pull in this fresh process; print the memory it took as JSON.

    Peak RSS is measured without tracemalloc (its own bookkeeping per allocation would count).
    """
    from drivers.zk import ZkDriver, ZkOptions

    quiet()
    driver = ZkDriver("bench", ZkOptions(host="127.0.0.1", port=port, timeout=30), TZ)
    driver.open()
    before = peak_rss_mb()
    if traced:
        tracemalloc.start()
    held, _ = driver.read_new(None)  # held while measuring: the punches are the payload
    peak = tracemalloc.get_traced_memory()[1] if traced else 0
    tracemalloc.stop()
    driver.close()
    figures = {"punches": len(held), "traced_peak_mb": peak / 2**20}
    print(json.dumps({**figures, "rss_before_mb": before, "rss_peak_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """Peak RSS of this process image (VmHWM; ru_maxrss would include the forking parent's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class PyzkFigures:
    full_s: list[float]
    sample: tuple[object, object]


def bench_driver(records: int, users: int, runs: int) -> DriverFigures:
    from drivers.zk import ZkDriver, ZkOptions

    term = Terminal(records, users)
    try:
        driver = ZkDriver("bench", ZkOptions(host="127.0.0.1", port=term.port, timeout=30), TZ)
        driver.open()
        full: list[float] = []
        cpu: list[float] = []
        punches: list[Punch] = []
        mark: dict[str, object] = {}
        for _ in range(runs):
            punches = []
            gc.collect()
            started, started_cpu = time.perf_counter(), time.process_time()
            punches, mark = driver.read_new(None)
            full.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        assert len(punches) == records, (len(punches), records)
        sample = punches[12345 % records]
        punches = []

        incremental: list[float] = []
        for _ in range(runs):
            term.punch(10)
            started = time.perf_counter()
            tail, mark = driver.read_new(mark)
            incremental.append(time.perf_counter() - started)
            assert len(tail) == 10, len(tail)

        driver.close()
        # Memory in fresh processes doing one full pull each, so earlier runs do not count.
        rss = probe(term.port, traced=False)
        memory = probe(term.port, traced=True)
        assert memory["punches"] == rss["punches"] == records + 10 * runs, memory
        return DriverFigures(
            full_s=full,
            full_cpu_s=cpu,
            incremental_s=incremental,
            traced_peak_mb=memory["traced_peak_mb"],
            rss_peak_mb=rss["rss_peak_mb"],
            rss_before_mb=rss["rss_before_mb"],
            sample=(sample.employee, sample.device_time),
        )
    finally:
        term.close()


def probe(port: int, *, traced: bool) -> dict[str, float]:
    args = [sys.executable, __file__, "--probe-memory", "--port", str(port)]
    args += ["--traced"] if traced else []
    done = subprocess.run(args, capture_output=True, text=True, check=True, timeout=120)
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def bench_pyzk(records: int, users: int, runs: int) -> PyzkFigures:
    from zk import ZK

    term = Terminal(records, users, whole_buffer=True)
    try:
        zk = ZK("127.0.0.1", port=term.port, timeout=120, ommit_ping=True).connect()
        times: list[float] = []
        got: list[Any] = []
        for _ in range(runs):
            got = []
            gc.collect()
            started = time.perf_counter()
            got = zk.get_attendance()
            times.append(time.perf_counter() - started)
        zk.disconnect()
        assert len(got) == records, (len(got), records)
        sample = got[12345 % records]
        return PyzkFigures(full_s=times, sample=(sample.user_id, sample.timestamp))
    finally:
        term.close()


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=7, help="driver runs (median reported)")
    parser.add_argument("--pyzk-runs", type=int, default=1)
    parser.add_argument("--skip-pyzk", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--whole-buffer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe-memory", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe_memory:
        probe_memory(args.port, args.traced)
        return
    if args.serve:
        serve(args.records, args.users, args.whole_buffer)
        return
    quiet()
    ours = bench_driver(args.records, args.users, args.runs)
    theirs = None
    if not args.skip_pyzk:
        theirs = bench_pyzk(args.records, args.users, args.pyzk_runs)
    if args.json:
        print(json.dumps({"driver": asdict(ours), "pyzk": theirs and asdict(theirs)}, default=str))
        return
    report(args.records, args.users, ours, theirs)


def report(records: int, users: int, ours: DriverFigures, theirs: PyzkFigures | None) -> None:
    full, best = statistics.median(ours.full_s), min(ours.full_s)
    cpu = statistics.median(ours.full_cpu_s)
    incremental = statistics.median(ours.incremental_s)
    print(f"ZK pull benchmark: {records:,} records (40-byte), {users:,} users, loopback")
    runs = ", ".join(f"{t:.3f}" for t in ours.full_s)
    print(f"  driver full pull      {full:.3f} s median, {best:.3f} s best of [{runs}]")
    print(f"                        target < {TARGET_FULL_S} s: {verdict(full < TARGET_FULL_S)}")
    print(f"    driver CPU          {cpu:.3f} s median (the rest: the terminal, other load)")
    if theirs is not None:
        base = statistics.median(theirs.full_s)
        same = theirs.sample == ours.sample
        print(f"  pyzk get_attendance   {base:.3f} s (whole buffer as one DATA packet)")
        print(f"  speed-up              {base / full:.1f}x (median), {base / best:.1f}x (best); "
              f"target >= {TARGET_SPEEDUP:g}x: {verdict(base / full >= TARGET_SPEEDUP)}; "
              f"same record #12345: {same}")  # fmt: skip
    print(f"  incremental poll      {incremental * 1000:.1f} ms median (+10 punches on top); "
          f"target < {TARGET_INCREMENTAL_S * 1000:g} ms: "
          f"{verdict(incremental < TARGET_INCREMENTAL_S)}")  # fmt: skip
    print(
        f"  peak memory           {ours.traced_peak_mb:.1f} MB traced during a full pull; "
        f"target < {TARGET_MEMORY_MB:g} MB: {verdict(ours.traced_peak_mb < TARGET_MEMORY_MB)}"
    )
    print(f"                        process peak RSS {ours.rss_peak_mb:.0f} MB (untraced run), of "
          f"which {ours.rss_before_mb:.0f} MB before the pull (interpreter, imports)")  # fmt: skip


if __name__ == "__main__":
    main()
