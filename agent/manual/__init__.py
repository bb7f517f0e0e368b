"""Manual correction punches: turn what a technician typed into a ``Punch``, or say what is wrong.

Rules (``[manual]`` in the config): the device must be configured; the time is read in the
device's timezone and may be neither in the future nor older than ``max_age``. Three rules can
be overridden with ``--force``, because a person may know better: a punch of the same employee
within ``duplicate_window`` already exists; the device is online right now (corrections are for
terminals that were offline; an online terminal most likely has the punch itself); the outbox
never saw the employee id but has a look-alike (``7`` for ``007``, ``AB12`` for ``ab12``).

Modules: ``request`` (requests, problems, results), ``typed_text`` (rules for what is typed),
``validator`` (``ManualValidator``), ``online`` (is a device online right now).
"""

from agent.manual.online import Online, OnlineProbe, make_online_probe
from agent.manual.request import (
    STATES,
    Checked,
    DeviceConfig,
    ManualRequest,
    Problem,
    PunchLookup,
)
from agent.manual.typed_text import (
    TIME_FORMATS,
    default_operator,
    employee_problem,
    loose_employee,
    operator_problem,
    parse_local_time,
    reason_problem,
    text_problem,
)
from agent.manual.validator import ManualValidator

__all__ = [
    "STATES",
    "TIME_FORMATS",
    "Checked",
    "DeviceConfig",
    "ManualRequest",
    "ManualValidator",
    "Online",
    "OnlineProbe",
    "Problem",
    "PunchLookup",
    "default_operator",
    "employee_problem",
    "loose_employee",
    "make_online_probe",
    "operator_problem",
    "parse_local_time",
    "reason_problem",
    "text_problem",
]
