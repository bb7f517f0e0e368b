"""One reader for secret files: mqtt.password_file and the receiver's --password-file."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.errors import ConfigError
from config.secrets import read_secret_file


def test_a_password_file_saved_by_notepad_gives_the_password_without_its_bom(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "password"
    secret.write_bytes("\ufeffright horse battery\r\n".encode())
    secret.chmod(0o600)
    assert read_secret_file(secret, "--password-file") == "right horse battery"


def test_an_empty_password_file_is_refused_naming_the_setting(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_bytes(b"\xef\xbb\xbf\n")
    with pytest.raises(ConfigError, match=r"--password-file: .* is empty"):
        read_secret_file(secret, "--password-file")
