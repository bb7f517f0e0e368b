"""Punch identity: content-derived ids for device punches, random ids for manual ones.

A device punch's id is a UUID-shaped (RFC 9562 version 8, "custom") string computed only from
its content: the first 48 bits are the terminal's recorded wall-clock time in milliseconds,
the remaining 74 free bits come from sha256 over the gateway id and ``Punch.identity_fields()``.
Reading the same record twice gives the same id, on any gateway restart or reinstall.

Why a time prefix rather than 122 bits of hash: ids are the key of a unique index. Random keys
scatter every batch over the whole index, so a 1000-punch commit rewrites ~1000 index pages
once a month of punches is pending; time-ordered keys land at the right edge of the index and
a commit touches a handful of pages. 74 bits of sha256 among punches recorded in the same
millisecond leave no practical room for collisions.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from drivers.base import Punch, Suspect

# Bump only with a migration that rewrites ids: the backend de-duplicates on these values.
_ID_SCHEME = "punchgate-id-v1"
_SEP = "\x1f"  # ASCII unit separator: cannot occur in serials, user ids or ISO times
_EPOCH = datetime(1970, 1, 1)
_MAX_MS = 2**48 - 1
_VARIANT = "89ab"


def punch_id(gateway_id: str, punch: Punch) -> str:
    """Stable id of a device punch: the same record read twice gets the same id."""
    return id_from_fields(gateway_id, punch, punch.identity_fields())


def id_from_fields(gateway_id: str, punch: Punch, fields: tuple[str, str, str, str]) -> str:
    """``punch_id`` when the caller already holds ``punch.identity_fields()`` (hot path)."""
    digest = hashlib.sha256(
        _SEP.join((_ID_SCHEME, gateway_id, *fields)).encode("utf-8")
    ).hexdigest()
    if punch.suspect and Suspect.TIME_INVALID in punch.suspect:
        prefix = digest[32:44]  # the recorded time means nothing: no ordering to keep
    else:
        ms = (punch.device_time - _EPOCH) // _MS
        prefix = f"{min(max(ms, 0), _MAX_MS):012x}"
    variant = _VARIANT[int(digest[3], 16) & 3]
    return f"{prefix[:8]}-{prefix[8:12]}-8{digest[:3]}-{variant}{digest[4:7]}-{digest[7:19]}"


def random_id() -> str:
    """Id of a manual punch or a void event: random, never derived from content."""
    return str(uuid.uuid4())


_MS = datetime(1970, 1, 1, 0, 0, 0, 1000) - _EPOCH
