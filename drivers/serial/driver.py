"""The serial driver: a time clock or card reader on any pyserial URL, read live.

A serial line has no log to re-read: punches exist only as they pass, so ``read_new`` is empty
and everything arrives through ``live``. A lost port (USB unplugged, serial server restarted) is
logged once and reopened with a bounded backoff inside ``live``; it never raises out of it.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import serial
import structlog

from config.errors import ConfigError
from drivers.backoff import Backoff
from drivers.base import DeviceInfo, Punch, Suspect
from drivers.netaddr import Resolver
from drivers.serial.cards import CardTable, load_card_table, normalize_card
from drivers.serial.dedup import Deduplicator
from drivers.serial.options import SerialOptions
from drivers.serial.parsers import PREVIEW, Frame, Reject, make_parser
from drivers.serial.port import open_port
from drivers.serial.punches import PunchBuilder, aliases_for

REPORT_EVERY = 60.0  # seconds between reject summaries: a noisy line must not flood the log
_REJECT_HINT = "many rejects usually mean a wrong baudrate, parity or format in the config"


def utc_now() -> datetime:
    """The gateway's clock as an aware UTC instant."""
    return datetime.now(UTC)


_EPOCH = datetime(1970, 1, 1)


def _seconds(local: datetime) -> float:
    """A printed (naive) time as seconds, for comparing two of them."""
    return (local - _EPOCH).total_seconds()


@dataclass(slots=True)
class SerialStats:
    """Counters since the driver was built (read them; only the driver writes them)."""

    bytes: int = 0
    frames: int = 0
    punches: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    disconnects: int = 0
    reconnects: int = 0

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def as_dict(self) -> dict[str, object]:
        """Plain values for status reports."""
        return {
            "bytes": self.bytes,
            "frames": self.frames,
            "punches": self.punches,
            "duplicates": self.duplicates,
            "rejected": dict(self.rejected),
            "rejected_total": self.rejected_total,
            "disconnects": self.disconnects,
            "reconnects": self.reconnects,
        }


