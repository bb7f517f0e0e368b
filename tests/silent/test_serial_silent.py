"""Serial servers that accept the TCP connection and never answer."""

from __future__ import annotations

import time

import pytest

from config.errors import DeviceUnavailable
from drivers.serial.options import SerialOptions
from drivers.serial.port import open_port
from tests.silent.peers import SilentListener


def test_an_rfc2217_url_on_a_serial_server_in_raw_mode_says_to_switch_mode_or_use_socket() -> None:
    """A serial server port set to raw TCP (the usual factory mode) accepts the connection and
    never answers the RFC 2217 negotiation; the message pointed at the device's power."""
    with SilentListener() as silent:
        url = f"rfc2217://127.0.0.1:{silent.port}"
        began = time.monotonic()
        with pytest.raises(DeviceUnavailable) as raised:
            open_port("door-1", SerialOptions(url=url, format="em4100"))
        assert time.monotonic() - began < 10
    message = str(raised.value)
    assert "did not answer the RFC 2217 negotiation" in message, message
    assert f"socket://127.0.0.1:{silent.port}" in message, message
    assert "we-BINARY" not in message, message
