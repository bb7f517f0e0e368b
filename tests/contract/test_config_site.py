"""A site name the contract cannot carry is refused by the config check, not sent in every punch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "agent/contract/schemas/punch.json").read_text()
)


@pytest.mark.parametrize(
    "site",
    ["S" * (SCHEMA["properties"]["site"]["maxLength"] + 1), "Plant\\u00001", "Plant\\u001b[2J"],
    ids=["longer-than-the-schema", "nul", "escape"],
)
def test_a_site_name_no_punch_could_carry_is_refused_by_config_check(
    tmp_path: Path, site: str
) -> None:
    # Every punch and status carries agent.site: one the schema refuses (too long) or a
    # PostgreSQL backend refuses (NUL) makes every punch of the gateway undeliverable.
    config = tmp_path / "pg.toml"
    config.write_text(
        f'[agent]\ngateway_id = "gw-x"\nsite = "{site}"\nstate_dir = "{tmp_path}/s"\n',
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "config", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "site" in done.stdout + done.stderr
