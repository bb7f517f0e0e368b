"""Config files written for a test, and the problems the loader reports for them."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, load_settings

MINIMAL = """
[agent]
gateway_id = "gw-1"
"""


def write(tmp_path: Path, text: str, name: str = "punchgate.toml") -> Path:
    """``text`` as the config file ``name`` in ``tmp_path``."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    """The problems of a file the loader must refuse (exit code 2)."""
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert info.value.exit_code == 2
    return info.value.problems


def one_key(tmp_path: Path, section: str, line: str) -> Path:
    """A minimal file plus ``line`` in ``section``."""
    header = "" if section == "agent" else f"[{section}]\n"
    return write(tmp_path, MINIMAL + header + line + "\n")
