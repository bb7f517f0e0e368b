"""Footprint of ``punchgate run``: idle CPU, resident memory, live punch → broker latency.

Run: .venv/bin/python bench/footprint.py [--terminals 20] [--poll-interval 30] [--window 60]
                                          [--punches 200] [--no-live]

The agent runs as its own process (``punchgate run``) against ``--terminals`` simulated ZK
terminals (in this process, so their CPU is not counted) and a private Mosquitto broker:

1. idle CPU: after every terminal is online, the agent's user+system CPU time over ``--window``
   seconds of wall time, with no punches. The default window (60 s) covers two poll cycles of
   every terminal at the default 30 s interval, so no interval is shortened.
2. latency: ``--punches`` punches on random terminals, one every 50-150 ms; each is timed from
   just before the simulator records it to its arrival at a subscriber on the broker
   (live capture on every terminal unless ``--no-live``).
3. memory: the agent's resident set size (VmRSS) and its peak (VmHWM) after both phases.

Targets: idle CPU < 1 %, RSS < 80 MB, latency p99 < 1 s. Exit code 1 when one is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion

from agent.daemon.status_file import read_status
from agent.localbroker import LocalMosquitto
from drivers.zk.simulator import ZkSimulator

GATEWAY = "bench-gw"
TARGET_CPU = 1.0  # percent of one core
TARGET_RSS_MB = 80.0
TARGET_P99_S = 1.0


def config_text(state: Path, url: str, ports: list[int], poll: float, live: bool) -> str:
    lines = [
        "[agent]",
        f'gateway_id = "{GATEWAY}"',
        f'state_dir = "{state}"',
        "[mqtt]",
        f'url = "{url}"',
    ]
    for n, port in enumerate(ports):
        lines += [
            "[[devices]]",
            f'id = "term-{n}"',
            'kind = "zk"',
            'host = "127.0.0.1"',
            f"port = {port}",
            f"poll_interval = {poll}",
            f"live = {'true' if live else 'false'}",
        ]
    return "\n".join(lines) + "\n"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


class Arrivals:
    """A subscriber recording when each employee's punch first arrives."""

    def __init__(self, url: str) -> None:
        port = int(url.rsplit(":", 1)[1])
        self.times: dict[str, float] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-subscriber")
        self.client.on_connect = lambda c, *_: c.subscribe(f"punchgate/v1/{GATEWAY}/punches", 1)
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise SystemExit("the benchmark subscriber could not subscribe within 10 s")

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        now = time.time()
        for punch in json.loads(msg.payload)["punches"]:
            key = f"{punch['device_id']}/{punch['employee']}/{punch['device_time']}"
            with self._lock:
                self.times.setdefault(key, now)

    def count(self) -> int:
        with self._lock:
            return len(self.times)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--terminals", type=int, default=20)
    parser.add_argument("--poll-interval", type=float, default=30.0)
    parser.add_argument("--window", type=float, default=60.0, help="idle CPU window, seconds")
    parser.add_argument("--punches", type=int, default=200)
    parser.add_argument("--no-live", action="store_true", help="poll only (no live capture)")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    live = not args.no_live

    workdir = Path(tempfile.mkdtemp(prefix="punchgate-bench-"))
    broker = LocalMosquitto(workdir / "mosquitto").start()
    sims = []
    agent: subprocess.Popen[bytes] | None = None
    arrivals: Arrivals | None = None
    try:
        for n in range(args.terminals):
            sim = ZkSimulator(serial=f"BENCH{n:03d}").start()
            sim.generate(users=50, records=200, seed=n)  # a realistic log to poll
            sims.append(sim)
        config = workdir / "punchgate.toml"
        config.write_text(
            config_text(
                workdir / "state", broker.url, [s.port for s in sims], args.poll_interval, live
            )
        )
        with open(workdir / "agent.log", "wb") as log:
            agent = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def all_online() -> bool:
            status = read_status(workdir / "state")
            return bool(
                status
                and status["running"]
                and status["broker"]
                and status["broker"]["connected"]
                and all(d["state"] == "online" for d in status["devices"])
                and len(status["devices"]) == args.terminals
            )

        wait(all_online, 120, f"{args.terminals} terminals online")
        arrivals = Arrivals(broker.url)
        time.sleep(5.0)  # let the start-up reads and the backlog delivery settle
        before, started = cpu_seconds(agent.pid), time.monotonic()
        time.sleep(args.window)  # the measurement window itself
        idle = (cpu_seconds(agent.pid) - before) / (time.monotonic() - started) * 100

        rng = random.Random(1)
        sent: dict[str, float] = {}
        for n in range(args.punches):
            index = rng.randrange(len(sims))
            sim = sims[index]
            user = rng.choice(sim.users).user_id
            at = time.time()
            record = sim.punch(user, state=n % 2)
            if record is not None and record.timestamp is not None:
                sent[f"term-{index}/{user}/{record.timestamp.isoformat()}"] = at
            time.sleep(rng.uniform(0.05, 0.15))  # the punch rate, not a wait for a result
        wait(lambda: arrivals.count() >= len(sent), 120, f"{len(sent)} punches at the broker")
        latencies = sorted(arrivals.times[k] - t for k, t in sent.items() if k in arrivals.times)
        mem = memory_mb(agent.pid)
    finally:
        if arrivals is not None:
            arrivals.stop()
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(30)
        for sim in sims:
            sim.stop()
        broker.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    return report(args, idle, mem, latencies, live)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    rank = max(0, min(len(values) - 1, round(p / 100 * len(values) + 0.5) - 1))
    return values[rank]


def report(
    args: argparse.Namespace, idle: float, mem: dict[str, float], lat: list[float], live: bool
) -> int:
    mode = "live capture + polling" if live else "polling only"
    p50, p95, p99 = (percentile(lat, p) for p in (50, 95, 99))
    rss, peak = mem.get("VmRSS", 0.0), mem.get("VmHWM", 0.0)
    latency_target = TARGET_P99_S if live else args.poll_interval + TARGET_P99_S
    checks = [
        ("idle CPU", f"{idle:.2f} % of one core", idle < TARGET_CPU, f"< {TARGET_CPU:g} %"),
        (
            "RSS",
            f"{rss:.1f} MB (peak {peak:.1f} MB)",
            rss < TARGET_RSS_MB,
            f"< {TARGET_RSS_MB:g} MB",
        ),
        (
            "punch -> broker",
            f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
            f"max {lat[-1] * 1000:.0f} ms over {len(lat)} punches",
            p99 < latency_target,
            f"p99 < {latency_target:g} s"
            + ("" if live else ": polling only, bound by the interval"),
        ),
    ]
    print(
        f"punchgate footprint: {args.terminals} simulated terminals, poll every "
        f"{args.poll_interval:g} s, {mode}; idle window {args.window:g} s"
    )
    for name, figure, ok, target in checks:
        print(f"  {name:<16} {figure:<60} {'ok' if ok else 'MISSED'} (target {target})")
    return 0 if all(ok for _n, _f, ok, _t in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
