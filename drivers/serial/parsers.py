"""Incremental frame parsers, one per serial ``format``: bytes in, frames and rejects out.

Every parser is pure (no I/O, no clock) and is fed arbitrary chunks as they come off the wire.
Its output depends only on the byte stream, never on how the stream was chunked, and its buffer
is bounded: a line or frame that grows past the limit is rejected and skipped, so a noisy line
can never exhaust memory or crash the reader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

from drivers.textcodec import check_text_encoding

STX = 0x02
ETX = 0x03
PREVIEW = 64  # bytes of a rejected frame kept for the debug log
_EOL = re.compile(rb"[\r\n]")
_HEX = frozenset(b"0123456789abcdefABCDEF")
EM4100_BODY_MAX = 16  # 10 data + 2 checksum hex chars, plus CR LF some readers put before ETX
_EM4100_IDLE = b"\r\n\x00 "  # between frames some readers send line ends or padding: not noise
_LINE_PAD = b"\x00 \t\r\n\x0b\x0c"  # NUL fill (after CR/LF, at power-up) is padding, like spaces
# A control character inside a field is line noise: an id like "10\x0042" belongs to nobody,
# and a NUL is refused by PostgreSQL backends (the punch would stay pending forever).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# What every line format needs its encoding to read as ASCII: digits, letters, separators.
WIEGAND_PATTERN = r"^(?P<card>[0-9A-Fa-f]{1,20})$"
"""Default line pattern of ``wiegand-ascii``: one card number per line, hex or decimal digits."""

FORMATS = ("lines", "em4100", "wiegand-ascii")


@dataclass(frozen=True, slots=True)
class Frame:
    """One accepted frame: what the reader said, still as text."""

    raw: bytes
    employee: str | None = None
    card: str | None = None
    time: str | None = None
    state: str | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """One rejected frame: why, and its first bytes for the debug log."""

    reason: str  # overlong, undecodable, no_match, no_id, malformed, checksum, partial, noise
    raw: bytes


@dataclass(slots=True)
class ParseResult:
    """What one ``feed`` produced."""

    frames: list[Frame] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


class Parser(Protocol):
    """An incremental parser: feed it chunks, read back frames and rejects."""

    def feed(self, data: bytes) -> ParseResult:
        """Consume a chunk; return the frames it completed and the frames it rejected."""

    def reset(self) -> list[Reject]:
        """Drop any half-received frame (the line was lost); return it as rejects."""

    @property
    def pending(self) -> int:
        """Bytes held while waiting for the rest of a frame (always bounded)."""


class LineParser:
    """Text lines ended by CR, LF or CRLF, matched by a regex with named groups."""

    def __init__(self, pattern: str, encoding: str = "ascii", max_line: int = 512) -> None:
        if max_line < 1:
            raise ValueError("max_line must be at least 1")
        self._regex = re.compile(pattern)
        groups = set(self._regex.groupindex)
        if not {"employee", "card"} & groups:
            raise ValueError("the pattern needs a named group 'employee' or 'card'")
        self._groups = tuple(g for g in ("employee", "card", "time", "state") if g in groups)
        check_text_encoding(encoding)
        self._encoding = encoding
        self._max_line = max_line
        self._preview = min(PREVIEW, max_line + 1)
        self._buf = bytearray()
        self._discarding = False  # inside an overlong line: skip until the next line end

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> ParseResult:
        result = ParseResult()
        parts = _EOL.split(data)
        tail = parts.pop()  # the bytes after the last line end: an unfinished line
        for index, part in enumerate(parts):
            if index == 0:
                if self._discarding:
                    self._discarding = False  # the overlong line ends here; already counted
                    continue
                line = bytes(self._buf) + part if self._buf else part
                self._buf.clear()
            else:
                line = part
            if len(line) > self._max_line:
                result.rejects.append(Reject("overlong", line[: self._preview]))
            elif line:
                self._line(line, result)
        if not self._discarding:
            self._buf += tail
            if len(self._buf) > self._max_line:
                result.rejects.append(Reject("overlong", bytes(self._buf[: self._preview])))
                self._buf.clear()
                self._discarding = True
        return result

    def reset(self) -> list[Reject]:
        rejects = (
            [Reject("partial", bytes(self._buf[:PREVIEW]))] if self._buf.strip(_LINE_PAD) else []
        )
        self._buf.clear()
        self._discarding = False
        return rejects

    def _line(self, line: bytes, result: ParseResult) -> None:
        if b"\x00" in line:
            line = line.strip(_LINE_PAD)  # raw without the fill: the same line, however padded
        try:
            text = line.decode(self._encoding).strip()
        except UnicodeError:
            result.rejects.append(Reject("undecodable", line[:PREVIEW]))
            return
        if not text:
            return  # blank lines (and the LF of a CRLF) are not frames
        match = self._regex.search(text)
        if match is None:
            result.rejects.append(Reject("no_match", line[:PREVIEW]))
            return
        values: dict[str, str | None] = {}
        for name in self._groups:
            value = match.group(name)
            values[name] = (value.strip() or None) if value is not None else None
        if values.get("employee") is None and values.get("card") is None:
            result.rejects.append(Reject("no_id", line[:PREVIEW]))
            return
        if any(value is not None and _CONTROL.search(value) for value in values.values()):
            result.rejects.append(Reject("malformed", line[:PREVIEW]))
            return
        result.frames.append(
            Frame(
                raw=line,
                employee=values.get("employee"),
                card=_upper(values.get("card")),
                time=values.get("time"),
                state=values.get("state"),
            )
        )


def _upper(value: str | None) -> str | None:
    return value.upper() if value is not None else None


class Em4100Parser:
    """EM4100 readers: STX, 10 hex data characters, 2 hex checksum characters, ETX.

    The checksum is the XOR of the five data bytes. CR/LF before ETX (as some readers send) is
    accepted. A new STX inside a frame abandons the broken frame and starts over, so a valid frame
    right after a burst of noise is never lost. Bytes outside frames are counted as ``noise`` per
    run (a run ends at the next STX, or every 64 bytes), ignoring CR, LF, NUL and spaces.
    """

    def __init__(self) -> None:
        self._in_frame = False
        self._body = bytearray()
        self._noise = bytearray()

    @property
    def pending(self) -> int:
        return len(self._body) + len(self._noise)

    def feed(self, data: bytes) -> ParseResult:
        result = ParseResult()
        pos, end = 0, len(data)
        while pos < end:
            if not self._in_frame:
                start = data.find(STX, pos)
                self._add_noise(data[pos : end if start < 0 else start], result)
                if start < 0:
                    break
                self._end_noise(result)
                self._in_frame = True
                self._body.clear()
                pos = start + 1
                continue
            room = EM4100_BODY_MAX - len(self._body)
            stop = min(end, pos + room + 1)
            etx = data.find(ETX, pos, stop)
            stx = data.find(STX, pos, stop)
            if etx >= 0 and (stx < 0 or etx < stx):
                self._body += data[pos:etx]
                result_frame = self._finish()
                if isinstance(result_frame, Frame):
                    result.frames.append(result_frame)
                else:
                    result.rejects.append(result_frame)
                self._in_frame = False
                pos = etx + 1
            elif stx >= 0:
                broken = bytes([STX]) + bytes(self._body) + data[pos:stx]
                result.rejects.append(Reject("partial", broken[:PREVIEW]))
                self._body.clear()
                pos = stx + 1
            elif end - pos <= room:
                self._body += data[pos:end]
                pos = end
            else:
                broken = bytes([STX]) + bytes(self._body) + data[pos:stop]
                result.rejects.append(Reject("overlong", broken[:PREVIEW]))
                self._in_frame = False
                self._body.clear()
                pos = stop
        return result

    def reset(self) -> list[Reject]:
        rejects: list[Reject] = []
        if self._in_frame:
            rejects.append(Reject("partial", (bytes([STX]) + bytes(self._body))[:PREVIEW]))
        if self._noise:
            rejects.append(Reject("noise", bytes(self._noise)))
        self._in_frame = False
        self._body.clear()
        self._noise.clear()
        return rejects

    def _add_noise(self, chunk: bytes, result: ParseResult) -> None:
        if not chunk:
            return
        self._noise += chunk.translate(None, _EM4100_IDLE)
        while len(self._noise) >= PREVIEW:
            result.rejects.append(Reject("noise", bytes(self._noise[:PREVIEW])))
            del self._noise[:PREVIEW]

    def _end_noise(self, result: ParseResult) -> None:
        if self._noise:
            result.rejects.append(Reject("noise", bytes(self._noise)))
            self._noise.clear()

    def _finish(self) -> Frame | Reject:
        raw = bytes([STX]) + bytes(self._body) + bytes([ETX])
        body = bytes(self._body).rstrip(b"\r\n")
        if len(body) != 12 or not _HEX.issuperset(body):
            return Reject("malformed", raw[:PREVIEW])
        values = bytes.fromhex(body.decode("ascii"))
        checksum = 0
        for byte in values[:5]:
            checksum ^= byte
        if checksum != values[5]:
            return Reject("checksum", raw[:PREVIEW])
        return Frame(raw=raw, card=body[:10].decode("ascii").upper())


def em4100_frame(card_hex: str) -> bytes:
    """The wire bytes an EM4100 reader sends for a 10-hex-digit card (for tests and simulators)."""
    data = bytes.fromhex(card_hex)
    if len(data) != 5:
        raise ValueError("an EM4100 card number is 10 hex digits")
    checksum = 0
    for byte in data:
        checksum ^= byte
    return bytes([STX]) + card_hex.upper().encode("ascii") + b"%02X" % checksum + bytes([ETX])


def make_parser(
    format: str, pattern: str | None = None, encoding: str = "ascii", max_line: int = 512
) -> Parser:
    """The parser for a configured ``format``; ``ValueError`` names what is wrong."""
    if format == "lines":
        if not pattern:
            raise ValueError("format 'lines' needs a pattern with an 'employee' or 'card' group")
        return LineParser(pattern, encoding, max_line)
    if format == "wiegand-ascii":
        parser = LineParser(pattern or WIEGAND_PATTERN, encoding, max_line)
        return parser
    if format == "em4100":
        return Em4100Parser()
    raise ValueError(f"unknown serial format {format!r}: use one of {', '.join(FORMATS)}")
