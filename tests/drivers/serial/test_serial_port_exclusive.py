"""One reader per serial line: a second open of a port someone reads is refused, naming who.

Two readers of one tty split its bytes between them: each got half the clock's frames, and
half of every punch was rejected as junk by both. Real ptys, a real second process.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from config.errors import DeviceUnavailable
from drivers.serial import SerialDriver, SerialOptions, build_serial_driver
from drivers.serial.port import lock_holder
from tests.drivers.serial.helpers import PtyLine
from tests.support.wait import wait_for


def driver(pty: PtyLine, device_id: str = "dock-1") -> SerialDriver:
    return build_serial_driver(
        device_id, SerialOptions(url=str(pty.link), format="em4100"), ZoneInfo("UTC")
    )


def test_a_second_driver_on_the_same_line_is_refused_until_the_first_closes(
    pty: PtyLine,
) -> None:
    first, second = driver(pty, "dock-1"), driver(pty, "dock-2")
    first.open()
    try:
        with pytest.raises(DeviceUnavailable) as caught:
            second.open()
        message = str(caught.value)
        assert f"dock-2 ({pty.link})" in message
        assert "another reader" in message and f"pid {os.getpid()}" in message
        assert "this process" in message  # two [[devices]] entries with one url
        assert not second.connected
    finally:
        first.close()
    second.open()
    assert second.connected
    second.close()


def test_a_line_read_by_another_process_is_refused_naming_that_process(pty: PtyLine) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from zoneinfo import ZoneInfo\n"
            "from drivers.serial import SerialOptions, build_serial_driver\n"
            f"options = SerialOptions(url={str(pty.link)!r}, format='em4100')\n"
            "d = build_serial_driver('dock-1', options, ZoneInfo('UTC'))\n"
            "d.open()\n"
            "print('open', file=sys.stderr, flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,  # its logs
        stderr=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stderr is not None
    try:
        wait_for(
            lambda: select.select([holder.stderr], [], [], 0.05)[0] or holder.poll() is not None,
            timeout=30,
            what="the other process to open the line",
        )
        assert holder.stderr.readline() == "open\n"
        mine = driver(pty)
        with pytest.raises(DeviceUnavailable) as caught:
            mine.open()
        message = str(caught.value)
        assert f"pid {holder.pid}" in message and "python" in message
        assert "stop it" in message
        assert "this process" not in message
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
        holder.stderr.close()
    mine.open()  # its lock went with it
    assert mine.connected
    mine.close()


def test_the_lock_does_not_stop_a_reconnect_after_an_unplug(pty: PtyLine) -> None:
    """The lost port is closed before the new one is opened: its lock must not refuse us."""
    reader = driver(pty)
    reader.open()
    pty.unplug()
    pty.plug()
    pty.write(b"x")
    list(reader.live(0.3))  # notices the loss, reopens the new pty
    assert reader.connected
    reader.close()


def test_the_lock_holder_is_read_from_proc_locks_skipping_waiters_and_other_files(
    tmp_path: Path,
) -> None:
    port = tmp_path / "ttyS0"
    port.write_bytes(b"")
    st = port.stat()
    here = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    locks = tmp_path / "locks"
    locks.write_text(
        f"1: POSIX  ADVISORY  WRITE 11 {here} 0 EOF\n"  # an fcntl lock: not pyserial's
        f"2: FLOCK  ADVISORY  WRITE 22 {here}0 0 EOF\n"  # another inode
        f"2: -> FLOCK  ADVISORY  WRITE 33 {here} 0 EOF\n"  # waiting, not holding
        f"3: FLOCK  ADVISORY  WRITE 44 {here} 0 EOF\n"
    )
    assert lock_holder(port, locks) == 44
    locks.write_text(f"3: FLOCK  ADVISORY  WRITE 0 {here} 0 EOF\n")  # another pid namespace
    assert lock_holder(port, locks) is None
    assert lock_holder(tmp_path / "gone", locks) is None
