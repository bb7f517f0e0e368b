"""Jobs run on a device worker's thread (the time-sync command's), as one mixin.

A job is ``job(driver)`` with the terminal connected, run between two steps of the worker's
loop, so that it never shares the terminal's one session with a poll. Its result or error goes
to the ``Future`` that ``submit`` returned; jobs still queued when the worker stops fail.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from config.errors import DeviceError
from drivers.base import Driver

Job = tuple[Callable[[Driver], Any], Future[Any]]


class WorkerJobs:
    """Mixed into ``DeviceWorker``, which provides the attributes declared here."""

    device_id: str
    _stop: threading.Event
    _wake: threading.Event
    _jobs: queue.SimpleQueue[Job]

    def submit(self, job: Callable[[Driver], Any]) -> Future[Any]:
        """Run ``job(driver)`` on this worker's thread with the terminal connected."""
        future: Future[Any] = Future()
        if self._stop.is_set():
            future.set_exception(DeviceError(f"device {self.device_id} is stopping"))
            return future
        self._jobs.put((job, future))
        self._wake.set()
        return future

    def _run_jobs(self, driver: Driver) -> None:
        while True:
            try:
                job, future = self._jobs.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job(driver))
            except BaseException as exc:
                future.set_exception(exc)
                if isinstance(exc, DeviceError):
                    raise  # the connection is suspect: reconnect through the normal path

    def _fail_pending_jobs(self) -> None:
        while True:
            try:
                _job, future = self._jobs.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(DeviceError(f"device {self.device_id} stopped"))
