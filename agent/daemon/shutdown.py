"""The ordered shutdown, registered in one place: each step gets a share of one time budget.

A step that fails or overruns logs its own failure and the next step still runs: the outbox is
closed (and its WAL checkpointed) even when the broker is gone and a terminal hangs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("punchgate.shutdown")

Step = Callable[[float], str | None]
"""A step receives the seconds it may take; it returns None when done, else what is left undone."""


@dataclass(frozen=True)
class _Registered:
    name: str
    func: Step
    share: float  # fraction of the time left when the step starts


@dataclass(frozen=True)
class StepOutcome:
    """How one step ended, for the log and the tests."""

    name: str
    ok: bool
    seconds: float
    detail: str


class ShutdownSequence:
    """Steps run in registration order within ``timeout`` seconds in total."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._steps: list[_Registered] = []
        self._clock = clock

    def add(self, name: str, func: Step, share: float = 1.0) -> None:
        """Register a step; it may use ``share`` of whatever time is left when it starts."""
        if not 0 < share <= 1:
            raise ValueError("share is a fraction of the time left, in (0, 1]")
        self._steps.append(_Registered(name, func, share))

    def run(self, timeout: float) -> list[StepOutcome]:
        """Run every step, whatever the earlier ones did; never raises."""
        deadline = self._clock() + timeout
        outcomes = []
        for step in self._steps:
            started = self._clock()
            budget = max(0.0, deadline - started) * step.share
            try:
                result = step.func(budget)
            except Exception as exc:  # noqa: BLE001 - one failed step must not skip the rest
                outcome = StepOutcome(step.name, False, self._clock() - started, str(exc))
                log.error("shutdown_step_failed", step=step.name, error=str(exc) or repr(exc))
            else:
                ok = result is None
                outcome = StepOutcome(step.name, ok, self._clock() - started, result or "")
                if ok:
                    log.info(
                        "shutdown_step_done", step=step.name, seconds=round(outcome.seconds, 2)
                    )
                else:
                    log.warning(
                        "shutdown_step_incomplete",
                        step=step.name,
                        seconds=round(outcome.seconds, 2),
                        detail=result,
                    )
            outcomes.append(outcome)
        return outcomes
