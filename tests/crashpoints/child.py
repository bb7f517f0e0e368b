"""A child process running one outbox operation, stoppable at any step (see ``steps``).

``python -m tests.crashpoints.child <operation> <args...>``; prints ``DONE <steps>`` at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.crashpoints import steps

GATEWAY = "gw-test"


def main(argv: list[str]) -> None:
    """Run the operation named by ``argv[0]`` with the step counter armed."""
    from buffer import Outbox
    from buffer.backup import backup_rotating

    operation, args = argv[0], argv[1:]
    counted = steps.arm()
    if operation == "open":  # as the daemon opens it: damage is repaired here
        Outbox.open(Path(args[0]), GATEWAY, disk_reserve_bytes=0).close()
    elif operation == "restore":
        Outbox.restore(Path(args[0]), Path(args[1]), GATEWAY)
    elif operation == "rotate":
        backup_rotating(Path(args[0]), Path(args[1]), keep=int(args[2]))
    else:
        raise SystemExit(f"unknown operation {operation}")
    sys.stdout.write(f"DONE {counted()}\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
