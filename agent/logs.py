"""structlog set-up: JSON lines when not on a TTY (journald), readable console lines on a TTY."""

from __future__ import annotations

import logging
import sys
import unicodedata
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_SECRET_KEYS = ("password", "passwd", "secret", "token", "comm_key", "commkey", "key_file")
REDACTED = "***"

LEVELS = ("debug", "info", "warning", "error", "critical")


def redact_secrets(
    _logger: object, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the value of any secret-looking key, at any depth of dicts, with ``***``."""
    for key in list(event):
        if key == "event":
            continue
        event[key] = _redact(key, event[key])
    return event


def _redact(key: str, value: Any) -> Any:
    if any(s in key.lower() for s in _SECRET_KEYS) and value not in (None, "", 0):
        return REDACTED
    if isinstance(value, dict):
        return {k: _redact(str(k), v) for k, v in value.items()}
    return value


_MULTILINE_KEYS = ("exception", "stack")  # tracebacks: their line breaks are the layout


def escape_controls(
    _logger: object, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Control and format characters in values as ``\\x1b``/``\\u202e``: for a terminal.

    Values carry text from the network (a command's request_id, a terminal's serial, a serial
    clock's line): an escape sequence in one wrote the technician's clipboard (OSC 52) or
    screen. JSON lines need nothing: the JSON encoding escapes them.
    """
    for key in list(event):
        event[key] = _escaped(event[key], keep_lines=key in _MULTILINE_KEYS)
    return event


def visible(text: str, keep_lines: bool = False) -> str:
    """``text`` with control and format characters escaped (``\\x1b``, ``\\u202e``)."""
    if text.isprintable():
        return text
    kept = "\n\t" if keep_lines else ""
    return "".join(
        c.encode("unicode_escape").decode("ascii")
        if c not in kept and unicodedata.category(c) in ("Cc", "Cf")
        else c
        for c in text
    )


def _escaped(value: Any, keep_lines: bool = False) -> Any:
    if isinstance(value, str):
        return visible(value, keep_lines)
    if isinstance(value, dict):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_escaped(v) for v in value)
    return value


_CONSOLE_RAW = ("event", "level", "timestamp", "logger", *_MULTILINE_KEYS)
_NEEDS_QUOTES = frozenset(" \t=\"'")


class _Shown:
    """A value already written as a person reads it: the console renderer reprs non-strings."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _shown(value: Any, top: bool = True) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        if top and (not value or _NEEDS_QUOTES & set(value)):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return value
    if isinstance(value, list | tuple | set | frozenset):
        text = ",".join(_shown(v, top=False) for v in value)
        return _shown(text) if top else text
    if isinstance(value, dict):
        text = ",".join(f"{k}={_shown(v, top=False)}" for k, v in value.items())
        return _shown(text) if top else text
    return _shown(str(value), top)


def console_values(
    _logger: object, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Values as text for the console: ``true``/``false``, ``-`` for none, lists with commas.

    The console renderer shows other types by ``repr``: a technician read ``recovered=False``,
    ``devices=['lobby-1', 'gate-2']`` and ``error=None``, Python's spelling, not the product's.
    """
    for key in list(event):
        if key not in _CONSOLE_RAW:
            event[key] = _Shown(_shown(event[key]))
    return event


class _StdStream:
    """``sys.stdout``/``sys.stderr`` looked up at each write, so a swapped stream is followed.

    A line that cannot be written (the log's disk is full, its pipe is gone) is dropped: a
    log call must never fail the caller, e.g. the outbox that has just stored punches.
    """

    def __init__(self, name: str, stream: TextIO | None = None) -> None:
        self._name = name
        self._stream = stream  # a given stream instead of the sys attribute

    def _target(self) -> TextIO:
        return self._stream if self._stream is not None else getattr(sys, self._name)

    def write(self, text: str) -> int:
        try:
            return self._target().write(text)
        except OSError:
            return 0

    def flush(self) -> None:
        try:
            self._target().flush()
        except OSError:
            pass

    def isatty(self) -> bool:
        return self._target().isatty()


def configure(level: str = "info", stream: TextIO | None = None, json: bool | None = None) -> None:
    """Configure structlog once, in the composition root; ``json=None`` picks by TTY."""
    if stream is None or stream is sys.stdout:
        stream = _StdStream("stdout")  # type: ignore[assignment]
    elif stream is sys.stderr:
        stream = _StdStream("stderr")  # type: ignore[assignment]
    elif not isinstance(stream, _StdStream):
        stream = _StdStream("given", stream)  # type: ignore[assignment]
    assert stream is not None
    if json is None:
        json = not (hasattr(stream, "isatty") and stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            *([] if json else [escape_controls, console_values]),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
