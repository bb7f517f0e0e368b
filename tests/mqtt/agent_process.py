"""A minimal agent for tests that must kill a real process: ``python -m tests.mqtt.agent_process``.

Arguments: broker URL, outbox path, boot counter. Prints ``ready`` once connected, then runs
until killed (or 60 s pass, so a forgotten process ends by itself).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from agent import logs
from agent.mqtt import DeliveryWorker
from buffer.outbox import Outbox
from tests.mqtt.conftest import GATEWAY, fast_options


def main() -> None:
    url, outbox_path, boot = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    logs.configure("warning", stream=sys.stderr)  # stdout carries only the ready line
    outbox = Outbox.open(outbox_path, GATEWAY)
    worker = DeliveryWorker(fast_options(url), outbox, GATEWAY, "Berlin HQ", boot=boot).start()
    worker.connection.wait_connected(10)
    print("ready", flush=True)
    threading.Event().wait(60)
    worker.stop(2)
    outbox.close()


if __name__ == "__main__":
    main()
