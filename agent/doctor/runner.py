"""Run doctor jobs concurrently, each bounded by its own timeout.

Every job runs in a daemon thread and at most ``workers`` run at once. A job that overruns its
timeout is reported as failed and its slot is given to the next job; its thread is abandoned
(a daemon thread never holds up the exit). The checks bound their own network calls too, so an
abandoned thread ends on its own soon after.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace

import structlog

from agent.doctor.result import CheckResult, Job, Verdict, fail
from drivers.netaddr import WAKE

log = structlog.get_logger("punchgate.doctor")

_TICK = 0.01  # slack after a deadline, so a job is judged just after its timeout


class _Running:
    def __init__(self, job: Job, wake: threading.Event) -> None:
        self.job = job
        self.wake = wake  # shared: set by any job that finishes
        self.done = threading.Event()
        self.started = time.monotonic()
        self.results: list[CheckResult] = []


def run_jobs(
    jobs: Sequence[Job],
    *,
    workers: int = 8,
    on_done: Callable[[Job, list[CheckResult]], None] | None = None,
) -> list[CheckResult]:
    """Results of every job, in the order the jobs were given."""
    results: list[list[CheckResult]] = [[] for _ in jobs]
    pending = deque(enumerate(jobs))
    running: dict[int, _Running] = {}
    # Bounded: every running job ends or times out within its timeout, so the loop ends within
    # the sum of the timeouts plus one tick per job.
    deadline = time.monotonic() + sum(j.timeout for j in jobs) + _TICK * (len(jobs) + 1) + 1.0
    wake = threading.Event()
    while (pending or running) and time.monotonic() < deadline:
        while pending and len(running) < max(1, workers):
            index, job = pending.popleft()
            running[index] = _start(job, wake)
        now = time.monotonic()
        nearest = min(r.started + r.job.timeout for r in running.values())
        # In WAKE slices: a Ctrl-C landing just before a wait begins is only seen when the
        # wait returns (Python raises it between bytecodes).
        wake.wait(min(WAKE, max(0.0, min(nearest - now, deadline - now)) + _TICK))
        wake.clear()  # before looking, so a job finishing meanwhile wakes the next wait
        now = time.monotonic()
        for index, run in list(running.items()):
            if run.done.is_set():
                results[index] = _stamp(run.results, now - run.started)
            elif now - run.started > run.job.timeout:
                results[index] = [_timed_out(run.job, now - run.started)]
            else:
                continue
            del running[index]
            if on_done is not None:
                on_done(run.job, results[index])
    for index, job in list(pending) + [(i, r.job) for i, r in running.items()]:
        results[index] = [_timed_out(job, job.timeout)]
    return [r for group in results for r in group]


def _start(job: Job, wake: threading.Event) -> _Running:
    run = _Running(job, wake)

    def target() -> None:
        try:
            run.results = job.run()
        except Exception as exc:
            log.exception("doctor_check_crashed", check=job.name, target=job.target)
            run.results = [
                fail(
                    job.family,
                    job.target,
                    job.name,
                    f"the check itself crashed: {exc!r}",
                    "run 'punchgate --debug doctor' and report the traceback",
                )
            ]
        finally:
            run.done.set()
            run.wake.set()

    threading.Thread(target=target, name=f"doctor-{job.family}", daemon=True).start()
    return run


def _stamp(results: list[CheckResult], elapsed: float) -> list[CheckResult]:
    return [r if r.elapsed else replace(r, elapsed=elapsed) for r in results]


def _timed_out(job: Job, elapsed: float) -> CheckResult:
    return CheckResult(
        job.family,
        job.name,
        Verdict.FAIL,
        f"no answer within {job.timeout:g}s",
        job.next_step_on_timeout or "check the network path and that the target is powered on",
        job.target,
        elapsed,
    )
