"""The outbox commands fed the ugly inputs of the field: far dates, odd paths, formula text."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.cli.outbox_inspect import parse_since
from buffer.outbox import Outbox
from drivers.base import Source
from tests.cli.conftest import GATEWAY, cli
from tests.cli.test_outbox_inspect import BERLIN, punch


@pytest.fixture
def config(tmp_path: Path, make_config: Callable[..., Path]) -> Path:
    """Config + an outbox with two device punches and a manual one."""
    path = make_config()
    with Outbox.open(tmp_path / "state" / "outbox.db", GATEWAY) as outbox:
        outbox.add_punches([punch("lobby-1", "7", 30), punch("lobby-1", "8", 20)])
        outbox.add_manual(punch("lobby-1", "7", 2, Source.MANUAL), operator="alice", reason="x")
    return path


@pytest.mark.parametrize(
    "since", ["99999999999d", "36501d", "0001-01-01", "9999-12-31T23:59-05:00"]
)
def test_list_with_a_far_since_is_a_usage_error_or_an_answer_never_a_traceback(
    config: Path, since: str
) -> None:
    result = cli("outbox", "list", "--since", since, "-c", str(config), "--json")
    assert result.code in (0, 2), result
    if result.code == 2:
        assert "--since" in result.stderr


def test_since_year_one_means_everything_and_year_9999_nothing() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    assert parse_since("0001-01-01", BERLIN, now) <= datetime(1, 1, 2, tzinfo=UTC)
    assert parse_since("9999-12-31T23:59-05:00", BERLIN, now) > now
