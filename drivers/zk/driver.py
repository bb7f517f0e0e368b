"""``ZkDriver``: one ZK terminal as the agent sees it (the ``Driver`` protocol and a bit more)."""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import structlog

from config.errors import DeviceError, DeviceIdentityError, ProtocolError
from drivers.base import DeviceInfo, Punch, Suspect
from drivers.zk import protocol as p
from drivers.zk.clock import (
    ClockReading,
    Now,
    auto_sync_refusal,
    read_clock,
    set_clock,
    sync_clock,
    utc_now,
)
from drivers.zk.interrupts import interrupted
from drivers.zk.live import LiveState, capture
from drivers.zk.options import ZkOptions
from drivers.zk.punches import PunchBuilder, no_gc
from drivers.zk.reader import Progress, TailMark, free_sizes, read_log
from drivers.zk.records import UserRecord, unpack_events
from drivers.zk.transport import Endpoint, ZkConnection
from drivers.zk.users import delete_user, list_users, upsert_user

log = structlog.get_logger("drivers.zk")

_DRIFT = frozenset({Suspect.CLOCK_DRIFT})
_NONE: frozenset[Suspect] = frozenset()


@dataclass(frozen=True, slots=True)
class ReadSummary:
    """What the last ``read_new`` did, for logs and the CLI."""

    full: bool
    reason: str
    records: int  # records in the terminal's log
    new: int  # punches returned
    record_size: int
    capacity: int
    seconds: float


def _ignore(_records: bytes, _size: int, _full: bool) -> None:
    """A sink for reads that only check the log (nothing is kept)."""