class SerialDriver:
    """Reads punches from a serial time clock or card reader; implements ``Driver``."""

    def __init__(
        self,
        device_id: str,
        options: SerialOptions,
        tz: ZoneInfo,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.device_id = device_id
        self.options = options
        self.device_serial = options.serial or f"serial:{device_id}"
        self._resolver = Resolver()  # bounds the lookups of a socket:// host across reconnects
        self.stats = SerialStats()
        try:
            self._parser = make_parser(
                options.format, options.pattern, options.encoding, options.max_line
            )
        except (ValueError, LookupError) as exc:
            msg = f"{device_id}: {exc}: fix format/pattern in the config"
            raise ConfigError(msg, [msg]) from exc
        self._clock = clock
        self._monotonic = monotonic
        self._dedup = Deduplicator(options.dedup_window)
        # For clocks that print the time with the card: the same window, on the printed times.
        self._printed_dedup = Deduplicator(options.dedup_window)
        self._builder = PunchBuilder(
            device_id,
            self.device_serial,
            tz,
            options.time_format,
            CardTable(options.cards),
            aliases_for(options.format),
            options.max_drift,
        )
        self._roster_seen: _FileSignature | None = None
        self._port: serial.SerialBase | None = None
        self._backoff = Backoff(
            options.reconnect_min, max(options.reconnect_min, options.reconnect_max)
        )
        self._lost_since: float | None = None  # monotonic time the port went away
        self._next_attempt = 0.0
        self._reported_rejects = 0
        self._suspects_said: set[frozenset[str]] = set()  # kinds of suspect punch logged at info
        self._reported_at: float | None = None
        self._ready: deque[tuple[Frame, datetime, float]] = deque()
        self._log = structlog.get_logger("drivers.serial").bind(device=device_id, url=options.url)

    @property
    def port(self) -> serial.SerialBase | None:
        """The open pyserial port, or None while it is closed or lost."""
        return self._port

    @property
    def connected(self) -> bool:
        return self._port is not None

    def open(self) -> None:
        """Load the card table and open the port; ``DeviceUnavailable`` names what to check."""
        self._load_cards()
        if self._port is None:
            self._port = open_port(self.device_id, self.options, self._resolver)
            self._lost_since = None
            self._backoff.reset()
            self._log.info("serial port opened", format=self.options.format)

    def close(self) -> None:
        """Close the port; never raises."""
        port, self._port = self._port, None
        if port is not None:
            _close_quietly(port)
            self._log.info("serial port closed")

    def info(self) -> DeviceInfo:
        """A serial line cannot describe itself: our identity, the port and the counters."""
        return DeviceInfo(
            serial=self.device_serial,
            platform=f"serial/{self.options.format}",
            extra={
                "url": self.options.url,
                "format": self.options.format,
                "port_open": self.connected,
                "baudrate": self.options.baudrate,
                "cards": len(self._builder.cards),
                "stats": self.stats.as_dict(),
            },
        )

    def read_new(
        self, watermark: dict[str, object] | None
    ) -> tuple[list[Punch], dict[str, object]]:
        """Nothing: a serial line keeps no log, punches only arrive through ``live``."""
        return [], dict(watermark or {})

    def live(self, stop_after: float) -> Generator[Punch, None, None]:
        """Yield punches as frames arrive, for ``stop_after`` seconds, riding out port losses."""
        deadline = self._monotonic() + max(0.0, stop_after)
        self._refresh_roster()
        while True:
            # Frames parsed but not yet handed out survive a caller that stops iterating early.
            while self._ready:
                punch = self._next_punch()
                if punch is not None:
                    yield punch
            if self._monotonic() >= deadline:
                break
            port = self._port
            if port is None:
                self._try_reconnect(deadline)
                continue
            try:
                data = port.read(1)  # waits up to read_timeout for the first byte
                if data:
                    if self.options.batch_delay > 0:
                        # Let a burst finish arriving: one wake-up per burst instead of per
                        # frame is what keeps a busy reader far below 5% of a core.
                        time.sleep(self.options.batch_delay)
                    waiting = port.in_waiting
                    if waiting:
                        data += port.read(waiting)
            except (serial.SerialException, OSError) as exc:
                self._lose(exc)
                continue
            if data:
                self._consume(data)
        self._report_rejects()

    def _consume(self, data: bytes) -> None:
        self.stats.bytes += len(data)
        result = self._parser.feed(data)
        if result.rejects:
            self._count(result.rejects)
        if result.frames:
            received = self._clock()  # one receive time per chunk: its frames arrived together
            now = self._monotonic()
            self._ready.extend((frame, received, now) for frame in result.frames)

    def _next_punch(self) -> Punch | None:
        frame, received, seen = self._ready.popleft()
        self.stats.frames += 1
        key = None if frame.card is None else (normalize_card(frame.card), frame.state)
        if key is not None and frame.time is None and self._dedup.is_duplicate(key, seen):
            return self._double_read(frame)
        try:
            punch = self._builder.build(frame, received)
        except Exception as exc:  # noqa: BLE001 - one odd frame must never stop the reader
            self._count([Reject("unbuildable", frame.raw[:PREVIEW])])
            if self.stats.rejected["unbuildable"] == 1:  # a bug, not line noise: say it once
                self._log.warning("serial frame could not become a punch", error=repr(exc))
            return None
        if key is not None and frame.time is not None:
            # A clock that prints the time: a double read is the same card at (nearly) the same
            # printed time. Its stored punches replayed in one burst after a reconnect arrive
            # within the window but are hours apart: each is a punch. A time it printed that
            # cannot exist falls back to the arrival time, as for readers without a clock.
            if Suspect.TIME_INVALID in punch.suspect:
                if self._dedup.is_duplicate(key, seen):
                    return self._double_read(frame)
            elif self._printed_dedup.is_duplicate(key, _seconds(punch.device_time)):
                return self._double_read(frame)
        self.stats.punches += 1
        if punch.suspect:
            # Each kind once at info: unknown cards or a drifting clock made every punch of the
            # day a journal line. The punches carry their flags; the rest are for --debug.
            flags = frozenset(flag.value for flag in punch.suspect)
            said = flags in self._suspects_said
            self._suspects_said.add(flags)
            (self._log.debug if said else self._log.info)(
                "suspect punch kept",
                card=punch.card,
                employee=punch.employee,
                flags=sorted(flags),
            )
        return punch

    def _double_read(self, frame: Frame) -> Punch | None:
        """Count and drop a double read: no punch."""
        self.stats.duplicates += 1
        self._log.debug("card double read dropped", card=frame.card)
        return None

    def _count(self, rejects: list[Reject]) -> None:
        for reject in rejects:
            self.stats.rejected[reject.reason] += 1
            self._log.debug("serial frame rejected", reason=reject.reason, raw=reject.raw.hex())

    def _report_rejects(self) -> None:
        """Summarise new rejects: at once the first time, then at most every REPORT_EVERY s."""
        total = self.stats.rejected_total
        if total <= self._reported_rejects:
            return
        now = self._monotonic()
        if self._reported_at is not None and now - self._reported_at < REPORT_EVERY:
            return
        self._log.info(
            "serial frames rejected",
            new=total - self._reported_rejects,
            by_reason=dict(self.stats.rejected),
            hint=_REJECT_HINT,
        )
        self._reported_rejects = total
        self._reported_at = now

    def _lose(self, exc: BaseException) -> None:
        port, self._port = self._port, None
        if port is not None:
            _close_quietly(port)
        self._count(self._parser.reset())  # half a frame from before the loss is junk
        now = self._monotonic()
        self.stats.disconnects += 1
        if self._lost_since is None:
            self._lost_since = now
            self._log.warning("serial port lost; reconnecting in the background", error=str(exc))
        self._next_attempt = now + self._backoff.next_delay()

    def _try_reconnect(self, deadline: float) -> None:
        now = self._monotonic()
        if now < self._next_attempt:
            time.sleep(max(0.0, min(self._next_attempt, deadline) - now))
            return
        try:
            self._port = open_port(self.device_id, self.options, self._resolver)
        except Exception as exc:  # noqa: BLE001 - any failure to reopen is retried, never raised
            if self._lost_since is None:  # never opened: say so once
                self._lost_since = now
                self._log.warning("serial port unavailable; retrying", error=str(exc))
            else:
                self._log.debug("serial port still unavailable", error=str(exc))
            self._next_attempt = now + self._backoff.next_delay()
            return
        if self._lost_since is not None:
            self.stats.reconnects += 1
            self._log.info("serial port recovered", after_s=round(now - self._lost_since, 1))
        self._lost_since = None
        self._backoff.reset()

    def _load_cards(self) -> None:
        roster = self.options.roster_file
        # Taken before reading: a write still going on while we read changes it again.
        seen = _signature(roster) if roster is not None else None
        table = load_card_table(self.options.cards, roster, self.device_id)
        self._builder.cards = table
        self._roster_seen = seen

    def _refresh_roster(self) -> None:
        """Pick up an edited roster file; a broken edit keeps the previous table."""
        roster = self.options.roster_file
        if roster is None or _signature(roster) == self._roster_seen:
            return
        try:
            self._load_cards()
        except ConfigError as exc:
            self._roster_seen = _signature(roster)  # do not re-read the same broken file each call
            self._log.error(
                "roster file not reloaded; keeping the previous cards",
                error=str(exc),
                problems=exc.problems,
            )
            return
        self._log.info("roster file reloaded", cards=len(self._builder.cards))


_FileSignature = tuple[int, int, int, int]


def _signature(path: Path) -> _FileSignature | None:
    """What changes when a file is edited: inode, size, mtime and ctime.

    The mtime alone missed edits within the file system's timestamp resolution (a coarse tick,
    1-2 s on network shares and FAT), such as the end of a write whose start we had read, and a
    replacement carrying an old mtime (``rsync -t``, ``cp -p``).
    """
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _close_quietly(port: serial.SerialBase) -> None:
    try:
        port.close()
    except Exception:  # noqa: BLE001, S110 - close() must never raise; the port is gone anyway
        pass
