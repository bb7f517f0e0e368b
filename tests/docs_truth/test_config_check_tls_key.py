"""``config check`` names the key that holds the problem (README: file, key and reason)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.cli.conftest import cli


def encrypted_pair(directory: Path) -> tuple[Path, Path]:
    """A client certificate and its key, the key protected by a pass phrase."""
    cert, key = directory / "client.pem", directory / "client.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", "/CN=plant1-gw1",
         "-passout", "pass:secret-phrase"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


def test_config_check_blames_key_file_for_an_encrypted_client_key(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    cert, key = encrypted_pair(tmp_path)
    config = make_config(
        mqtt={"url": "mqtts://127.0.0.1:8883", "cert_file": str(cert), "key_file": str(key)}
    )
    outcome = cli("config", "check", "--config", str(config))
    assert outcome.code == 2, outcome
    assert f"{config}: mqtt.key_file: the client key {key} is encrypted" in outcome.stderr
