"""Buffered reads (1503 / 1504 / 1502) and the attendance log read: full or tail only.

A 1504 chunk is answered PREPARE_DATA (size, 1008), then DATA frames, then ACK_OK; frames are
reassembled by reply number through the transport's deframer, so any TCP segmentation (all
frames in one write, one per write, random splits, a byte at a time) and UDP read the same.
The tail read asks 1504 for the bytes from our last held record onwards, and checks that record
is still where we left it before trusting the offset.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from config.errors import ProtocolError
from drivers.zk import protocol as p
from drivers.zk.interrupts import interrupted
from drivers.zk.records import RECORD_SIZES
from drivers.zk.transport import ChecksumMismatch, ZkConnection

log = structlog.get_logger("drivers.zk")

Progress = Callable[[int, int], None]  # (bytes done, bytes to read)
_CHUNK_ATTEMPTS = 3


def free_sizes(conn: ZkConnection) -> p.FreeSizes:
    """GET_FREE_SIZES: counts and capacities."""
    reply = conn.request(p.CMD_GET_FREE_SIZES, retries=2)
    if reply.command != p.ACK_OK:
        raise ProtocolError(
            f"{conn.endpoint.label} refused GET_FREE_SIZES (code {reply.command}): "
            "the firmware may not support it; report the model and firmware"
        )
    return p.FreeSizes.unpack(reply.data)


@dataclass
class PreparedBuffer:
    """A buffer the terminal prepared (1503): its size, and its bytes when sent inline."""

    size: int
    inline: bytes | None


def prepare(conn: ZkConnection, what: int, fct: int = 0) -> PreparedBuffer:
    """Ask the terminal to prepare a buffer (1503); small buffers come back inline as DATA."""
    reply = conn.request(p.CMD_PREPARE_BUFFER, p.prepare_buffer_request(what, fct), retries=2)
    if reply.command == p.CMD_DATA:
        return PreparedBuffer(len(reply.data), reply.data)
    if reply.command == p.ACK_OK:
        return PreparedBuffer(p.parse_prepare_buffer_reply(reply.data), None)
    raise ProtocolError(
        f"{conn.endpoint.label} refused the buffered read 1503 (code {reply.command}): "
        "this firmware may not support buffered reads; report the model and firmware"
    )


def release(conn: ZkConnection) -> None:
    """FREE_DATA (1502): let the terminal drop the prepared buffer; best effort.

    After a Ctrl-C only briefly and without an error of its own (the read may have been cut
    because the terminal hung: "interrupted" must not wait for, or turn into, its timeout).
    """
    if interrupted():
        conn.request_briefly(p.CMD_FREE_DATA)
    elif conn.connected:
        conn.request(p.CMD_FREE_DATA)


def read_range(
    conn: ZkConnection,
    start: int,
    end: int,
    *,
    consume: Callable[[bytes], None] | None = None,
    progress: Progress | None = None,
) -> bytearray:
    """Bytes ``[start, end)`` of the prepared buffer, in 1504 chunks of pyzk's sizes.

    With ``consume``, each chunk is handed over (and not kept) right after the request for the
    next one went out: the terminal prepares and sends chunk k+1 while we decode chunk k. Only
    one request is ever outstanding, as the protocol expects.
    """
    size_max = p.MAX_CHUNK_UDP if conn.endpoint.udp else p.MAX_CHUNK_TCP
    plan = [(offset, min(size_max, end - offset)) for offset in range(start, end, size_max)]
    out = bytearray()
    if not plan:
        return out
    reply_no = _ask(conn, *plan[0])
    for index, (offset, size) in enumerate(plan):
        data = _collect(conn, reply_no, offset, size)
        if index + 1 < len(plan):
            reply_no = _ask(conn, *plan[index + 1])
        if consume is not None:
            consume(data)
        else:
            out += data
        if progress is not None:
            progress(offset + size - start, end - start)
    return out


def _ask(conn: ZkConnection, start: int, size: int) -> int:
    return conn.begin(p.CMD_READ_BUFFER, p.read_buffer_request(start, size))


def _collect(conn: ZkConnection, reply_no: int, start: int, size: int) -> bytes:
    label = conn.endpoint.label
    for attempt in range(1, _CHUNK_ATTEMPTS + 1):
        try:
            return _receive_chunk(conn, reply_no, start, size)
        except ChecksumMismatch:
            # The framing held, only bytes were damaged: ask for the chunk again. Frames still
            # queued from the damaged answer carry its reply number and are dropped.
            log.warning("zk_chunk_corrupt", device=conn.endpoint.device_id, start=start, n=attempt)
            if attempt == _CHUNK_ATTEMPTS:
                raise ProtocolError(
                    f"{label} sent {_CHUNK_ATTEMPTS} damaged copies of the log bytes at offset "
                    f"{start}: check the network path (cabling, switch); nothing was stored"
                ) from None
            reply_no = _ask(conn, start, size)
    raise AssertionError("unreachable")  # pragma: no cover


def _receive_chunk(conn: ZkConnection, reply_no: int, start: int, size: int) -> bytes:
    label = conn.endpoint.label
    # The deadline is per packet: a terminal that keeps sending is alive, one that stops is not.
    first = conn.receive(reply_no, time.monotonic() + conn.timeout, p.CMD_READ_BUFFER)
    if first.command == p.CMD_DATA:  # the whole chunk as one DATA packet
        data = first.data
    elif first.command == p.CMD_PREPARE_DATA:
        announced, _frame = p.parse_prepare_data(first.data)
        if announced > size:  # frames would be collected far past what was asked, or forever
            raise ProtocolError(
                f"{label} announced {announced} bytes for a 1504 chunk of {size} at offset "
                f"{start}: retry; report the firmware if it persists"
            )
        parts: list[bytes] = []
        got = 0
        while got < announced:
            packet = conn.receive(reply_no, time.monotonic() + conn.timeout, p.CMD_READ_BUFFER)
            if packet.command != p.CMD_DATA:
                raise ProtocolError(
                    f"{label} ended a 1504 chunk after {got} of {announced} bytes (code "
                    f"{packet.command}): retry; report the firmware if it persists"
                )
            if not packet.data:  # the loop only ends when frames add up: each must carry bytes
                raise ProtocolError(
                    f"{label} sent an empty DATA frame after {got} of {announced} bytes of a "
                    "1504 chunk: retry; report the firmware if it persists"
                )
            parts.append(packet.data)
            got += len(packet.data)
        end = conn.receive(reply_no, time.monotonic() + conn.timeout, p.CMD_READ_BUFFER)
        if end.command != p.ACK_OK:
            raise ProtocolError(
                f"{label} closed a 1504 chunk with code {end.command} instead of ACK_OK"
            )
        data = b"".join(parts)
    else:
        raise ProtocolError(
            f"{label} refused 1504 for bytes {start}..{start + size} (code {first.command}): "
            "the log changed under the read; retry"
        )
    if len(data) != size:
        raise ProtocolError(
            f"{label} sent {len(data)} bytes for a 1504 chunk of {size} at offset {start}: retry"
        )
    return data


def read_whole(conn: ZkConnection, what: int, fct: int = 0) -> bytes:
    """A whole buffer (``u32 total`` + items): prepare, read every chunk, release."""
    prepared = prepare(conn, what, fct)
    try:
        if prepared.inline is not None:
            return prepared.inline
        return bytes(read_range(conn, 0, prepared.size))
    finally:
        release(conn)


# The attendance log.


@dataclass(frozen=True, slots=True)
class TailMark:
    """Where the last read ended: enough to read only the tail next time, and to verify it."""

    serial: str
    record_size: int
    count: int
    last_record: bytes

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able values (the outbox stores watermarks as JSON)."""
        return {
            "serial": self.serial,
            "record_size": self.record_size,
            "count": self.count,
            "last_record_hex": self.last_record.hex(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object] | None) -> TailMark | None:
        """Parse a stored watermark; None (meaning "read everything") when it is unusable."""
        if not data:
            return None
        try:
            mark = cls(
                serial=str(data["serial"]),
                record_size=int(data["record_size"]),  # type: ignore[call-overload]
                count=int(data["count"]),  # type: ignore[call-overload]
                last_record=bytes.fromhex(str(data.get("last_record_hex") or "")),
            )
        except (KeyError, TypeError, ValueError):
            return None
        if mark.count and len(mark.last_record) != mark.record_size:
            return None
        return mark


