"""Turn parsed serial frames into ``Punch`` values: employee, time and state.

A frame names an employee directly, or a card that the card table maps to one; an unknown card
is kept with no employee and flagged. A frame without a time gets the gateway's receive time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from drivers.base import Punch, PunchState, Source, Suspect, VerifyMethod
from drivers.serial.cards import CardTable, em4100_aliases
from drivers.serial.parsers import Frame
from drivers.timeutil import EARLIEST_PLAUSIBLE_YEAR, localize

_IN, _OUT = PunchState.IN, PunchState.OUT
_STATE_WORDS = {
    **dict.fromkeys(("in", "i", "checkin", "c/in", "entry", "enter", "arrive", "arrival"), _IN),
    **dict.fromkeys(("out", "o", "checkout", "c/out", "exit", "leave", "departure"), _OUT),
    **dict.fromkeys(("breakout", "break", "b/out", "pause"), PunchState.BREAK_OUT),
    **dict.fromkeys(("breakin", "b/in", "return", "resume"), PunchState.BREAK_IN),
    **dict.fromkeys(("overtimein", "otin", "ot/in"), PunchState.OVERTIME_IN),
    **dict.fromkeys(("overtimeout", "otout", "ot/out"), PunchState.OVERTIME_OUT),
}
_YEAR_DIRECTIVES = ("%Y", "%y", "%G", "%c", "%x")
_DATE_DIRECTIVES = (*_YEAR_DIRECTIVES, "%m", "%d", "%j", "%b", "%B")
_ISO_SEPARATORS = "-- ::"
ISO_FORMAT = "%Y-%m-%d %H:%M:%S"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HALF_DAY = timedelta(hours=12)
_HALF_YEAR = timedelta(days=183)
_MAX_CODE = 2**63 - 1  # SQLite and the backend store 64-bit integers
_LEAP_YEAR = " 2000"  # parsed with a date that has no year, so that 29 Feb can exist


def parse_state(text: str | None) -> tuple[PunchState, int | None, bool]:
    """(state, numeric code, known) for a state word or code as a clock prints it.

    Codes 0-5 follow the ZK table (0 in, 1 out, 2 break out, 3 break in, 4/5 overtime in/out);
    words such as IN, OUT, Check-In, EXIT, Break-Out are matched ignoring case, spaces, ``-``
    and ``_``. No state at all is ``unknown`` but not suspect; an unrecognised one is both.
    """
    if text is None:
        return PunchState.UNKNOWN, None, True
    word = text.strip().lower()
    if word.isdecimal():
        if len(word.lstrip("0")) > len(str(_MAX_CODE)) or int(word) > _MAX_CODE:
            return PunchState.UNKNOWN, None, False  # no store could hold it; raw line kept
        code = int(word)
        state = PunchState.from_zk(code)
        return state, code, state is not PunchState.UNKNOWN
    key = word.replace(" ", "").replace("-", "").replace("_", "")
    word_state = _STATE_WORDS.get(key)
    if word_state is None:
        return PunchState.UNKNOWN, None, False
    return word_state, None, True


class PunchBuilder:
    """Builds punches for one device: its serial, timezone, time format and card table."""

    def __init__(
        self,
        device_id: str,
        device_serial: str,
        tz: ZoneInfo,
        time_format: str,
        cards: CardTable,
        card_aliases: Callable[[str], tuple[str, ...]] | None = None,
        max_drift: float = 60.0,
    ) -> None:
        self.device_id = device_id
        self.device_serial = device_serial
        self.tz = tz
        self.time_format = time_format
        self.cards = cards
        self._aliases = card_aliases or _no_aliases
        self._max_drift = timedelta(seconds=max_drift)
        self._has_date = any(d in time_format for d in _DATE_DIRECTIVES)
        self._has_year = any(d in time_format for d in _YEAR_DIRECTIVES)
        self._iso = time_format == ISO_FORMAT
        # strptime's default year, 1900, has no 29 Feb: a format with a date but no year is
        # parsed with a leap year appended (the nearest real year is chosen afterwards).
        self._leap_format = time_format + " %Y" if self._has_date and not self._has_year else None
        self._received_key: datetime | None = None
        self._received: tuple[datetime, datetime, int] = (_EPOCH, _EPOCH, 0)

    def build(self, frame: Frame, received: datetime) -> Punch:
        """The punch for ``frame``; ``received`` is the aware instant the gateway read it."""
        suspect: set[Suspect] = set()
        employee = frame.employee
        if employee is None and frame.card is not None:
            employee = self.cards.lookup(frame.card, self._aliases(frame.card))
            if employee is None:
                suspect.add(Suspect.UNKNOWN_CARD)
        state, code, known = parse_state(frame.state)
        if not known:
            suspect.add(Suspect.UNKNOWN_STATE)
        device_time, time_utc, offset = self._time(frame.time, received, suspect)
        return Punch(
            device_id=self.device_id,
            device_serial=self.device_serial,
            employee=employee,
            device_time=device_time,
            time_utc=time_utc,
            utc_offset_minutes=offset,
            state=state,
            state_code=code,
            verify=VerifyMethod.CARD if frame.card is not None else VerifyMethod.OTHER,
            source=Source.LIVE,
            card=frame.card,
            suspect=frozenset(suspect),
            raw=frame.raw if suspect else None,
        )

    def _time(
        self, text: str | None, received: datetime, suspect: set[Suspect]
    ) -> tuple[datetime, datetime | None, int | None]:
        received_local, received_utc, received_offset = self._receive_time(received)
        if (text is None or not self._has_year) and received_utc.year < EARLIEST_PLAUSIBLE_YEAR:
            # The gateway's clock dates this punch, and it is not set yet (no RTC, no NTP).
            suspect.add(Suspect.CLOCK_DRIFT)
        if text is None:
            return received_local, received_utc, received_offset
        try:
            naive = self._parse_time(text)
            naive = self._complete_date(naive, received_local)
            utc, offset_minutes, flags = localize(naive, self.tz)
        except (ValueError, OverflowError):
            # The clock printed an impossible time (or one UTC cannot hold, like year 9999 in
            # New York): keep the punch, flagged, with the raw line as its identity; the
            # receive time is the best wall-clock time we have.
            suspect.add(Suspect.TIME_INVALID)
            return received_local, None, None
        suspect.update(flags)
        if utc - received_utc > self._max_drift:
            # Printed before that time came: the clock is ahead (reset to 2100, a wrong year).
            # A time in the past is not flagged: a clock replays its stored punches on reconnect.
            suspect.add(Suspect.CLOCK_DRIFT)
        return naive, utc, offset_minutes

    def _receive_time(self, received: datetime) -> tuple[datetime, datetime, int]:
        """(device-local, UTC, offset) of a receive instant; frames of one chunk share it."""
        if received != self._received_key:
            local = received.astimezone(self.tz)
            offset = local.utcoffset() or timedelta(0)
            self._received_key = received
            self._received = (
                local.replace(tzinfo=None),
                received.astimezone(UTC),
                int(offset.total_seconds() // 60),
            )
        return self._received

    def _parse_time(self, text: str) -> datetime:
        if (
            self._iso
            and len(text) == 19
            and _ISO_SEPARATORS == text[4] + text[7] + text[10] + text[13] + text[16]
        ):
            # The default format is ISO 8601 with a space; fromisoformat is ~10x faster than
            # strptime. With every separator checked it accepts nothing strptime refuses (it
            # would take any character between date and time); what it refuses goes on to
            # strptime, which is more lenient ("2024-5-01  08:30:15", non-ASCII digits).
            try:
                return datetime.fromisoformat(text)
            except ValueError:
                pass
        if self._leap_format is not None:
            return datetime.strptime(text + _LEAP_YEAR, self._leap_format)
        return datetime.strptime(text, self.time_format)

    def _complete_date(self, naive: datetime, received_local: datetime) -> datetime:
        """Clocks that print no date (or no year) mean the date nearest to the receive time."""
        if not self._has_date:
            naive = datetime.combine(received_local.date(), naive.time())
            if naive - received_local > _HALF_DAY:
                naive -= timedelta(days=1)
            elif received_local - naive > _HALF_DAY:
                naive += timedelta(days=1)
        elif not self._has_year:
            naive = naive.replace(year=received_local.year)
            if naive - received_local > _HALF_YEAR:
                naive = naive.replace(year=naive.year - 1)
            elif received_local - naive > _HALF_YEAR:
                naive = naive.replace(year=naive.year + 1)
        return naive


def _no_aliases(_card: str) -> tuple[str, ...]:
    return ()


def aliases_for(format: str) -> Callable[[str], tuple[str, ...]] | None:
    """How cards read in ``format`` are also known (EM4100 prints decimal numbers on cards)."""
    return em4100_aliases if format == "em4100" else None
