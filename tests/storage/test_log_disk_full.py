"""The log's disk is full (stdout appended to a file, as StandardOutput=append: does): punches
are still stored; a log line that cannot be written is dropped, never an error of the caller."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 2_000_000  # bytes per file of the child: the log file is already there, the outbox not

_DAEMON_LIKE = """
import sys
from pathlib import Path
from agent import logs
from buffer import Outbox
from tests.buffer.factory import punches

logs.configure("info", stream=sys.stdout, json=True)  # as `punchgate run` under systemd
path = Path(sys.argv[1])
# A reserve above the free space: the outbox logs its disk alarm, an error line.
with Outbox.open(path, "gw-test", disk_reserve_bytes=2**62) as box:
    stored = box.add_punches(punches(0, 50), watermark={"next": 50}).inserted
    pending = box.stats().pending
print(f"stored {stored} pending {pending}", file=sys.stderr)
"""


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.RLIM_INFINITY))


def test_punches_are_stored_while_the_log_cannot_be_written(tmp_path: Path) -> None:
    log = tmp_path / "punchgate.log"
    log.write_bytes(b"x" * LIMIT)  # the log filled the disk
    with log.open("ab") as out:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_DAEMON_LIKE), str(tmp_path / "outbox.db")],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_limited,
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            timeout=60,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == "stored 50 pending 50"
    assert log.stat().st_size == LIMIT
