"""Live capture: REG_EVENT, acknowledged events, reconnect with backoff, back-fill on reconnect.

pyzk's ``live_capture()`` never reconnects and fetches every user first; here a lost session is
retried with a jittered exponential backoff, and every reconnect is followed by an incremental
read from the last watermark, so punches made while we were away are yielded too (their ids are
content-derived: one also seen live is stored once).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import structlog

from config.errors import DeviceUnavailable, ProtocolError
from drivers.backoff import Backoff
from drivers.base import Punch
from drivers.zk import protocol as p

if TYPE_CHECKING:
    from drivers.zk.driver import ZkDriver

log = structlog.get_logger("drivers.zk")

KEEPALIVE = 30.0  # seconds of silence before we prove the session is alive with GET_TIME


class LiveState:
    """What live capture remembers between slices: the backoff and when the session was lost."""

    def __init__(self, first: float, cap: float) -> None:
        self.backoff = Backoff(first, cap)
        self.lost_at: float | None = None
        # When the session last proved alive (a packet, a registration, a keepalive answer):
        # silence is measured across slices, which are often shorter than the keepalive.
        self.heard_at = 0.0


def capture(driver: ZkDriver, stop_after: float) -> Iterator[Punch]:
    """Yield live punches (and back-filled ones after a reconnect) for ``stop_after`` seconds.

    The registration outlives one call: the agent calls this in short slices, and events that
    arrive between slices wait on the socket (or in the connection's queue). Identity and
    authentication errors are raised (a person must act); unavailability and garbage on the
    wire are retried with backoff until the time is up.
    """
    deadline = time.monotonic() + stop_after
    state = driver.live_state
    keepalive = min(KEEPALIVE, driver.options.timeout)
    # A new registration needs a back-fill, except when nothing was read yet: then the caller's
    # first poll reads the log and a full read here would only duplicate it.
    backfill = driver.last_watermark is not None
    while time.monotonic() < deadline:
        try:
            if not driver.events_registered:
                driver.ensure_open()
                driver.register_events(True)
                state.heard_at = time.monotonic()
                state.backoff.reset()
                if state.lost_at is not None:
                    log.info(
                        "zk_live_recovered",
                        device=driver.device_id,
                        after=round(time.monotonic() - state.lost_at, 1),
                    )
                    state.lost_at = None
                if backfill:
                    # Events arriving meanwhile are queued by the connection, not lost.
                    yield from driver.backfill()
            backfill = True
            wait_until = min(deadline, state.heard_at + keepalive)
            packet = driver.conn.next_packet(wait_until)
            if packet is None:
                if time.monotonic() >= state.heard_at + keepalive:
                    driver.keepalive()
                    state.heard_at = time.monotonic()
                continue
            state.heard_at = time.monotonic()
            if packet.command == p.CMD_REG_EVENT:
                yield from driver.event_punches(packet)
        except (DeviceUnavailable, ProtocolError) as exc:
            driver.conn.close()
            if state.lost_at is None:
                state.lost_at = time.monotonic()
                log.warning("zk_live_lost", device=driver.device_id, reason=str(exc))
            delay = min(state.backoff.next_delay(), deadline - time.monotonic())
            if delay > 0:
                time.sleep(delay)  # the reconnect backoff itself, bounded by the deadline
