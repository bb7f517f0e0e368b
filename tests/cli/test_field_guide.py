"""docs/field-guide.md is tested: its commands parse, its doctor lines name real checks."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from agent.cli import app
from agent.cli.punch import read_sheet
from agent.doctor import FAMILIES
from tests.support.cli_parse import parse_strictly

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "field-guide.md"
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)


def fenced(lang: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(GUIDE.read_text("utf-8")) if m.group(1) == lang]


def guide_commands() -> list[str]:
    return [
        line.strip()
        for block in fenced("sh")
        for line in block.splitlines()
        if line.strip().startswith("punchgate ")
    ]


def test_the_guide_has_commands_for_every_tool_it_describes() -> None:
    words = {" ".join(shlex.split(c)[:3]) for c in guide_commands()}
    for expected in (
        "punchgate doctor",
        "punchgate punch add",
        "punchgate punch import",
        "punchgate punch void",
        "punchgate outbox list",
        "punchgate outbox export",
        "punchgate outbox redeliver",
    ):
        assert any(w.startswith(expected) for w in words), expected


@pytest.mark.parametrize("line", guide_commands())
def test_every_command_in_the_guide_parses(line: str) -> None:
    """Each example resolves to a real command and its options and values parse."""
    parse_strictly(shlex.split(line)[1:], line)


def test_doctor_lines_in_the_table_name_real_families_and_checks() -> None:
    source = "".join(p.read_text("utf-8") for p in (ROOT / "agent" / "doctor").glob("*.py"))
    quoted = re.findall(r"`(ok|WARN|FAIL) (\w+) (\S+) ([^:`]+):", GUIDE.read_text("utf-8"))
    assert len(quoted) >= 15
    for _verdict, family, _target, check in quoted:
        assert family in FAMILIES, family
        assert f'"{check}"' in source, f"no doctor check is named {check!r}"


def test_the_sheet_example_reads_as_three_rows(tmp_path: Path) -> None:
    (block,) = fenced("csv")
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(block, encoding="utf-8")
    requests, problems = read_sheet(sheet)
    assert problems == []
    assert [(r.employee, r.state, r.row) for r in requests] == [
        ("1042", "in", 2),
        ("1043", "in", 3),
        ("1042", "out", 4),
    ]


def test_every_command_in_the_guide_has_json_unless_the_guide_says_it_has_not() -> None:
    intro = GUIDE.read_text("utf-8").split("\n## ", 1)[0]
    exceptions = re.search(r"all but (.*?)\s+have `--json`", intro, re.S)
    assert exceptions, "the intro names the commands without --json"
    without = set(re.findall(r"`(outbox \w+|punch \w+|devices \w+|\w+)`", exceptions.group(1)))
    root: Any = typer.main.get_command(app)
    for line in guide_commands():
        words = shlex.split(line)[1:]
        command, path = root, []
        while hasattr(command, "commands") and words and words[0] in command.commands:
            path.append(words.pop(0))
            command = command.commands[path[-1]]
        options = {o for p in command.params for o in p.opts}
        assert ("--json" in options) != (" ".join(path) in without), line
