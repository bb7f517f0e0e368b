"""Frame parsers: exact frames, counted rejects, bounded buffers, whatever the chunking."""

from __future__ import annotations

import pytest

from drivers.serial.parsers import (
    ETX,
    STX,
    Em4100Parser,
    Frame,
    LineParser,
    Parser,
    ParseResult,
    em4100_frame,
    make_parser,
)

CLOCK_PATTERN = r"^(?P<employee>\d+),(?P<time>[0-9: -]+),(?P<state>IN|OUT)$"


def feed_all(parser: Parser, chunks: list[bytes]) -> ParseResult:
    total = ParseResult()
    for chunk in chunks:
        result = parser.feed(chunk)
        total.frames += result.frames
        total.rejects += result.rejects
    return total


def reasons(result: ParseResult) -> list[str]:
    return [r.reason for r in result.rejects]


def test_lines_accept_cr_lf_and_crlf_endings() -> None:
    parser = LineParser(CLOCK_PATTERN)
    result = parser.feed(
        b"1,2024-05-01 08:00:00,IN\r2,2024-05-01 08:01:00,OUT\n3,2024-05-01 08:02:00,IN\r\n"
    )
    assert [(f.employee, f.time, f.state) for f in result.frames] == [
        ("1", "2024-05-01 08:00:00", "IN"),
        ("2", "2024-05-01 08:01:00", "OUT"),
        ("3", "2024-05-01 08:02:00", "IN"),
    ]
    assert result.rejects == [] and parser.pending == 0


def test_lines_keep_a_partial_line_until_its_end_arrives() -> None:
    parser = LineParser(CLOCK_PATTERN)
    assert parser.feed(b"1001,2024-05-01 0").frames == []
    assert parser.pending == 17
    (frame,) = parser.feed(b"8:00:00,IN\n").frames
    assert frame == Frame(
        raw=b"1001,2024-05-01 08:00:00,IN", employee="1001", time="2024-05-01 08:00:00", state="IN"
    )


def test_lines_count_non_matching_and_undecodable_lines_and_skip_blank_ones() -> None:
    parser = LineParser(CLOCK_PATTERN, encoding="ascii")
    result = parser.feed(b"\r\n\n   \nHELLO\n\xff\xfe1,x\n1,2024-05-01 08:00:00,IN\n")
    assert reasons(result) == ["no_match", "undecodable"]
    assert result.rejects[0].raw == b"HELLO"
    assert [f.employee for f in result.frames] == ["1"]


def test_an_overlong_line_is_rejected_once_and_the_buffer_stays_bounded() -> None:
    parser = LineParser(CLOCK_PATTERN, max_line=64)
    rejects = []
    for _ in range(1000):  # 64 KB of noise without a line end
        result = parser.feed(b"x" * 64)
        rejects += result.rejects
        assert parser.pending <= 64
    assert [r.reason for r in rejects] == ["overlong"]
    result = parser.feed(b"still noise\n7,2024-05-01 08:00:00,OUT\n")
    assert [f.employee for f in result.frames] == ["7"] and result.rejects == []


def test_a_pattern_group_may_be_empty_but_not_both_ids() -> None:
    parser = LineParser(r"^(?P<employee>\d*);(?P<card>[0-9A-Fa-f]*)$")
    result = parser.feed(b";\n;0a1b\n12;\n")
    assert reasons(result) == ["no_id"]
    assert [(f.employee, f.card) for f in result.frames] == [(None, "0A1B"), ("12", None)]


def test_reset_reports_the_half_line_lost_with_the_port() -> None:
    parser = LineParser(CLOCK_PATTERN)
    parser.feed(b"1001,2024-05")
    assert [r.reason for r in parser.reset()] == ["partial"]
    assert parser.pending == 0 and parser.reset() == []


def test_em4100_reads_a_valid_frame_and_the_card_number() -> None:
    frame = em4100_frame("0a1b2c3d4e")
    assert frame[0] == STX and frame[-1] == ETX and len(frame) == 14
    (parsed,) = Em4100Parser().feed(frame).frames
    assert parsed.card == "0A1B2C3D4E" and parsed.raw == frame


def test_em4100_accepts_crlf_before_etx() -> None:
    frame = em4100_frame("0102030405")
    (parsed,) = Em4100Parser().feed(frame[:-1] + b"\r\n\x03").frames
    assert parsed.card == "0102030405"


