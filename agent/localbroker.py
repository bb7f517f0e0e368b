"""A private Mosquitto broker on loopback, for the demo and the test suite.

It runs the operating system's ``mosquitto`` binary with its own config, port and persistence
directory, and can be stopped and restarted on the same port: sessions and queued messages survive
a restart because the broker saves its database on a clean stop.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from config.errors import BrokerError

INSTALL_HINT = (
    "mosquitto is not installed: run 'sudo apt-get install -y mosquitto' "
    "(the tests and the demo need the broker binary, not the service)"
)


def find_mosquitto() -> str:
    """Path of the mosquitto binary, or ``BrokerError`` with how to install it."""
    for candidate in (
        shutil.which("mosquitto"),
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BrokerError(INSTALL_HINT)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class BrokerTls:
    """Server-side TLS material for a ``mqtts`` listener."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    require_certificate: bool = False


class LocalMosquitto:
    """One mosquitto process bound to 127.0.0.1 with persistence in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        tls: BrokerTls | None = None,
        password_file: Path | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.tls = tls
        self.password_file = password_file
        self.start_timeout = start_timeout
        self.binary = find_mosquitto()
        self._proc: subprocess.Popen[bytes] | None = None
        self.config_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'false' if self.password_file else 'true'}",
            "persistence true",
            f"persistence_location {self.workdir}/",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            # A receiver away while tests and benchmarks publish keeps its whole backlog (stock:
            # 1000 messages). The in-flight limit stays stock (Receive Maximum 20), as on sites.
            "max_queued_messages 1000000",
            "max_packet_size 16777216",
        ]
        if os.geteuid() == 0:
            # As root, mosquitto drops to the 'mosquitto' user before writing persistence, and that
            # user cannot enter a root-owned temp dir; stay as the invoking user instead.
            lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        if self.password_file:
            lines.append(f"password_file {self.password_file}")
        if self.tls:
            lines += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.cert_file}",
                f"keyfile {self.tls.key_file}",
                f"require_certificate {'true' if self.tls.require_certificate else 'false'}",
            ]
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def start(self) -> LocalMosquitto:
        """Start (or restart) the broker and wait until it accepts connections."""
        if self.running:
            return self
        self._write_config()
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"mosquitto exited at start-up: {self._failure_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerError(
            f"mosquitto did not accept connections on 127.0.0.1:{self.port} within "
            f"{self.start_timeout:.0f}s: {self._failure_text()}"
        )

    def _failure_text(self) -> str:
        stderr = b""
        if (
            self._proc is not None
            and self._proc.stderr is not None
            and self._proc.poll() is not None
        ):
            stderr = self._proc.stderr.read() or b""
        log = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        return (stderr.decode(errors="replace") + log).strip()[-2000:] or "no output"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop cleanly (SIGTERM: the broker saves sessions and queued messages)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
        finally:
            if proc.stderr is not None:
                proc.stderr.close()

    def kill(self) -> None:
        """Stop abruptly (SIGKILL): anything not yet saved by the broker is gone."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> LocalMosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