RecordSink = Callable[[bytes, int, bool], None]
"""Receives whole records in log order: (records, record size, part of a full read)."""


@dataclass(frozen=True, slots=True)
class LogRead:
    """What a log read delivered to its sink: ``new`` records, ending at index ``count - 1``."""

    record_size: int
    count: int
    new: int
    last_record: bytes
    full: bool
    reason: str
    capacity: int

    def mark(self, serial: str) -> TailMark:
        """The tail mark after this read."""
        return TailMark(serial, self.record_size, self.count, self.last_record)


class _Stream:
    """Cuts a byte stream into whole records for the sink; checks the leading u32 total."""

    def __init__(self, sink: RecordSink, size: int, full: bool, total: int | None, label: str):
        self.sink, self.size, self.full, self.label = sink, size, full, label
        self.total = total  # expected u32 at the start, when the stream starts at offset 0
        self.pending = b""
        self.delivered = 0
        self.last = b""

    def feed(self, data: bytes) -> None:
        buf = self.pending + data if self.pending else data
        if self.total is not None:
            if len(buf) < 4:
                self.pending = buf
                return
            (announced,) = struct.unpack_from("<I", buf)
            if announced != self.total:
                raise ProtocolError(
                    f"{self.label} announced {announced} bytes of records inside a "
                    f"{self.total}-byte buffer: retry; report the firmware if it persists"
                )
            buf = buf[4:]
            self.total = None
        whole = len(buf) - len(buf) % self.size
        if whole:
            records = buf[:whole] if whole < len(buf) else buf
            self.sink(records, self.size, self.full)
            self.delivered += whole // self.size
            self.last = records[-self.size :]
        self.pending = buf[whole:]

    def finish(self) -> None:
        if self.pending or self.total is not None:
            raise ProtocolError(
                f"{self.label} sent a log that ends inside a record: retry; report the firmware "
                "if it persists"
            )


