"""The card table and roster file: card numbers to employees, bad rosters named line by line."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.errors import ConfigError
from drivers.serial.cards import (
    CardTable,
    em4100_aliases,
    load_card_table,
    normalize_card,
    read_roster,
)


def test_card_numbers_compare_without_leading_zeros_case_or_spaces() -> None:
    assert normalize_card(" 0004521837 ") == "4521837"
    assert normalize_card("0a1b 2c3d4e") == "A1B2C3D4E"
    assert normalize_card("018,04687") == "18,4687"
    assert normalize_card("0000") == "0"
    table = CardTable({"0004521837": "1001"})
    assert table.lookup("4521837") == "1001"
    assert table.lookup("4521838") is None


def test_an_em4100_card_matches_the_numbers_printed_on_it() -> None:
    # 0x0A 0x1B2C3D4E: 32-bit decimal 455884110, facility 0x2C = 44, number 0x3D4E = 15694.
    assert em4100_aliases("0A1B2C3D4E") == ("455884110", "44,15694")
    assert CardTable({"0455884110": "a"}).lookup("0A1B2C3D4E", em4100_aliases("0A1B2C3D4E")) == "a"
    assert CardTable({"044,15694": "b"}).lookup("0A1B2C3D4E", em4100_aliases("0A1B2C3D4E")) == "b"
    assert CardTable({"0A1B2C3D4E": "c"}).lookup("0a1b2c3d4e") == "c"


def test_roster_reads_comma_or_semicolon_csv_with_header_comments_and_bom(tmp_path: Path) -> None:
    comma = tmp_path / "cards.csv"
    comma.write_text(
        "\ufeffcard,employee,name\n# badge list\n0004521837,1001,Ana\n\n0A1B2C3D4E, 1002 ,Bo\n",
        encoding="utf-8",
    )
    assert read_roster(comma) == {"4521837": "1001", "A1B2C3D4E": "1002"}
    semicolon = tmp_path / "excel.csv"
    semicolon.write_text("Card;Employee\n77;3003\n", encoding="utf-8")
    assert read_roster(semicolon) == {"77": "3003"}


def test_roster_problems_name_the_file_and_every_bad_line(tmp_path: Path) -> None:
    roster = tmp_path / "cards.csv"
    roster.write_text("1,1001\nlonely\n0001,1002\n2,\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_roster(roster, "dock-1")
    problems = info.value.problems
    assert len(problems) == 3
    assert all(str(roster) in p and p.startswith("dock-1: roster_file") for p in problems)
    assert "line 2: expected 'card,employee'" in problems[0]
    assert "line 3: card 0001 is already given to employee 1001 on line 1" in problems[1]
    assert "line 4" in problems[2]


def test_missing_roster_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such file: create it .* or fix roster_file"):
        read_roster(tmp_path / "nope.csv", "dock-1")


def test_config_cards_win_over_the_roster(tmp_path: Path) -> None:
    roster = tmp_path / "cards.csv"
    roster.write_text("1,1001\n2,1002\n", encoding="utf-8")
    table = load_card_table({"0001": "9999", "3": "1003"}, roster, "dock-1")
    assert [table.lookup(c) for c in ("1", "2", "3")] == ["9999", "1002", "1003"]
    assert len(table) == 3


def test_a_semicolon_roster_without_header_reads_names_written_last_comma_first(
    tmp_path: Path,
) -> None:
    """Excel in many locales saves ';' CSV; a 'Lima, Ana' name made every card unknown."""
    roster = tmp_path / "excel.csv"
    roster.write_text("0004521837;1001;Lima, Ana\n0A1B2C3D4E;1002;Berg, Bo\n", encoding="utf-8")
    assert read_roster(roster) == {"4521837": "1001", "A1B2C3D4E": "1002"}


def test_a_comma_roster_keeps_quoted_cards_and_semicolons_in_names(tmp_path: Path) -> None:
    roster = tmp_path / "cards.csv"
    roster.write_text('"044,15694",1003,Ana; Lima\n0001,1001,"Berg; Bo"\n', encoding="utf-8")
    assert read_roster(roster) == {"44,15694": "1003", "1": "1001"}
