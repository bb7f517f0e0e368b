"""A recovery cut by a power cut, done again at the next start: no copy of the damage is left."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from buffer import Outbox
from tests.buffer.factory import punches

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = "gw-test"

# The power cut, at the moment the scratch copy of the damaged file is complete: the one place
# that cannot run here is the power failing, so the child ends itself there (SIGKILL-like).
_CUT_DURING_SALVAGE = """
import os, sys
from pathlib import Path
import buffer.recovery
from buffer import Outbox
buffer.recovery.salvage = lambda copy, sink: os._exit(9)
Outbox.open(Path(sys.argv[1]), "gw-test")
"""


def test_a_recovery_cut_short_twice_leaves_no_scratch_copy_of_the_outbox(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox.db"
    with Outbox.open(path, GATEWAY, disk_reserve_bytes=0) as box:
        box.add_punches(punches(0, 400))
    data = bytearray(path.read_bytes())
    data[0:16] = b"not a database!!"  # the header is gone: recovery at the next open
    path.write_bytes(bytes(data))
    for _ in range(2):  # e.g. the watchdog killing a long recovery, twice
        cut = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_CUT_DURING_SALVAGE), str(path)],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cut.returncode == 9, cut.stderr[-2000:]
    with Outbox.open(path, GATEWAY, disk_reserve_bytes=0) as box:
        assert box.recovery is not None and "interrupted" in box.recovery.problem
    left = sorted(p.name for p in path.parent.iterdir() if "salvage" in p.name)
    assert left == []  # each was a full copy of the damaged outbox (and its WAL)
