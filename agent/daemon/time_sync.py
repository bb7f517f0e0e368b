"""The ``time-sync`` command: set terminal clocks to the gateway's, on each device's own thread."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

from agent.daemon.device_state import set_clock
from agent.daemon.device_worker import LIVE_CHUNK_S, DeviceWorker
from agent.mqtt.commands import CommandFailed
from drivers.base import Driver

if TYPE_CHECKING:
    from agent.daemon.device_pool import DevicePool

MAX_WAIT_S = 30.0  # the longest a time-sync command waits for the terminals


class TimeSync:
    """Command handler: ``{"device_id": "lobby-1"}`` or ``{}`` for every running device.

    ``"force": true`` also sets a terminal more than an hour (plus ``max_drift``) off.
    """

    def __init__(self, pool: DevicePool, *, max_wait: float = MAX_WAIT_S) -> None:
        self._pool = pool
        self._max_wait = max_wait

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        target = request.get("device_id")
        if target is not None:
            worker = self._pool.get(target)
            if worker is None:
                known = ", ".join(self._pool.ids) or "none"
                raise CommandFailed(f"unknown device {target!r}; running devices: {known}")
            workers = [worker]
        else:
            workers = self._pool.workers()
        # Every job is queued before any is waited for: the devices set their clocks in
        # parallel, and one that hangs costs its own bound once, not one bound per device.
        force = request.get("force") is True
        started = time.monotonic()
        pending = [(w, w.submit(self._job(w, force))) for w in workers]
        results = {w.device_id: self._wait(w, future, started) for w, future in pending}
        if target is not None and not results[target]["ok"]:
            raise CommandFailed(f"{target}: {results[target]['error']}")
        return {"devices": results}

    @staticmethod
    def _job(worker: DeviceWorker, force: bool) -> Callable[[Driver], dict[str, Any]]:
        # Without force, as much as clock_sync corrects on its own (an hour and max_drift).
        limit = None if force else float(getattr(worker.device, "max_drift", 0.0))
        tz = worker.tz
        return lambda driver: set_clock(driver, tz, max_drift=limit)

    def _wait(self, worker: DeviceWorker, future: Future[Any], started: float) -> dict[str, Any]:
        # The worker may be mid-poll or mid-slice of live capture before it picks the job up.
        # Capped: commands run one at a time, and a slow link's timeout (up to 300 s) would
        # hold every command behind this one for a quarter of an hour.
        wait = min(worker.device.timeout * 3 + LIVE_CHUNK_S, self._max_wait)
        try:
            left = max(0.0, started + wait - time.monotonic())
            result: dict[str, Any] = future.result(timeout=left)
        except FutureTimeout:
            return {
                "ok": False,
                "error": f"the device did not answer within {wait:g}s; its clock is set when "
                "it answers (see its status), or send time-sync again",
            }
        except Exception as exc:  # noqa: BLE001 - each device's outcome is reported, not raised
            return {"ok": False, "error": str(exc) or type(exc).__name__}
        return result
