"""Sequence gaps per gateway and numbering: which numbers the receiver has never been sent.

A gateway numbers its punches 1, 2, 3, ... in its outbox's numbering (``outbox_id``; a
re-installed gateway starts again at 1 under a new one, an old gateway sends none). A number
counts as seen when a punch arrived with it, even one the store already had under another
number: a gateway whose outbox was restored or re-installed reads its terminals again and
gives those copies new numbers. The store keeps
such numbers in ``seq_copies`` (the punch itself is stored once, under its first number), so
they are no gap; asking the gateway to re-send them would only bring the same copies again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from buffer.recovery import SEQ_GAP_AFTER_LOSS

# A number a gateway gave a punch the store already holds under another number. ``outbox_id``
# names the numbering ('' for an old gateway's, which sent none: a key column cannot be NULL).
COPIES_CREATE = (
    "CREATE TABLE IF NOT EXISTS seq_copies (gateway_id TEXT NOT NULL,"
    " outbox_id TEXT NOT NULL DEFAULT '', seq BIGINT NOT NULL, id TEXT NOT NULL,"
    " PRIMARY KEY (gateway_id, outbox_id, seq))"
)

# Run after a batch's insert, in its transaction, when some of its punches were copies. The
# index on (gateway_id, seq) finds the punches of that number; the numbering is filtered after.
SQLITE_COPIES = (
    "INSERT OR IGNORE INTO seq_copies (gateway_id, outbox_id, seq, id) SELECT ?, ?, ?, ?"
    " WHERE NOT EXISTS (SELECT 1 FROM punches WHERE gateway_id = ? AND seq = ?"
    " AND coalesce(outbox_id, '') = ?)"
)
PG_COPIES = (
    "INSERT INTO seq_copies (gateway_id, outbox_id, seq, id) SELECT v.g, v.o, v.s, v.i"
    " FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[]) AS v(g, o, s, i)"
    " WHERE NOT EXISTS (SELECT 1 FROM punches p WHERE p.gateway_id = v.g AND p.seq = v.s"
    " AND coalesce(p.outbox_id, '') = v.o)"
    " ON CONFLICT DO NOTHING"
)

# Every number seen per gateway and numbering ('': no outbox_id): the stored punches' and
# their copies'. ``legacy``: the highest number of a gateway's numbering with no outbox_id.
_NUMBERS = """WITH numbers AS (
    SELECT gateway_id, coalesce(outbox_id, '') AS numbering, seq, 1 AS punch FROM punches {where}
    UNION ALL SELECT gateway_id, outbox_id, seq, 0 FROM seq_copies {where}
), legacy AS (
    SELECT gateway_id, max(seq) AS top FROM numbers WHERE numbering = '' GROUP BY gateway_id
)"""

# LAG() finds holes between seen seqs; the second part finds a hole before the first one. A
# gateway updated to schema v5 keeps its outbox: its numbering goes on under an outbox_id from
# where the one without went, so that one's numbers come first (a new outbox starts at 1).
_GAPS_SQL = """{numbers}
SELECT gateway_id, numbering, prev + 1 AS first_missing, seq - 1 AS last_missing FROM (
    SELECT gateway_id, numbering, seq,
        LAG(seq) OVER (PARTITION BY gateway_id, numbering ORDER BY seq) AS prev
    FROM numbers
) AS ordered WHERE prev IS NOT NULL AND seq > prev + 1
UNION ALL
SELECT n.gateway_id, n.numbering, coalesce(l.top, 0) + 1, min(n.seq) - 1
FROM numbers AS n LEFT JOIN legacy AS l ON l.gateway_id = n.gateway_id AND n.numbering <> ''
GROUP BY n.gateway_id, n.numbering, l.top HAVING min(n.seq) > coalesce(l.top, 0) + 1
ORDER BY 1, 2, 3
"""

_SUMMARY_SQL = """{numbers}
SELECT gateway_id, numbering, sum(punch), min(seq), max(seq) FROM numbers
GROUP BY gateway_id, numbering ORDER BY gateway_id, numbering
"""


def gaps_sql(where: str) -> str:
    """The gaps query; ``where`` (a constant filter, or "") holds 2 placeholders' worth."""
    return _GAPS_SQL.format(numbers=_NUMBERS.format(where=where))


def summary_sql() -> str:
    return _SUMMARY_SQL.format(numbers=_NUMBERS.format(where=""))


@dataclass(frozen=True)
class Gap:
    """Sequence numbers of one gateway that the store has never seen."""

    gateway_id: str
    first_missing: int
    last_missing: int
    outbox_id: str | None = None  # the numbering (None: an old gateway's, with no outbox_id)

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
    outbox_id: str | None = None  # the numbering (None: an old gateway's, with no outbox_id)


def gaps_of(rows: list[tuple[Any, ...]]) -> list[Gap]:
    return [Gap(str(g), int(a), int(b), str(o) or None) for g, o, a, b in rows]


def summary_of(rows: list[tuple[Any, ...]], gaps: list[Gap]) -> list[GatewaySummary]:
    missing: dict[tuple[str, str | None], int] = {}
    for gap in gaps:
        key = (gap.gateway_id, gap.outbox_id)
        missing[key] = missing.get(key, 0) + gap.missing
    out = []
    for g, o, n, lo, hi in rows:
        key = (str(g), str(o) or None)
        out.append(GatewaySummary(key[0], int(n), int(lo), int(hi), missing.get(key, 0), key[1]))
    return out
