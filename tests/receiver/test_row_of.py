"""The receiver's row of a punch: the fast path gives exactly what the general one gives."""

from __future__ import annotations

from typing import Any

from agent.receiver.store import COLUMNS, _row_of_partial, row_of


def _punch(**changes: Any) -> dict[str, Any]:
    punch: dict[str, Any] = {name: f"v-{name}" for name, _ in COLUMNS if name != "stored_at"}
    punch.update(seq=7, utc_offset_minutes=60, state_code=0, verify_code=1, suspect=[], raw=None)
    punch.update(replayed=False)
    punch.update(changes)
    return punch


def test_a_contract_punch_becomes_the_same_row_by_either_path() -> None:
    for punch in (_punch(), _punch(replayed=True), _punch(card=None, void_of="x")):
        row = row_of(punch, "2026-01-01T00:00:00.000+00:00")
        assert row == _row_of_partial(punch, "2026-01-01T00:00:00.000+00:00")
        assert len(row) == len(COLUMNS)
        assert row[[n for n, _ in COLUMNS].index("replayed")] in (0, 1)
        assert type(row[[n for n, _ in COLUMNS].index("replayed")]) is int


def test_suspect_flags_and_missing_fields_take_the_general_path() -> None:
    flagged = _punch(suspect=["clock", "bad_user"])
    row = row_of(flagged, "t")
    assert row[[n for n, _ in COLUMNS].index("suspect")] == "clock,bad_user"
    partial = _punch()
    del partial["card"], partial["raw"]
    row = row_of(partial, "t")
    names = [n for n, _ in COLUMNS]
    assert row[names.index("card")] is None and row[names.index("raw")] is None
    assert row[names.index("id")] == "v-id" and row[-1] == "t"
