"""Manual correction punches: turn what a technician typed into a ``Punch``, or say what is wrong.

Rules (``[manual]`` in the config): the device must be configured; the time is read in the
device's timezone and may be neither in the future nor older than ``max_age``. Three rules can
be overridden with ``--force``, because a person may know better: a punch of the same employee
within ``duplicate_window`` already exists; the device is online right now (corrections are for
terminals that were offline; an online terminal most likely has the punch itself); the outbox
never saw the employee id but has a look-alike (``7`` for ``007``, ``AB12`` for ``ab12``).
"""

from __future__ import annotations

import bisect
import getpass
import os
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from agent.doctor.daemon_view import daemon_view
from config import Settings
from config.errors import DeviceAuthError, DeviceError
from config.settings import SerialDeviceSettings, ZkDeviceSettings
from drivers.base import Driver, Punch, PunchState, Source, Suspect, VerifyMethod
from drivers.timeutil import localize

DeviceConfig = ZkDeviceSettings | SerialDeviceSettings
OnlineProbe = Callable[[DeviceConfig], "Online"]

TIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")
STATES = tuple(s.value for s in PunchState)
_MAX_EMPLOYEE = 128  # the MQTT contract's limits
_MAX_OPERATOR = 200
_MAX_REASON = 2000
_SPELLING_ROWS = 10_000  # the newest punches whose employee ids the spelling check knows


@dataclass(frozen=True)
class Online:
    """Whether a device answers right now; ``online`` is None when it cannot be told."""

    online: bool | None
    how: str  # "the running daemon sees it online", "answers on 10.0.0.20:4370", ...


@dataclass(frozen=True)
class ManualRequest:
    """One manual punch as typed on the command line or on a row of an import file."""

    employee: str
    device: str
    at: str  # device-local wall-clock time as typed, e.g. "2026-11-22 08:03"
    state: str = PunchState.UNKNOWN.value
    reason: str = ""
    row: int | None = None  # line number in an import file


@dataclass(frozen=True)
class Problem:
    """Why a request cannot be stored; ``forceable`` ones are overridden by ``--force``."""

    message: str
    forceable: bool = False

    def text(self, row: int | None = None) -> str:
        """The message, prefixed with the import-file row when there is one."""
        hint = " (use --force to store it anyway)" if self.forceable else ""
        return (f"row {row}: " if row is not None else "") + self.message + hint


@dataclass(frozen=True)
class Checked:
    """A validated request: the punch to store (when the time could be read) and its problems."""

    request: ManualRequest
    punch: Punch | None
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth saying, never blocking

    def blocking(self, force: bool) -> list[Problem]:
        """The problems that stop the request, given ``--force`` or not."""
        return [p for p in self.problems if not (force and p.forceable)]


