"""The CLI's outputs on a full disk (a file size limit in the child): one clear line, no debris."""

from __future__ import annotations

import os
import resource
import subprocess
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

from buffer import Outbox
from tests.buffer.factory import punches
from tests.cli.conftest import GATEWAY, write_config

ROOT = Path(__file__).resolve().parents[2]
PUNCHGATE = ROOT / ".venv" / "bin" / "punchgate"
LIMIT = 100_000  # bytes any file of the child may grow to: a disk that is full


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A config and an outbox (about 800 KB) bigger than the child may write."""
    config = write_config(tmp_path / "punchgate.toml", state_dir=tmp_path / "state")
    with Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY) as box:
        box.add_punches(punches(0, 3000))
    return config


def _limited(size: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))

    return apply


def run_full(
    config: Path, *args: str, stdout: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``punchgate ARGS`` in a child whose files cannot grow beyond ``LIMIT``.

    Its stdout goes to the file ``stdout`` (a shell's ``> file``) when given, else to a pipe.
    """
    with ExitStack() as stack:
        out = subprocess.PIPE if stdout is None else stack.enter_context(stdout.open("w"))
        return subprocess.run(
            [str(PUNCHGATE), *args, "--config", str(config)],
            preexec_fn=_limited(LIMIT),
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )


def test_an_export_that_fills_the_disk_says_so_and_keeps_the_previous_export(
    site: Path, tmp_path: Path
) -> None:
    previous = tmp_path / "punches.csv"
    previous.write_text("yesterday's export\n", encoding="utf-8")
    done = run_full(site, "outbox", "export", "--output", str(previous))
    assert "Traceback" not in done.stderr, done.stderr[-1500:]
    assert done.returncode == 2, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and str(previous) in error
    assert "full" in error and "another disk" in error
    assert previous.read_text(encoding="utf-8") == "yesterday's export\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_an_export_redirected_to_a_full_disk_says_so_without_a_traceback(
    site: Path, tmp_path: Path
) -> None:
    done = run_full(site, "outbox", "export", "--format", "jsonl", stdout=tmp_path / "out.jsonl")
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and "standard output" in error and "full" in error


@pytest.mark.parametrize("target", ["file", "rotating"])
def test_a_backup_that_fills_the_disk_is_reported_as_a_full_disk(
    site: Path, tmp_path: Path, target: str
) -> None:
    args = ["outbox", "backup"] + ([str(tmp_path / "copy.db")] if target == "file" else [])
    done = run_full(site, *args)
    assert done.returncode == 5, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert "is full" in error and "free space" in error, error
    leftovers = [p.name for p in tmp_path.rglob("*") if ".partial-" in p.name]
    assert leftovers == []
    assert not (tmp_path / "copy.db").exists()
