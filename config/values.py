"""Value types of the settings: durations, ids, addresses, paths, zones, broker URLs, encodings.

Each parses or checks one kind of value as the field writes it and says what is wrong in words.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated
from urllib.parse import SplitResult, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, Field

ID_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
ID_RULE = "lowercase letters, digits and '-' (not first or last), e.g. 'plant1-gw1'"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
# A century: longer waits overflow threading's timeout (about 292 years) and crash the daemon.
MAX_DURATION = 36500 * 86400.0
MIN_BACKUP_INTERVAL = 60.0  # the maintenance tick: anything shorter is a typo for days


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as ``"30s"``, ``"5m"``, ``"1h"``, ``"7d"``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '1h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(
            f"{value!r} is not a duration: use seconds (30) or a string like '30s', '5m', '1h'"
        )
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise ValueError(f"{value!r} is not a usable duration: at most 36500d (a century)")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
Identifier = Annotated[str, Field(pattern=ID_PATTERN, min_length=1, max_length=64)]


def _no_outer_space(value: str) -> str:
    # Pasted from a spreadsheet or a mail: the check said OK and the terminal never answered.
    if value != value.strip():
        raise ValueError(f"{value!r} starts or ends with a space or tab; remove it")
    return value


Address = Annotated[str, Field(min_length=1), AfterValidator(_no_outer_space)]


def _check_timezone(value: object) -> str:
    # "timezone = +1" (an offset, not a zone) and a pasted paragraph (a file name too long for
    # the zone lookup) crashed the lookup itself: every command ended in a traceback.
    rule = "is not an IANA timezone name: write one in quotes, e.g. 'Europe/Berlin'"
    if not isinstance(value, str):
        raise ValueError(f"{value!r} {rule} (an offset such as +1 is not a zone)")
    if value != value.strip():
        raise ValueError(f"{value!r} starts or ends with a space or tab; remove it")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        shown = repr(value) if len(value) <= 60 else repr(value[:57]) + "..."
        raise ValueError(f"{shown} {rule}") from exc
    return value


TimeZoneName = Annotated[str, BeforeValidator(_check_timezone)]


def _check_absolute(value: Path) -> Path:
    # The daemon runs from /, the CLI from the technician's directory, and neither expands '~':
    # a relative path would name two different files (two outboxes) for the two of them.
    if not value.is_absolute():
        raise ValueError(f"{str(value)!r} is not an absolute path: write it from / on")
    return value


AbsolutePath = Annotated[Path, AfterValidator(_check_absolute)]


def _redacted(parts: SplitResult) -> str:
    """The URL without its userinfo: a password in it must never be printed."""
    netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"***@{netloc}" if "@" in parts.netloc else netloc).geturl()


def check_broker_url(url: str) -> None:
    try:
        parts = urlsplit(url)
    except ValueError:
        shown = f"***@{url.rpartition('@')[2]}" if "@" in url else url
        raise ValueError(f"{shown!r}: not a URL (an IPv6 address goes in [brackets])") from None
    shown = _redacted(parts)
    if url != url.rstrip():
        raise ValueError(f"{shown!r} ends with a space or tab; remove it")
    if parts.scheme not in ("mqtt", "mqtts"):
        got = parts.scheme or "none"
        raise ValueError(f"{shown!r}: the scheme must be mqtt:// or mqtts:// (got {got!r})")
    if "@" in parts.netloc:
        raise ValueError(
            f"{shown!r}: no user or password in the URL; use mqtt.username and "
            "mqtt.password_file (or $PUNCHGATE_MQTT_PASSWORD)"
        )
    if not parts.hostname:
        raise ValueError(f"{shown!r}: no host name")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"{shown!r}: the port is not a number 1-65535")


_ASCII_SAMPLE = b"0123456789 ,;:/-ABCDEFINOUTabcdefinout\r\n\x00"  # as drivers/textcodec.py


def text_encoding(value: str) -> str:
    """``value`` if it is a text encoding that reads ASCII as ASCII, else ``ValueError``.

    Terminals pad names with NUL bytes and serial clocks end lines with CR/LF: 'hex', 'base64'
    or 'rot13' (codecs, not encodings) and UTF-16/32 or EBCDIC would pass a name lookup and
    then fail on the first name or line (drivers/serial/parsers.py refuses them the same way).
    """
    try:
        readable = _ASCII_SAMPLE.decode(value) == _ASCII_SAMPLE.decode("ascii")
    except LookupError:
        raise ValueError(
            f"{value!r} is not a text encoding: use e.g. 'ascii', 'utf-8' or 'latin-1'"
        ) from None
    except ValueError:  # UTF-16 and UTF-32 cannot decode the sample
        readable = False
    if not readable:
        raise ValueError(
            f"encoding {value!r} does not read ASCII digits, letters and line ends as ASCII; "
            "use an ASCII-compatible one (e.g. 'ascii', 'utf-8', 'latin-1', 'cp1251', 'gbk')"
        )
    return value
