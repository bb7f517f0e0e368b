"""Opening a pyserial port from any URL, with failures a technician can act on."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import serial

from config.errors import ConfigError, DeviceUnavailable
from drivers.netaddr import LookupTimeout, Resolver
from drivers.serial.options import SerialOptions

_MAX_ADDRESSES = 3  # of a host name's addresses, tried in turn (each may wait its timeout)
_URL_HINT = "e.g. /dev/ttyUSB0, socket://host:port, rfc2217://host:port, loop://"


def open_port(
    device_id: str, options: SerialOptions, resolver: Resolver | None = None
) -> serial.SerialBase:
    """An open port for ``options.url``; ``DeviceUnavailable`` says what to check.

    A ``socket://`` or ``rfc2217://`` host name is looked up here, bounded by ``options.timeout``
    (pyserial's lookup has no timeout), and its addresses are tried in turn.
    """
    where = f"{device_id} ({options.url})"
    urls = _by_address(where, options.url, options.timeout, resolver or Resolver())
    for url in urls[:-1]:
        try:
            return _open(where, url, options)
        except DeviceUnavailable:
            continue  # the next address may answer; the last one's error is the one raised
    return _open(where, urls[-1], options)


def _by_address(where: str, url: str, timeout: float, resolver: Resolver) -> list[str]:
    """``url`` with its network host replaced by each of its addresses (``url`` if none)."""
    if not url.startswith(("socket://", "rfc2217://")):
        return [url]
    parts = urlsplit(url)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        return [url]  # malformed: pyserial says what is wrong with it
    if not host or port is None:
        return [url]
    try:
        infos = resolver.addresses(host, port, timeout, kind=socket.SOCK_STREAM)
    except LookupTimeout as exc:
        raise DeviceUnavailable(f"{where}: {exc.strerror}") from exc
    except (socket.gaierror, UnicodeError) as exc:
        raise DeviceUnavailable(
            f"{where}: host name {host!r} not found ({exc}): check the url's host and the "
            "gateway's DNS"
        ) from exc
    ips = list(dict.fromkeys(str(info[4][0]) for info in infos))[:_MAX_ADDRESSES]
    netlocs = (f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}" for ip in ips)
    return [urlunsplit(parts._replace(netloc=netloc)) for netloc in netlocs] or [url]


def _open(where: str, url: str, options: SerialOptions) -> serial.SerialBase:
    try:
        port = serial.serial_for_url(
            url,
            do_not_open=True,
            baudrate=options.baudrate,
            bytesize=options.bytesize,
            parity=options.parity,
            stopbits=options.stopbits,
            timeout=options.read_timeout,
            write_timeout=options.timeout,
            # flock on a tty (a no-op for socket:// and the like): two readers of one line split
            # its bytes between them, and each got half of every clock's frames.
            exclusive=True,
        )
    except ValueError as exc:
        msg = f"{where}: {exc}: fix the url or line settings in the config ({_URL_HINT})"
        raise ConfigError(msg, [msg]) from exc
    try:
        port.open()
    except (serial.SerialException, OSError) as exc:
        if options.url.startswith("rfc2217://") and "does not seem to support RFC2217" in str(exc):
            raise DeviceUnavailable(f"{where}: {_silent_rfc2217(options.url)}") from exc
        if _locked(exc):
            raise DeviceUnavailable(f"{where}: {_locked_by(port.port or options.url)}") from exc
        raise DeviceUnavailable(f"{where}: {explain_open_error(exc)}") from exc
    except ValueError as exc:  # the URL's host or options are malformed
        msg = f"{where}: {exc}: fix the url in the config ({_URL_HINT})"
        raise ConfigError(msg, [msg]) from exc
    return port


def _locked(exc: BaseException) -> bool:
    """Whether opening failed on the exclusive lock: another reader holds the port."""
    code = getattr(exc, "errno", None)
    return code in (errno.EAGAIN, errno.EWOULDBLOCK) and "exclusively lock" in str(exc)


def _locked_by(path: str) -> str:
    """What to do about a port another reader locked, naming that reader when it can be told."""
    holder = lock_holder(Path(path))
    if holder == os.getpid():
        return (
            f"port locked by another reader: this process (pid {holder}) reads it already under "
            "another device id: give each [[devices]] entry its own url"
        )
    who = "(a terminal program?)" if holder is None else f"pid {holder} ({_command(holder)})"
    return (
        f"port locked by another reader, {who}: stop it first; two readers of one line split "
        "its frames between them (the punchgate service: see punchgate status, or stop it "
        "with sudo systemctl stop punchgate)"
    )


def lock_holder(path: Path, locks: Path = Path("/proc/locks")) -> int | None:
    """The pid holding a ``flock`` on the device ``path``, from ``/proc/locks``; None if unknown."""
    try:
        st = path.stat()
        table = locks.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 00:1a:3 0 EOF"; a waiter's line has "->" after the id.
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:
            pid = fields[4]
            return int(pid) if pid.isdigit() and pid != "0" else None
    return None


def _command(pid: int) -> str:
    """The command line of process ``pid``, short, as ``ps`` would show it."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "a process this user cannot see"
    text = " ".join(raw.replace(b"\0", b" ").decode("utf-8", "replace").split())
    return (text[:77] + "...") if len(text) > 80 else (text or "?")


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
