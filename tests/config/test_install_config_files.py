"""The installed config file as IT then meets it: /etc/punchgate is root:punchgate 0750."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.config.files import MINIMAL, problems_of, write


def test_a_config_file_the_user_may_not_read_says_how_to_run_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: 'punchgate config check --config /etc/punchgate/punchgate.toml' run by IT's own
    account said only 'cannot read: Permission denied' (the directory is root:punchgate 0750)."""
    path = write(tmp_path, MINIMAL)
    real_read = Path.read_bytes

    def read_as_another_user(self: Path) -> bytes:
        # Root reads any file: refuse it the way the kernel refuses an account outside the group.
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_as_another_user)
    (problem,) = problems_of(path)
    assert "Permission denied" in problem and "sudo -u punchgate" in problem
    # Made root-only by hand before install.sh ran, the service itself cannot read it either.
    assert f"chown root:punchgate {path} && chmod 640 {path}" in problem
