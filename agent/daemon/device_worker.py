"""One thread per terminal: poll its log, capture live events, store punches, survive anything.

A worker only ever talks to its own driver and to the outbox. Every failure is caught here, turned
into a state ("unreachable", "failed") that is logged once when it starts and once when it ends
(``WorkerStatus``), and retried with exponential backoff and full jitter; nothing a terminal does
can reach another worker. Punches are stored with the watermark that covers them in one
transaction before anything irreversible (clearing the terminal log) happens. Jobs submitted from
other threads run between the loop's steps (``WorkerJobs``).
"""

from __future__ import annotations

import inspect
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from agent.daemon.device_state import (
    DeviceConfig,
    DeviceSnapshot,
    DeviceState,
    is_live,
    now_iso,
)
from agent.daemon.outbox_sink import STORE_CHUNK, PunchSink, store_in_chunks
from agent.daemon.serial_claims import SerialClaims
from agent.daemon.unsaved import MAX_UNSAVED, UnsavedPunches
from agent.daemon.worker_jobs import Job, WorkerJobs
from agent.daemon.worker_status import WorkerStatus
from config.errors import (
    DeviceIdentityError,
    OutboxError,
)
from drivers.backoff import Backoff
from drivers.base import Driver, Punch

log = structlog.get_logger("punchgate.daemon")

LIVE_CHUNK_S = 2.0  # live capture runs in slices this long so stop and jobs are noticed quickly
RETRY_CAP_S = 300.0  # the slowest retry of an unreachable terminal
WORK_SLACK_S = 60.0  # added to every heartbeat bound: a worker past it is hung, not slow


