"""What the receiver's stores raise."""

from __future__ import annotations

from config.errors import PunchgateError


class StoreError(PunchgateError):
    """The receiver's database cannot be used; the message says which and why."""

    exit_code = 5


class UnstorablePunches(StoreError):
    """The database works but refuses these punches' values: storing them again cannot help."""


# What the drivers raise, outside their own Error classes, for values valid in JSON that the
# database cannot hold: an integer beyond 64 bits (sqlite3), a lone surrogate (both drivers).
UNSTORABLE_VALUES = (OverflowError, UnicodeEncodeError)
