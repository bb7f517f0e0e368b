"""Live capture on a session that went half-open: a NAT or firewall forgot the idle flow (or
the terminal rebooted and its reset never reached us), so the socket still looks connected
and simply never delivers another event."""

from __future__ import annotations

import time

from drivers.zk import ZkDriver, ZkOptions
from drivers.zk.simulator import ZkSimulator
from tests.drivers.zk.driver_support import TZ, simulator
from tests.silent.peers import Relay


def test_live_capture_in_short_slices_notices_a_session_that_went_silent() -> None:
    """The agent calls live() in slices of 2 s; the keepalive waited for a silence of
    min(30 s, timeout) within one call, so with slices shorter than that it was never sent:
    the terminal stayed "online" and its events were not seen until the next poll, which a
    live terminal may have set an hour apart."""
    sim: ZkSimulator
    with simulator(users=2, records=3) as sim:
        with Relay(sim.port) as link:
            options = ZkOptions(host="127.0.0.1", port=link.port, timeout=1.0, live=True)
            driver = ZkDriver("lobby-1", options, TZ)
            driver.open()
            try:
                assert list(driver.live(stop_after=0.3)) == []
                assert driver.events_registered
                link.freeze()  # no reset, no FIN: the flow is simply gone
                began = time.monotonic()
                slices = 0
                while driver.live_state.lost_at is None and time.monotonic() - began < 8:
                    list(driver.live(stop_after=0.3))  # as the agent does, slice after slice
                    slices += 1
                lost_after = time.monotonic() - began
                assert driver.live_state.lost_at is not None, (
                    f"still 'connected' after {slices} slices and {lost_after:.1f}s of silence"
                )
                # Noticed within the keepalive (the timeout, 1 s) plus the probe's own timeout.
                assert lost_after < 1.0 + 1.0 + 1.0
            finally:
                driver.conn.close()


def test_closing_a_session_whose_terminal_stopped_answering_does_not_raise() -> None:
    """close() says goodbye (EXIT) with a short deadline; a terminal that no longer answers
    made it raise DeviceUnavailable ("did not answer EXIT"), although it promises never to:
    ``punchgate devices pull`` then exited 3 after it had stored the punches."""
    with simulator(users=2, records=3) as sim:
        with Relay(sim.port) as link:
            options = ZkOptions(host="127.0.0.1", port=link.port, timeout=1.0)
            driver = ZkDriver("lobby-1", options, TZ)
            driver.open()
            link.freeze()
            began = time.monotonic()
            driver.close()
            assert time.monotonic() - began < 1.0 + 0.5  # the goodbye waits at most 1 s
            assert not driver.conn.connected
