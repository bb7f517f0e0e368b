"""Tables on a technician's terminal quote text that came from terminals and the network (an
employee id a terminal reported, a device's last error): control characters are shown."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from buffer.outbox import Outbox
from tests.buffer.factory import punch
from tests.cli.conftest import GATEWAY, cli

# OSC 52 sets the terminal's clipboard (to 'rm -rf ~'); BEL ends it.
INJECTED = "E1\x1b]52;c;cm0gLXJmIH4K\x07"


def test_an_employee_id_a_terminal_reported_is_listed_with_its_escape_sequence_shown(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """A terminal enrolled through vendor software (or an impostor at its address) reports
    user ids with an escape sequence: 'outbox list' wrote it raw into the technician's
    terminal."""
    with Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY) as outbox:
        outbox.add_punches([dataclasses.replace(punch(1), employee=INJECTED)])
    outcome = cli("outbox", "list", "--config", str(make_config()))
    assert outcome.code == 0, outcome.stderr
    assert "\x1b" not in outcome.stdout and "\x07" not in outcome.stdout
    assert "E1\\x1b]52;c;cm0gLXJmIH4K\\x07" in outcome.stdout
