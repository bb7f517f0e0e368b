"""The one error tree of punchgate, split by who must act.

It lives in ``config/`` because config is the lowest layer: drivers, buffer and agent all import
it, and it imports nothing of theirs. Third-party errors are wrapped where they enter
(``raise DeviceUnavailable(...) from exc``), so the CLI boundary only ever sees these.
"""

from __future__ import annotations


class PunchgateError(Exception):
    """Base of every expected failure; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(PunchgateError):
    """The configuration is wrong: a person must fix the file."""

    exit_code = 2

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class UsageError(PunchgateError):
    """A CLI argument or request is invalid (unknown device, time in the future, ...)."""

    exit_code = 2


class DeviceError(PunchgateError):
    """A terminal could not be used; subclasses say why."""

    exit_code = 3


class DeviceUnavailable(DeviceError):
    """The terminal cannot be reached right now (unreachable, refused, timeout): retry later."""


class DeviceAuthError(DeviceError):
    """The terminal refused our credentials (comm key): fix the config or the terminal."""


class DeviceIdentityError(DeviceError):
    """The terminal at this address is not the one we knew (serial number changed)."""


class ProtocolError(DeviceError):
    """The terminal sent bytes we cannot understand: skip or quarantine, do not guess."""


class BrokerError(PunchgateError):
    """The MQTT broker cannot be used (unreachable, TLS, authentication)."""

    exit_code = 4


class OutboxError(PunchgateError):
    """The outbox cannot guarantee durability (corrupt, disk full, newer schema): stop and act."""

    exit_code = 5


class DiskFullError(OutboxError):
    """The disk holding the outbox is full or below its reserve: free space, nothing was lost."""


class SchemaTooNewError(OutboxError):
    """The outbox was written by a newer punchgate: upgrade punchgate, do not downgrade."""


class CorruptOutboxError(OutboxError):
    """SQLite reported corruption in the outbox file."""


EXIT_CODES = {
    0: "success",
    1: "unexpected error (run again with --debug and report it)",
    2: "configuration or usage error: fix the file or the arguments",
    3: "device error: terminal unreachable, refused, or answered garbage",
    4: "broker error: MQTT broker unreachable, TLS or authentication failed",
    5: "outbox error: database corrupt, disk full or from a newer version",
    6: "doctor found at least one failing check",
    130: "interrupted (Ctrl-C)",
}