class ZkDriver:
    """A ZKTeco-family terminal over TCP or UDP.

    The serial number seen at the first ``open`` is pinned: every reconnect checks it again, so a
    swapped terminal never gets its punches mixed in. ``last_watermark`` always covers everything
    returned so far, including punches back-filled during live capture.
    """

    def __init__(
        self, device_id: str, options: ZkOptions, tz: ZoneInfo, *, now: Now = utc_now
    ) -> None:
        self.device_id = device_id
        self.options = options
        self.tz = tz
        self.endpoint = Endpoint(device_id, options.host, options.port, options.transport)
        self.conn = ZkConnection(self.endpoint, comm_key=options.comm_key, timeout=options.timeout)
        self.now = now
        self.serial: str | None = None
        self.last_watermark: dict[str, object] | None = None
        self.last_clock: ClockReading | None = None
        self.last_read: ReadSummary | None = None
        self._pinned: str | None = None
        # We disable the terminal only to clear its log. If the connection (or this process)
        # died before ENABLEDEVICE, the terminal may still refuse every punch: enable it at the
        # next open. True at start too: a previous process may have died mid-clear.
        self._may_be_disabled = options.clear_after_read
        self._builder: PunchBuilder | None = None
        self._drift_alarm = False
        self._events_generation = -1  # the connection generation events are registered on
        self.live_state = LiveState(options.reconnect_min, options.reconnect_max)

    @property
    def label(self) -> str:
        """``lobby-1 (10.0.0.20:4370)``."""
        return self.endpoint.label

    # The Driver protocol.

    def open(self, expected_serial: str | None = None) -> None:
        """Connect, authenticate and check identity against ``expected_serial`` (if given)."""
        self.conn.connect()
        try:
            serial = self._serial_number()
            self._check(serial, expected_serial or self._pinned)
        except BaseException:
            self.conn.close()
            raise
        if serial != self.serial:
            self._builder = PunchBuilder(self.device_id, serial, self.tz)
        self.serial = self._pinned = serial
        log.debug("zk_opened", device=self.device_id, serial=serial)
        if self._may_be_disabled:
            self._enable_after_clear()

    def _enable_after_clear(self) -> None:
        """ENABLEDEVICE; the flag stays set until the terminal acknowledges it.

        After a Ctrl-C only briefly (the next open enables it when this goes unanswered).
        """
        if interrupted():
            reply = self.conn.request_briefly(p.CMD_ENABLEDEVICE)
            if reply is None:
                return
        else:
            reply = self.conn.request(p.CMD_ENABLEDEVICE)
        self._may_be_disabled = reply.command != p.ACK_OK
        if self._may_be_disabled:
            log.warning(
                "zk_enable_refused",
                device=self.device_id,
                code=reply.command,
                action="check the terminal: it may refuse punches until it is enabled",
            )

    def close(self) -> None:
        """Say goodbye (EXIT) and close the socket; never raises."""
        self.conn.close(say_goodbye=True)

    def check_identity(self, expected: str | None) -> None:
        """Raise ``DeviceIdentityError`` unless the terminal reports ``expected`` (if given)."""
        self.ensure_open()
        if expected:
            self._check(self._serial_number(), expected)

    def info(self) -> DeviceInfo:
        """Serial, name, platform, firmware, MAC, counts, capacities and clock."""
        self.ensure_open()
        version = self.conn.request(p.CMD_GET_VERSION, retries=2)
        firmware = version.data.split(b"\0", 1)[0].decode("ascii", "replace") or None
        sizes = free_sizes(self.conn)
        clock = read_clock(self.conn, self.tz, self.now)
        self.last_clock = clock
        assert self.serial is not None
        return DeviceInfo(
            serial=self.serial,
            name=self._option("~DeviceName"),
            platform=self._option("~Platform"),
            firmware=firmware if version.command == p.ACK_OK else None,
            mac=self._option("MAC"),
            users=sizes.users,
            user_capacity=sizes.user_capacity,
            records=sizes.records,
            record_capacity=sizes.record_capacity,
            clock=clock.device_time,
            extra={
                "address": f"{self.options.host}:{self.options.port}",
                "transport": self.options.transport,
                "drift_seconds": clock.drift_seconds,
                "gateway_time": clock.gateway_time.isoformat(),
                "fingerprints": sizes.fingers,
                "faces": sizes.faces,
            },
        )

    def read_new(
        self, watermark: dict[str, object] | None, *, progress: Progress | None = None
    ) -> tuple[list[Punch], dict[str, object]]:
        """Punches after ``watermark`` (the tail only, when it still matches) and the new mark."""
        started = time.monotonic()
        self.ensure_open()
        try:
            drifted = self._check_clock()
            assert self.serial is not None and self._builder is not None
            mark = TailMark.from_dict(watermark)
            if mark is not None and mark.serial != self.serial:
                log.warning(
                    "zk_foreign_watermark", device=self.device_id, mark=mark.serial, now=self.serial
                )
            punches: list[Punch] = []
            eight_byte: list[bytes] = []  # need the user list, read once the log buffer is freed
            builder = self._builder

            def sink(records: bytes, size: int, full: bool) -> None:
                if size == 8:
                    eight_byte.append(records)
                else:
                    flags = _DRIFT if drifted and not full else _NONE
                    punches.extend(builder.from_log(records, size, flags=flags))

            with no_gc():  # one pause for the whole read, not one per chunk (see punches.no_gc)
                read = read_log(self.conn, self.serial, mark, sink, progress=progress)
            if eight_byte:
                flags = _DRIFT if drifted and not read.full else _NONE
                uid_map = self._uids()
                for records in eight_byte:
                    punches.extend(builder.from_log(records, 8, uid_map=uid_map, flags=flags))
        except DeviceError:
            self.conn.close()  # resynchronise: the next call starts on a fresh session
            raise
        self.last_watermark = read.mark(self.serial).to_dict()
        self.last_read = ReadSummary(
            read.full,
            read.reason,
            read.count,
            len(punches),
            read.record_size,
            read.capacity,
            time.monotonic() - started,
        )
        log.debug("zk_read", device=self.device_id, full=read.full, new=len(punches))
        return punches, self.last_watermark

    def live(self, stop_after: float) -> Iterator[Punch]:
        """Live punches for ``stop_after`` seconds; reconnects and back-fills on its own."""
        return capture(self, stop_after)

    # Commands beyond the protocol.

    def clock(self) -> ClockReading:
        """The terminal clock against the gateway's."""
        self.ensure_open()
        self.last_clock = read_clock(self.conn, self.tz, self.now)
        return self.last_clock

    def set_time(self, when: datetime | None = None) -> ClockReading:
        """Set the terminal clock to ``when`` (naive device-local), by default the gateway's time;
        return the reading after."""
        self.ensure_open()
        before = None if self.last_clock is None else self.last_clock.drift_seconds  # last read
        if when is None:
            self.last_clock = sync_clock(self.conn, self.tz, self.now)
        else:
            set_clock(self.conn, when)
            self.last_clock = read_clock(self.conn, self.tz, self.now)
        # The same keys as when clock_sync sets it: one event, one shape.
        log.info(
            "zk_clock_set", device=self.device_id, before=before,
            after=self.last_clock.drift_seconds,
        )  # fmt: skip
        return self.last_clock

    def users(self) -> list[UserRecord]:
        """Users enrolled on the terminal, by slot."""
        self.ensure_open()
        return list_users(self.conn, self.options.encoding)[0]

    def upsert_user(self, user_id: str, name: str = "", **fields: object) -> UserRecord:
        """Create or update a user (``privilege``, ``password``, ``card``, ``group_id``)."""
        self.ensure_open()
        user = upsert_user(
            self.conn,
            user_id,
            name,
            encoding=self.options.encoding,
            **fields,  # type: ignore[arg-type]
        )
        return user

    def delete_user(self, user_id: str) -> bool:
        """Delete a user; False when the terminal had none with this id."""
        self.ensure_open()
        return delete_user(self.conn, user_id)

    def clear_log_if_due(self, durable_count: int) -> bool:
        """Clear the terminal log if ``clear_after_read`` is on, the log is near capacity and
        ``durable_count`` (the ``count`` of the watermark the caller durably stored) covers it all.

        The terminal is disabled while we check that nothing was recorded since and clear, so no
        punch can slip in between. Returns True when the log was cleared.
        """
        mark = TailMark.from_dict(self.last_watermark)
        if not self.options.clear_after_read or mark is None or mark.count != durable_count:
            return False
        self.ensure_open()
        sizes = free_sizes(self.conn)
        if sizes.record_capacity <= 0:
            return False
        if sizes.records < self.options.clear_threshold * sizes.record_capacity:
            return False
        assert self.serial is not None
        self._may_be_disabled = True
        disabled = self.conn.request(p.CMD_DISABLEDEVICE)
        if disabled.command != p.ACK_OK:
            # Not disabled, a punch could land between the check and the clear and be lost.
            log.info(
                "zk_clear_skipped",
                device=self.device_id,
                reason=f"the terminal answered DISABLE_DEVICE with code {disabled.command}",
            )
            return False
        try:
            check = read_log(self.conn, self.serial, mark, _ignore)
            if check.full or check.new or check.count != durable_count:
                log.info("zk_clear_skipped", device=self.device_id, reason="new records")
                return False
            reply = self.conn.request(p.CMD_CLEAR_ATTLOG)
            if reply.command != p.ACK_OK:
                raise ProtocolError(f"{self.label} refused CLEAR_ATTLOG (code {reply.command})")
        finally:
            if self.conn.connected:
                self._enable_after_clear()
        self.last_watermark = TailMark(self.serial, mark.record_size, 0, b"").to_dict()
        log.warning(
            "zk_log_cleared",
            device=self.device_id,
            records=durable_count,
            capacity=sizes.record_capacity,
        )
        return True

    # For live capture (drivers.zk.live).

    def ensure_open(self) -> None:
        """Reconnect if the session was lost (identity checked against the pinned serial)."""
        if not self.conn.connected:
            self.open(self._pinned)

    @property
    def events_registered(self) -> bool:
        """True while this session receives live events (registration ends with the session)."""
        return self.conn.connected and self._events_generation == self.conn.generation

    def register_events(self, on: bool) -> None:
        """REG_EVENT: attendance events on or off for this session."""
        flags = p.EF_ATTLOG if on else 0
        reply = self.conn.request(p.CMD_REG_EVENT, flags.to_bytes(4, "little"))
        if reply.command != p.ACK_OK:
            raise ProtocolError(
                f"{self.label} refused to register for live events (code {reply.command}): "
                "this firmware may not push events; set live = false and rely on polling"
            )
        self._events_generation = self.conn.generation if on else -1

    def backfill(self) -> list[Punch]:
        """An incremental read from the last watermark (what happened while we were away)."""
        punches, _mark = self.read_new(self.last_watermark)
        return punches

    def event_punches(self, packet: p.Packet) -> list[Punch]:
        """Punches of one REG_EVENT packet (non-attendance events are ignored)."""
        if packet.session != p.EF_ATTLOG or not packet.data:
            return []
        assert self._builder is not None
        try:
            events = unpack_events(packet.data)
        except ProtocolError as exc:
            log.warning("zk_event_unreadable", device=self.device_id, reason=str(exc))
            return []  # it is still in the log: the next incremental read picks it up
        flags = _DRIFT if self._drift_alarm else _NONE
        return self._builder.from_events(events, flags=flags)

    def keepalive(self) -> None:
        """A cheap request proving the session is alive (and refreshing the clock reading)."""
        self.last_clock = read_clock(self.conn, self.tz, self.now)

    # Internals.

    def _serial_number(self) -> str:
        serial = self._option("~SerialNumber")
        if not serial:
            raise ProtocolError(
                f"{self.label} did not report a serial number: punches cannot be attributed; "
                "report the model and firmware"
            )
        return serial

    def _option(self, name: str) -> str | None:
        reply = self.conn.request(p.CMD_OPTIONS_RRQ, name.encode("ascii") + b"\0", retries=2)
        if reply.command != p.ACK_OK:
            return None
        text = reply.data.split(b"\0", 1)[0].decode("utf-8", "replace")
        key, sep, value = text.partition("=")
        return (value if sep else key).strip() or None

    def _check(self, serial: str, expected: str | None) -> None:
        if expected and serial != expected:
            raise DeviceIdentityError(
                f"{self.label} reports serial {serial} but was {expected}: the terminal was "
                "swapped or re-addressed, so its punches were not read; check the terminal, "
                f"then run `punchgate devices pull {shlex.quote(self.device_id)} --accept-serial "
                f"{shlex.quote(serial)}` "
                "to accept it"
            )

    def _check_clock(self) -> bool:
        """Read the clock; alarm (once) on drift, set it when allowed. True when drifted."""
        reading = read_clock(self.conn, self.tz, self.now)
        self.last_clock = reading
        if not reading.exceeds(self.options.max_drift):
            if self._drift_alarm:
                log.info("zk_clock_ok", device=self.device_id, drift=reading.drift_seconds)
            self._drift_alarm = False
            return False
        first = not self._drift_alarm
        if first:
            log.warning(
                "zk_clock_drift",
                device=self.device_id,
                drift=reading.drift_seconds,
                max_drift=self.options.max_drift,
                sync=self.options.clock_sync,
                action="punches are flagged clock_drift until it is right: set the terminal's "
                "clock (the backend's time-sync command, or clock_sync = true for this device) "
                "and check the gateway's own time (timedatectl)",
            )
        self._drift_alarm = True
        problem = (
            auto_sync_refusal(self.label, self.device_id, reading, self.options.max_drift, self.now)
            if self.options.clock_sync
            else None
        )
        if problem is not None:
            if first:
                log.warning(
                    "zk_clock_sync_refused",
                    device=self.device_id,
                    reason=problem,
                    action="the terminal's clock is left as it is and new punches are flagged "
                    "clock_drift: check both clocks (timedatectl on the gateway); only if the "
                    "gateway's is right, set the terminal's: "
                    f"punchgate devices time {self.device_id} --set --force",
                )
        elif self.options.clock_sync:
            after = sync_clock(self.conn, self.tz, self.now)
            log.info(
                "zk_clock_set", device=self.device_id, before=reading.drift_seconds,
                after=after.drift_seconds,
            )  # fmt: skip
            self._drift_alarm = after.exceeds(self.options.max_drift)
        return True

    def _uids(self) -> dict[int, str]:
        """Slot -> user id, for 8-byte records, read afresh for every read that needs it.

        Not cached: a user deleted and another enrolled (at the terminal or by the CLI's own
        connection) leaves the count unchanged but gives the slot to someone else, and a stale
        map put the new hire's punches on the leaver. Only reads with new records pay for it.
        """
        users, _size = list_users(self.conn, self.options.encoding)
        return {u.uid: u.user_id for u in users}
