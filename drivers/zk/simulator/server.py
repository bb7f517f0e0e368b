"""The simulated ZK terminal's public face: ``ZkSimulator``, what tests and the CLI drive.

It composes the state (users, log, clock), the command semantics (``Terminal``) and the network
side (``NetworkServer``), and adds what a person at the terminal does: enrol, punch, reset.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType

import structlog

from drivers.textcodec import check_text_encoding
from drivers.zk import protocol as p
from drivers.zk.records import (
    EVENT_SIZES,
    RECORD_SIZES,
    USER_SIZES,
    AttendanceRecord,
    LiveEvent,
    UserRecord,
    pack_event,
)
from drivers.zk.simulator.faults import FAULT_NAMES, Faults
from drivers.zk.simulator.generator import default_start, make_users, working_day_punches
from drivers.zk.simulator.network import NetworkServer, SessionInfo
from drivers.zk.simulator.state import TerminalState
from drivers.zk.simulator.terminal import Handler, Profile, Terminal

log = structlog.get_logger("drivers.zk.simulator")


class ZkSimulator:
    """A ZK terminal serving TCP and UDP on the same port, with state, punches and faults."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        serial: str = "SIM0001",
        comm_key: int = 0,
        record_size: int = 40,
        user_size: int = 72,
        event_size: int = 32,
        record_capacity: int = 100_000,
        user_capacity: int = 10_000,
        state_file: str | Path | None = None,
        faults: Faults | None = None,
        seed: int | None = None,
        device_name: str = "PG-SIM",
        firmware: str = "Ver 6.60 Apr 28 2015",
        max_connections: int = 16,
        udp_session_timeout: float = 120.0,
        direct_data_max: int | None = None,
        name_encoding: str = "utf-8",
    ) -> None:
        check_text_encoding(name_encoding)
        for name, value, allowed in (
            ("record_size", record_size, RECORD_SIZES),
            ("user_size", user_size, USER_SIZES),
            ("event_size", event_size, EVENT_SIZES),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {value}")
        self.host = host
        self._faults = faults if faults is not None else Faults()
        self._rng = random.Random(seed)
        self._state = TerminalState(
            serial=serial,
            record_capacity=record_capacity,
            user_capacity=user_capacity,
            path=Path(state_file) if state_file is not None else None,
        )
        self._state.load()
        self.profile = Profile(
            comm_key=comm_key,
            record_size=record_size,
            user_size=user_size,
            event_size=event_size,
            firmware=firmware,
            device_name=device_name,
            direct_data_max=direct_data_max,
            name_encoding=name_encoding,
        )
        self._terminal = Terminal(self._state, self.profile, self._faults)
        self._server = NetworkServer(
            host,
            port,
            self._terminal,
            self._faults,
            random.Random(self._rng.random()),
            max_connections=max_connections,
            udp_session_timeout=udp_session_timeout,
        )

    # Lifecycle.

    def start(self) -> ZkSimulator:
        """Bind TCP and UDP and start serving; raise ``UsageError`` when the port is taken."""
        port = self._server.start()
        log.info("simulator_listening", host=self.host, port=port, serial=self.serial)
        return self

    def stop(self) -> None:
        """Stop serving, close every connection, write the state file; idempotent."""
        if not self._server.running:
            return
        self._server.stop()
        self._state.flush()
        log.info("simulator_stopped", port=self.port)

    def __enter__(self) -> ZkSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The TCP and UDP port number (0 before ``start()``)."""
        return self._server.port

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) to connect to."""
        return (self.host, self._server.port)

    @property
    def faults(self) -> Faults:
        """The live fault switches."""
        return self._faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        # Copy into the shared object: the terminal and every channel hold a reference to it.
        for name in FAULT_NAMES:
            setattr(self._faults, name, getattr(value, name))

    # Data.

    @property
    def serial(self) -> str:
        """The serial number the terminal reports."""
        return self._state.serial

    def set_serial(self, serial: str) -> None:
        """Report another serial number from now on (a swapped terminal)."""
        with self._state.lock:
            self._state.serial = serial
        log.info("serial_changed", serial=serial)

    @property
    def users(self) -> list[UserRecord]:
        """Enrolled users by uid."""
        with self._state.lock:
            return [self._state.users[uid] for uid in sorted(self._state.users)]

    @property
    def records(self) -> list[AttendanceRecord]:
        """The attendance log, oldest first as stored."""
        with self._state.lock:
            return list(self._state.records)

    @property
    def sessions(self) -> list[SessionInfo]:
        """Current client sessions."""
        return self._server.sessions()

    def add_user(
        self,
        user_id: str | int,
        name: str = "",
        card: int = 0,
        privilege: int = 0,
        password: str = "",
    ) -> UserRecord:
        """Enrol (or update) a user by badge number; raise ``ValueError`` when it cannot fit."""
        user_id = str(user_id)
        if self._numeric_ids() and not user_id.isdecimal():
            raise ValueError(f"this firmware variant stores numeric user ids only, not {user_id!r}")
        try:
            name.encode(self.profile.name_encoding)
        except UnicodeEncodeError:
            raise ValueError(
                f"name {name!r} has characters the terminal's code page "
                f"{self.profile.name_encoding} lacks; start it with another name_encoding"
            ) from None
        with self._state.lock:
            existing = self._state.user_by_id(user_id)
            uid = existing.uid if existing else self._state.next_uid()
            user = UserRecord(uid, user_id, name, privilege, password, card)
            if not self._state.put_user(user):
                raise ValueError(f"user table full ({self._state.user_capacity} users)")
        return user

    def generate(
        self,
        users: int = 0,
        records: int = 0,
        start: datetime | None = None,
        seed: int | None = None,
    ) -> None:
        """Enrol ``users`` staff and append ``records`` working-day punches from ``start``."""
        rng = random.Random(seed if seed is not None else self._rng.random())
        state = self._state
        with state.lock:
            if len(state.users) + users > state.user_capacity:
                raise ValueError(f"{users} more users exceed the capacity {state.user_capacity}")
            if len(state.records) + records > state.record_capacity:
                raise ValueError(
                    f"{records} more records exceed the capacity {state.record_capacity}"
                )
            for user in make_users(users, rng, first_uid=state.next_uid()):
                state.put_user(user)
            staff = [state.users[uid] for uid in sorted(state.users)]
            if records and not staff:
                raise ValueError("punches need users: generate(users=N, ...) or add_user() first")
            begin = start or default_start(state.now().date(), len(staff), records)
            for record in working_day_punches(staff, records, begin, rng):
                state.append(record)
        log.info("data_generated", users=users, records=records)

    def punch(
        self, user_id: str | int, state: int = 0, verify: int = 1, when: datetime | None = None
    ) -> AttendanceRecord | None:
        """Record a punch now (or at ``when``) and push it to registered clients.

        Returns None when the log is at capacity or the terminal is disabled (DISABLEDEVICE
        without ENABLEDEVICE): like a real one, it records nothing then.
        """
        user = self._state.user_by_id(str(user_id))
        if user is None:
            raise ValueError(f"user {user_id} is not enrolled on {self.serial}; add_user() first")
        if self._state.disabled:
            log.warning("terminal_disabled", user_id=user.user_id)  # a DISABLEDEVICE lingers
            return None
        record = AttendanceRecord(user.uid, user.user_id, when or self._state.now(), verify, state)
        if not self._state.append(record):
            log.warning("log_full", capacity=self._state.record_capacity, user_id=user.user_id)
            return None
        event = pack_event(
            LiveEvent(user.user_id, record.timestamp, verify, state), self.profile.event_size
        )
        self._server.push(p.Packet(p.CMD_REG_EVENT, p.EF_ATTLOG, 0, event))
        return record

    def clear_log(self) -> None:
        """Delete every attendance record."""
        self._state.clear_log()

    @property
    def disabled(self) -> bool:
        """Whether a client disabled the terminal (DISABLEDEVICE) and did not enable it again."""
        return self._state.disabled

    def intercept(self, command: int, wrap: Callable[[Handler], Handler]) -> Callable[[], None]:
        """Firmware behaviour around one command: ``wrap`` gets the usual answer and returns the
        one to use (e.g. a punch recorded while the count is read, as on a busy terminal).
        Returns what restores the usual answer."""
        return self._terminal.intercept(command, wrap)

    @property
    def clock(self) -> datetime:
        """The terminal's clock (naive local time)."""
        return self._state.now()

    def set_clock(self, when: datetime) -> None:
        """Set the terminal's clock."""
        self._state.set_clock(when)

    def jump_clock(self, to: datetime | timedelta) -> None:
        """Make the clock jump: to a time (e.g. a reset to 2000-01-01) or by an amount."""
        target = to if isinstance(to, datetime) else self._state.now() + to
        self._state.set_clock(target)
        log.info("clock_jumped", clock=target.isoformat())

    def save(self) -> None:
        """Write the state file now (it is also written every second when changed, and at stop)."""
        self._state.save()

    def _numeric_ids(self) -> bool:
        prof = self.profile
        return prof.user_size == 28 or prof.record_size == 16 or prof.event_size == 12
