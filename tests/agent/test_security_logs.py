"""Log lines on a technician's terminal carry text from the network (a command's request_id,
a terminal's serial number, a serial clock's line): its control characters are shown, not
obeyed."""

from __future__ import annotations

import io
import json

import structlog

from agent import logs

# OSC 52 sets the terminal's clipboard (here to 'rm -rf ~'), BEL ends it, RLO reverses text.
INJECTED = "r1\x1b]52;c;cm0gLXJmIH4K\x07\u202e"


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_control_characters_in_values_reach_a_terminal_escaped() -> None:
    out = FakeTty()
    logs.configure("info", stream=out)
    structlog.get_logger("t").info("command received", request_id=INJECTED, nested={"k": INJECTED})
    text = out.getvalue()
    assert "\x1b]52" not in text and "\x07" not in text and "\u202e" not in text
    assert "r1\\x1b]52;c;cm0gLXJmIH4K\\x07\\u202e" in text


def test_a_traceback_on_a_terminal_keeps_its_lines() -> None:
    out = FakeTty()
    logs.configure("info", stream=out)
    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger("t").exception("crashed")
    assert "Traceback (most recent call last):\n" in out.getvalue()


def test_json_lines_keep_the_text_as_it_came() -> None:
    """journald's JSON escapes control characters itself; the value stays exact for search."""
    out = io.StringIO()
    logs.configure("info", stream=out)
    structlog.get_logger("t").info("command received", request_id=INJECTED)
    assert json.loads(out.getvalue())["request_id"] == INJECTED
