"""Type stub of the compiled ingest encoder (buffer/_encode.c)."""

from collections.abc import Sequence
from datetime import tzinfo
from typing import Any

from drivers.base import Punch, Source

def encode_batch(
    prefix: str,
    punches: Sequence[Punch],
    device_id: str,
    serial: str,
    source: Source,
    utc: tzinfo,
    /,
) -> tuple[list[str], list[tuple[Any, ...]], list[str | None], bool] | None: ...
