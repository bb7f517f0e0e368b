"""Sequence gaps per gateway: which numbers the receiver has never been sent.

A gateway numbers its punches 1, 2, 3, ... A number counts as seen when a punch arrived with
it, even one the store already had under another number: a gateway whose outbox was restored
or re-installed reads its terminals again and gives those copies new numbers. The store keeps
such numbers in ``seq_copies`` (the punch itself is stored once, under its first number), so
they are no gap; asking the gateway to re-send them would only bring the same copies again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from buffer.recovery import SEQ_GAP_AFTER_LOSS

# A number a gateway gave a punch the store already holds under another number.
COPIES_CREATE = (
    "CREATE TABLE IF NOT EXISTS seq_copies (gateway_id TEXT NOT NULL, seq BIGINT NOT NULL,"
    " id TEXT NOT NULL, PRIMARY KEY (gateway_id, seq))"
)

# Run after a batch's insert, in its transaction, when some of its punches were copies.
SQLITE_COPIES = (
    "INSERT OR IGNORE INTO seq_copies (gateway_id, seq, id) SELECT ?, ?, ?"
    " WHERE NOT EXISTS (SELECT 1 FROM punches WHERE gateway_id = ? AND seq = ?)"
)
PG_COPIES = (
    "INSERT INTO seq_copies (gateway_id, seq, id) SELECT v.g, v.s, v.i"
    " FROM unnest(%s::text[], %s::bigint[], %s::text[]) AS v(g, s, i)"
    " WHERE NOT EXISTS (SELECT 1 FROM punches p WHERE p.gateway_id = v.g AND p.seq = v.s)"
    " ON CONFLICT DO NOTHING"
)

# Every number seen per gateway: the stored punches' and their copies'.
_NUMBERS = """(
    SELECT gateway_id, seq, 1 AS punch FROM punches {where}
    UNION ALL SELECT gateway_id, seq, 0 FROM seq_copies {where}
) AS numbers"""

# LAG() finds holes between seen seqs; the second part finds a hole before the first one.
_GAPS_SQL = """
SELECT gateway_id, prev + 1 AS first_missing, seq - 1 AS last_missing FROM (
    SELECT gateway_id, seq, LAG(seq) OVER (PARTITION BY gateway_id ORDER BY seq) AS prev
    FROM {numbers}
) AS ordered WHERE prev IS NOT NULL AND seq > prev + 1
UNION ALL
SELECT gateway_id, 1, min(seq) - 1 FROM {numbers} GROUP BY gateway_id HAVING min(seq) > 1
ORDER BY 1, 2
"""

_SUMMARY_SQL = """
SELECT gateway_id, sum(punch), min(seq), max(seq) FROM {numbers}
GROUP BY gateway_id ORDER BY gateway_id
"""


def gaps_sql(where: str) -> str:
    """The gaps query; ``where`` (a constant filter, or "") holds 4 placeholders' worth."""
    return _GAPS_SQL.format(numbers=_NUMBERS.format(where=where))


def summary_sql() -> str:
    return _SUMMARY_SQL.format(numbers=_NUMBERS.format(where=""))


@dataclass(frozen=True)
class Gap:
    """Sequence numbers of one gateway that the store has never seen."""

    gateway_id: str
    first_missing: int
    last_missing: int

    @property
    def count(self) -> int:
        return self.last_missing - self.first_missing + 1

    @property
    def recovery_jump(self) -> bool:
        """The jump a gateway's numbering makes after it recovered its outbox (the contract).

        Those numbers are never used. The jump is counted from the restored backup's numbers,
        so the gap seen here can be larger (numbers used just before the damage whose punches
        were lost with the file; they come back with new seqs) or smaller (punches stored after
        the backup that had already arrived here, and that no terminal gives back, such as
        manual corrections). A real gap is at most a gateway's in-flight window wide, so half
        the jump tells them apart.
        """
        return self.count > SEQ_GAP_AFTER_LOSS // 2

    @property
    def missing(self) -> int:
        """Numbers that really stand for punches not (yet) received."""
        return max(self.count - SEQ_GAP_AFTER_LOSS, 0) if self.recovery_jump else self.count


@dataclass(frozen=True)
class GatewaySummary:
    """What the store holds for one gateway."""

    gateway_id: str
    punches: int
    first_seq: int
    last_seq: int
    missing: int


def gaps_of(rows: list[tuple[Any, ...]]) -> list[Gap]:
    return [Gap(str(g), int(a), int(b)) for g, a, b in rows]


def summary_of(rows: list[tuple[Any, ...]], gaps: list[Gap]) -> list[GatewaySummary]:
    missing: dict[str, int] = {}
    for gap in gaps:
        missing[gap.gateway_id] = missing.get(gap.gateway_id, 0) + gap.missing
    return [
        GatewaySummary(str(g), int(n), int(lo), int(hi), missing.get(str(g), 0))
        for g, n, lo, hi in rows
    ]
