"""A card reader's roster file that cannot be used is a config problem the doctor names."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.conftest import cli


def reader(roster: Path) -> dict[str, object]:
    return {
        "id": "gate-reader",
        "kind": "serial",
        "url": "loop://",
        "format": "em4100",
        "roster_file": str(roster),
    }


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("card,employee\n0A1B2C3D4E,1001\n0A1B2C3D4E,1002\n", "line 3"),
    ],
    ids=["missing", "card-given-twice"],
)
def test_doctor_reports_an_unusable_roster_file_with_its_problem_not_as_a_crash(
    tmp_path: Path, make_config: Callable[..., Path], content: str | None, expected: str
) -> None:
    roster = tmp_path / "cards.csv"
    if content is not None:
        roster.write_text(content, encoding="utf-8")
    config = make_config(devices=[reader(roster)])
    outcome = cli("doctor", "--only", "devices", "--json", "--config", str(config))
    assert outcome.code == 6, outcome
    checks = [c for c in json.loads(outcome.stdout)["checks"] if c["target"] == "gate-reader"]
    failed = [c for c in checks if c["verdict"] == "fail"]
    assert len(failed) == 1, checks
    assert "crashed" not in failed[0]["detail"], failed[0]
    assert expected in failed[0]["detail"], failed[0]
    assert "roster_file" in failed[0]["next_step"], failed[0]
    assert "--debug" not in failed[0]["next_step"], failed[0]


def test_doctor_passes_a_card_reader_with_a_good_roster_file(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    roster = tmp_path / "cards.csv"
    roster.write_text("card,employee\n0A1B2C3D4E,1001\n", encoding="utf-8")
    config = make_config(devices=[reader(roster)])
    outcome = cli("doctor", "--only", "devices", "--json", "--config", str(config))
    checks = [c for c in json.loads(outcome.stdout)["checks"] if c["target"] == "gate-reader"]
    assert [c["verdict"] for c in checks if c["verdict"] != "skip"] == ["ok"], checks
