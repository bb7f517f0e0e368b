"""Faults the simulated terminal can inject; attributes may be changed while it runs."""

from __future__ import annotations

import threading
from collections.abc import Collection
from typing import Any

from drivers.zk import protocol as p
from drivers.zk.records import RECORD_SIZES

SEGMENTATION_MODES = ("all", "frame", "random", "trickle")
CORRUPT_MODES = (None, "next", "all")
FAULT_NAMES = (
    "segmentation",
    "frame_latency",
    "drop_after_bytes",
    "silent",
    "refuse",
    "corrupt_checksum",
    "impossible_date_at",
    "single_session",
    "unknown_commands",
    "record_size_override",
)
RECORD_SIZE_OVERRIDE_MAX = 255  # bytes; real layouts are 8 to 49 bytes


class Faults:
    """Live-tunable fault switches, read by the server on every reply.

    - ``segmentation``: how a multi-frame TCP reply is written: ``all`` frames in one write,
      one ``frame`` per write, ``random`` small splits, or ``trickle`` (one byte per write).
    - ``frame_latency``: seconds between the packets of one reply (each packet then gets its
      own write).
    - ``drop_after_bytes``: close the connection (TCP) or stop answering the session (UDP) once
      this many bytes of one buffered read (1503 to the last 1504) were sent.
    - ``silent``: accept connections and datagrams, never answer.
    - ``refuse``: reset every new TCP connection at once; ignore UDP.
    - ``corrupt_checksum``: ``"next"`` corrupts the checksum of the next packet sent,
      ``"all"`` of every packet, ``None`` of none.
    - ``impossible_date_at``: index in the log of a record whose date is sent as 31 February.
    - ``single_session``: while one client holds a session, others are closed (TCP) or
      ignored (UDP), as on many real terminals.
    - ``unknown_commands``: command codes answered ACK_UNKNOWN, as by a firmware that does not
      implement them (e.g. ``{CMD_REG_EVENT}``: no live events); CONNECT cannot be one.
    - ``record_size_override``: serve every attendance record cut or zero-padded to this many
      bytes (e.g. 49, seen in the field), a size no known layout has, so a reader that guesses
      the layout misparses and a careful one refuses; ``None`` serves the profile's layout.
    """

    def __init__(
        self,
        *,
        segmentation: str = "all",
        frame_latency: float = 0.0,
        drop_after_bytes: int | None = None,
        silent: bool = False,
        refuse: bool = False,
        corrupt_checksum: str | None = None,
        impossible_date_at: int | None = None,
        single_session: bool = False,
        unknown_commands: Collection[int] = frozenset(),
        record_size_override: int | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self.segmentation = segmentation
        self.frame_latency = frame_latency
        self.drop_after_bytes = drop_after_bytes
        self.silent = silent
        self.refuse = refuse
        self.corrupt_checksum = corrupt_checksum
        self.impossible_date_at = impossible_date_at
        self.single_session = single_session
        self.unknown_commands: frozenset[int] = _command_codes(unknown_commands)
        self.record_size_override = record_size_override

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "segmentation" and value not in SEGMENTATION_MODES:
            raise ValueError(f"segmentation must be one of {SEGMENTATION_MODES}, not {value!r}")
        if name == "corrupt_checksum" and value not in CORRUPT_MODES:
            raise ValueError(f"corrupt_checksum must be one of {CORRUPT_MODES}, not {value!r}")
        if name == "frame_latency" and not 0 <= value <= 60:
            raise ValueError(f"frame_latency must be within 0..60 seconds, not {value!r}")
        if name in ("drop_after_bytes", "impossible_date_at") and value is not None and value < 0:
            raise ValueError(f"{name} must be a non-negative integer or None, not {value!r}")
        if name == "unknown_commands":
            value = _command_codes(value)
        if name == "record_size_override":
            _check_record_size(value)
        object.__setattr__(self, name, value)

    def take_corruption(self) -> bool:
        """Whether the packet about to be sent gets a bad checksum; consumes a ``"next"``."""
        with self._lock:
            mode = self.corrupt_checksum
            if mode == "next":
                object.__setattr__(self, "corrupt_checksum", None)
            return mode is not None

    def describe(self) -> dict[str, object]:
        """The active faults (for logs and the CLI banner)."""
        defaults = Faults()
        active = {
            name: getattr(self, name)
            for name in FAULT_NAMES
            if getattr(self, name) != getattr(defaults, name)
        }
        if "unknown_commands" in active:  # sorted, so the banner and logs read the same each run
            active["unknown_commands"] = sorted(self.unknown_commands)
        return active


def _command_codes(value: object) -> frozenset[int]:
    """The codes as a frozenset (shared by threads, so never mutated in place)."""
    if not isinstance(value, (set, frozenset, list, tuple)):
        raise ValueError(f"unknown_commands must be a set of command codes, not {value!r}")
    for code in value:
        if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= p.USHRT_MAX:
            raise ValueError(f"unknown_commands holds {code!r}, which is no u16 command code")
        if code == p.CMD_CONNECT:
            raise ValueError(
                "unknown_commands cannot hold CONNECT (1000): no client could talk to the "
                "terminal; use refuse or silent for that"
            )
    return frozenset(value)


def _check_record_size(value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"record_size_override must be an integer or None, not {value!r}")
    if value in RECORD_SIZES:
        raise ValueError(
            f"record_size_override must be a size no layout has, not {value} (one of "
            f"{RECORD_SIZES}): to serve a real layout, start the simulator with record_size"
        )
    if not 1 <= value <= RECORD_SIZE_OVERRIDE_MAX:
        raise ValueError(
            f"record_size_override must be within 1..{RECORD_SIZE_OVERRIDE_MAX} bytes, not {value}"
        )
