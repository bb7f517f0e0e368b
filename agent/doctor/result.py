"""What one doctor check reports: a verdict, what was seen, and the concrete next step."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Verdict(enum.StrEnum):
    """How a check came out; ``fail`` makes ``punchgate doctor`` exit non-zero."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of the doctor's report."""

    family: str  # config | outbox | broker | devices | systemd
    name: str  # what was checked, e.g. "TLS handshake"
    verdict: Verdict
    detail: str  # what was seen, with figures
    next_step: str = ""  # what the technician should do; empty when nothing is needed
    target: str = ""  # the device id, broker URL or file the check is about
    elapsed: float = 0.0  # seconds the check took

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "family": self.family,
            "target": self.target,
            "check": self.name,
            "verdict": self.verdict.value,
            "detail": self.detail,
            "next_step": self.next_step,
            "elapsed_s": round(self.elapsed, 3),
        }


@dataclass(frozen=True, slots=True)
class Job:
    """A unit of doctor work: runs within ``timeout`` seconds and returns one or more results.

    Steps that depend on each other (DNS -> TCP -> TLS -> MQTT) form one job, so a failed step
    can mark the later ones ``skip`` instead of failing them again.
    """

    family: str
    target: str
    name: str  # used for the single result reported when the job overruns its timeout
    timeout: float
    run: Callable[[], list[CheckResult]]
    next_step_on_timeout: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def ok(family: str, target: str, name: str, detail: str) -> CheckResult:
    """A passing check."""
    return CheckResult(family, name, Verdict.OK, detail, "", target)


def warn(family: str, target: str, name: str, detail: str, next_step: str) -> CheckResult:
    """Works, but something needs attention soon."""
    return CheckResult(family, name, Verdict.WARN, detail, next_step, target)


def fail(family: str, target: str, name: str, detail: str, next_step: str) -> CheckResult:
    """Broken: the next step says what to do."""
    return CheckResult(family, name, Verdict.FAIL, detail, next_step, target)


def skip(family: str, target: str, name: str, detail: str) -> CheckResult:
    """Not run (not applicable, or an earlier step failed)."""
    return CheckResult(family, name, Verdict.SKIP, detail, "", target)