def read_log(
    conn: ZkConnection,
    serial: str,
    known: TailMark | None,
    sink: RecordSink,
    *,
    default_record_size: int = 40,
    progress: Progress | None = None,
) -> LogRead:
    """Read the attendance log into ``sink``: only the tail when ``known`` still matches it,
    else everything (while the terminal sends the next chunk, the sink decodes this one)."""
    label = conn.endpoint.label
    sizes = free_sizes(conn)
    usable = known if known is not None and known.serial == serial else None
    if sizes.records == 0:
        reason = "log cleared" if usable is not None and usable.count else "empty log"
        rs = usable.record_size if usable is not None else default_record_size
        return LogRead(rs, 0, 0, b"", True, reason, sizes.record_capacity)
    prepared = prepare(conn, p.CMD_ATTLOG_RRQ)
    try:
        total = prepared.size - 4
        if prepared.inline is not None:
            total = _inline_total(prepared.inline, label)
        rs = _record_size(conn, total, sizes.records, usable)
        count = total // rs
        if usable is not None and usable.count and usable.record_size == rs:
            if usable.count > count:
                reason = f"log shrank from {usable.count} to {count} records (cleared or rotated)"
            else:
                # Usually a few records: read them whole, check the first is the one we hold.
                tail = _read_from(conn, prepared, 4 + (usable.count - 1) * rs, None, progress)
                if tail[:rs] == usable.last_record:
                    stream = _Stream(sink, rs, False, None, label)
                    stream.feed(bytes(tail[rs:]))
                    stream.finish()
                    last = stream.last or usable.last_record
                    return LogRead(
                        rs, count, stream.delivered, bytes(last), False, "tail",
                        sizes.record_capacity,
                    )  # fmt: skip
                reason = "the last record we hold moved (log cleared or rotated)"
        elif usable is not None and usable.count:
            reason = f"record size changed from {usable.record_size} to {rs} (firmware change)"
        elif usable is not None:
            reason = "log was empty when last read"  # or cleared by clear_after_read
        else:
            reason = "first read" if known is None else "watermark of another terminal"
        log.info("zk_full_read", device=conn.endpoint.device_id, reason=reason, records=count)
        stream = _Stream(sink, rs, True, total, label)
        rest = _read_from(conn, prepared, 0, stream.feed, progress)
        if rest:
            stream.feed(bytes(rest))
        stream.finish()
        return LogRead(
            rs, count, stream.delivered, bytes(stream.last), True, reason, sizes.record_capacity
        )
    finally:
        if prepared.inline is None:
            release(conn)


def _inline_total(buffer: bytes, label: str) -> int:
    if len(buffer) < 4:
        raise ProtocolError(f"{label} sent a {len(buffer)}-byte log buffer without its u32 size")
    (total,) = struct.unpack_from("<I", buffer)
    if total != len(buffer) - 4:
        raise ProtocolError(
            f"{label} sent a log buffer announcing {total} bytes but holding {len(buffer) - 4}"
        )
    return total


def _read_from(
    conn: ZkConnection,
    prepared: PreparedBuffer,
    start: int,
    consume: Callable[[bytes], None] | None,
    progress: Progress | None,
) -> bytes | bytearray:
    """The prepared buffer from ``start``; returned, or handed chunk by chunk to ``consume``."""
    if prepared.inline is not None:
        return prepared.inline[start:]
    return read_range(conn, start, prepared.size, consume=consume, progress=progress)


def _record_size(conn: ZkConnection, total: int, count: int, known: TailMark | None) -> int:
    """Record size = total / count; a punch between the two questions is asked about again."""
    first = count
    for attempt in range(2):
        if count > 0 and total % count == 0 and total // count in RECORD_SIZES:
            return total // count
        if attempt == 0:
            count = free_sizes(conn).records
    # Punches kept coming: the buffer was prepared between the two counts, so its record count
    # lies between them. A buffer that merely divides by the known size (records of twice the
    # size after a firmware change) does not, and splitting it would invent punches.
    if known is not None and known.record_size in RECORD_SIZES and total % known.record_size == 0:
        if min(first, count) <= total // known.record_size <= max(first, count):
            return known.record_size
    shown = f"{total / count:g}" if count else "?"
    raise ProtocolError(
        f"{conn.endpoint.label} sent {total} bytes for {count} records ({shown} bytes each), "
        "which is no record layout we can read (40, 16 or 8 bytes): nothing was parsed; "
        "report the terminal model and firmware"
    )
