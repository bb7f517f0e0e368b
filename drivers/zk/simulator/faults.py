"""Faults the simulated terminal can inject; attributes may be changed while it runs."""

from __future__ import annotations

import threading
from typing import Any

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
)


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

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "segmentation" and value not in SEGMENTATION_MODES:
            raise ValueError(f"segmentation must be one of {SEGMENTATION_MODES}, not {value!r}")
        if name == "corrupt_checksum" and value not in CORRUPT_MODES:
            raise ValueError(f"corrupt_checksum must be one of {CORRUPT_MODES}, not {value!r}")
        if name == "frame_latency" and not 0 <= value <= 60:
            raise ValueError(f"frame_latency must be within 0..60 seconds, not {value!r}")
        if name in ("drop_after_bytes", "impossible_date_at") and value is not None and value < 0:
            raise ValueError(f"{name} must be a non-negative integer or None, not {value!r}")
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
        return {
            name: getattr(self, name)
            for name in FAULT_NAMES
            if getattr(self, name) != getattr(defaults, name)
        }
