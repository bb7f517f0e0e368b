"""Memory of many terminals storing their full logs at once (a new gateway at a big site).

Forty terminals with full logs (100,000 records each) are all read on the daemon's first start
(no watermarks yet), and again after a recovery rewinds the watermarks. Each device worker then
hands the outbox its whole log as one batch, and the batches queue on the outbox's lock. Each
batch's row values are a copy of it as large again as the punches: built while queueing, one
per waiting terminal, they took ~100 MB of RSS per terminal (8 terminals: 858 MB; 40: ~4 GB,
more than a gateway has). Measured by the process's peak RSS in a child process of its own.
"""

from __future__ import annotations

from pathlib import Path

from tests.buffer.rss import run_child

TERMINALS = 8
RECORDS = 25_000

CHILD = """
import json, sys, threading
from pathlib import Path
from buffer.outbox import Outbox
from tests.buffer.factory import punches

from tests.buffer.rss import kib, reset_peak

terminals, records, path = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
box = Outbox.open(path, "gw-test", disk_reserve_bytes=0)
lone = punches(10**7, records, device="warm-up", serial="S-WARM")
reset_peak()
before = kib("VmRSS")
box.add_punches(lone, watermark={"count": records})
one = kib("VmHWM") - before
logs = [punches(n * 10**6, records, device=f"t{n}", serial=f"S-{n}") for n in range(terminals)]
reset_peak()
before = kib("VmRSS")
start = threading.Barrier(terminals)

def store(log):
    start.wait()
    box.add_punches(log, watermark={"count": records})

threads = [threading.Thread(target=store, args=(log,)) for log in logs]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"one": one, "all": kib("VmHWM") - before, "pending": box.stats().pending}))
box.close()
"""


def test_terminals_storing_full_logs_at_once_do_not_each_hold_a_copy(tmp_path: Path) -> None:
    grown = run_child(CHILD, TERMINALS, RECORDS, tmp_path / "o.db")
    assert grown["pending"] == (TERMINALS + 1) * RECORDS
    # One batch's working copy, not one per queued terminal (which was TERMINALS times it).
    assert grown["all"] < 4 * grown["one"], grown
