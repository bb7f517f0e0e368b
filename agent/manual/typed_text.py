"""Rules for the text a technician types: employee id, operator, reason, time.

Each ``*_problem`` says why a value cannot be stored, or returns None when it can.
"""

from __future__ import annotations

import getpass
import os
import unicodedata
from datetime import datetime

from agent.manual.request import Problem

TIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")
_MAX_EMPLOYEE = 128  # the MQTT contract's limits
_MAX_OPERATOR = 200
_MAX_REASON = 2000


def default_operator(env: dict[str, str] | None = None) -> str:
    """Who is at the keyboard: ``$SUDO_USER`` when run through sudo, else the login user."""
    env = dict(os.environ) if env is None else env
    if env.get("SUDO_USER"):
        return env["SUDO_USER"]
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid:{os.getuid()}"


def operator_problem(operator: str) -> Problem | None:
    """Why an operator name cannot be stored, if it cannot."""
    if not operator.strip():
        return Problem("the operator is empty: give --by NAME")
    if len(operator) > _MAX_OPERATOR:
        return Problem(f"the operator name is longer than {_MAX_OPERATOR} characters")
    return text_problem("operator name", operator)


def reason_problem(reason: str, why: str = "the punch is entered by hand") -> Problem | None:
    """Why the reason of a manual punch or a void cannot be stored, if it cannot."""
    if not reason.strip():
        return Problem(f"the reason is empty: say why {why}")
    if len(reason.strip()) > _MAX_REASON:
        return Problem(f"the reason is longer than {_MAX_REASON} characters")
    return text_problem("reason", reason, lines=True)


def text_problem(what: str, text: str, *, lines: bool = False) -> Problem | None:
    """Why typed text cannot be stored and delivered: not UTF-8, or control characters.

    A terminal not set to UTF-8 hands Python its bytes as lone surrogates, which SQLite and
    every backend refuse; a NUL is refused by PostgreSQL backends, so the punch would stay
    unacknowledged forever. Line breaks and tabs are fine in a reason.
    """
    if any("\ud800" <= c <= "\udfff" for c in text):
        return Problem(
            f"the {what} {text!r} is not valid UTF-8 text: set the terminal to UTF-8 "
            "(e.g. LANG=C.UTF-8) and type it again"
        )
    allowed = "\t\n\r" if lines else ""
    bad = [c for c in text if unicodedata.category(c) == "Cc" and c not in allowed]
    if bad:
        return Problem(f"the {what} {text!r} contains a control character ({bad[0]!r})")
    return None


def employee_problem(employee: str) -> Problem | None:
    """Why an employee id (already stripped) cannot be stored, if it cannot.

    Terminals write their user ids in ASCII digits: ``１０４２`` (a full-width IME) or ``١٠٤٢``
    (an Arabic keyboard) stored as typed would belong to no employee and miss the duplicate check.
    """
    if not employee:
        return Problem("the employee is empty: give the employee's id on the terminal")
    if len(employee) > _MAX_EMPLOYEE:
        return Problem(f"the employee id is longer than {_MAX_EMPLOYEE} characters")
    problem = text_problem("employee id", employee)
    if problem is not None:
        return problem
    # Format characters (bidi marks from a right-to-left screen, zero-width spaces, a BOM) are
    # invisible: the id looks right and is stored as one that belongs to nobody.
    invisible = [c for c in employee if unicodedata.category(c) == "Cf"]
    if invisible:
        shown = "".join(c for c in employee if c not in invisible)
        return Problem(
            f"the employee id {employee!r} contains an invisible character "
            f"(U+{ord(invisible[0]):04X}): type it as on the terminal: {shown}"
        )
    plain = "".join(
        str(unicodedata.decimal(c)) if c.isdecimal() else c
        for c in unicodedata.normalize("NFKC", employee)
    )
    if plain != employee:
        return Problem(
            f"the employee id {employee!r} is not written as a terminal writes it: type it as "
            f"on the terminal: {plain}"
        )
    return None


def loose_employee(employee: str) -> str:
    """What two spellings of one employee id share: no spaces, case or leading zeros."""
    text = "".join(employee.split()).casefold()
    return (text.lstrip("0") or "0") if text.isdecimal() else text


def parse_local_time(text: str) -> datetime:
    """A naive wall-clock time from ``YYYY-MM-DD HH:MM[:SS]``; ``ValueError`` says the format."""
    value = text.strip()
    for fmt in TIME_FORMATS:
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            continue
    raise ValueError(
        f"cannot read the time {text!r}: write it as 'YYYY-MM-DD HH:MM' in the device's local "
        "time, e.g. '2026-11-22 08:03'"
    )
