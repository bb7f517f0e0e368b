"""What a manual punch request is, and what checking it says: requests, problems, results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from config.settings import SerialDeviceSettings, ZkDeviceSettings
from drivers.base import Punch, PunchState

DeviceConfig = ZkDeviceSettings | SerialDeviceSettings

STATES = tuple(s.value for s in PunchState)


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
