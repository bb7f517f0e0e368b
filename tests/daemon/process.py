"""``punchgate run`` as a real child process, with its JSON log lines and a notify socket."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tests.support.wait import wait_for


class AgentProcess:
    """One ``python -m agent.cli run`` child; stdout (JSON logs) goes to a file."""

    def __init__(
        self,
        config: Path,
        workdir: Path,
        *,
        notify: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.log_path = workdir / f"agent-{os.getpid()}-{id(self)}.log"
        self.notify = notify
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> AgentProcess:
        env = {**os.environ, **self.extra_env}
        env.pop("NOTIFY_SOCKET", None)
        if self.notify is not None:
            env["NOTIFY_SOCKET"] = str(self.notify)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "run", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a Ctrl-C in the test terminal does not reach it
            )
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, SIGKILL if it overruns; the exit code (None if it was not started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (non-JSON lines are skipped)."""
        out = []
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        for line in text.splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def wait_event(self, name: str, timeout: float = 15.0, after: int = 0) -> dict[str, Any]:
        """The first log event named ``name`` (beyond the first ``after`` such events)."""

        def found() -> dict[str, Any] | None:
            matches = [e for e in self.events() if e.get("event") == name]
            return matches[after] if len(matches) > after else None

        event = wait_for(found, timeout=timeout, what=f"log event {name!r} in {self.log_path}")
        assert event is not None
        return event

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


class NotifySocket:
    """The AF_UNIX datagram socket systemd would listen on, read continuously like systemd does.

    (A datagram queue holds only ~10 messages: an unread socket makes the sender time out.)
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.received: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify-socket", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.received.append(data)

    def drain(self) -> list[bytes]:
        """Every message received so far."""
        with self._lock:
            return list(self.received)

    def wait_for(self, prefix: bytes, timeout: float = 15.0) -> bytes:
        def seen() -> bytes | None:
            return next((m for m in self.drain() if m.startswith(prefix)), None)

        message = wait_for(seen, timeout=timeout, what=f"notify message {prefix!r}")
        assert message is not None
        return message

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
