"""Fixtures for the CLI suite: config files in tmp_path, TLS material made with openssl."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from typer.testing import CliRunner

from agent.cli import app
from config.errors import PunchgateError

GATEWAY = "gw-test"


@dataclass(frozen=True)
class Outcome:
    """A CLI run seen as a technician sees it: exit code, stdout, stderr."""

    code: int
    stdout: str
    stderr: str


def cli(*args: str, env: dict[str, str] | None = None) -> Outcome:
    """Run ``punchgate ARGS`` in-process, with ``main()``'s boundary: error -> code + one line."""
    result = CliRunner().invoke(app, list(args), env=env)
    # The CLI pointed structlog at the runner's stderr, which is closed now: log elsewhere.
    structlog.reset_defaults()
    exc = result.exception
    if isinstance(exc, PunchgateError):
        return Outcome(exc.exit_code, result.stdout, result.stderr + f"error: {exc}\n")
    if exc is not None and not isinstance(exc, SystemExit):
        raise exc
    return Outcome(result.exit_code, result.stdout, result.stderr)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(
    path: Path,
    *,
    state_dir: Path,
    mqtt: dict[str, Any] | None = None,
    devices: list[dict[str, Any]] | None = None,
    manual: dict[str, Any] | None = None,
    outbox: dict[str, Any] | None = None,
    timezone: str = "Europe/Berlin",
) -> Path:
    """A config file with the given sections (TOML written by hand: tomllib only reads)."""
    lines = [
        "[agent]",
        f'gateway_id = "{GATEWAY}"',
        f"state_dir = {toml_value(str(state_dir))}",
        f'timezone = "{timezone}"',
        "",
        "[mqtt]",
    ]
    for key, value in (mqtt or {"url": "mqtt://127.0.0.1:1"}).items():
        lines.append(f"{key} = {toml_value(value)}")
    lines += ["", "[outbox]"]
    lines += [
        f"{k} = {toml_value(v)}" for k, v in ({"disk_reserve_mb": 1} | (outbox or {})).items()
    ]
    lines.append("")
    if manual:
        lines.append("[manual]")
        lines += [f"{k} = {toml_value(v)}" for k, v in manual.items()]
        lines.append("")
    for device in devices or []:
        lines.append("[[devices]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in device.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Path]:
    """``make_config(devices=[...], mqtt={...})`` -> a config path with state in tmp_path/state."""

    def make(**kwargs: Any) -> Path:
        kwargs.setdefault("state_dir", tmp_path / "state")
        return write_config(tmp_path / "punchgate.toml", **kwargs)

    return make


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(
        ["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True, timeout=30
    )


@dataclass(frozen=True)
class Pki:
    """A test CA and a broker certificate for 127.0.0.1 signed by it."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_pki(directory: Path, *, days: int, name: str = "test") -> Pki:
    """A fresh CA (EC keys: fast) and a server certificate valid for ``days`` days."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "3650",
        "-subj", f"/CN=punchgate {name} CA", cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
        cwd=directory,
    )  # fmt: skip
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", str(days), "-extfile", "ext.cnf",
        cwd=directory,
    )  # fmt: skip
    return Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A broker certificate that expires in 10 days (inside the doctor's 30-day warning)."""
    return make_pki(tmp_path_factory.mktemp("pki"), days=10)


@pytest.fixture(scope="session")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A second, unrelated CA: a broker certificate it did not sign must be rejected."""
    return make_pki(tmp_path_factory.mktemp("pki-other"), days=400, name="other")
