"""Item 5: the CLI writes manual punches while another process writes to the same outbox."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.localbroker import free_port
from buffer.outbox import Outbox
from tests.cli.conftest import GATEWAY, cli
from tests.support.wait import wait_for

BERLIN = ZoneInfo("Europe/Berlin")

# A stand-in for the daemon: stores batches of device punches until told to stop (bounded).
WRITER = textwrap.dedent(
    """
    import sys, time
    from datetime import UTC, datetime, timedelta
    from pathlib import Path
    from agent import logs
    from buffer.outbox import Outbox
    from drivers.base import Punch, PunchState

    logs.configure("warning", stream=sys.stderr)
    path, stop, ready = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    base = datetime(2026, 1, 5, 8, 0)
    batches = 0
    deadline = time.monotonic() + 60
    with Outbox.open(path, "gw-test", busy_timeout=15) as outbox:
        while not stop.exists() and batches < 20000 and time.monotonic() < deadline:
            punches = []
            for i in range(5):
                local = base + timedelta(seconds=batches * 5 + i)
                punches.append(Punch(
                    device_id="lobby-1", device_serial="SER1", employee=f"w{batches}",
                    device_time=local, time_utc=(local - timedelta(hours=1)).replace(tzinfo=UTC),
                    utc_offset_minutes=60, state=PunchState.IN,
                ))
            outbox.add_punches(punches, watermark={"n": batches})
            batches += 1
            time.sleep(0.002)  # a daemon stores a batch per poll, it does not spin on the lock
            if batches == 1:
                ready.touch()
    print(batches, flush=True)
    """
)


def test_manual_punches_and_a_concurrent_writer_never_corrupt_the_outbox(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    config = make_config(
        devices=[{"id": "lobby-1", "kind": "zk", "host": "127.0.0.1", "port": free_port()}],
        manual={"max_age": "7d", "duplicate_window": "1m"},
    )
    db = tmp_path / "state" / "outbox.db"
    Outbox.open(db, GATEWAY).close()
    stop, ready = tmp_path / "stop", tmp_path / "ready"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), str(stop), str(ready)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        wait_for(lambda: ready.exists() or writer.poll() is not None, 30, what="writer start")
        assert writer.poll() is None, "the writer died at start"
        now = datetime.now(BERLIN)
        for n in range(10):
            at = (now - timedelta(hours=2, minutes=2 * n)).strftime("%Y-%m-%d %H:%M")
            result = cli(
                "punch", "add", "-e", f"m{n}", "-d", "lobby-1", "--at", at, "-r", "paper",
                "-c", str(config),
            )  # fmt: skip
            assert result.code == 0, result
        rows = [
            f"s{n},lobby-1,{(now - timedelta(hours=3, minutes=n)).strftime('%Y-%m-%d %H:%M')},in,x"
            for n in range(30)
        ]
        sheet = tmp_path / "sheet.csv"
        sheet.write_text("employee,device,at,state,reason\n" + "\n".join(rows) + "\n")
        result = cli("punch", "import", str(sheet), "-c", str(config))
        assert result.code == 0, result
        still_writing = writer.poll() is None
    finally:
        stop.touch()
        out, err = writer.communicate(timeout=90)
    assert writer.returncode == 0, err
    batches = int(out.split()[-1])
    assert still_writing, "the writer finished before the CLI did: the test proved nothing"
    with Outbox.open(db, GATEWAY) as outbox:
        assert outbox.check() == []
        every = list(outbox.iter_rows())
        stats = outbox.stats()
        watermark = outbox.watermark("lobby-1")
    assert [r.seq for r in every] == list(range(1, len(every) + 1))  # dense, no seq twice
    assert len(every) == batches * 5 + 10 + 30
    assert sum(r.source == "manual" for r in every) == 40
    assert stats.pending == len(every) and stats.last_seq == len(every)
    assert watermark == {"n": batches - 1}
