"""Logging: JSON lines off a TTY, readable on a TTY, secrets never printed."""

from __future__ import annotations

import io
import json

import structlog

from agent import logs


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_lines_when_not_a_tty() -> None:
    out = io.StringIO()
    logs.configure("info", stream=out)
    structlog.get_logger("t").bind(device="lobby-1").info("device unreachable", after_s=3)
    record = json.loads(out.getvalue())
    assert record["event"] == "device unreachable" and record["device"] == "lobby-1"
    assert record["level"] == "info" and "timestamp" in record


def test_console_lines_on_a_tty() -> None:
    out = FakeTty()
    logs.configure("info", stream=out)
    structlog.get_logger("t").info("hello", device="x")
    text = out.getvalue()
    assert "hello" in text and "device" in text
    assert not text.lstrip().startswith("{")


def test_level_filters_debug() -> None:
    out = io.StringIO()
    logs.configure("warning", stream=out)
    log = structlog.get_logger("t")
    log.info("quiet")
    log.warning("loud")
    assert "quiet" not in out.getvalue() and "loud" in out.getvalue()


def test_secrets_never_appear_in_logs() -> None:
    out = io.StringIO()
    logs.configure("debug", stream=out)
    log = structlog.get_logger("t")
    log.info("connecting", password="hunter2", comm_key=4321, mqtt={"password": "pw2", "host": "h"})
    log.info("auth", api_token="tok-1", key_file="/etc/k.pem")
    text = out.getvalue()
    for secret in ("hunter2", "4321", "pw2", "tok-1", "/etc/k.pem"):
        assert secret not in text
    assert '"host": "h"' in text
