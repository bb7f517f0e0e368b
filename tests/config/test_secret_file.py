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


def test_a_password_file_naming_an_endless_device_is_refused_without_reading_it_all() -> None:
    # /dev/zero read whole never ends (it filled the memory): read a bounded amount, say why.
    with pytest.raises(ConfigError, match=r"mqtt.password_file: /dev/zero holds more than 64 KiB"):
        read_secret_file(Path("/dev/zero"), "mqtt.password_file")