class DeviceWorker(WorkerStatus, WorkerJobs):
    """Runs one terminal in its own thread until ``stop()``."""

    def __init__(
        self,
        device: DeviceConfig,
        driver_factory: Callable[[], Driver],
        sink: PunchSink,
        tz: ZoneInfo,
        *,
        on_change: Callable[[DeviceSnapshot], None] | None = None,
        backoff: Backoff | None = None,
        live_chunk: float = LIVE_CHUNK_S,
        slack: float = WORK_SLACK_S,
        claims: SerialClaims | None = None,
        store_chunk: int = STORE_CHUNK,
    ) -> None:
        self.device = device
        self._store_chunk = max(1, store_chunk)
        self.device_id = device.id
        self._factory = driver_factory
        self._sink = sink
        self.tz = tz
        self._on_change = on_change
        self._claims = claims
        self._live = is_live(device)
        # A serial line has no memory: what the outbox refuses is kept here, and the port stays
        # open meanwhile (a closed port discards what the clock sends).
        self._memoryless = device.kind == "serial"
        self._unsaved = UnsavedPunches()
        self._live_chunk = max(0.05, min(live_chunk, device.poll_interval))
        self._backoff = backoff or Backoff(
            minimum=min(1.0, device.poll_interval),
            maximum=max(device.poll_interval, min(RETRY_CAP_S, 10 * device.poll_interval)),
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._driver: Driver | None = None  # built once: it keeps state across reconnects
        self._connected = False
        self._thread: threading.Thread | None = None
        self._snapshot = DeviceSnapshot(
            device_id=device.id,
            kind=device.kind,
            name=device.name,
            state=DeviceState.STARTING.value,
            since=now_iso(),
        )
        self._trouble_since: float | None = None  # monotonic start of the current outage
        self._slack = slack
        self._deadline = time.monotonic() + slack + device.timeout * 5
        self._log = log.bind(device=device.id)

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> DeviceWorker:
        """Start the worker's thread; returns the worker."""
        self._thread = threading.Thread(
            target=self._run, name=f"device-{self.device_id}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the worker to finish its current step and exit (returns at once)."""
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the thread; True when it has exited."""
        if self._thread is None:
            return True
        self._thread.join(max(0.0, timeout))
        return not self._thread.is_alive()

    def abandon(self) -> None:
        """Close the driver from outside to break a blocking read (shutdown past its bound)."""
        driver = self._driver
        if driver is not None and self._connected:
            try:
                driver.close()
            except Exception as exc:  # noqa: BLE001 - close() must never raise; log and go on
                self._log.warning("device_close_failed", error=str(exc))

    @property
    def alive(self) -> bool:
        """The worker's thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def healthy(self, now: float | None = None) -> bool:
        """The thread runs and came back within the bound of its current step (not hung)."""
        now = time.monotonic() if now is None else now
        return self.alive and now <= self._deadline

    # -- the loop -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._cycle()
        finally:
            self._close_driver()
            if self._claims is not None:
                self._claims.release(self.device_id)
            self._fail_pending_jobs()
            self._set(state=DeviceState.STOPPED)

    def _cycle(self) -> None:
        try:
            # A bound per step, renewed between them: a slow terminal answering each of a
            # poll's dozen requests within its timeout took longer than 5 x timeout + slack
            # in all, counted as hung, and systemd restarted the whole daemon for it.
            self._beat(self.device.timeout * 5)
            driver = self._connect()
            self._beat(self.device.timeout * 5)
            self._run_jobs(driver)
            self._poll(driver)
            self._succeeded()
            if self._live:
                self._capture(driver, self.device.poll_interval)
            else:
                self._close_driver()  # terminals accept few sessions: do not hold one while idle
                self._idle(self.device.poll_interval)
        except Exception as exc:  # noqa: BLE001 - a worker survives everything; the loop retries
            if not (self._memoryless and isinstance(exc, OutboxError)):
                self._close_driver()
            self._failed(exc)
            self._idle(self._backoff.next_delay(), jobs=False)

    def _connect(self) -> Driver:
        if self._driver is None:
            self._driver = self._factory()
        driver = self._driver
        if self._connected:
            return driver
        expected = self._sink.device_serial(self.device_id)
        if expected and "expected_serial" in inspect.signature(driver.open).parameters:
            # The terminal must still be the one whose punches the outbox holds.
            driver.open(expected_serial=expected)  # type: ignore[call-arg]
        else:
            driver.open()
        self._connected = True
        return driver

    def _close_driver(self) -> None:
        if self._driver is None or not self._connected:
            return
        self._connected = False
        try:
            self._driver.close()
        except Exception as exc:  # noqa: BLE001 - close() must never raise; log and go on
            self._log.warning("device_close_failed", error=str(exc))

    def _poll(self, driver: Driver) -> None:
        info = driver.info()
        self._beat(self.device.timeout * 5)
        owner = None if self._claims is None else self._claims.claim(self.device_id, info.serial)
        if owner is not None:
            raise DeviceIdentityError(
                f"{self.device_id}: the terminal at its address reports serial {info.serial}, "
                f"which device {owner} reads: two config entries point at one terminal (or two "
                f"terminals report one serial); its punches are stored under {owner} only; "
                f"correct the host/port of {self.device_id} or of {owner}, then reload"
            )
        self._observe(info)
        watermark = self._sink.watermark(self.device_id)
        punches, new_watermark = self._read_new(driver, watermark)
        self._store(punches, watermark=new_watermark, serial=info.serial)
        self._clear_if_due(driver, new_watermark)

    def _read_new(
        self, driver: Driver, watermark: dict[str, Any] | None
    ) -> tuple[list[Punch], dict[str, Any]]:
        """``driver.read_new``; every chunk received renews the heartbeat where it reports them.

        A big log over a slow link takes longer than any fixed bound: read as one step, it
        passed 5 x timeout + slack, the worker counted as hung, WATCHDOG=1 was withheld and
        systemd restarted the whole daemon, which then began the same read again.
        """
        read = driver.read_new
        if "progress" not in inspect.signature(read).parameters:
            return read(watermark)
        bound = self.device.timeout * 5
        return read(watermark, progress=lambda _done, _total: self._beat(bound))  # type: ignore[call-arg]

    def _capture(self, driver: Driver, seconds: float) -> None:
        """Live events for ``seconds``, in slices so that stop and jobs are seen promptly."""
        end = time.monotonic() + seconds
        self._store_unsaved()
        while not self._stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            chunk = min(self._live_chunk, left)
            self._beat(chunk + self.device.timeout)
            for punch in driver.live(stop_after=chunk):
                self._unsaved.add(punch)
                self._store_unsaved()  # one punch at a time: live means now
                if self._stop.is_set():
                    break
            self._reflect_link(driver)
            self._run_jobs(driver)

    def _store_unsaved(self) -> None:
        """Store the punches read but not stored yet; they stay kept if the outbox refuses."""
        dropped = self._unsaved.take_dropped()
        if dropped:
            self._log.error(
                "unsaved_punches_dropped",
                dropped=dropped,
                kept=len(self._unsaved),
                action=f"the outbox refused punches for longer than {MAX_UNSAVED} punches "
                "take: the oldest were lost; free space in the state directory",
            )
        punches = self._unsaved.pending()
        if punches:
            self._store(punches)
            self._unsaved.stored(len(punches))

    def _store(
        self,
        punches: Sequence[Punch],
        *,
        watermark: dict[str, Any] | None = None,
        serial: str | None = None,
    ) -> None:
        if not punches and watermark is None and serial is None:
            return
        inserted, duplicates = store_in_chunks(
            self._sink,
            punches,
            self._store_chunk,
            device_id=self.device_id,
            watermark=watermark,
            serial=serial,
            progress=lambda: self._beat(self.device.timeout * 5),
        )
        if punches:
            with self._lock:
                self._snapshot = replace(
                    self._snapshot,
                    stored=self._snapshot.stored + inserted,
                    duplicates=self._snapshot.duplicates + duplicates,
                    last_seen=now_iso(),
                )
        if inserted:
            self._log.debug("punches_stored", inserted=inserted, duplicates=duplicates)

    def _clear_if_due(self, driver: Driver, watermark: dict[str, Any]) -> None:
        if not getattr(self.device, "clear_after_read", False):
            return
        clear = getattr(driver, "clear_log_if_due", None)
        count = watermark.get("count")
        if clear is not None and isinstance(count, int):
            # This watermark was just stored, in the transaction of the last chunk of the
            # punches it covers (the earlier chunks were committed before it).
            clear(count)

    # -- waiting ------------------------------------------------------------------------------

    def _idle(self, seconds: float, *, jobs: bool = True) -> None:
        """Wait ``seconds`` or until stopped; a submitted job ends the wait early."""
        end = time.monotonic() + seconds
        while not self._stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            self._beat(left)
            self._wake.wait(left)
            self._wake.clear()
            if jobs and not self._jobs.empty():
                return