class PunchLookup(Protocol):
    """The part of the outbox the validation reads."""

    def list(
        self,
        pending_only: bool = False,
        device: str | None = None,
        employee: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> Sequence[object]:
        """Stored rows matching the filters."""

    def device_serial(self, device_id: str) -> str | None:
        """The serial last seen for this device."""


def default_operator(env: dict[str, str] | None = None) -> str:
    """Who is at the keyboard: ``$SUDO_USER`` when run through sudo, else the login user."""
    env = dict(os.environ) if env is None else env
    if env.get("SUDO_USER"):
        return env["SUDO_USER"]
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid:{os.getuid()}"


def operator_problem(operator: str) -> Problem | None:
    """Why an operator name cannot be stored, if it cannot."""
    if not operator.strip():
        return Problem("the operator is empty: give --by NAME")
    if len(operator) > _MAX_OPERATOR:
        return Problem(f"the operator name is longer than {_MAX_OPERATOR} characters")
    return text_problem("operator name", operator)


def reason_problem(reason: str, why: str = "the punch is entered by hand") -> Problem | None:
    """Why the reason of a manual punch or a void cannot be stored, if it cannot."""
    if not reason.strip():
        return Problem(f"the reason is empty: say why {why}")
    if len(reason.strip()) > _MAX_REASON:
        return Problem(f"the reason is longer than {_MAX_REASON} characters")
    return text_problem("reason", reason, lines=True)


def text_problem(what: str, text: str, *, lines: bool = False) -> Problem | None:
    """Why typed text cannot be stored and delivered: not UTF-8, or control characters.

    A terminal not set to UTF-8 hands Python its bytes as lone surrogates, which SQLite and
    every backend refuse; a NUL is refused by PostgreSQL backends, so the punch would stay
    unacknowledged forever. Line breaks and tabs are fine in a reason.
    """
    if any("\ud800" <= c <= "\udfff" for c in text):
        return Problem(
            f"the {what} {text!r} is not valid UTF-8 text: set the terminal to UTF-8 "
            "(e.g. LANG=C.UTF-8) and type it again"
        )
    allowed = "\t\n\r" if lines else ""
    bad = [c for c in text if unicodedata.category(c) == "Cc" and c not in allowed]
    if bad:
        return Problem(f"the {what} {text!r} contains a control character ({bad[0]!r})")
    return None


def employee_problem(employee: str) -> Problem | None:
    """Why an employee id (already stripped) cannot be stored, if it cannot.

    Terminals write their user ids in ASCII digits: ``１０４２`` (a full-width IME) or ``١٠٤٢``
    (an Arabic keyboard) stored as typed would belong to no employee and miss the duplicate check.
    """
    if not employee:
        return Problem("the employee is empty: give the employee's id on the terminal")
    if len(employee) > _MAX_EMPLOYEE:
        return Problem(f"the employee id is longer than {_MAX_EMPLOYEE} characters")
    problem = text_problem("employee id", employee)
    if problem is not None:
        return problem
    # Format characters (bidi marks from a right-to-left screen, zero-width spaces, a BOM) are
    # invisible: the id looks right and is stored as one that belongs to nobody.
    invisible = [c for c in employee if unicodedata.category(c) == "Cf"]
    if invisible:
        shown = "".join(c for c in employee if c not in invisible)
        return Problem(
            f"the employee id {employee!r} contains an invisible character "
            f"(U+{ord(invisible[0]):04X}): type it as on the terminal: {shown}"
        )
    plain = "".join(
        str(unicodedata.decimal(c)) if c.isdecimal() else c
        for c in unicodedata.normalize("NFKC", employee)
    )
    if plain != employee:
        return Problem(
            f"the employee id {employee!r} is not written as a terminal writes it: type it as "
            f"on the terminal: {plain}"
        )
    return None


def loose_employee(employee: str) -> str:
    """What two spellings of one employee id share: no spaces, case or leading zeros."""
    text = "".join(employee.split()).casefold()
    return (text.lstrip("0") or "0") if text.isdecimal() else text


def parse_local_time(text: str) -> datetime:
    """A naive wall-clock time from ``YYYY-MM-DD HH:MM[:SS]``; ``ValueError`` says the format."""
    value = text.strip()
    for fmt in TIME_FORMATS:
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            continue
    raise ValueError(
        f"cannot read the time {text!r}: write it as 'YYYY-MM-DD HH:MM' in the device's local "
        "time, e.g. '2026-11-22 08:03'"
    )


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


def make_online_probe(
    settings: Settings,
    build: Callable[[Settings, DeviceConfig], Driver],
    *,
    ping_timeout: float = 2.0,
) -> OnlineProbe:
    """Is a device online: the running daemon's view, else a quick connect to the terminal."""
    view = daemon_view(settings.agent.state_dir)

    def probe(device: DeviceConfig) -> Online:
        if view.running:
            state = view.device_state(device.id)
            if state is None:
                return Online(None, "the running daemon does not report it")
            return Online(state == "online", f"the running daemon sees it {state}")
        if isinstance(device, SerialDeviceSettings):
            return Online(None, "a serial clock cannot be pinged while the daemon is stopped")
        quick = device.model_copy(update={"timeout": min(device.timeout, ping_timeout)})
        where = f"{device.host}:{device.port}"
        try:
            driver = build(settings, quick)
            driver.open()
        except DeviceAuthError as exc:  # alive, with its punches: only the key is wrong
            return Online(True, f"it answers on {where}, but: {exc}")
        except DeviceError as exc:
            return Online(False, f"no answer on {where}: {exc}")
        driver.close()
        return Online(True, f"it answers on {where}")

    return probe
