"""Realistic demo data: enrolled staff and their working-day punches."""

from __future__ import annotations

import math
import random
from datetime import date, datetime, time, timedelta

from drivers.zk.records import AttendanceRecord, UserRecord

_FIRST = (
    "Ana", "Ben", "Chloe", "Dev", "Elif", "Femi", "Greta", "Hugo", "Ines", "Jonas", "Kenji",
    "Lena", "Marco", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tara", "Uwe", "Vera",
    "Wei", "Yara", "Zoltan",
)  # fmt: skip
_LAST = (
    "Almeida", "Brandt", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Horvat", "Ito",
    "Jansen", "Kowalski", "Larsen", "Moreau", "Novak", "Okafor", "Petrov", "Rossi", "Silva",
    "Tanaka", "Weber",
)  # fmt: skip
# Verify methods weighted like a fingerprint terminal with some cards and faces.
_VERIFY = ((1, 0.80), (2, 0.10), (15, 0.08), (0, 0.02))
PUNCHES_PER_DAY = 2.7  # in + out, plus lunch on some days and a little overtime


def make_users(count: int, rng: random.Random, *, first_uid: int = 1) -> list[UserRecord]:
    """``count`` staff with numeric badge numbers from 1000 + uid, names and card numbers."""
    users = []
    for i in range(count):
        uid = first_uid + i
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        card = rng.randrange(1_000_000, 16_000_000)
        users.append(UserRecord(uid=uid, user_id=str(1000 + uid), name=name, card=card))
    return users


def default_start(today: date, users: int, records: int) -> datetime:
    """A start date early enough that ``records`` punches end around ``today``."""
    working_days = math.ceil(records / max(1.0, users * PUNCHES_PER_DAY)) + 1
    return datetime.combine(today - timedelta(days=working_days * 7 // 5 + 1), time())


def working_day_punches(
    users: list[UserRecord], count: int, start: datetime, rng: random.Random
) -> list[AttendanceRecord]:
    """``count`` punches in time order: in ~08:00, lunch out/in, out ~17:00, some overtime.

    Weekends are skipped and about one person in twenty is absent on any given day.
    """
    if not users or count <= 0:
        return []
    records: list[AttendanceRecord] = []
    day = start.date()
    # Each working day yields at least one punch while any user exists; the bound is generous.
    for _ in range(count * 2 + 14):
        if day.weekday() < 5:
            todays: list[AttendanceRecord] = []
            for user in users:
                if rng.random() < 0.05:
                    continue
                todays.extend(_one_day(user, day, rng))
            todays.sort(key=lambda r: (r.timestamp, r.uid))
            for record in todays:
                if record.timestamp is not None and record.timestamp >= start:
                    records.append(record)
                    if len(records) == count:
                        return records
        day += timedelta(days=1)
    return records


def _one_day(user: UserRecord, day: date, rng: random.Random) -> list[AttendanceRecord]:
    midnight = datetime.combine(day, time())

    def at(minutes: float, state: int) -> AttendanceRecord:
        when = midnight + timedelta(seconds=int(minutes * 60) + rng.randrange(60))
        verify = rng.choices([v for v, _ in _VERIFY], [w for _, w in _VERIFY])[0]
        return AttendanceRecord(user.uid, user.user_id, when, verify, state)

    arrive = 8 * 60 + max(-45.0, min(45.0, rng.gauss(0, 15)))
    leave = 17 * 60 + max(-60.0, min(90.0, rng.gauss(0, 25)))
    punches = [at(arrive, 0)]
    if rng.random() < 0.4:
        lunch = 12 * 60 + rng.uniform(0, 45)
        punches += [at(lunch, 2), at(lunch + rng.uniform(25, 60), 3)]
    punches.append(at(leave, 1))
    if rng.random() < 0.05:
        extra = leave + rng.uniform(5, 20)
        punches += [at(extra, 4), at(extra + rng.uniform(45, 150), 5)]
    return punches
