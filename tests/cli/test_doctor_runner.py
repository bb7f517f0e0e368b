"""The doctor's job runner: bounded concurrency, a timeout per job, crashes reported."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from agent.doctor.result import CheckResult, Job, Verdict, ok
from agent.doctor.runner import run_jobs


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Lets hung jobs end after the test, so no thread outlives it."""
    event = threading.Event()
    yield event
    event.set()


def test_a_hung_job_is_failed_after_its_own_timeout_and_others_still_finish(
    release: threading.Event,
) -> None:
    def hang() -> list[CheckResult]:
        release.wait(60)
        return [ok("devices", "stuck", "reachable", "never reported")]

    jobs = [
        Job("devices", "stuck", "reachable", 0.3, hang, next_step_on_timeout="power it on"),
        Job("devices", "fine", "reachable", 5, lambda: [ok("devices", "fine", "reachable", "up")]),
    ]
    started = time.monotonic()
    results = run_jobs(jobs, workers=2)
    took = time.monotonic() - started
    assert [(r.target, r.verdict) for r in results] == [
        ("stuck", Verdict.FAIL),
        ("fine", Verdict.OK),
    ]
    assert results[0].detail == "no answer within 0.3s" and results[0].next_step == "power it on"
    assert took < 5, f"the runner waited {took:.1f}s for a job with a 0.3 s timeout"


def test_concurrency_is_bounded_by_workers() -> None:
    lock = threading.Lock()
    running, peak = 0, 0
    gate = threading.Barrier(3, timeout=5)

    def job() -> list[CheckResult]:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        gate.wait()  # three at a time must meet here, or the barrier times out
        with lock:
            running -= 1
        return [ok("devices", "x", "reachable", "up")]

    jobs = [Job("devices", f"d{i}", "reachable", 10, job) for i in range(6)]
    results = run_jobs(jobs, workers=3)
    assert [r.verdict for r in results] == [Verdict.OK] * 6
    assert peak == 3


def test_a_crashing_check_becomes_a_failure_that_names_the_crash() -> None:
    def crash() -> list[CheckResult]:
        raise RuntimeError("bug in a check")

    (result,) = run_jobs([Job("broker", "mqtt://x", "broker", 5, crash)])
    assert result.verdict == Verdict.FAIL
    assert "bug in a check" in result.detail and "--debug" in result.next_step
