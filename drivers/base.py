"""What every terminal driver yields and accepts: ``Punch`` values and the ``Driver`` protocol.

Drivers know nothing of SQLite, MQTT or config files: they are built from plain arguments by the
agent and hand back plain values. Identity (the punch id) is derived by the outbox from
``identity_fields``; the driver only has to report the content faithfully.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable


class PunchState(enum.StrEnum):
    """In/out state as reported by the terminal (ZK codes 0..5)."""

    IN = "in"
    OUT = "out"
    BREAK_OUT = "break_out"
    BREAK_IN = "break_in"
    OVERTIME_IN = "overtime_in"
    OVERTIME_OUT = "overtime_out"
    UNKNOWN = "unknown"

    @classmethod
    def from_zk(cls, code: int) -> PunchState:
        return _ZK_STATES.get(code, cls.UNKNOWN)


_ZK_STATES = {
    0: PunchState.IN,
    1: PunchState.OUT,
    2: PunchState.BREAK_OUT,
    3: PunchState.BREAK_IN,
    4: PunchState.OVERTIME_IN,
    5: PunchState.OVERTIME_OUT,
}


class VerifyMethod(enum.StrEnum):
    """How the person was identified."""

    PASSWORD = "password"  # noqa: S105 - a verify method, not a secret
    FINGERPRINT = "fingerprint"
    CARD = "card"
    FACE = "face"
    MANUAL = "manual"
    OTHER = "other"

    @classmethod
    def from_zk(cls, code: int) -> VerifyMethod:
        return _ZK_VERIFY.get(code, cls.OTHER)


_ZK_VERIFY = {
    0: VerifyMethod.PASSWORD,
    1: VerifyMethod.FINGERPRINT,
    2: VerifyMethod.CARD,
    15: VerifyMethod.FACE,
}


class Source(enum.StrEnum):
    """Where a punch entered punchgate."""

    DEVICE = "device"  # read from the terminal's log
    LIVE = "live"  # pushed by the terminal as a live event
    MANUAL = "manual"  # entered by a technician


class Suspect(enum.StrEnum):
    """Reasons a punch looked wrong; it is kept, flagged, never dropped."""

    TIME_INVALID = "time_invalid"  # impossible date in the record (raw bytes kept)
    TIME_AMBIGUOUS = "time_ambiguous"  # local time falls in a DST fold (earlier offset chosen)
    TIME_NONEXISTENT = "time_nonexistent"  # local time falls in a DST gap (shifted forward)
    CLOCK_DRIFT = "clock_drift"  # the terminal clock was off by more than max_drift when read
    UNKNOWN_CARD = "unknown_card"  # card reader: no employee mapped to this card
    UNKNOWN_STATE = "unknown_state"  # state code not in the known table


@dataclass(frozen=True, slots=True)
class Punch:
    """One attendance event, as the terminal reported it."""

    device_id: str
    device_serial: str
    employee: str | None  # the terminal's user id; None only for unknown cards
    device_time: datetime  # naive wall-clock time as recorded by the terminal
    time_utc: datetime | None  # aware UTC; None when the recorded time is impossible
    utc_offset_minutes: int | None  # offset used for device_time -> UTC
    state: PunchState = PunchState.UNKNOWN
    state_code: int | None = None
    verify: VerifyMethod = VerifyMethod.OTHER
    verify_code: int | None = None
    source: Source = Source.DEVICE
    card: str | None = None
    suspect: frozenset[Suspect] = field(default_factory=frozenset)
    raw: bytes | None = None  # raw record bytes, kept when suspect

    def identity_fields(self) -> tuple[str, str, str, str]:
        """What identifies this punch across re-reads: serial, user, device time, state.

        An impossible time has no meaningful datetime, so its raw bytes stand in for it.
        """
        if Suspect.TIME_INVALID in self.suspect and self.raw is not None:
            when = "raw:" + self.raw.hex()
        else:
            when = self.device_time.isoformat()
        employee = self.employee if self.employee is not None else "card:" + (self.card or "")
        state = self.state.value if self.state_code is None else str(self.state_code)
        return (self.device_serial, employee, when, state)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a terminal says about itself."""

    serial: str
    name: str | None = None
    platform: str | None = None
    firmware: str | None = None
    mac: str | None = None
    users: int | None = None
    user_capacity: int | None = None
    records: int | None = None
    record_capacity: int | None = None
    clock: datetime | None = None  # naive device-local time when asked
    extra: dict[str, object] = field(default_factory=dict)


@runtime_checkable
class Driver(Protocol):
    """The role every terminal driver plays; the agent talks to nothing else."""

    device_id: str

    def open(self) -> None:
        """Connect; raise ``DeviceError`` subclasses with a message a technician can act on."""

    def close(self) -> None:
        """Release the connection; never raises."""

    def info(self) -> DeviceInfo:
        """Identity, counts and clock."""

    def read_new(
        self, watermark: dict[str, object] | None
    ) -> tuple[list[Punch], dict[str, object]]:
        """Punches recorded since ``watermark``, and the watermark that covers them.

        The caller stores both in one transaction before anything irreversible happens.
        """

    def live(self, stop_after: float) -> Iterator[Punch]:
        """Yield live punches for up to ``stop_after`` seconds; empty for poll-only drivers."""
