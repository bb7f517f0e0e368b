"""The plain settings a ZK driver is built from (the agent maps its config onto them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ZkOptions:
    """Where the terminal is and how to treat it; plain values, no config objects."""

    host: str
    port: int = 4370
    transport: str = "tcp"  # "tcp" or "udp"
    comm_key: int = 0
    timeout: float = 10.0  # seconds, per operation (and per packet of a long read)
    live: bool = False
    clock_sync: bool = False
    max_drift: float = 60.0  # seconds
    clear_after_read: bool = False
    clear_threshold: float = 0.9  # fraction of record capacity
    encoding: str = "utf-8"  # user names
    reconnect_min: float = 0.5  # live capture: first delay after a lost connection
    reconnect_max: float = 30.0  # ... growing to at most this

    def __post_init__(self) -> None:
        if self.transport not in ("tcp", "udp"):
            raise ValueError(f"transport must be 'tcp' or 'udp', not {self.transport!r}")
        if self.timeout <= 0 or self.reconnect_min <= 0 or self.reconnect_max < self.reconnect_min:
            raise ValueError("timeout and reconnect delays must be positive, min <= max")
        if not 0 < self.clear_threshold <= 1:
            raise ValueError("clear_threshold is a fraction of capacity in (0, 1]")
        "".encode(self.encoding)  # LookupError now rather than at the first user
