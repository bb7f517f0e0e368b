"""Opening a pyserial port from any URL, with failures a technician can act on."""

from __future__ import annotations

import errno

import serial

from config.errors import ConfigError, DeviceUnavailable
from drivers.serial.options import SerialOptions

_URL_HINT = "e.g. /dev/ttyUSB0, socket://host:port, rfc2217://host:port, loop://"


def open_port(device_id: str, options: SerialOptions) -> serial.SerialBase:
    """An open port for ``options.url``; ``DeviceUnavailable`` says what to check."""
    where = f"{device_id} ({options.url})"
    try:
        port = serial.serial_for_url(
            options.url,
            do_not_open=True,
            baudrate=options.baudrate,
            bytesize=options.bytesize,
            parity=options.parity,
            stopbits=options.stopbits,
            timeout=options.read_timeout,
            write_timeout=options.timeout,
        )
    except ValueError as exc:
        msg = f"{where}: {exc}: fix the url or line settings in the config ({_URL_HINT})"
        raise ConfigError(msg, [msg]) from exc
    try:
        port.open()
    except (serial.SerialException, OSError) as exc:
        if options.url.startswith("rfc2217://") and "does not seem to support RFC2217" in str(exc):
            raise DeviceUnavailable(f"{where}: {_silent_rfc2217(options.url)}") from exc
        raise DeviceUnavailable(f"{where}: {explain_open_error(exc)}") from exc
    except ValueError as exc:  # the URL's host or options are malformed
        msg = f"{where}: {exc}: fix the url in the config ({_URL_HINT})"
        raise ConfigError(msg, [msg]) from exc
    return port


def _silent_rfc2217(url: str) -> str:
    """The connection was accepted and the RFC 2217 negotiation went unanswered."""
    raw = "socket://" + url.removeprefix("rfc2217://").split("?", 1)[0]
    return (
        "the serial server accepted the connection but did not answer the RFC 2217 negotiation: "
        "its port is probably in raw TCP mode; set it to RFC 2217 mode, or use the url "
        f"{raw} (line settings are then made on the serial server)"
    )


def explain_open_error(exc: BaseException) -> str:
    """What went wrong opening a port, and what to do about it."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    lowered = text.lower()
    if code == errno.ENOENT or "no such file" in lowered:
        return "port not found: check the cable/USB adapter and the url in the config"
    if code == errno.EACCES or "permission denied" in lowered:
        return (
            "permission denied: add the punchgate service user to the 'dialout' group "
            "(or fix the udev rule for the adapter)"
        )
    if code == errno.EBUSY or "busy" in lowered:
        return "port busy: another program holds it (a terminal program or ModemManager?)"
    if "refused" in lowered:
        return (
            "the serial server refused the connection: check it is on, the TCP port in the url, "
            "and that no other client holds its serial port"
        )
    if "timed out" in lowered:
        return "the serial server did not answer in time: check the network and the url's host"
    if "name or service not known" in lowered or "not known" in lowered:
        return "host name not found: check the url's host"
    return f"cannot open the port ({text}): check the device, its power and the url in the config"
