"""What a simulated terminal remembers: users, attendance log, clock offset, capacities.

Persisted as one JSON file written atomically (temp file + rename), so a demo terminal keeps its
data across restarts. Every method takes the state lock; callers never touch the lists directly.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from config.errors import ConfigError, ProtocolError
from drivers.zk.protocol import FreeSizes, encode_time_fields
from drivers.zk.records import AttendanceRecord, UserRecord, pack_attendance, pack_user

log = structlog.get_logger("drivers.zk.simulator")

STATE_FORMAT = "punchgate-zk-simulator"
STATE_VERSION = 1
MAX_UID = 0xFFFF
FINGER_CAPACITY = 3000


class TerminalState:
    """Users, log and clock of one simulated terminal (thread-safe)."""

    def __init__(
        self,
        *,
        serial: str,
        record_capacity: int,
        user_capacity: int,
        path: Path | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.serial = serial
        self.record_capacity = record_capacity
        self.user_capacity = user_capacity
        self.path = path
        self.users: dict[int, UserRecord] = {}
        self.records: list[AttendanceRecord] = []
        self.clock_offset = timedelta(0)
        # DISABLEDEVICE: the terminal shows "working" and records nothing until ENABLEDEVICE
        # (also after the session that disabled it ends: the worst case of real firmware).
        self.disabled = False
        self._dirty = False
        # Packed records per layout, extended as the log grows: a 1503 then only joins them.
        self._packed: dict[int, list[bytes]] = {}

    # Clock.

    def now(self) -> datetime:
        """The terminal's wall clock: host local time plus the offset, whole seconds."""
        return (datetime.now() + self.clock_offset).replace(microsecond=0)

    def set_clock(self, when: datetime) -> None:
        """Set the terminal clock to ``when`` (naive local)."""
        with self.lock:
            self.clock_offset = when - datetime.now()
            self._dirty = True

    # Users.

    def user_by_id(self, user_id: str) -> UserRecord | None:
        """The user with this badge number, if enrolled."""
        with self.lock:
            return next((u for u in self.users.values() if u.user_id == user_id), None)

    def next_uid(self) -> int:
        """The next free terminal slot."""
        with self.lock:
            uid = max(self.users, default=0) + 1
            if uid > MAX_UID:
                uid = next(i for i in range(1, MAX_UID + 1) if i not in self.users)
            return uid

    def put_user(self, user: UserRecord) -> bool:
        """Insert or replace by uid; False when the user table is full."""
        with self.lock:
            if user.uid not in self.users and len(self.users) >= self.user_capacity:
                return False
            self.users[user.uid] = user
            self._dirty = True
            return True

    def delete_user(self, uid: int) -> bool:
        """Remove a user by uid; False when there was none."""
        with self.lock:
            found = self.users.pop(uid, None) is not None
            self._dirty = self._dirty or found
            return found

    # Log.

    def append(self, record: AttendanceRecord) -> bool:
        """Append a punch; False when the log is at capacity (a full terminal records nothing)."""
        with self.lock:
            if len(self.records) >= self.record_capacity:
                return False
            self.records.append(record)
            self._dirty = True
            return True

    def clear_log(self) -> int:
        """Delete every record; return how many there were."""
        with self.lock:
            count = len(self.records)
            self.records.clear()
            self._packed.clear()
            self._dirty = True
            return count

    def clear_all(self) -> None:
        """Delete users and records (CLEAR_DATA)."""
        with self.lock:
            self.users.clear()
            self.records.clear()
            self._packed.clear()
            self._dirty = True

    # Buffers as the terminal serves them.

    def attendance_buffer(
        self, size: int, impossible_at: int | None = None, *, served_size: int | None = None
    ) -> bytes:
        """``u32 total`` + every record in the ``size`` layout; one may get 31 February.

        ``served_size`` cuts or zero-pads each record to that many bytes (an unknown layout).
        """
        with self.lock:
            packed = self._packed.setdefault(size, [])
            packed.extend(pack_attendance(r, size) for r in self.records[len(packed) :])
            parts = list(packed)
            if impossible_at is not None and impossible_at < len(parts):
                record = self.records[impossible_at]
                if record.timestamp is not None:
                    t = record.timestamp
                    raw_time = encode_time_fields(t.year, 2, 31, t.hour, t.minute, t.second)
                    parts[impossible_at] = pack_attendance(record, size, time_raw=raw_time)
        if served_size is not None:
            parts = [part[:served_size].ljust(served_size, b"\0") for part in parts]
        body = b"".join(parts)
        return struct.pack("<I", len(body)) + body

    def users_buffer(self, size: int, encoding: str = "utf-8") -> bytes:
        """``u32 total`` + every user in the ``size`` layout, by uid, names in ``encoding``."""
        with self.lock:
            users = [self.users[uid] for uid in sorted(self.users)]
        body = b"".join(pack_user(u, size, encoding) for u in users)
        return struct.pack("<I", len(body)) + body

    def free_sizes(self, faces: bool) -> FreeSizes:
        """Counts and capacities as GET_FREE_SIZES reports them."""
        with self.lock:
            users, records = len(self.users), len(self.records)
        return FreeSizes(
            users=users,
            records=records,
            finger_capacity=FINGER_CAPACITY,
            user_capacity=self.user_capacity,
            record_capacity=self.record_capacity,
            fingers_free=FINGER_CAPACITY,
            users_free=max(0, self.user_capacity - users),
            records_free=max(0, self.record_capacity - records),
            faces=0 if faces else None,
            face_capacity=0 if faces else None,
        )

    # Persistence.

    def load(self) -> bool:
        """Read the state file if it exists; raise ``ConfigError`` when it is unreadable."""
        if self.path is None or not self.path.exists():
            return False
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            if doc.get("format") != STATE_FORMAT or doc.get("version") != STATE_VERSION:
                raise ValueError(f"not a version-{STATE_VERSION} simulator state file")
            users = {u["uid"]: UserRecord(**u) for u in doc["users"]}
            records = [
                AttendanceRecord(uid, user_id, datetime.fromisoformat(when), verify, state, code)
                for uid, user_id, when, verify, state, code in doc["records"]
            ]
            offset = timedelta(seconds=float(doc["clock_offset_seconds"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"simulator state file {self.path} cannot be read ({exc}); "
                "fix it, or delete it to start from an empty terminal"
            ) from exc
        with self.lock:
            self.users, self.records, self.clock_offset = users, records, offset
            self._packed.clear()
            self._dirty = False
        if doc.get("serial") != self.serial:
            log.info("state_serial_differs", file_serial=doc.get("serial"), serial=self.serial)
        return True

    def save(self) -> None:
        """Write the state file atomically (temp file in the same directory, then rename)."""
        if self.path is None:
            return
        with self.lock:
            doc: dict[str, Any] = {
                "format": STATE_FORMAT,
                "version": STATE_VERSION,
                "serial": self.serial,
                "clock_offset_seconds": self.clock_offset.total_seconds(),
                "record_capacity": self.record_capacity,
                "user_capacity": self.user_capacity,
                "users": [asdict(self.users[uid]) for uid in sorted(self.users)],
                "records": [
                    [r.uid, r.user_id, _iso(r.timestamp), r.verify, r.state, r.workcode]
                    for r in self.records
                ],
            }
            self._dirty = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(doc, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def flush(self) -> bool:
        """Save if anything changed since the last save; True when a write happened."""
        with self.lock:
            dirty = self._dirty
        if dirty:
            self.save()
        return dirty


def _iso(when: datetime | None) -> str:
    if when is None:
        raise ProtocolError("a stored record always has a timestamp")
    return when.isoformat()
