"""``outbox export --output``: the partial file of an export cut short is removed by the next one.

A SIGKILL or a power cut leaves the export's ``.NAME...part`` beside the target; the next export
to that folder removes it, but never the one a live export (another technician's) still writes.
Real processes (``python -m agent.cli``), killed or stopped while they write.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from buffer.outbox import Outbox
from tests.cli.conftest import GATEWAY, cli
from tests.cli.test_outbox_inspect import punch
from tests.support.wait import wait_for

ROWS = 20_000  # an export that takes long enough to be caught writing


@pytest.fixture
def config(tmp_path: Path, make_config: Callable[..., Path]) -> Path:
    path = make_config()
    with Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY) as outbox:
        outbox.add_punches([punch("lobby-1", str(i % 300), 900 - i / 30) for i in range(ROWS)])
    return path


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    path = tmp_path / "exports"
    path.mkdir()
    return path


def parts(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(".part"))


@pytest.fixture
def writing(config: Path) -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    """Start an export to a target; return once its partial file holds data."""
    started: list[subprocess.Popen[str]] = []

    def start(target: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "outbox", "export", "--output", str(target),
             "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        started.append(proc)
        wait_for(
            lambda: any(p.stat().st_size > 0 for p in parts(target.parent) if p.exists()),
            timeout=30,
            interval=0.005,
            what="the export to start writing",
        )
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.communicate(timeout=10)


def killed(proc: subprocess.Popen[str]) -> None:
    proc.kill()  # SIGKILL: no handler runs, as after a power cut
    proc.communicate(timeout=10)


def test_the_next_export_to_the_same_file_removes_the_partial_file_of_a_killed_one(
    config: Path, exports: Path, writing: Callable[[Path], subprocess.Popen[str]]
) -> None:
    target = exports / "punches.csv"
    killed(writing(target))
    assert parts(exports), "the killed export left no partial file: nothing to test"
    result = cli("outbox", "export", "--output", str(target), "--config", str(config))
    assert result.code == 0, result
    assert sorted(p.name for p in exports.iterdir()) == ["punches.csv"]
    assert len(target.read_text(encoding="utf-8").splitlines()) == ROWS + 1


def test_an_export_to_another_file_in_the_folder_removes_it_too(
    config: Path, exports: Path, writing: Callable[[Path], subprocess.Popen[str]]
) -> None:
    killed(writing(exports / "monday.csv"))
    left = parts(exports)
    assert left
    result = cli("outbox", "export", "--output", str(exports / "tuesday.csv"), "-c", str(config))
    assert result.code == 0, result
    assert sorted(p.name for p in exports.iterdir()) == ["tuesday.csv"]
    assert left[0].name in result.stderr  # says what it removed


def test_the_partial_file_of_a_live_export_is_left_alone(
    config: Path, exports: Path, writing: Callable[[Path], subprocess.Popen[str]]
) -> None:
    """Stopped (SIGSTOP) mid-write, the other export is alive: its file must survive ours."""
    target = exports / "punches.csv"
    other = writing(target)
    os.kill(other.pid, signal.SIGSTOP)
    theirs = parts(exports)
    try:
        result = cli("outbox", "export", "--output", str(exports / "mine.csv"), "-c", str(config))
        assert result.code == 0, result
        assert parts(exports) == theirs
    finally:
        os.kill(other.pid, signal.SIGCONT)
    _, err = other.communicate(timeout=30)
    assert other.returncode == 0, err
    assert len(target.read_text(encoding="utf-8").splitlines()) == ROWS + 1
    assert sorted(p.name for p in exports.iterdir()) == ["mine.csv", "punches.csv"]


def test_a_partial_file_written_before_this_boot_is_removed_even_without_a_pid(
    config: Path, exports: Path
) -> None:
    """Older versions named it ``.NAME.XXXXXXXX.part``; from before this boot it is dead."""
    booted = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    stale = exports / ".punches.csv.k3j_9x0a.part"
    stale.write_text("half an export\n", encoding="utf-8")
    os.utime(stale, (booted - 60, booted - 60))
    recent = exports / ".punches.csv.abcdefgh.part"  # from this boot: it may be live
    recent.write_text("an export of an older version, writing\n", encoding="utf-8")
    other = exports / ".monday.csv.k3j_9x0b.part"  # without a pid: only for its own target
    other.write_text("half an export\n", encoding="utf-8")
    os.utime(other, (booted - 60, booted - 60))
    mine = exports / "report.part"  # not a name an export writes
    mine.write_text("someone else's\n", encoding="utf-8")
    os.utime(mine, (booted - 60, booted - 60))
    result = cli("outbox", "export", "--output", str(exports / "punches.csv"), "-c", str(config))
    assert result.code == 0, result
    assert sorted(p.name for p in exports.iterdir()) == [
        ".monday.csv.k3j_9x0b.part",
        ".punches.csv.abcdefgh.part",
        "punches.csv",
        "report.part",
    ]
