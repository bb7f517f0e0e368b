"""``outbox export --output``: on the disk before "exported N row(s)" is printed.

A technician exports to a USB stick and pulls it as soon as the command says it is done. The
power cut cannot run here; what makes the file survive it can be watched: the file's data and
the directory entry naming it are fsynced before the message.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import typer

from buffer import Outbox
from tests.buffer.factory import punches
from tests.buffer.test_cli import cli
from tests.crashpoints.outboxes import GATEWAY


def test_an_export_is_synced_to_its_disk_before_it_says_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "punchgate.toml"
    config.write_text(
        f'[agent]\ngateway_id = "{GATEWAY}"\nstate_dir = "{tmp_path / "state"}"\n\n'
        "[outbox]\ndisk_reserve_mb = 0\n"
    )
    with Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY, disk_reserve_bytes=0) as box:
        box.add_punches(punches(0, 50), watermark={"next": 50})
    stick = tmp_path / "usb"
    stick.mkdir()
    target = stick / "punches.csv"

    events: list[tuple[str, object]] = []
    real_fsync, real_echo = os.fsync, typer.echo

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        events.append(("fsync", (st.st_dev, st.st_ino)))
        real_fsync(fd)

    def echo(message: object = None, *args: object, **kwargs: object) -> None:
        events.append(("echo", str(message)))
        real_echo(message, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(typer, "echo", echo)
    out = cli("outbox", "export", "--output", str(target), "--config", str(config))
    assert out.code == 0, out.stderr
    assert "exported 50 row(s)" in out.stderr
    said = next(i for i, e in enumerate(events) if "exported" in str(e[1]))
    synced = {e[1] for e in events[:said] if e[0] == "fsync"}
    file_id, dir_id = [(s.st_dev, s.st_ino) for s in (target.stat(), stick.stat())]
    assert file_id in synced, "the exported rows may still be only in memory"
    assert dir_id in synced, "the file's name may still be only in memory"
    assert len(target.read_text().splitlines()) == 51
