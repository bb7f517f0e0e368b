"""The gap report's SQL against a model of it: random numberings of one gateway (an old one's,
with no outbox_id, and two outboxes), each number sent as a new punch or as a copy of one."""

from __future__ import annotations

import tempfile
from itertools import pairwise
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.receiver.store import SqliteStore

NUMBERINGS = (None, "0123456789abcdef", "fedcba9876543210")
# (numbering index, seq, copy of the n-th punch sent before it, or a new punch)
Sent = tuple[int, int, int | None]


def _expected(sent: list[Sent]) -> list[tuple[str | None, int, int]]:
    """Missing ranges per numbering: holes between the numbers seen, and before the first one
    (from 1, or for a numbering with an outbox_id, from past the numbers sent without one)."""
    seen: dict[int, set[int]] = {}
    for numbering, seq, _ in sent:
        seen.setdefault(numbering, set()).add(seq)
    legacy_top = max(seen[0]) if 0 in seen else 0
    out = []
    for numbering in sorted(seen, key=lambda n: NUMBERINGS[n] or ""):
        seqs = sorted(seen[numbering])
        start = 1 if numbering == 0 else legacy_top + 1
        if seqs[0] > start:
            out.append((NUMBERINGS[numbering], start, seqs[0] - 1))
        out += [(NUMBERINGS[numbering], a + 1, b - 1) for a, b in pairwise(seqs) if b > a + 1]
    return sorted(out, key=lambda g: (g[0] or "", g[1]))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(1, 12), st.one_of(st.none(), st.integers(0, 30))),
        min_size=1,
        max_size=30,
    )
)
@example(sent=[(0, 1, None), (0, 2, None), (2, 1, 0), (2, 4, None)])
def test_gaps_per_numbering_match_the_model(sent: list[Sent]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "hr.db")
        try:
            ids: list[str] = []
            for n, (numbering, seq, copy) in enumerate(sent):
                punch_id = ids[copy] if copy is not None and copy < len(ids) else f"p{n}"
                ids.append(punch_id)
                punch = {"id": punch_id, "gateway_id": "gw", "seq": seq}
                store.store([{**punch, "outbox_id": NUMBERINGS[numbering]}])
            got = [(g.outbox_id, g.first_missing, g.last_missing) for g in store.gaps()]
            assert got == _expected(sent)
            stored = {s.outbox_id: s.punches for s in store.summary()}
            assert sum(stored.values()) == len(set(ids)) == store.count()
        finally:
            store.close()