def test_em4100_rejects_wrong_checksums_and_malformed_bodies() -> None:
    good = em4100_frame("0A1B2C3D4E")
    bad_sum = good[:11] + (b"00" if good[11:13] != b"00" else b"01") + good[13:]
    result = Em4100Parser().feed(bad_sum + b"\x02XYZ\x03" + b"\x020A1B2C3D4\x03" + good)
    assert reasons(result) == ["checksum", "malformed", "malformed"]
    assert [f.card for f in result.frames] == ["0A1B2C3D4E"]


def test_em4100_restarts_on_a_new_stx_and_counts_the_broken_frame() -> None:
    good = em4100_frame("1122334455")
    result = Em4100Parser().feed(b"\x020A1B" + good)
    assert reasons(result) == ["partial"]
    assert [f.card for f in result.frames] == ["1122334455"]


def test_em4100_counts_noise_runs_but_not_line_ends_between_frames() -> None:
    good = em4100_frame("1122334455")
    result = Em4100Parser().feed(good + b"\r\n" + good + b"\x00garbage!" + good + b"z" * 200)
    assert [f.card for f in result.frames] == ["1122334455"] * 3
    assert reasons(result) == ["noise", "noise", "noise", "noise"]  # 'garbage!', 3 x 64 z
    assert Em4100Parser().feed(b"\x02" + b"A" * 40).rejects[0].reason == "overlong"


def test_em4100_buffer_is_bounded_by_a_frame() -> None:
    parser = Em4100Parser()
    for _ in range(1000):
        parser.feed(b"\x02" + b"5" * 15)
        assert parser.pending <= 64 + 16


def test_wiegand_ascii_reads_hex_and_decimal_lines() -> None:
    parser = make_parser("wiegand-ascii")
    result = parser.feed(b"0004521837\r\n1a2b3c\r\nnot a card\r\n")
    assert [f.card for f in result.frames] == ["0004521837", "1A2B3C"]
    assert reasons(result) == ["no_match"]


def test_make_parser_names_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="needs a pattern"):
        make_parser("lines")
    with pytest.raises(ValueError, match="'employee' or 'card'"):
        make_parser("lines", r"(?P<who>\d+)")
    with pytest.raises(ValueError, match="unknown serial format 'csv'"):
        make_parser("csv")


def test_nul_fill_around_a_line_does_not_lose_it() -> None:
    """Clocks with a printer port send NUL fill characters after CR/LF (and after power-up)."""
    parser = LineParser(CLOCK_PATTERN)
    result = feed_all(
        parser,
        [
            b"\x001,2024-05-01 08:00:00,IN\r\n\x00\x00\x00",
            b"2,2024-05-01 08:01:00,OUT\x00\r\n\x00\x00 \x00",
            b"3,2024-05-01 08:02:00,IN\r\n",
        ],
    )
    assert [(f.employee, f.raw) for f in result.frames] == [
        ("1", b"1,2024-05-01 08:00:00,IN"),
        ("2", b"2,2024-05-01 08:01:00,OUT"),
        ("3", b"3,2024-05-01 08:02:00,IN"),
    ]
    assert result.rejects == []
    parser.feed(b"\x00\x00")
    assert parser.reset() == []  # fill waiting at a port loss is not a lost frame


def test_a_line_of_nul_bytes_is_no_frame_and_a_nul_inside_a_line_is_still_rejected() -> None:
    parser = LineParser(CLOCK_PATTERN)
    result = parser.feed(b"\x00\x00\x00\n1,2024-05-01\x0008:00:00,IN\n")
    assert result.frames == []
    assert reasons(result) == ["no_match"]


@pytest.mark.parametrize("encoding", ["hex", "rot13", "base64", "zlib"])
def test_a_bytes_codec_is_refused_as_an_encoding_when_the_parser_is_made(encoding: str) -> None:
    """codecs.lookup() knows these, but they do not decode bytes to text: every line raised."""
    with pytest.raises(ValueError, match=f"'{encoding}' is not a text encoding"):
        make_parser("wiegand-ascii", None, encoding)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32-le", "cp037"])
def test_an_encoding_that_does_not_frame_ascii_lines_is_refused(encoding: str) -> None:
    """Lines are split at CR/LF bytes and matched as text: UTF-16 or EBCDIC would never match."""
    with pytest.raises(ValueError, match=f"encoding '{encoding}' .* ASCII"):
        make_parser("lines", CLOCK_PATTERN, encoding)


@pytest.mark.parametrize("encoding", ["ascii", "utf-8", "utf-8-sig", "latin-1", "cp1252", "cp850"])
def test_ascii_compatible_encodings_read_lines(encoding: str) -> None:
    parser = make_parser("lines", CLOCK_PATTERN, encoding)
    (frame,) = parser.feed(b"1,2024-05-01 08:00:00,IN\r\n").frames
    assert frame.employee == "1"
