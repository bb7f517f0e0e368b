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
import importlib
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from drivers.base import Punch, Suspect

# Bump only with a migration that rewrites ids: the backend de-duplicates on these values.
_ID_SCHEME = "punchgate-id-v1"
_SEP = "\x1f"  # ASCII unit separator: cannot occur in serials, user ids or ISO times
_EPOCH = datetime(1970, 1, 1)
# RFC 9562 variant bits "10" with two hash bits: the 4th hex digit of the digest picks one.
_VARIANT = {h: "89ab"[int(h, 16) & 3] for h in "0123456789abcdef"}


def punch_id(gateway_id: str, punch: Punch) -> str:
    """Stable id of a device punch: the same record read twice gets the same id."""
    return id_from_fields(id_head(gateway_id), punch, punch.identity_fields())


def id_head(gateway_id: str) -> str:
    """The hashed text's gateway-wide start, computed once per batch on the hot path."""
    return _ID_SCHEME + _SEP + gateway_id + _SEP


def id_from_fields(head: str, punch: Punch, fields: tuple[str, str, str, str]) -> str:
    """``punch_id`` from ``id_head(gateway)`` and ``punch.identity_fields()`` (hot path)."""
    digest = _sha256((head + _SEP.join(fields)).encode()).hexdigest()
    if punch.suspect and Suspect.TIME_INVALID in punch.suspect:
        prefix = digest[32:44]  # the recorded time means nothing: no ordering to keep
    else:
        # datetime.max is far below 2**48 ms; only times before 1970 need clamping.
        ms = (punch.device_time - _EPOCH) // _MS
        prefix = f"{ms if ms > 0 else 0:012x}"
    return (
        f"{prefix[:8]}-{prefix[8:]}-8{digest[:3]}-{_VARIANT[digest[3]]}{digest[4:7]}-{digest[7:19]}"
    )


def random_id() -> str:
    """Id of a manual punch or a void event: random, never derived from content."""
    return str(uuid.uuid4())


_MS = datetime(1970, 1, 1, 0, 0, 0, 1000) - _EPOCH


def _cheapest_sha256() -> Callable[[bytes], Any]:
    """CPython's own SHA-256 when it has one, else hashlib's (OpenSSL); the digests are equal.

    The hashed text is about 70 bytes, so a call's cost is mostly setting up the hash object.
    OpenSSL 3 pays for a fresh digest context each time: 0.96 µs a call here against 0.65 µs
    for CPython's built-in module (``_sha256`` in 3.11, ``_sha2`` from 3.12), about 5 % of a
    punch's insert. tests/buffer/test_identity.py checks both give the same digests.
    """
    for module in ("_sha2", "_sha256"):
        try:
            sha256: Callable[[bytes], Any] = importlib.import_module(module).sha256
        except (ImportError, AttributeError):
            continue
        return sha256
    return hashlib.sha256


_sha256 = _cheapest_sha256()
