"""Property-based fuzzing of every serial parser (hypothesis).

For each format: arbitrary bytes in arbitrary chunks never raise and never grow the buffer past
its bound; the result never depends on how the stream was chunked; and valid frames surrounded
by noise are all found, in order.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.serial.parsers import PREVIEW, Parser, ParseResult, em4100_frame, make_parser

CLOCK_PATTERN = r"^(?P<employee>\d+),(?P<time>[0-9: -]+),(?P<state>IN|OUT)$"
MAX_LINE = 64
FACTORIES: dict[str, Callable[[], Parser]] = {
    "lines": lambda: make_parser("lines", CLOCK_PATTERN, "ascii", MAX_LINE),
    "wiegand-ascii": lambda: make_parser("wiegand-ascii", None, "ascii", MAX_LINE),
    "em4100": lambda: make_parser("em4100"),
}
formats = st.sampled_from(sorted(FACTORIES))
# Noise that cannot end a line: the line formats re-synchronise on CR/LF.
line_noise = st.binary(max_size=3 * MAX_LINE).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"")
)
line_end = st.sampled_from([b"\r", b"\n", b"\r\n"])
FAST = settings(max_examples=150, deadline=None)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def run(parser: Parser, chunks: list[bytes]) -> ParseResult:
    total = ParseResult()
    for chunk in chunks:
        result = parser.feed(chunk)
        total.frames += result.frames
        total.rejects += result.rejects
        assert parser.pending <= MAX_LINE + PREVIEW  # bounded, whatever arrives
    return total


def is_subsequence(wanted: list[object], found: list[object]) -> bool:
    it = iter(found)
    return all(any(w == f for f in it) for w in wanted)


@FAST
@given(fmt=formats, data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000)))
def test_arbitrary_bytes_in_any_chunking_never_raise_and_give_the_same_result(
    fmt: str, data: bytes, cuts: list[int]
) -> None:
    whole = run(FACTORIES[fmt](), [data])
    chunked = run(FACTORIES[fmt](), split(data, cuts))
    assert chunked.frames == whole.frames
    assert chunked.rejects == whole.rejects
    assert all(len(r.raw) <= PREVIEW for r in whole.rejects)


@FAST
@given(fmt=formats, data=st.binary(max_size=500))
def test_byte_by_byte_feeding_matches_one_big_feed(fmt: str, data: bytes) -> None:
    whole = run(FACTORIES[fmt](), [data])
    single = run(FACTORIES[fmt](), [data[i : i + 1] for i in range(len(data))])
    assert (single.frames, single.rejects) == (whole.frames, whole.rejects)


clock_lines = st.tuples(
    st.integers(0, 10**8),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),
    st.sampled_from(["IN", "OUT"]),
)


@FAST
@given(
    frames=st.lists(clock_lines, max_size=8),
    noise=st.lists(line_noise, min_size=9, max_size=9),
    ends=st.lists(line_end, min_size=18, max_size=18),
    cuts=st.lists(st.integers(0, 5000)),
)
def test_lines_no_valid_line_is_lost_among_noise_lines(
    frames: list[tuple[int, datetime, str]], noise: list[bytes], ends: list[bytes], cuts: list[int]
) -> None:
    stream = b""
    wanted = []
    for i, (employee, when, state) in enumerate(frames):
        text = f"{employee},{when:%Y-%m-%d %H:%M:%S},{state}"
        wanted.append((str(employee), f"{when:%Y-%m-%d %H:%M:%S}", state))
        stream += noise[i] + ends[2 * i] + text.encode() + ends[2 * i + 1]
    stream += noise[-1]
    found = run(FACTORIES["lines"](), split(stream, cuts))
    assert is_subsequence(wanted, [(f.employee, f.time, f.state) for f in found.frames])


@FAST
@given(
    cards=st.lists(st.integers(0, 2**40 - 1), max_size=8),
    hexes=st.lists(st.booleans(), min_size=8, max_size=8),
    noise=st.lists(line_noise, min_size=9, max_size=9),
    ends=st.lists(line_end, min_size=18, max_size=18),
    cuts=st.lists(st.integers(0, 5000)),
)
def test_wiegand_no_card_is_lost_among_noise_lines(
    cards: list[int], hexes: list[bool], noise: list[bytes], ends: list[bytes], cuts: list[int]
) -> None:
    stream = b""
    wanted = []
    for i, number in enumerate(cards):
        text = f"{number:X}" if hexes[i] else f"{number:010d}"
        wanted.append(text)
        stream += noise[i] + ends[2 * i] + text.encode() + ends[2 * i + 1]
    stream += noise[-1]
    found = run(FACTORIES["wiegand-ascii"](), split(stream, cuts))
    assert is_subsequence(wanted, [f.card for f in found.frames])


@FAST
@given(
    cards=st.lists(st.integers(0, 2**40 - 1), max_size=8),
    noise=st.lists(st.binary(max_size=100), min_size=9, max_size=9),
    cuts=st.lists(st.integers(0, 2000)),
)
def test_em4100_no_valid_frame_is_lost_in_any_noise_even_stx_and_etx(
    cards: list[int], noise: list[bytes], cuts: list[int]
) -> None:
    """A new STX restarts a frame, so not even noise made of STX/ETX can hide a valid one."""
    wanted = [f"{card:010X}" for card in cards]
    stream = b"".join(noise[i] + em4100_frame(card) for i, card in enumerate(wanted)) + noise[-1]
    found = run(FACTORIES["em4100"](), split(stream, cuts))
    assert is_subsequence(list(wanted), [f.card for f in found.frames])


@FAST
@given(noise=st.binary(min_size=1, max_size=300).filter(lambda b: b"\x02" not in b))
def test_em4100_every_noise_byte_is_accounted_for_in_noise_rejects(noise: bytes) -> None:
    parser = FACTORIES["em4100"]()
    result = run(parser, [noise])
    rejects = result.rejects + parser.reset()
    assert result.frames == []
    assert {r.reason for r in rejects} <= {"noise"}
    assert b"".join(r.raw for r in rejects) == noise.translate(None, b"\r\n\x00 ")
