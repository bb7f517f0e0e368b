"""``ManualValidator``: checks manual punch requests against the config, outbox and devices.

Every problem of a request is listed, not just the first; an import file is also checked for
rows of one employee too close to each other.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from agent.manual.online import Online, OnlineProbe
from agent.manual.request import (
    STATES,
    Checked,
    DeviceConfig,
    ManualRequest,
    Problem,
    PunchLookup,
)
from agent.manual.typed_text import (
    employee_problem,
    loose_employee,
    parse_local_time,
    reason_problem,
)
from config import Settings
from config.settings import SerialDeviceSettings
from drivers.base import Punch, PunchState, Source, Suspect, VerifyMethod
from drivers.timeutil import localize

_SPELLING_ROWS = 10_000  # the newest punches whose employee ids the spelling check knows


class ManualValidator:
    """Checks manual punch requests against the config, the outbox and the devices' state."""

    def __init__(
        self,
        settings: Settings,
        outbox: PunchLookup,
        *,
        online: OnlineProbe,
        now: datetime | None = None,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self._probe = online
        self.now = now or datetime.now(UTC)
        self._online: dict[str, Online] = {}  # one probe per device, also for a whole import
        self._spellings: dict[str, set[str]] | None = None  # read once, also for an import

    def check(self, request: ManualRequest) -> Checked:
        """Every problem with one request, not just the first."""
        problems: list[Problem] = []
        notes: list[str] = []
        device = self.settings.device(request.device)
        employee = request.employee.strip()
        employee_bad = employee_problem(employee)
        if employee_bad is not None:
            problems.append(employee_bad)
        state = request.state.strip().lower() or PunchState.UNKNOWN.value
        if state not in STATES:
            problems.append(
                Problem(f"unknown state {request.state!r}: use one of {', '.join(STATES)}")
            )
        reason_bad = reason_problem(request.reason)
        if reason_bad is not None:
            problems.append(reason_bad)
        if device is None:
            known = ", ".join(d.id for d in self.settings.devices) or "none configured"
            problems.append(Problem(f"unknown device {request.device!r}; known devices: {known}"))
            return Checked(request, None, problems, notes)
        try:
            naive = parse_local_time(request.at)
        except ValueError as exc:
            problems.append(Problem(str(exc)))
            return Checked(request, None, problems, notes)
        tz = self.settings.device_timezone(device)
        try:
            utc, offset, flags = localize(naive, tz)
        except OverflowError:  # year 1 east of UTC, year 9999 west of it: no UTC instant
            problems += self._time_rules(naive, None, tz)
            return Checked(request, None, problems, notes)
        problems += self._time_rules(naive, utc, tz)
        if Suspect.TIME_AMBIGUOUS in flags:
            notes.append(
                f"{naive:%Y-%m-%d %H:%M} happened twice in {tz.key} (DST end): the first was used"
            )
        if Suspect.TIME_NONEXISTENT in flags:
            notes.append(
                f"{naive:%Y-%m-%d %H:%M} does not exist in {tz.key} (DST start): stored flagged"
            )
        if employee_bad is None:
            problems += self._duplicates(employee, utc)
            problems += self._spelling(employee)
        # Probing can take seconds: only worth it when nothing else refuses the punch already.
        online = (
            self.online(device)
            if all(p.forceable for p in problems)
            else Online(None, "not probed")
        )
        if online.online:
            problems.append(
                Problem(
                    f"device {device.id} is online ({online.how}): corrections are for offline "
                    "terminals, and an online terminal most likely recorded the punch itself",
                    forceable=True,
                )
            )
        punch = Punch(
            device_id=device.id,
            device_serial=self._serial(device),
            employee=employee,
            device_time=naive,
            time_utc=utc,
            utc_offset_minutes=offset,
            state=PunchState(state) if state in STATES else PunchState.UNKNOWN,
            verify=VerifyMethod.MANUAL,
            source=Source.MANUAL,
            suspect=flags,
        )
        return Checked(request, punch, problems, notes)

    def check_batch(self, requests: Sequence[ManualRequest]) -> list[Checked]:
        """Each row checked, plus rows of the same employee too close to each other.

        One problem per row, naming the close row earliest in time and counting the others: a row
        filled down a thousand times in a spreadsheet gives a thousand lines, not half a million.
        """
        checked = [self.check(r) for r in requests]
        window = timedelta(seconds=self.settings.manual.duplicate_window)
        seen: dict[str, list[tuple[datetime, int]]] = {}  # earlier rows, by time, then order
        out = []
        for order, item in enumerate(checked):
            punch = item.punch
            if punch is None or punch.time_utc is None or punch.employee is None:
                out.append(item)
                continue
            times = seen.setdefault(punch.employee, [])
            low = bisect.bisect_left(times, (punch.time_utc - window, -1))
            high = bisect.bisect_right(times, (punch.time_utc + window, len(checked)))
            extra = []
            if high > low:
                other = checked[times[low][1]].request
                more = f" and {high - low - 1} more row(s)" if high - low > 1 else ""
                extra.append(
                    Problem(
                        f"employee {punch.employee} also has row {other.row} at {other.at}"
                        f"{more} within {_duration(window)} of this one",
                        forceable=True,
                    )
                )
            bisect.insort(times, (punch.time_utc, order))
            out.append(Checked(item.request, punch, item.problems + extra, item.notes))
        return out

    def online(self, device: DeviceConfig) -> Online:
        """The device's online state, probed once per validator."""
        if device.id not in self._online:
            self._online[device.id] = self._probe(device)
        return self._online[device.id]

    def _time_rules(self, naive: datetime, utc: datetime | None, tz: ZoneInfo) -> list[Problem]:
        """``utc`` is None for a time at the calendar's edge that has no UTC instant."""
        problems = []
        tz_name = tz.key
        local_now = self.now.astimezone(tz)
        future = naive > local_now.replace(tzinfo=None) if utc is None else utc > self.now
        if future:
            problems.append(
                Problem(
                    f"{naive:%Y-%m-%d %H:%M} ({tz_name}) is in the future: it is "
                    f"{local_now:%Y-%m-%d %H:%M} there now"
                )
            )
        max_age = timedelta(seconds=self.settings.manual.max_age)
        if (not future) if utc is None else self.now - utc > max_age:
            problems.append(
                Problem(
                    f"{naive:%Y-%m-%d %H:%M} ({tz_name}) is older than the limit of "
                    f"{_duration(max_age)} ([manual].max_age); such corrections go to HR directly"
                )
            )
        return problems

    def _duplicates(self, employee: str, utc: datetime) -> list[Problem]:
        window = timedelta(seconds=self.settings.manual.duplicate_window)
        earliest = datetime.min.replace(tzinfo=UTC)
        since = utc - window if utc - earliest > window else earliest  # year 1 has no before
        rows = self.outbox.list(employee=employee, since=since, limit=10_000)
        voided = {getattr(r, "void_of", None) for r in rows if getattr(r, "kind", "") == "void"}
        problems = []
        for row in rows:
            when = getattr(row, "time_utc", None)
            if getattr(row, "kind", "punch") != "punch" or when is None:
                continue
            if getattr(row, "id", None) in voided or abs(when - utc) > window:
                continue
            local = getattr(row, "device_time", None) or when
            problems.append(
                Problem(
                    f"employee {employee} already has a punch at {local:%Y-%m-%d %H:%M:%S} on "
                    f"{getattr(row, 'device_id', '?')} (id {getattr(row, 'id', '?')}, "
                    f"{getattr(row, 'source', '?')}), within {_duration(window)} "
                    "([manual].duplicate_window)",
                    forceable=True,
                )
            )
        return problems

    def _spelling(self, employee: str) -> list[Problem]:
        """An id the outbox never saw, whose look-alike ("7" for "007", "AB12" for "ab12") it has.

        Stored as typed, the correction would belong to nobody the backend knows, and the
        duplicate check against the terminal's own punch of that person would miss it.
        """
        if self.outbox.list(employee=employee, limit=1):
            return []
        if self._spellings is None:  # only for an id never seen, once per command
            self._spellings = {}
            for row in self.outbox.list(limit=_SPELLING_ROWS):
                known = getattr(row, "employee", None)
                if known:
                    self._spellings.setdefault(loose_employee(known), set()).add(known)
        others = sorted(self._spellings.get(loose_employee(employee), set()) - {employee})
        if not others:
            return []
        return [
            Problem(
                f"employee {employee} has no punches here, but {' or '.join(others)} has: type "
                "the id as the terminals write it",
                forceable=True,
            )
        ]

    def _serial(self, device: DeviceConfig) -> str:
        known = self.outbox.device_serial(device.id)
        if known:
            return known
        if isinstance(device, SerialDeviceSettings):
            return device.serial or f"serial:{device.id}"
        return ""  # a terminal never read: its serial is not known, and none is invented


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
